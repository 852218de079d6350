"""The scheduler loop: one task that sleeps until the next automation is due.

It keeps every active automation's next fire time in a heap, sleeps until the earliest (or until a
change wakes it), and hands due automations to ``fire`` together with every occurrence that came
due since (more than one means runs were missed: the daemon was down or the machine asleep).
Nothing is polled: with nothing scheduled it waits for a change. A suspended machine stops the
monotonic clock trio sleeps on, so a sleep is capped at ``clock_check_seconds``, after which the
wall clock is read again.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from codexd.automations.schedule import Schedule

#: Missed occurrences counted at most (a minutely rule after a month off is still one decision).
MAX_MISSED = 10_000

Fire = Callable[[str, list[int], "int | None"], Awaitable[None]]


@dataclass(slots=True)
class _Entry:
    schedule: Schedule
    next_ms: int | None


class Scheduler:
    def __init__(self, *, wall_ms: Callable[[], int], fire: Fire,
                 clock_check_seconds: float) -> None:
        self.wall_ms = wall_ms
        self.clock_check_seconds = clock_check_seconds
        self._fire = fire
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._order = itertools.count()
        self._wake = trio.Event()
        self.wakeups = 0
        #: How late (ms) the last fire began after its due time; None before the first.
        self.last_lag_ms: float | None = None
        #: Until when (Unix ms) nothing may fire, or None: the account's usage limit. What
        #: comes due meanwhile fires at the end, as missed (its missed_policy decides).
        self.hold: Callable[[], int | None] = lambda: None
        #: The last hold that ended: (first seen, its end), Unix ms.
        self.last_hold: tuple[int, int] | None = None
        self._held: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def next_due(self, automation_id: str) -> int | None:
        entry = self._entries.get(automation_id)
        return entry.next_ms if entry else None

    def set(self, automation_id: str, schedule: Schedule, next_ms: int | None = None) -> int | None:
        """Schedule (or reschedule) an automation; ``next_ms`` defaults to the next occurrence
        after now. Returns its next fire time (None: the rule has no more occurrences)."""
        if next_ms is None:
            next_ms = schedule.next_after(self.wall_ms())
        self._entries[automation_id] = _Entry(schedule, next_ms)
        if next_ms is not None:
            heapq.heappush(self._heap, (next_ms, next(self._order), automation_id))
            if self._heap[0][2] == automation_id:
                self._wake.set()
        return next_ms

    def remove(self, automation_id: str) -> None:
        # The heap entry goes stale and is dropped when it comes up.
        self._entries.pop(automation_id, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            now = self.wall_ms()
            until = self.hold()
            if until is not None and until > now:
                self._held = (self._held[0] if self._held else now, until)
                if self._heap and self._heap[0][0] <= now:
                    await self._sleep(min((until - now) / 1000, self.clock_check_seconds))
                    continue
            elif self._held is not None:
                self.last_hold, self._held = (self._held[0], now), None
            while self._heap and self._heap[0][0] <= now:
                due, _, automation_id = heapq.heappop(self._heap)
                entry = self._entries.get(automation_id)
                if entry is None or entry.next_ms != due:
                    continue  # stale: removed or rescheduled since
                times = [due]
                for t in entry.schedule.occurrences(due):
                    if t > now or len(times) >= MAX_MISSED:
                        break
                    times.append(t)
                self.last_lag_ms = float(now - due)
                entry.next_ms = entry.schedule.next_after(max(now, times[-1]))
                if entry.next_ms is not None:
                    heapq.heappush(self._heap, (entry.next_ms, next(self._order), automation_id))
                await self._fire(automation_id, times, entry.next_ms)
                now = self.wall_ms()
            if self._heap:
                delay = min((self._heap[0][0] - now) / 1000, self.clock_check_seconds)
            else:
                delay = float("inf")
            await self._sleep(delay)

    def wake(self) -> None:
        """Look again now (a hold ended early)."""
        self._wake.set()

    async def _sleep(self, delay: float) -> None:
        with trio.move_on_after(max(delay, 0.0)):
            await self._wake.wait()
        self._wake = trio.Event()
        self.wakeups += 1
