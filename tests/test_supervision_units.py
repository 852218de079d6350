"""Pure pieces of the supervisor: the state table, backoff, breaker, fair limiter, event ring."""

from __future__ import annotations

import random

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from codexd.appserver.backoff import Backoff, Breaker
from codexd.appserver.limiter import FairLimiter
from codexd.appserver.states import BadTransition, Input, State, transition
from codexd.events import EventHub, ReplayPage


def test_state_table_refuses_edges_not_in_it():
    assert transition(State.STOPPED, Input.START) is State.STARTING
    assert transition(State.FAILED, Input.RESTART) is State.STARTING
    with pytest.raises(BadTransition):
        transition(State.FAILED, Input.BACKOFF_DONE)
    with pytest.raises(BadTransition):
        transition(State.STOPPED, Input.HANDSHAKE_OK)


def test_backoff_doubles_with_jitter_caps_and_resets():
    b = Backoff(initial=0.5, maximum=30, reset_after=60, rng=random.Random(7))
    delays = [b.next_delay(healthy_for=0) for _ in range(10)]
    for i, d in enumerate(delays):
        ceiling = min(30, 0.5 * 2**i)
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 30
    # A long healthy run starts the ladder again.
    assert b.next_delay(healthy_for=61) <= 0.5


def test_breaker_counts_failures_in_a_sliding_window():
    br = Breaker(failures=3, window=10)
    assert not br.record_failure(0)
    assert not br.record_failure(5)
    assert not br.record_failure(11)  # the first fell out of the window
    assert br.record_failure(12)


async def test_fair_limiter_alternates_between_owners():
    lim = FairLimiter(1)
    order: list[str] = []

    async def work(owner: str, i: int) -> None:
        async with lim.slot(owner):
            order.append(f"{owner}{i}")
            await trio.lowlevel.checkpoint()

    await lim.acquire("holder")
    async with trio.open_nursery() as nursery:
        for i in range(4):  # the greedy owner queues four first
            nursery.start_soon(work, "g", i)
            await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(work, "s", 0)  # a single request arrives last
        await trio.testing.wait_all_tasks_blocked()
        lim.release()
    assert order.index("s0") <= 1, order  # served right after the greedy owner's first


async def test_fair_limiter_cancelled_waiter_gives_its_slot_back():
    lim = FairLimiter(1)
    await lim.acquire("a")
    with trio.move_on_after(0.01):
        await lim.acquire("b")
    assert lim.waiting == 0
    lim.release()
    assert lim.in_use == 0


class _Sub:
    def __init__(self, sid: int) -> None:
        self.id = sid
        self.got: list[bytes] = []

    def notify(self, data: bytes) -> None:
        self.got.append(data)


def test_event_hub_fans_out_by_thread_and_replays_with_gaps():
    hub = EventHub(ring_size=3)
    a, b = _Sub(1), _Sub(2)
    hub.threads.add(a, ["t1"])
    hub.publish("x/global", {}, [a, b])
    hub.publish("x/t1", {"threadId": "t1"}, [a, b], thread_id="t1")
    assert len(a.got) == 2 and len(b.got) == 1
    assert b'"seq":2' in a.got[1] and hub.epoch.encode() in a.got[1]
    page = hub.replay(0, hub.epoch, b)
    assert page.gap is False and len(page.events) == 1
    for _ in range(3):
        hub.publish("x/more", {}, [])
    page = hub.replay(1, hub.epoch, a)  # seq 2 fell out of the 3-entry ring
    assert page.gap is True and len(page.events) == 3
    assert hub.replay(hub.seq, hub.epoch, a) == ReplayPage([], False)
    assert hub.replay(0, "another-epoch", a) == ReplayPage([], True)


@given(chunks=st.lists(st.binary(max_size=50), max_size=40), limit=st.integers(1, 64))
def test_scrollback_keeps_exactly_the_last_bytes(chunks, limit):
    from codexd.terminal.scrollback import Scrollback

    sb = Scrollback(limit)
    stream = b""
    for chunk in chunks:
        sb.append(chunk)
        stream += chunk
        snap, end = sb.snapshot()
        assert end == len(stream)
        assert snap == stream[-limit:] if stream else snap == b""
        assert len(sb) == len(snap) and sb.start == end - len(snap)
