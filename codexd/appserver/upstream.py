"""One app-server process's JSON-RPC connection: codexd's side of its stdin and stdout.

An :class:`Upstream` is created when a generation of ``codex app-server`` is spawned and closed
when that process ends; nothing of it outlives the process (a request still waiting is answered
"lost" by :meth:`Upstream.close`). The supervisor (:class:`codexd.appserver.supervisor.AppServer`)
decides when requests may be sent (ready, a fair slot, overload retries); this object sends them
and matches the answers.

Thread contract. Everything here runs on the event loop except :meth:`Upstream._pump`, the
stdout pump, which runs on a thread of its own (:func:`codexd.transport.threads.run_reader_thread`)
so that an answer to a forwarded request reaches the client without a turn of the event loop.
The pump may touch only:

- ``self.rpc.receive_data``: the pump is the only decoder. Decoding pops the request id from the
  connection's pending map, to which the event loop adds *before* it writes the request; each is
  one dict operation on a distinct key (atomic under the GIL), so no lock is needed.
- ``self.pending.get(id)`` and, on the slot found, ``result`` and ``delivered`` and the slot's
  ``deliver(result, True)`` callable. ``deliver`` may only write with the client's
  ``OutputQueue.write_now`` (which takes that queue's lock) and wake the loop with
  ``TrioToken.run_sync_soon``; it returns False when the client has output queued, and the loop
  then delivers in order.
- ``handed``, which only the pump increments, and ``dispatched``, which only the loop does.

The pump answers from the thread only when every batch it handed over before has been
dispatched (``dispatched == handed``) and the answer is the first message of its read: a client
therefore never sees an answer overtake a notification the app-server wrote before it. All else
(notifications, server requests, errors, answers behind a pending batch) is handed to the event
loop with ``run_sync_soon`` in read order, one call per read, and handled by :meth:`_dispatch`.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import trio

from codexd.errors import ErrorCode, RpcError
from codexd.faults import Faults
from codexd.rpc import (
    BadMessage,
    ErrorObject,
    ErrorResponse,
    Event,
    Notification,
    Request,
    RequestId,
    Response,
    RpcConnection,
)
from codexd.transport.outqueue import OutputQueue
from codexd.transport.threads import run_reader_thread

log = structlog.get_logger("codexd.appserver")

#: Bound on bytes waiting for the app-server's stdin (it reads them at once when healthy).
QUEUE_BYTES = 64 * 1024 * 1024

#: Passes a successful result on to the client that asked: ``deliver(result, in_thread)``.
#: From the stdout pump thread (``in_thread``) it may decline by returning False (the client
#: has output queued); the event loop then calls it again with ``in_thread=False``.
Deliver = Callable[[msgspec.Raw, bool], bool]


@dataclass
class PendingCall:
    """A request written upstream and not yet answered."""

    rid: RequestId
    #: The connection it was sent on (a later generation reuses request ids).
    upstream: Upstream
    done: trio.Event = field(default_factory=trio.Event)
    result: msgspec.Raw | None = None
    error: ErrorObject | None = None
    lost: str | None = None  # the process went away before answering
    #: Delivers a successful result without waking the caller's task (the hot path);
    #: ``delivered`` records that it did.
    deliver: Deliver | None = None
    delivered: bool = False

    async def wait(self) -> None:
        """Wait for the answer; a caller that gives up (cancelled) is no longer waited for."""
        try:
            await self.done.wait()
        finally:
            self.upstream.pending.pop(self.rid, None)

    def raise_for_outcome(self) -> msgspec.Raw:
        """The result, or the error as :class:`RpcError` (``lost``: APPSERVER_RESTARTED)."""
        if self.lost is not None:
            raise RpcError(ErrorCode.APPSERVER_RESTARTED, self.lost)
        if self.error is not None:
            e = self.error
            raise RpcError(e.code, e.message, None if e.data is msgspec.UNSET else e.data)
        assert self.result is not None
        return self.result


@dataclass
class ServerRequestIn:
    """A request the app-server sent us (an approval, a question, a tool call)."""

    generation: int
    upstream_id: RequestId
    method: str
    params: msgspec.Raw | None


NotificationHook = Callable[[str, msgspec.Raw | None, int | None], None]
ServerRequestHook = Callable[[ServerRequestIn], None]


class UpstreamGone(Exception):
    """The process stopped reading its stdin or closed its stdout (ends the generation)."""


class Upstream:
    """The connection to one app-server process (see the module docstring for its threads)."""

    def __init__(self, generation: int, stdin_fd: int, *, max_message_bytes: int,
                 faults: Faults, on_notification: NotificationHook,
                 on_server_request: ServerRequestHook) -> None:
        self.generation = generation
        self.rpc = RpcConnection(max_message_bytes=max_message_bytes, send_jsonrpc_member=False)
        self.pending: dict[RequestId, PendingCall] = {}
        #: Bytes for the process's stdin: written at once when nothing is queued, else by
        #: :meth:`write_stdin`.
        self._queue = OutputQueue(QUEUE_BYTES, stdin_fd)
        self._faults = faults
        self._on_notification = on_notification
        self._on_server_request = on_server_request
        self._closed = False
        # Batches the pump handed to the event loop, and how many the loop has dispatched.
        self.handed = 0
        self.dispatched = 0

    # ------------------------------------------------------------------------------ output

    def write(self, data: bytes) -> None:
        """Write ``data`` to the app-server's stdin now, or queue it behind what is queued."""
        if self._closed:
            raise RpcError(ErrorCode.APPSERVER_RESTARTED, "the app-server is not running")
        if not self._queue.send(data):
            raise RpcError(ErrorCode.APPSERVER_BUSY,
                           "the app-server is not reading its input; retry later")

    def send_request(self, method: str, params: Any, deliver: Deliver | None = None
                     ) -> PendingCall:
        """Write a request; the returned call is answered (or lost) later. Raises RpcError."""
        rid, data = self.rpc.send_request(method, params)
        # Registered before the write: the pump thread may read the answer at once.
        call = self.pending[rid] = PendingCall(rid, self, deliver=deliver)
        try:
            self.write(data)
        except RpcError:
            self.forget(call)
            raise
        return call

    def forget(self, call: PendingCall) -> None:
        """Failed to send: no answer is coming."""
        self.pending.pop(call.rid, None)
        self.rpc.forget_request(call.rid)

    async def request(self, method: str, params: Any) -> msgspec.Raw:
        """Send one request and wait for its answer (no ready wait, no limiter)."""
        call = self.send_request(method, params)
        await call.wait()
        return call.raise_for_outcome()

    def notify(self, method: str, params: Any) -> None:
        self.write(self.rpc.send_notification(method, params))

    def respond(self, upstream_id: RequestId, result: msgspec.Raw | None,
                error: ErrorObject | None) -> bool:
        """Answer a server request; False when the process is not reading any more."""
        if error is not None:
            data = self.rpc.send_error(upstream_id, error.code, error.message,
                                       error.data if error.data is not msgspec.UNSET else None)
        else:
            data = self.rpc.send_response(upstream_id, result)
        try:
            self.write(data)
        except RpcError:
            return False
        return True

    async def write_stdin(self, stdin: trio.abc.SendStream) -> None:
        """The generation's writer: what could not be written at once, in order."""
        try:
            while data := await self._queue.get_batch():
                await stdin.send_all(data)
                self._queue.written()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise UpstreamGone(f"stopped reading its stdin ({exc})") from None

    def close(self, why: str) -> None:
        """The process is gone: stop writing, and every call still waiting is lost."""
        self._closed = True
        self._queue.close()
        self._queue.detach_fd()
        for call in list(self.pending.values()):
            if not call.delivered:  # answered already (from the pump thread): not lost
                call.lost = why
            call.done.set()
        self.pending.clear()

    # ------------------------------------------------------------------------------- input

    async def read_stdout(self, fd: int) -> None:
        """Run the stdout pump thread until EOF, then raise :class:`UpstreamGone`.

        When this returns, every batch the pump handed over has been dispatched.
        """
        token = trio.lowlevel.current_trio_token()
        await run_reader_thread(lambda stop_fd: self._pump(fd, stop_fd, token),
                                "codexd appserver stdout")
        raise UpstreamGone("closed its stdout")

    def _pump(self, fd: int, stop_fd: int, token: trio.lowlevel.TrioToken) -> None:
        """The stdout pump thread's loop (its rules are in the module docstring)."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(stop_fd, select.POLLIN)
        while True:
            ready = poller.poll()
            if any(rfd == stop_fd for rfd, _ in ready):
                return
            try:
                data = os.read(fd, 262144)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            batch: list[Event] = []
            for ev in self.rpc.receive_data(data):
                if not batch and self.dispatched == self.handed and isinstance(ev, Response):
                    # Nothing read earlier is still waiting for the event loop, so answering
                    # the client from here keeps the order it would have seen.
                    call = self.pending.get(ev.id)
                    if call is not None and call.deliver is not None:
                        call.result = ev.result
                        call.delivered = call.deliver(ev.result, True)
                batch.append(ev)
            if batch:
                self.handed += 1
                try:
                    token.run_sync_soon(self._dispatch, batch)
                except trio.RunFinishedError:
                    return

    def _dispatch(self, batch: list[Event]) -> None:
        """Handle what the pump read, on the event loop (never raises: it is a loop callback)."""
        try:
            for ev in batch:
                with self._faults.boundary("appserver.dispatch", getattr(ev, "method", "") or ""):
                    self._dispatch_one(ev)
        finally:
            self.dispatched += 1

    def _dispatch_one(self, ev: Event) -> None:
        if isinstance(ev, Response | ErrorResponse):
            call = self.pending.pop(ev.id, None) if ev.id is not None else None
            if call is None:
                log.warning("appserver_unexpected_response", id=ev.id)
                return
            if isinstance(ev, Response):
                call.result = ev.result
                if call.deliver is not None and not call.delivered:
                    call.delivered = call.deliver(ev.result, False)
            else:
                call.error = ev.error
            call.done.set()
        elif isinstance(ev, Notification):
            self._on_notification(ev.method, ev.params, ev.emitted_at_ms)
        elif isinstance(ev, Request):
            self._on_server_request(ServerRequestIn(self.generation, ev.id, ev.method, ev.params))
        elif isinstance(ev, BadMessage):
            log.warning("appserver_bad_message", code=int(ev.code), error=ev.message)
