"""One connected client: read requests, dispatch them, write responses and notifications.

A session does not know its wire: it gets decoded messages from its
:class:`~codexd.transport.base.Transport` and hands it encoded ones. Each session owns a
sans-IO :class:`RpcConnection`, a bounded :class:`OutputQueue` and one worker task that runs the
client's requests **in the order they arrived**, so a client that pipelines ``atom/set`` then
``atom/get`` reads its own write. A synchronous handler runs inline in the read loop when
nothing is queued before it (the fast path, no task switch). At most
``rpc.max_inflight_per_client`` requests wait; beyond that the read loop waits, which pushes
back on the client through its transport. Routes marked ``ordered=False`` (long-running calls
whose order does not matter) run as their own tasks under the same bound. Nothing a session does
can block another session: its only shared actions (queueing bytes for others, store calls)
never wait on a peer. What a session follows (threads, runs, terminals) is kept by those
features, keyed by the session's ``id``; the owner tells them when a session closes.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
import trio

from codexd import confine
from codexd.appserver.command import child_cwd
from codexd.errors import (
    ErrorCode,
    RpcError,
    StoreBusy,
    StoreError,
    is_unknown_variant,
    unknown_method,
)
from codexd.events import unstamp
from codexd.notify.visibility import Visibility
from codexd.protocol.events import EVENTS_OVERFLOW, Overflow
from codexd.roles import Role, allows, audited, needed
from codexd.rpc import (
    BadMessage,
    ErrorResponse,
    Notification,
    Request,
    Response,
    RpcConnection,
)
from codexd.session.forwarding import forward, try_send_now
from codexd.session.routes import Route
from codexd.session.states import SessionInput, SessionState, next_state
from codexd.statemachine import BadTransition
from codexd.transport.outqueue import BUSY, OutputQueue

if TYPE_CHECKING:
    from codexd.appserver.upstream import PendingCall
    from codexd.context import DaemonContext
    from codexd.transport.base import Transport

log = structlog.get_logger("codexd.session")

_conn_ids = itertools.count(1)


#: How long a client dropped for not reading gets to read the events/overflow notice.
OVERFLOW_NOTICE_SECONDS = 2.0

def map_error(exc: Exception) -> RpcError:
    """Map an exception from a handler to the error a client sees (never a traceback)."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, StoreBusy):
        return RpcError(ErrorCode.STORE_BUSY, f"{exc}; retry shortly")
    if isinstance(exc, StoreError):
        return RpcError(ErrorCode.STORE_ERROR, str(exc))
    if isinstance(exc, OverflowError):  # a number no field can hold (SQLite: 64-bit signed)
        return RpcError(ErrorCode.INVALID_PARAMS,
                        "invalid params: a number is out of range (at most 2^63 - 1)")
    return RpcError(
        ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__}); see the daemon log"
    )


