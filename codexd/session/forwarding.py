"""The client side of forwarding: a client's request for an app-server method, there and back.

A method outside codexd's own namespaces goes to the app-server unchanged (params and result
stay raw bytes). The session decides *when* (in arrival order with the client's other requests,
within its in-flight bound); this module does the rest, in one place:

1. :func:`try_send_now` (the hot path): when the session has nothing queued and the app-server
   is ready with a free slot, the request is written upstream from the read loop itself, with a
   :func:`deliverer` that lets the app-server's stdout pump thread write the answer straight to
   the client's socket (see :mod:`codexd.appserver.upstream` for that thread's contract).
2. :func:`forward`: waits for the answer (for a request :func:`try_send_now` sent, or sends it
   now through ``AppServer.call``, which waits for ready, takes a fair slot and retries an
   overloaded app-server), writes it to the client unless the pump already did, counts it, and
   subscribes the client to the thread a ``thread/start|resume|fork|read`` is about.

Exactly one place answers the client: the pump thread (``deliver`` returned True), else
:func:`forward` on the event loop. Client *notifications* for the app-server are written by the
session with ``AppServer.notify``, in order with its requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import trio

from codexd.rpc import Request, RequestId

if TYPE_CHECKING:
    from codexd.appserver.upstream import PendingCall
    from codexd.context import DaemonContext
    from codexd.errors import RpcError
    from codexd.rpc import RpcConnection
    from codexd.transport.base import Transport


class ClientSession(Protocol):
    """What forwarding uses of the asking session (:class:`codexd.session.ClientSession`)."""

    @property
    def id(self) -> int: ...
    @property
    def ctx(self) -> DaemonContext: ...
    @property
    def rpc(self) -> RpcConnection: ...
    @property
    def transport(self) -> Transport: ...

    def send(self, data: bytes) -> None: ...

    def send_from_thread(self, data: bytes) -> bool: ...

    def succeed(self, req: Request, started: float, result: Any) -> None: ...

    def fail(self, req: Request, started: float, exc: Exception) -> None: ...

    def record(self, method: str, started: float, err: RpcError | None) -> None: ...

#: Methods whose caller is subscribed to the thread they name (result or params).
AUTO_SUBSCRIBE = frozenset({"thread/start", "thread/resume", "thread/fork", "thread/read"})


class _ThreadResult(msgspec.Struct):
    class _T(msgspec.Struct):
        id: str
        ephemeral: bool = False

    thread: _T | None = None


class _ThreadParams(msgspec.Struct):
    threadId: str | None = None


def subscribed_thread(method: str, params: Any, result: msgspec.Raw) -> str | None:
    """The thread a successful thread/start|resume|fork|read is about."""
    try:
        if method != "thread/read":
            found = msgspec.json.decode(result, type=_ThreadResult).thread
            if found is not None:
                return found.id
        if params is not None:
            return msgspec.json.decode(params, type=_ThreadParams).threadId
    except msgspec.DecodeError:
        pass
    return None


def deliverer(session: ClientSession, rid: RequestId) -> Callable[[msgspec.Raw, bool], bool]:
    """Writes a forwarded request's result to the client (see ``appserver.upstream.Deliver``)."""
    def deliver(result: msgspec.Raw, in_thread: bool) -> bool:
        data = session.rpc.send_response(rid, result)
        if in_thread:
            return session.send_from_thread(data)
        session.send(data)
        return True
    return deliver


def try_send_now(session: ClientSession, req: Request) -> PendingCall | None:
    """Write ``req`` upstream right now if the app-server can take it; None: use :func:`forward`."""
    return session.ctx.appserver.try_send_now(
        req.method, req.params, session.id, deliverer(session, req.id))


async def forward(session: ClientSession, req: Request, started: float,
                  sent: trio.Event | None, presend: PendingCall | None) -> None:
    """Answer ``req`` with the app-server's result or error (``sent`` is set once it is written
    upstream; ``presend`` is the call :func:`try_send_now` already wrote)."""
    try:
        result = await session.ctx.appserver.call(req.method, req.params, session.id,
                                                     sent=sent, presend=presend)
    except Exception as exc:
        session.fail(req, started, exc)
        return
    if presend is not None and presend.delivered:
        session.record(req.method, started, None)  # the pump thread answered already
    else:
        session.succeed(req, started, result)
    thread_id = None
    if req.method in AUTO_SUBSCRIBE:
        thread_id = subscribed_thread(req.method, req.params, result)
        if thread_id:
            session.ctx.events.threads.add(session, [thread_id])
    if req.method in SESSION_THREAD:
        _session_thread(session, req, result, thread_id)


#: Methods that tell which thread an interactive session's TUI works on: the one it resumes
#: or forks, the one it starts a turn on (a thread/start alone is not resumable yet; an
#: ephemeral one, the TUI's title generation, never is).
SESSION_THREAD = frozenset({"thread/start", "thread/resume", "thread/fork", "turn/start"})


def _session_thread(session: ClientSession, req: Request, result: msgspec.Raw,
                    thread_id: str | None) -> None:
    live = session.ctx.runs.interactive
    peer = session.transport.peer
    if live is None or not live.live or peer is None or not peer.pid:
        return
    if req.method == "thread/start":
        with contextlib.suppress(msgspec.DecodeError):
            found = msgspec.json.decode(result, type=_ThreadResult).thread
            if found is not None and found.ephemeral:
                live.ephemeral.add(found.id)
        return
    if thread_id is None and req.params is not None:
        with contextlib.suppress(msgspec.DecodeError):
            thread_id = msgspec.json.decode(req.params, type=_ThreadParams).threadId
    if thread_id and thread_id not in live.ephemeral:
        live.thread_opened(peer.pid, thread_id)  # a TUI of session/start
