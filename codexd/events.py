"""Numbered notifications: fan-out by thread subscription, and a ring buffer for replay.

Every notification codexd sends to clients goes through :meth:`EventHub.publish`: it gets the next
``seq`` and the daemon's ``epoch`` as top-level members, is encoded once, kept in a bounded ring,
and queued for every session that wants it: one that follows its thread (:attr:`EventHub.threads`)
or any session when it is not about a thread. A client that reconnects names the last ``seq`` it
saw and receives what it missed, or learns that the ring no longer holds it (``gap``).
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from msgspec import UNSET, UnsetType

from codexd.subscriptions import HasId, Interest


class _Out(msgspec.Struct, omit_defaults=True):
    jsonrpc: str
    method: str
    params: Any = UNSET
    emittedAtMs: int | UnsetType = UNSET  # the app-server's stamp, passed on
    seq: int = 0
    epoch: str = ""


_encoder = msgspec.json.Encoder()
#: The stamps ``EventHub.encode`` puts last; anchored at the end, so nothing nested can match.
_STAMPS = re.compile(rb',"seq":\d+,"epoch":"[0-9a-f]+"\}\n$')


def unstamp(data: bytes) -> bytes:
    """The notification without codexd's ``seq`` and ``epoch`` (for clients of the app-server
    wire, which expect the app-server's notifications exactly)."""
    m = _STAMPS.search(data)
    return data if m is None else data[: m.start()] + b"}\n"


class Subscriber(Protocol):
    @property
    def id(self) -> int: ...

    def notify(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    thread_id: str | None
    exclude: int | None
    data: bytes


@dataclass(frozen=True, slots=True)
class ReplayPage:
    """What a client missed: ``events`` (encoded), ``gap`` (some are lost: re-read state), and
    ``more`` with ``next_after_seq`` when the page was cut at its bound (ask again from there)."""

    events: list[bytes]
    gap: bool
    more: bool = False
    next_after_seq: int = 0


class EventHub:
    """Owned by the daemon; used from the event loop only (no locking).

    The ring is bounded twice: at most ``ring_size`` notifications and at most ``ring_bytes`` of
    their encoded size (the oldest go first), so a burst of large notifications (``atom/changed``
    carries the whole value) cannot grow memory without bound.
    """

    def __init__(self, ring_size: int, ring_bytes: int = 64 * 1024 * 1024) -> None:
        self.epoch = secrets.token_hex(8)
        self.seq = 0
        self._ring: deque[_Entry] = deque()
        self._ring_size = ring_size
        self._ring_bytes = ring_bytes
        self._bytes = 0
        #: The threads each session follows (``events/subscribe``, thread/start and the like).
        self.threads: Interest[Any] = Interest()

    @property
    def ring_bytes(self) -> int:
        """Encoded bytes held for replay now."""
        return self._bytes

    @property
    def ring_len(self) -> int:
        return len(self._ring)

    def encode(self, method: str, params: Any | UnsetType, seq: int,
               emitted_at_ms: int | None = None) -> bytes:
        stamp: int | UnsetType = UNSET if emitted_at_ms is None else emitted_at_ms
        return _encoder.encode(_Out(jsonrpc="2.0", method=method, params=params,
                                    emittedAtMs=stamp, seq=seq, epoch=self.epoch)) + b"\n"

    def publish(
        self,
        method: str,
        params: Any,
        sessions: Iterable[Subscriber],
        *,
        thread_id: str | None = None,
        exclude: HasId | None = None,
        emitted_at_ms: int | None = None,
    ) -> int:
        """Number, record and send a notification; returns its seq. Never waits."""
        self.seq += 1
        data = self.encode(method, params, self.seq, emitted_at_ms)
        exclude_id = exclude.id if exclude is not None else None
        if self._ring_size and len(data) <= self._ring_bytes:
            ring = self._ring
            ring.append(_Entry(self.seq, thread_id, exclude_id, data))
            self._bytes += len(data)
            while len(ring) > self._ring_size or self._bytes > self._ring_bytes:
                self._bytes -= len(ring.popleft().data)
        if thread_id is None:
            for session in sessions:
                if session.id != exclude_id:
                    session.notify(data)
        else:
            wants = self.threads.wants
            for session in sessions:
                if session.id != exclude_id and wants(session.id, thread_id):
                    session.notify(data)
        return self.seq

    def replay(
        self, after_seq: int, epoch: str | None, session: Subscriber, *,
        max_count: int | None = None, max_bytes: int | None = None,
    ) -> ReplayPage:
        """What ``session`` missed after ``after_seq``, at most ``max_count`` notifications and
        ``max_bytes`` (always at least one, so paging makes progress)."""
        if epoch is not None and epoch != self.epoch:
            # Another daemon life: its seqs mean nothing here; the client must re-read state.
            return ReplayPage([], True)
        if after_seq > self.seq:
            # Seqs this daemon never issued: the client saw another life (it gave no epoch).
            return ReplayPage([], True)
        oldest = self._ring[0].seq if self._ring else self.seq + 1
        gap = after_seq < self.seq and after_seq + 1 < oldest
        events: list[bytes] = []
        size = last = 0
        wants, sid = self.threads.wants, session.id
        for e in self._ring:
            if e.seq <= after_seq or e.exclude == sid or not wants(sid, e.thread_id):
                continue
            if events and ((max_count is not None and len(events) >= max_count)
                           or (max_bytes is not None and size + len(e.data) > max_bytes)):
                return ReplayPage(events, gap, True, last)
            events.append(e.data)
            size += len(e.data)
            last = e.seq
        return ReplayPage(events, gap)