class ClientSession:
    """A client connection. Created and run by the server; never shared between tasks' owners."""

    def __init__(self, ctx: DaemonContext, transport: Transport, *,
                 routes: Mapping[str, Route] | None = None) -> None:
        cfg = ctx.config.rpc
        #: What the session and its handlers may use of the daemon (typed; see codexd.context).
        self.ctx = ctx
        self.transport = transport
        self.id = next(_conn_ids)
        self.rpc = RpcConnection(max_message_bytes=cfg.max_message_bytes)
        # The transport's fd for the direct-write fast path in send() (-1: always queue).
        self.out = OutputQueue(cfg.client_queue_bytes, transport.direct_fd)
        self._token = trio.lowlevel.current_trio_token()
        self.state = SessionState.NEW
        self.client_name = ""
        self.client_version = ""
        #: What it declared it shows (``client/visibility``): quiets notifications about it.
        self.visibility: Visibility | None = None
        self.connected_at = time.time()
        self._held: list[bytes] = []
        self._held_limit = cfg.pending_notifications
        self._inflight = trio.Semaphore(cfg.max_inflight_per_client)
        self._inflight_count = 0
        self._ordered_send, self._ordered_recv = trio.open_memory_channel[
            tuple[Route | None, Request | Notification, Any, float]
        ](cfg.max_inflight_per_client)
        #: The client answers server requests (declared in initialize capabilities).
        self.server_requests = False
        #: The dispatch table (the app-server wire has its own ``initialize``).
        self.routes: Mapping[str, Route] = ctx.routes if routes is None else routes
        #: A client of the app-server wire sees the app-server's own errors, unchanged.
        self._own_errors = routes is None
        #: Notifications carry codexd's ``seq`` and ``epoch`` (app-server wire: only if asked).
        self.stamps = True
        #: Turns canonical lines into the wire's bytes when queued (None: they are the wire's).
        self._frame = transport.frame
        transport.bind(self._send_wire)
        #: The token the client authenticated with (WebSocket), None on a local socket...
        self.auth = transport.auth
        #: ...and so what it may call (codexd.roles): a local client is an operator.
        self.role: Role = transport.auth.role if transport.auth else "operator"
        #: Requests queued for the ordered worker and not yet run (or, forwarded, not yet sent).
        self._ordered_pending = 0
        self._scope: trio.CancelScope | None = None
        self._handlers: trio.Nursery | None = None
        self._log_calls = ctx.config.log.rpc_calls
        # Bound once (not a lazy proxy resolved per line): the per-call log line is on the
        # hot path. Re-bound by reconfigure() so a SIGHUP log change applies.
        self._call_log = log.bind(conn=self.id)

    # ------------------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Serve the client until it disconnects, overflows, or the daemon cancels us."""
        peer = self.transport.peer
        log.debug("client_connected", conn=self.id, transport=self.transport.kind,
                  peer_pid=peer.pid if peer else None)
        try:
            async with trio.open_nursery() as outer:
                self._scope = outer.cancel_scope
                outer.start_soon(self._write_loop)
                deadline = trio.CancelScope()
                if self.ctx.config.rpc.initialize_timeout_seconds:
                    outer.start_soon(self._initialize_deadline,
                                     self.ctx.config.rpc.initialize_timeout_seconds, deadline)
                async with trio.open_nursery() as handlers:
                    self._handlers = handlers
                    handlers.start_soon(self._ordered_worker)
                    async with self._ordered_send:
                        await self._read_loop()
                # Every handler has answered; let the writer flush, then stop.
                deadline.cancel()
                self.out.close()
        finally:
            self._mark_closed()
            self.out.detach_fd()
            self.out.close()
            await self.transport.aclose()
            log.debug("client_disconnected", conn=self.id, client=self.client_name)

    def _mark_closed(self) -> None:
        """The session table's CLOSE edge (closing twice is no change)."""
        if self.state is not SessionState.CLOSED:
            self.state = next_state(self.state, SessionInput.CLOSE)

    async def _initialize_deadline(self, seconds: float, scope: trio.CancelScope) -> None:
        """A connection that never initializes must not hold a client slot and an fd forever.

        ``scope`` is cancelled when the client's input ends, so a gone client is not kept.
        """
        with scope:
            await trio.sleep(seconds)
        if self.state is SessionState.NEW and not scope.cancelled_caught:
            self.send(self.rpc.send_error(None, ErrorCode.NOT_INITIALIZED,
                                          f"no initialize within {seconds:g} s "
                                          "(rpc.initialize_timeout_seconds); closing"))
            self.out.close()
            log.info("client_dropped", conn=self.id, reason="initialize_timeout")
            # The writer flushes the error, then the read loop is cut off.
            with trio.move_on_after(1):
                while not self.out.idle:  # noqa: ASYNC110 - at most one second, once
                    await trio.sleep(0.01)
            self.disconnect("initialize_timeout")

    def disconnect(self, reason: str) -> None:
        """Drop the client at once (overflow, shutdown); queued output is discarded."""
        if self._scope is not None and not self._scope.cancel_called:
            log.info("client_dropped", conn=self.id, client=self.client_name, reason=reason)
            self._scope.cancel()

    @property
    def idle(self) -> bool:
        """No request in progress and nothing waiting to be, or being, written."""
        return self._inflight_count == 0 and self.out.idle

    def reconfigure(self) -> None:
        cfg = self.ctx.config
        self.rpc.max_message_bytes = cfg.rpc.max_message_bytes
        self.out.limit = cfg.rpc.client_queue_bytes
        self._log_calls = cfg.log.rpc_calls
        self._call_log = log.bind(conn=self.id)

    # ---------------------------------------------------------------------------- output

    @property
    def ready(self) -> bool:
        return self.state is SessionState.READY

    def send(self, data: bytes) -> None:
        """Send or queue bytes for the client; never waits.

        When nothing is queued or being written, the bytes go straight to the socket with one
        non-blocking write (no task switch on the hot path); what the socket does not take is
        queued for the writer task. A client past its queue bound is told and disconnected.
        """
        if self.state is SessionState.CLOSED:
            return
        if self._frame is not None:
            data = self._frame(data)
        if not self.out.send(data) and self.out.overflowed:
            self._overflow()

    def _send_wire(self, data: bytes) -> None:
        """Queue bytes already in the wire's form (a transport's control frames)."""
        if self.state is not SessionState.CLOSED and not self.out.send(data) and \
                self.out.overflowed:
            self._overflow()

    def send_from_thread(self, data: bytes) -> bool:
        """Like :meth:`send`, from another thread, but only when it can write at once.

        False: something is queued or being written; the caller hands ``data`` to the event
        loop instead (which keeps the order).
        """
        if self.state is SessionState.CLOSED:
            return True
        if self._frame is not None:
            data = self._frame(data)  # a pure function: safe on this thread
        rest = self.out.write_now(data)
        if rest > 0:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self.out.wake)
        return rest != BUSY

    def _overflow(self) -> None:
        if self.state is SessionState.CLOSED or (self._scope and self._scope.cancel_called):
            return
        queued, limit = self.out.queued_bytes, self.out.limit
        log.warning("client_dropped", conn=self.id, client=self.client_name,
                    reason="output_queue_overflow", queued_bytes=queued)
        # Drop what is queued, tell the client why (if it ever reads again), then close.
        notice = self.ctx.events.encode(
            EVENTS_OVERFLOW.name, Overflow(queued_bytes=queued, limit_bytes=limit),
            self.ctx.events.seq)
        self.out.replace_with(notice if self._frame is None else self._frame(notice))
        self._mark_closed()
        if self._scope is not None:
            # A last chance to read the notice; a client that still does not read is cut off.
            self._scope.deadline = trio.current_time() + OVERFLOW_NOTICE_SECONDS

    def hold(self, data: list[bytes]) -> None:
        """Queue notifications to be flushed at ``initialized`` (replay after a reconnect)."""
        self._held.extend(data)

    def notify(self, data: bytes) -> None:
        """Queue an encoded notification for an initialized client.

        Between ``initialize`` and ``initialized`` notifications are held (bounded) and flushed in
        order afterwards; before ``initialize`` the connection is nobody's yet and gets none.
        A client that did not ask for codexd's stamps gets the notification without them.
        """
        if not self.stamps:
            data = unstamp(data)
        if self.state is SessionState.READY:
            self.send(data)
        elif self.state is SessionState.INITIALIZED:
            if len(self._held) >= self._held_limit:
                self.disconnect("held_notifications_overflow")
                return
            self._held.append(data)

    async def _write_loop(self) -> None:
        try:
            while data := await self.out.get_batch():
                await self.transport.send(data)
                self.out.written()
                if self.out.empty():
                    self.ctx.session_drained(self)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client went away; the read side sees EOF too. Stop writing, quietly.
            log.debug("client_write_failed", conn=self.id)
            if self._scope is not None:
                self._scope.cancel()

    # ----------------------------------------------------------------------------- input

    async def _read_loop(self) -> None:
        receive, rpc = self.transport.receive, self.rpc
        while (events := await receive(rpc)) is not None:
            for event in events:
                if self.state is SessionState.CLOSED:
                    return
                if isinstance(event, Request):
                    await self._on_request(event)
                elif isinstance(event, Notification):
                    await self._on_notification(event)
                elif isinstance(event, BadMessage):
                    self.ctx.stats.count("(invalid)", event.code)
                    self.ctx.metrics.observe("(invalid)", "invalid", 0.0, event.code,
                                             time.perf_counter())
                    log.info("rpc_bad_message", conn=self.id, code=int(event.code),
                             error=event.message)
                    if event.reply is not None:
                        self.send(event.reply)
                elif isinstance(event, Response | ErrorResponse) and not allows(
                        self.role, "approver"):
                    log.info("rpc_answer_refused", conn=self.id, role=self.role,
                             id=getattr(event, "id", None))
                elif isinstance(event, Response):
                    if self.auth is not None:
                        self.ctx.audit.note(self.auth, self.transport.remote,
                                            "serverRequest/answer", f"id {event.id}")
                    self.ctx.spawn(self.ctx.approvals.answer_from_client(
                        self, event.id, event.result, None))
                elif isinstance(event, ErrorResponse):
                    if event.method is None:
                        log.info("rpc_unexpected_response", conn=self.id, id=event.id)
                    else:
                        self.ctx.spawn(self.ctx.approvals.answer_from_client(
                            self, event.id, None, event.error))

    async def _on_notification(self, event: Notification) -> None:
        if event.method == "initialized":
            try:
                self.state = next_state(self.state, SessionInput.INITIALIZED)
            except BadTransition as exc:
                log.info("rpc_bad_notification", conn=self.id, method=event.method, error=str(exc))
                return
            held, self._held = self._held, []
            for data in held:
                self.send(data)
            self.ctx.approvals.deliver_pending(self)
        elif self.state is not SessionState.NEW and self.ctx.forwards(event.method):
            # Client notifications the app-server understands pass through unchanged, in order
            # with this client's requests: written now when nothing of the client's is queued,
            # else behind its queued requests.
            if self._ordered_pending == 0:
                self.ctx.appserver.notify(event.method, event.params)
            else:
                self._ordered_pending += 1
                await self._ordered_send.send((None, event, None, 0.0))
        else:
            log.debug("rpc_notification_ignored", conn=self.id, method=event.method)

    async def _on_request(self, req: Request) -> None:
        route = self.routes.get(req.method)
        started = time.perf_counter()
        if self.state is SessionState.NEW and req.method != "initialize":
            self.fail(req, started, RpcError(
                ErrorCode.NOT_INITIALIZED,
                f"send initialize before {req.method!r}: the first request on a connection "
                "must be initialize {clientInfo: {name, version}}",
            ))
            return
        if req.method == "initialized":
            self.fail(req, started, RpcError(
                ErrorCode.INVALID_REQUEST,
                f"{req.method} is a notification: send it without an id"))
            return
        if self.role != "operator":
            needs = needed(req.method, own=route is not None)
            if not allows(self.role, needs):
                self.fail(req, started, RpcError(
                    ErrorCode.ROLE_REQUIRED,
                    f"{req.method} needs the {needs} role; this connection's token "
                    f"({self.auth.name if self.auth else '?'}) is {self.role}",
                    {"method": req.method, "needs": needs, "role": self.role}))
                return
        if self.confined and not self._inside_grants(req, started, own=route is not None):
            return
        if route is None and not self.ctx.forwards(req.method):
            own_namespace = req.method.split("/", 1)[0] in {n.split("/", 1)[0]
                                                            for n in self.routes}
            hint = ("" if self.ctx.config.appserver.enabled or own_namespace else
                    " (app-server methods are unavailable: appserver.enabled = false)")
            self.fail(req, started, unknown_method(req.method, self.routes, hint=hint))
            return
        if route is None:
            # The app-server's method: forwarded in arrival order, answered whenever it answers.
            if self._ordered_pending == 0 and self._inflight.value > 0:
                # Fast path: written upstream right here, so order holds without the worker.
                presend = try_send_now(self, req)
                if presend is not None:
                    self._inflight.acquire_nowait()
                    self._inflight_count += 1
                    assert self._handlers is not None
                    self._handlers.start_soon(self._forward, req, started, None, presend)
                    return
            await self._inflight.acquire()
            self._inflight_count += 1
            self._ordered_pending += 1
            await self._ordered_send.send((None, req, None, started))
            return
        if self.ctx.shutting_down and not route.during_shutdown:
            self.fail(req, started, RpcError(
                ErrorCode.SHUTTING_DOWN, "the daemon is shutting down; retry after it restarts"
            ))
            return
        try:
            params = route.spec.decode_params(req.params)
        except RpcError as exc:
            self.fail(req, started, exc)
            return
        if not route.is_async and self._ordered_pending == 0:
            self._call_sync(route, req, params, started)
            return
        await self._inflight.acquire()
        self._inflight_count += 1
        if route.ordered:
            self._ordered_pending += 1
            await self._ordered_send.send((route, req, params, started))
        else:
            assert self._handlers is not None
            self._handlers.start_soon(self._run_unordered, route, req, params, started)

    def _call_sync(self, route: Route, req: Request, params: Any, started: float) -> None:
        try:
            result = route.fn(self, params)
        except Exception as exc:
            self.fail(req, started, exc)
        else:
            self.succeed(req, started, result)

    async def _call_async(self, route: Route, req: Request, params: Any, started: float) -> None:
        try:
            result = await route.fn(self, params)
        except Exception as exc:
            self.fail(req, started, exc)
        else:
            self.succeed(req, started, result)

    async def _ordered_worker(self) -> None:
        """Runs this client's ordered requests one after another until its input ends."""
        async for route, req, params, started in self._ordered_recv:
            if isinstance(req, Notification):  # a forwarded notification, in its place
                self.ctx.appserver.notify(req.method, req.params)
                self._ordered_pending -= 1
                continue
            if route is None:
                sent = trio.Event()
                assert self._handlers is not None
                self._handlers.start_soon(self._forward, req, started, sent)
                await sent.wait()
                self._ordered_pending -= 1
                continue
            try:
                if route.is_async:
                    await self._call_async(route, req, params, started)
                else:
                    self._call_sync(route, req, params, started)
            finally:
                self._ordered_pending -= 1
                self._inflight_count -= 1
                self._inflight.release()

    async def _forward(self, req: Request, started: float, sent: trio.Event | None,
                       presend: PendingCall | None = None) -> None:
        try:
            await forward(self, req, started, sent, presend)
        finally:
            self._inflight_count -= 1
            self._inflight.release()

    async def _run_unordered(self, route: Route, req: Request, params: Any, started: float) -> None:
        try:
            await self._call_async(route, req, params, started)
        finally:
            self._inflight_count -= 1
            self._inflight.release()

    @property
    def confined(self) -> bool:
        """Paths this client names must be inside workspace grants (codexd.confine)."""
        return self.auth is not None or self.ctx.config.workspaces.confine_local

    def _inside_grants(self, req: Request, started: float, *, own: bool) -> bool:
        """Check the request's path params (codexd.confine's table); answer -32070 if not."""
        paths = confine.paths_in(req.method, req.params, own=own)
        if paths is None:
            return True
        if not paths and not own and req.method in confine.DEFAULT_CWD:
            paths = [child_cwd(self.ctx.config.appserver)]  # where the app-server would run it
        try:
            for path in paths:
                self.ctx.workspaces.resolve(path)
        except RpcError as exc:
            self.fail(req, started, exc)
            return False
        return True

    def succeed(self, req: Request, started: float, result: Any) -> None:
        self.send(self.rpc.send_response(req.id, result))
        self.record(req.method, started, None)

    def fail(self, req: Request, started: float, exc: Exception) -> None:
        err = map_error(exc)
        if (err.code == ErrorCode.INVALID_REQUEST and self._own_errors
                and is_unknown_variant(req.method, err.message)):
            err = unknown_method(req.method, self.routes, err.message)
        if err.code == ErrorCode.INTERNAL_ERROR and not isinstance(exc, RpcError):
            # The request is the unit: it fails, the session and the daemon go on.
            self.ctx.faults.record("request", req.method, exc, conn=self.id)
        self.send(self.rpc.send_error(req.id, err.code, err.message, err.data))
        self.record(req.method, started, err)

    def record(self, method: str, started: float, err: RpcError | None) -> None:
        # Count forwarded methods by name unless the app-server did not know them either, so a
        # client sending random names cannot grow the table without bound. Its -32600 for bad
        # params of a method it knows counts under that method.
        unknown_upstream = err is not None and (
            err.code == ErrorCode.METHOD_NOT_FOUND
            or (err.code == ErrorCode.INVALID_REQUEST and is_unknown_variant(method, err.message)))
        own = method in self.routes
        known = own or (self.ctx.forwards(method) and not unknown_upstream)
        name = method if known else "(unknown)"
        code = err.code if err else None
        self.ctx.stats.count(name, code)
        now = time.perf_counter()
        self.ctx.metrics.observe(name, "codexd" if own else "appserver" if known else "unknown",
                                 (now - started) * 1000, code, now)
        if self.auth is not None and audited(method, own=method in self.routes):
            self.ctx.audit.note(self.auth, self.transport.remote, method,
                                "ok" if err is None else str(err.code))
        if self._log_calls:
            duration_ms = round((now - started) * 1000, 3)
            if err is None:
                self._call_log.info("rpc_call", method=method, duration_ms=duration_ms,
                                    outcome="ok")
            else:
                self._call_log.info("rpc_call", method=method if known else "(unknown)",
                                    duration_ms=duration_ms, outcome="error", code=err.code,
                                    error=err.message)
