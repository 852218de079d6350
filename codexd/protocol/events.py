"""``events/*``: thread subscriptions and replay of missed notifications."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import Count, Params, Struct, method, notification

ThreadId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SubscribeParams(Params, frozen=True):
    thread_ids: list[ThreadId] = []
    all: bool | None = None


class Subscriptions(Struct, frozen=True):
    thread_ids: list[str]
    all: bool


class ReplayParams(Params, frozen=True):
    after_seq: Count
    epoch: str | None = None
    #: Notifications per page at most (a page is also bounded by half the client's queue).
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10_000


class Replay(Struct, frozen=True, omit_defaults=False):
    epoch: str
    gap: bool
    last_seq: int
    events: list[msgspec.Raw]
    #: The page was cut at its bound: call again with afterSeq = nextAfterSeq.
    more: bool = False
    next_after_seq: int | None = None


class Overflow(Struct, frozen=True):
    queued_bytes: int
    limit_bytes: int


class ThreadUnsubscribeParams(Params, frozen=True):
    thread_id: ThreadId


class ThreadUnsubscribeResult(Struct, frozen=True):
    status: str


EVENTS_SUBSCRIBE = method(
    "events/subscribe", SubscribeParams, Subscriptions,
    "Receive a thread's notifications (or every thread's with all=true).",
)
EVENTS_UNSUBSCRIBE = method(
    "events/unsubscribe", SubscribeParams, Subscriptions,
    "Stop receiving a thread's notifications (all=false ends an all-threads subscription).",
)
EVENTS_REPLAY = method(
    "events/replay", ReplayParams, Replay,
    "The notifications after afterSeq still in the ring buffer, or gap=true.",
)
THREAD_UNSUBSCRIBE = method(
    "thread/unsubscribe", ThreadUnsubscribeParams, ThreadUnsubscribeResult,
    "Owned by codexd: ends this client's subscription; the shared upstream one stays.",
)
EVENTS_OVERFLOW = notification(
    "events/overflow", Overflow,
    "Sent just before codexd disconnects a client that stopped reading.",
)
