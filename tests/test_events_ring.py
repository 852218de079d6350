"""The replay ring (pure): bounded in count and bytes, paged replay, gaps named honestly."""

from __future__ import annotations

from dataclasses import dataclass, field

from codexd.events import EventHub


@dataclass
class _Sub:
    id: int = 1
    got: list[bytes] = field(default_factory=list)

    def notify(self, data: bytes) -> None:
        self.got.append(data)


def test_ring_is_bounded_in_bytes_whatever_the_count():
    hub = EventHub(ring_size=10_000, ring_bytes=1_000_000)
    value = "x" * 100_000
    for _ in range(150):  # 150 x 100 kB: 15 MB published, 1 MB kept
        hub.publish("atom/changed", {"value": value}, [])
    assert hub.ring_bytes <= 1_000_000
    assert hub.ring_len == 9
    page = hub.replay(0, None, _Sub())
    assert page.gap and len(page.events) == 9


def test_a_notification_larger_than_the_ring_is_sent_but_not_kept():
    hub = EventHub(ring_size=10, ring_bytes=100_000)
    sub = _Sub()
    hub.publish("atom/changed", {"value": "y" * 200_000}, [sub])
    assert len(sub.got) == 1 and hub.ring_len == 0
    assert hub.replay(0, None, sub).gap


def test_replay_pages_make_progress_and_end():
    hub = EventHub(ring_size=1000)
    for i in range(25):
        hub.publish("x", {"i": i}, [])
    sub, after, seen = _Sub(), 0, []
    while True:
        page = hub.replay(after, hub.epoch, sub, max_count=10)
        assert not page.gap
        seen += page.events
        if not page.more:
            break
        after = page.next_after_seq
    assert len(seen) == 25
    one = hub.replay(0, None, sub, max_bytes=1)  # never an empty page
    assert len(one.events) == 1 and one.more and one.next_after_seq == 1


def test_a_seq_this_daemon_never_issued_is_a_gap():
    hub = EventHub(ring_size=10)
    hub.publish("x", {}, [])
    assert hub.replay(50, None, _Sub()).gap  # the client saw another daemon life
    assert hub.replay(1, None, _Sub()).gap is False
    assert hub.replay(0, "another-epoch", _Sub()).gap


def test_replay_is_filtered_by_thread_subscription():
    hub = EventHub(ring_size=10)
    hub.publish("turn/completed", {}, [], thread_id="t1")
    hub.publish("turn/completed", {}, [], thread_id="t2")
    follower = _Sub(id=2)
    hub.threads.add(follower, ["t1"])  # thread interest is the hub's, keyed by session id
    assert len(hub.replay(0, None, follower).events) == 1
    assert hub.replay(0, None, _Sub()).events == []
