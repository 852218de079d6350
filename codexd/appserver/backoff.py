"""Restart backoff with jitter and the crash-loop breaker. Pure: callers pass ``now``."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential delays with full jitter in [delay/2, delay], reset after a healthy stretch.

    ``initial`` doubles per consecutive failure up to ``maximum``. A run that stayed healthy for
    ``reset_after`` seconds starts the ladder again.
    """

    initial: float = 0.5
    maximum: float = 30.0
    reset_after: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, *, healthy_for: float) -> float:
        """The delay before the next start, given how long the last run was healthy."""
        if healthy_for >= self.reset_after:
            self.attempt = 0
        delay = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return float(delay / 2 + self.rng.random() * delay / 2)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Breaker:
    """Trips after ``failures`` failures within ``window`` seconds."""

    failures: int = 5
    window: float = 300.0
    _times: deque[float] = field(default_factory=deque)

    def record_failure(self, now: float) -> bool:
        """Note a failure at ``now``; True when this one trips the breaker."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) >= self.failures

    @property
    def recent(self) -> int:
        return len(self._times)

    def reset(self) -> None:
        self._times.clear()
