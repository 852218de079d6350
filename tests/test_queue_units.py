"""The run queue's pick order (pure, ``now`` passed in): priority, aging, limits, backoff."""

from __future__ import annotations

from codexd.runs import queue as q


def w(run_id: str, provider: str = "codex", priority: int = 0, at: int = 0,
      not_before: int | None = None) -> q.Waiting:
    return q.Waiting(run_id, provider, priority, at, not_before)


def test_priority_first_then_first_come_first_served():
    waiting = [w("low", priority=-5, at=1), w("mid", at=2), w("high", priority=7, at=3),
               w("mid2", at=4)]
    assert [x.run_id for x in q.order(waiting, now_ms=5, aging_seconds=0)] == \
        ["high", "mid", "mid2", "low"]


def test_aging_lifts_a_long_waiting_run_one_step_per_period():
    old = w("old", priority=-2, at=0)
    new = w("new", priority=0, at=59_000)
    assert q.effective_priority(old, now_ms=60_000, aging_seconds=30) == 0
    assert [x.run_id for x in q.order([new, old], now_ms=60_000, aging_seconds=30)] == \
        ["old", "new"]  # equal effective priority: the older one first
    assert [x.run_id for x in q.order([new, old], now_ms=60_000, aging_seconds=0)] == \
        ["new", "old"]


def test_limits_global_and_per_provider():
    waiting = [w("c1", at=1), w("c2", at=2), w("k1", "claude", at=3), w("k2", "claude", at=4)]
    chosen = q.pick(waiting, {}, now_ms=10, aging_seconds=0, max_concurrent=3,
                    max_per_provider=1)
    assert [x.run_id for x in chosen] == ["c1", "k1"]
    chosen = q.pick(waiting, {"codex": 1}, now_ms=10, aging_seconds=0, max_concurrent=2,
                    max_per_provider=2)
    assert [x.run_id for x in chosen] == ["c1"]


def test_a_retry_in_backoff_waits_and_says_when():
    waiting = [w("retry", priority=5, at=0, not_before=1_000), w("next", at=1)]
    chosen = q.pick(waiting, {}, now_ms=500, aging_seconds=0, max_concurrent=1,
                    max_per_provider=1)
    assert [x.run_id for x in chosen] == ["next"]
    assert q.next_wake_ms(waiting, 500, 0) == 1_000
    chosen = q.pick(waiting, {}, now_ms=1_000, aging_seconds=0, max_concurrent=1,
                    max_per_provider=1)
    assert [x.run_id for x in chosen] == ["retry"]
    assert q.next_wake_ms(waiting, 1_000, 0) is None
