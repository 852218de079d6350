"""The scheduler loop on trio's autojump clock: exact fire times, wake-ups, idleness, sleep."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from codexd.automations.schedule import parse
from codexd.automations.scheduler import Scheduler

BASE = 1_790_000_040_000  # a fixed wall clock at trio time 0 (2026-09-21T14:14:00Z)


class Wall:
    """Wall clock = BASE + trio's (virtual) clock + a jump, as a suspended machine would see."""

    def __init__(self) -> None:
        self.jump_ms = 0

    def __call__(self) -> int:
        return BASE + int(trio.current_time() * 1000) + self.jump_ms


@pytest.fixture
def autojump() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def every(seconds: int, anchor_ms: int = BASE):
    return parse(f"FREQ=SECONDLY;INTERVAL={seconds}", tz_name="UTC", anchor_ms=anchor_ms)


def make(fired: list[tuple[str, list[int], int]], wall: Wall, check: float = 60.0) -> Scheduler:
    async def fire(aid: str, times: list[int], _next: int | None) -> None:
        fired.append((aid, times, wall()))
    return Scheduler(wall_ms=wall, fire=fire, clock_check_seconds=check)


async def test_fires_each_automation_at_its_times_in_order(autojump):
    wall, fired = Wall(), []
    s = make(fired, wall)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        s.set("a", every(120))
        s.set("b", every(300))
        await trio.sleep(601)
        n.cancel_scope.cancel()
    got = sorted((at - BASE, aid) for aid, _times, at in fired)
    assert [(aid, t) for t, aid in got] == [
        ("a", 120_000), ("a", 240_000), ("b", 300_000), ("a", 360_000),
        ("a", 480_000), ("a", 600_000), ("b", 600_000)]
    assert all(len(times) == 1 for _aid, times, _at in fired)


async def test_idle_scheduler_never_wakes(autojump):
    wall, fired = Wall(), []
    s = make(fired, wall)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        await trio.sleep(7 * 86_400)
        assert s.wakeups == 0 and fired == []
        # A change wakes it at once; the new automation fires on time.
        s.set("late", every(60, anchor_ms=wall()))
        await trio.sleep(61)
        n.cancel_scope.cancel()
    assert [(aid, at - BASE) for aid, _t, at in fired] == [("late", (7 * 86_400 + 60) * 1000)]


async def test_an_earlier_automation_added_while_sleeping_wakes_the_loop(autojump):
    wall, fired = Wall(), []
    s = make(fired, wall, check=3600)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        s.set("hourly", every(3600))
        await trio.sleep(60)
        s.set("soon", every(60, anchor_ms=wall()))
        await trio.sleep(61)
        n.cancel_scope.cancel()
    assert [(aid, at - BASE) for aid, _t, at in fired] == [("soon", 120_000)]


async def test_removed_and_rescheduled_entries_do_not_fire_at_old_times(autojump):
    wall, fired = Wall(), []
    s = make(fired, wall)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        s.set("gone", every(100))
        s.set("moved", every(100))
        s.remove("gone")
        s.set("moved", every(100), next_ms=BASE + 250_000)
        await trio.sleep(260)
        n.cancel_scope.cancel()
    assert [(aid, at - BASE) for aid, _t, at in fired] == [("moved", 250_000)]


async def test_a_suspended_machine_is_noticed_within_the_clock_check(autojump):
    wall, fired = Wall(), []
    s = make(fired, wall, check=60)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        s.set("five", every(300))
        await trio.sleep(1)
        # Suspend for an hour: the wall clock jumps, trio's monotonic clock did not move.
        wall.jump_ms = 3_600_000
        await trio.sleep(60)
        n.cancel_scope.cancel()
    (aid, times, at), = fired
    # Every occurrence that came due while asleep is handed over in one call (12 of them),
    # noticed at the next clock check (≤ 60 s later), never fired one by one.
    assert aid == "five" and len(times) == 12
    assert times[0] == BASE + 300_000 and times[-1] == BASE + 3_600_000
    assert at - (BASE + 3_600_000) <= 61_000
