"""Handlers for ``events/*`` and codexd's own ``thread/unsubscribe``."""

from __future__ import annotations

import msgspec

from codexd.api.registry import handles
from codexd.protocol.events import (
    EVENTS_REPLAY,
    EVENTS_SUBSCRIBE,
    EVENTS_UNSUBSCRIBE,
    THREAD_UNSUBSCRIBE,
    Replay,
    ReplayParams,
    SubscribeParams,
    Subscriptions,
    ThreadUnsubscribeParams,
    ThreadUnsubscribeResult,
)
from codexd.session import ClientSession


def _current(session: ClientSession) -> Subscriptions:
    threads = session.ctx.events.threads
    return Subscriptions(thread_ids=threads.keys(session), all=threads.is_all(session))


@handles(EVENTS_SUBSCRIBE)
def subscribe(session: ClientSession, p: SubscribeParams) -> Subscriptions:
    # Following something new delivers the approvals waiting on it (EventHub.threads.on_added).
    threads = session.ctx.events.threads
    if p.all:
        threads.follow_all(session)
    threads.add(session, p.thread_ids)
    return _current(session)


@handles(EVENTS_UNSUBSCRIBE)
def unsubscribe(session: ClientSession, p: SubscribeParams) -> Subscriptions:
    threads = session.ctx.events.threads
    if p.all is False or (p.all and not p.thread_ids):
        threads.stop_all(session)
    for thread_id in p.thread_ids:
        threads.discard(session, thread_id)
    return _current(session)


@handles(EVENTS_REPLAY)
def replay(session: ClientSession, p: ReplayParams) -> Replay:
    hub = session.ctx.events
    # Half the client's queue bound per page: the answer itself must fit in the queue.
    page = hub.replay(p.after_seq, p.epoch, session, max_count=p.limit,
                      max_bytes=session.out.limit // 2)
    return Replay(epoch=hub.epoch, gap=page.gap, last_seq=hub.seq,
                  events=[msgspec.Raw(e.rstrip(b"\n")) for e in page.events], more=page.more,
                  next_after_seq=page.next_after_seq if page.more else None)


@handles(THREAD_UNSUBSCRIBE)
def thread_unsubscribe(
    session: ClientSession, p: ThreadUnsubscribeParams
) -> ThreadUnsubscribeResult:
    # Never forwarded: codexd's one upstream connection stays subscribed for the other clients.
    if session.ctx.events.threads.discard(session, p.thread_id):
        return ThreadUnsubscribeResult(status="unsubscribed")
    return ThreadUnsubscribeResult(status="notSubscribed")
