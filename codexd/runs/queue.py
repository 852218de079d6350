"""Which queued run starts next: priority with aging, global and per-provider limits. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Waiting:
    run_id: str
    provider: str
    priority: int
    queued_at_ms: int
    not_before_ms: int | None = None  # a retry's backoff
    #: The caller's own record of the run (opaque here).
    payload: Any = None


def effective_priority(w: Waiting, now_ms: int, aging_seconds: float) -> int:
    """Priority plus one step per ``aging_seconds`` waited: low priority work is never starved."""
    if aging_seconds <= 0:
        return w.priority
    return w.priority + int((now_ms - w.queued_at_ms) / 1000 // aging_seconds)


def order(waiting: list[Waiting], now_ms: int, aging_seconds: float) -> list[Waiting]:
    """The start order: effective priority high first, then first come first served."""
    return sorted(waiting, key=lambda w: (-effective_priority(w, now_ms, aging_seconds),
                                          w.queued_at_ms, w.run_id))


def pick(waiting: list[Waiting], running: dict[str, int], *, now_ms: int, aging_seconds: float,
         max_concurrent: int, max_per_provider: int) -> list[Waiting]:
    """The runs to start now, given how many run per provider."""
    total = sum(running.values())
    per = dict(running)
    chosen = []
    for w in order(waiting, now_ms, aging_seconds):
        if total >= max_concurrent:
            break
        if w.not_before_ms is not None and w.not_before_ms > now_ms:
            continue
        if per.get(w.provider, 0) >= max_per_provider:
            continue
        chosen.append(w)
        per[w.provider] = per.get(w.provider, 0) + 1
        total += 1
    return chosen


def next_wake_ms(waiting: list[Waiting], now_ms: int, aging_seconds: float) -> int | None:
    """When a waiting retry becomes eligible (None: nothing is held back by a backoff)."""
    held = [w.not_before_ms for w in waiting if w.not_before_ms and w.not_before_ms > now_ms]
    return min(held) if held else None
