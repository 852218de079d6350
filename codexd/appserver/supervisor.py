"""Supervising `codex app-server`: spawn, handshake, health, restart with backoff, stop.

One :class:`AppServer` owns the child process and the upstream :class:`RpcConnection`. Its
:meth:`run` loop goes through the states in :mod:`codexd.appserver.states`; every change is
reported through ``on_state`` (the daemon turns it into a notification and a log line).

Requests from clients go through :meth:`call`: it waits (bounded) for the ready state, takes a
slot from a limiter that is fair between clients, sends the request with params as raw bytes, and
waits for the answer. An upstream "Server overloaded" (-32001) is retried here with backoff; a
process that dies answers every request in flight with ``APPSERVER_RESTARTED`` at once.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import trio

from codexd import __version__
from codexd.appserver.backoff import Backoff, Breaker
from codexd.appserver.command import child_env, resolve_command
from codexd.appserver.limiter import FairLimiter
from codexd.appserver.process import stop_process
from codexd.appserver.states import Input, State, transition
from codexd.appserver.stderr import StderrTail
from codexd.config import AppServerSection
from codexd.errors import CodexdError, ErrorCode, RpcError
from codexd.faults import Faults
from codexd.protocol.appserver import AppServerStatus
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
from codexd.store.db import iso_time
from codexd.transport.outqueue import OutputQueue
from codexd.transport.threads import run_reader_thread

log = structlog.get_logger("codexd.appserver")

OVERLOADED = -32001
#: Bound on bytes waiting for the app-server's stdin (it reads them at once when healthy).
_UPSTREAM_QUEUE_BYTES = 64 * 1024 * 1024
#: The request the health probe sends: cheap, read-only, answered from memory.
HEALTH_METHOD = "thread/loaded/list"


class _Exit(Exception):
    """Ends one generation of the process (exit, hang, failed handshake, restart request)."""

    def __init__(self, reason: str, *, failure: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure


#: Passes a successful result on to the client that asked: ``deliver(result, in_thread)``.
#: From the stdout pump thread (``in_thread``) it may decline by returning False (the client
#: has output queued); the event loop then calls it again with ``in_thread=False``.
Deliver = Callable[[msgspec.Raw, bool], bool]


@dataclass
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    result: msgspec.Raw | None = None
    error: ErrorObject | None = None
    lost: str | None = None  # the process went away before answering
    #: Delivers a successful result without waking the caller's task (the hot path);
    #: ``delivered`` records that it did.
    deliver: Deliver | None = None
    delivered: bool = False


@dataclass
class ServerRequestIn:
    """A request the app-server sent us (an approval, a question, a tool call)."""

    generation: int
    upstream_id: RequestId
    method: str
    params: msgspec.Raw | None


StateHook = Callable[[State, State, str], None]
NotificationHook = Callable[[str, msgspec.Raw | None, int | None], None]
ServerRequestHook = Callable[[ServerRequestIn], None]
GenerationEndHook = Callable[[int, str], Awaitable[None]]


class AppServer:
    """Owns the `codex app-server` child. Create, then ``await nursery.start(appserver.run)``."""

    def __init__(
        self,
        cfg: AppServerSection,
        *,
        on_state: StateHook,
        on_notification: NotificationHook,
        on_server_request: ServerRequestHook,
        on_generation_end: GenerationEndHook,
        next_generation: Callable[[], Awaitable[int]],
        faults: Faults | None = None,
        on_spawned: Callable[[int], Awaitable[None]] | None = None,
        on_reaped: Callable[[int], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self._faults = faults or Faults()
        self._on_spawned = on_spawned
        self._on_reaped = on_reaped
        self.state = State.STOPPED
        self.generation = 0
        self.pid: int | None = None
        self.version: str | None = None
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        self.since = time.time()
        self.next_start_at: float | None = None
        self.init_result: dict[str, Any] = {}
        self.stderr = StderrTail(lambda: self.cfg.stderr_log_per_second)
        self._on_state = on_state
        self._on_notification = on_notification
        self._on_server_request = on_server_request
        self._on_generation_end = on_generation_end
        self._next_generation = next_generation
        self._backoff = Backoff(cfg.backoff_initial_seconds, cfg.backoff_max_seconds,
                                cfg.backoff_reset_after_seconds, rng or random.Random())
        self._breaker = Breaker(cfg.breaker_failures, cfg.breaker_window_seconds)
        self._limiter = FairLimiter(cfg.max_inflight)
        self._rpc = RpcConnection(max_message_bytes=cfg.max_message_bytes,
                                  send_jsonrpc_member=False)
        self._pending: dict[RequestId, _Pending] = {}
        #: Bytes for the app-server's stdin: written at once when nothing is queued, else by
        #: the generation's writer task. None while no process runs.
        self._upstream: OutputQueue | None = None
        self._ready = trio.Event()
        self._wake = trio.Event()  # restart requested or config changed
        self._restart_requested = False
        self._generation_scope: trio.CancelScope | None = None
        # Batches the stdout pump handed to the event loop, and how many it has dispatched.
        self._handed = 0
        self._dispatched = 0

    # ---------------------------------------------------------------------------- status

    def status(self) -> AppServerStatus:
        try:
            command = resolve_command(self.cfg)
        except CodexdError:
            command = [self.cfg.command or "codex", *self.cfg.args]
        init = self.init_result
        return AppServerStatus(
            state=self.state.value,
            enabled=self.cfg.enabled,
            command=command,
            pid=self.pid,
            version=self.version,
            generation=self.generation,
            restarts=self.restarts,
            recent_failures=self._breaker.recent,
            last_exit_code=self.last_exit_code,
            last_error=self.last_error,
            since=iso_time(self.since),
            next_start_at=iso_time(self.next_start_at) if self.next_start_at else None,
            user_agent=init.get("userAgent"),
            codex_home=init.get("codexHome"),
            platform_os=init.get("platformOs"),
            platform_family=init.get("platformFamily"),
            inflight=self._limiter.in_use,
            queued=self._limiter.waiting,
            stderr_tail=list(self.stderr.lines),
        )

    @property
    def is_ready(self) -> bool:
        return self.state is State.READY

    def _set(self, event: Input, reason: str) -> None:
        previous = self.state
        self.state = transition(self.state, event)
        if self.state is previous and event is not Input.RESTART:
            return
        self.since = time.time()
        if self.state is State.READY:
            self._ready.set()
        elif previous is State.READY:
            self._ready = trio.Event()
        self._on_state(self.state, previous, reason)

    # ------------------------------------------------------------------------ supervision

    def request_restart(self, reason: str = "restart requested") -> None:
        """Restart now: from ready (a clean stop first), backoff or failed (clears the breaker)."""
        self._restart_requested = True
        self._breaker.reset()
        self._backoff.reset()
        self.last_error = None
        if self._generation_scope is not None:
            self._generation_scope.cancel()
        self._wake.set()
        log.info("appserver_restart_requested", reason=reason)

    def reconfigure(self, cfg: AppServerSection) -> None:
        """New limits apply at once; command changes apply at the next start."""
        self.cfg = cfg
        self._limiter.total = cfg.max_inflight

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep an app-server running until cancelled; started as soon as supervision begins."""
        task_status.started()
        try:
            while True:
                await self._one_generation()
                if not self._consume_restart():
                    await self._after_failure()
        finally:
            if self.state is not State.STOPPED:
                self._set(Input.STOP, "codexd stopping")

    async def _after_failure(self) -> None:
        now = time.monotonic()
        if self._breaker.record_failure(now):
            self._set(Input.BREAKER_TRIPPED,
                      f"{self._breaker.failures} failures within "
                      f"{self._breaker.window:g} s: {self.last_error}")
            log.error("appserver_failed", reason=self.last_error,
                      hint="codexctl appserver restart, after fixing the cause")
            await self._wait_for_restart()
            self._consume_restart()
            return
        delay = self._backoff.next_delay(healthy_for=self._healthy_for)
        self.next_start_at = time.time() + delay
        self._set(Input.EXITED, f"{self.last_error}; restarting in {delay:.1f} s")
        with trio.move_on_after(delay):
            await self._wait_for_restart()
        self.next_start_at = None
        if not self._consume_restart():
            self._set(Input.BACKOFF_DONE, "backoff over")

    def _consume_restart(self) -> bool:
        if not self._restart_requested:
            return False
        self._restart_requested = False
        self._set(Input.RESTART, "restart requested")
        return True

    async def _wait_for_restart(self) -> None:
        self._wake = trio.Event()
        while not self._restart_requested:
            await self._wake.wait()
            self._wake = trio.Event()

    _healthy_for = 0.0

    async def _one_generation(self) -> None:
        if self.state is State.STOPPED:
            self._set(Input.START, "starting")
        try:
            self.generation = await self._next_generation()
        except Exception as exc:  # the database is locked or failing: retry with backoff
            self.last_error = f"cannot record the new app-server generation: {exc}"
            log.error("appserver_start_failed", error=self.last_error)
            return
        self._healthy_for = 0.0
        ready_at: float | None = None
        reason = "exited"
        try:
            argv = resolve_command(self.cfg)
        except CodexdError as exc:
            self.last_error = str(exc)
            log.error("appserver_spawn_failed", error=str(exc))
            await self._generation_ended(str(exc))
            return
        env = child_env(self.cfg)
        try:
            process = await trio.lowlevel.open_process(
                argv, stdin=-1, stdout=-1, stderr=-1, env=env, start_new_session=True,
            )
        except OSError as exc:
            self.last_error = f"cannot start {argv[0]}: {exc.strerror or exc}"
            log.error("appserver_spawn_failed", argv=argv, error=self.last_error)
            await self._generation_ended(self.last_error)
            return
        self.pid = process.pid
        self._rpc = RpcConnection(max_message_bytes=self.cfg.max_message_bytes,
                                  send_jsonrpc_member=False)
        assert process.stdin is not None
        upstream = OutputQueue(_UPSTREAM_QUEUE_BYTES,
                               process.stdin.fileno())  # type: ignore[attr-defined]
        log.info("appserver_spawned", pid=process.pid, argv=argv, generation=self.generation)
        try:
            if self._on_spawned is not None:
                await self._on_spawned(process.pid)
            with trio.CancelScope() as scope:
                self._generation_scope = scope
                try:
                    async with trio.open_nursery() as nursery:
                        self._upstream = upstream
                        nursery.start_soon(self._write_stdin, process.stdin, upstream)
                        nursery.start_soon(self._read_stdout, process)
                        nursery.start_soon(self._read_stderr, process)
                        nursery.start_soon(self._watch_exit, process)
                        nursery.start_soon(self._read_version, argv[0])
                        await self._handshake()
                        ready_at = time.monotonic()
                        self._set(Input.HANDSHAKE_OK, "handshake done")
                        log.info("appserver_ready", pid=process.pid,
                                 user_agent=self.init_result.get("userAgent"))
                        nursery.start_soon(self._health_loop)
                except* _Exit as group:
                    first = group.exceptions[0]
                    assert isinstance(first, _Exit)
                    reason = first.reason
                except* Exception as group:
                    # A bug in this generation's tasks ends this generation only: it is
                    # restarted like a crash of the process.
                    reason = "internal error: " + self._faults.record(
                        "appserver", f"generation {self.generation}", group)
            if scope.cancelled_caught:
                reason = "restart requested"
        except trio.Cancelled:
            reason = "stopped with codexd"
            raise
        finally:
            self._generation_scope = None
            if ready_at is not None:
                self._healthy_for = time.monotonic() - ready_at
            with trio.CancelScope(shield=True):
                self._upstream = None
                upstream.close()
                upstream.detach_fd()
                self._fail_pending(f"the app-server {reason}")
                code = await stop_process(process, grace=self.cfg.stop_grace_seconds)
                if self._on_reaped is not None:
                    await self._on_reaped(process.pid)
                # Its last words (why it died) are often still in the pipe.
                with trio.move_on_after(0.5), contextlib.suppress(trio.BrokenResourceError,
                                                                   trio.ClosedResourceError):
                    await self._read_stderr(process)
                self.last_exit_code = code
                self.pid = None
                self.restarts += 1
                expected = reason in ("restart requested", "stopped with codexd")
                if not expected:
                    self.last_error = f"{reason} (exit code {code})"
                (log.info if expected else log.warning)(
                    "appserver_exited", reason=reason, exit_code=code,
                    generation=self.generation)
                await self._generation_ended(reason)

    async def _generation_ended(self, reason: str) -> None:
        """Tell the owner (approvals expire); its failure must not take supervision down."""
        with self._faults.boundary("appserver", f"generation {self.generation} end"):
            await self._on_generation_end(self.generation, reason or "ended")

    async def _handshake(self) -> None:
        params = {"clientInfo": {"name": "codexd", "title": "codexd", "version": __version__}}
        with trio.move_on_after(self.cfg.handshake_timeout_seconds):
            try:
                result = await self._request_now("initialize", params)
                self.init_result = msgspec.json.decode(result)
                await self._send(self._rpc.send_notification("initialized"))
            except (RpcError, msgspec.DecodeError) as exc:
                raise _Exit(f"failed the handshake: {exc}") from None
            return
        raise _Exit(f"did not answer initialize within {self.cfg.handshake_timeout_seconds:g} s")

    async def _health_loop(self) -> None:
        while True:
            await trio.sleep(self.cfg.health_interval_seconds)
            with trio.move_on_after(self.cfg.health_timeout_seconds):
                with contextlib.suppress(RpcError):  # any answer means it is alive
                    await self._request_now(HEALTH_METHOD, {})
                continue
            log.error("appserver_hung", timeout=self.cfg.health_timeout_seconds)
            raise _Exit(f"did not answer a health probe within "
                        f"{self.cfg.health_timeout_seconds:g} s")

    async def _watch_exit(self, process: trio.Process) -> None:
        code = await process.wait()
        raise _Exit(f"exited with code {code}")

    async def _read_version(self, exe: str) -> None:
        with contextlib.suppress(OSError, trio.TooSlowError):
            with trio.fail_after(10):
                out = await trio.run_process([exe, "--version"], capture_stdout=True,
                                             capture_stderr=True, check=False)
            text = out.stdout.decode(errors="replace").strip()
            self.version = text.split()[-1] if text else None

    async def _read_stdout(self, process: trio.Process) -> None:
        """Run the stdout pump thread for this generation; raise :class:`_Exit` at EOF.

        The pump (see :mod:`codexd.transport.threads`) answers forwarded requests straight to
        the client's socket; everything else it reads is handed to the event loop in order, one
        call per read. When this returns, every batch it handed over has been dispatched.
        """
        assert process.stdout is not None
        fd = process.stdout.fileno()  # type: ignore[attr-defined]
        token = trio.lowlevel.current_trio_token()
        self._handed = self._dispatched = 0
        await run_reader_thread(lambda stop_fd: self._pump(fd, stop_fd, token),
                                "codexd appserver stdout")
        raise _Exit("closed its stdout")

    def _pump(self, fd: int, stop_fd: int, token: trio.lowlevel.TrioToken) -> None:
        """The stdout pump thread's loop (see :meth:`_read_stdout`)."""
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
            for ev in self._rpc.receive_data(data):
                if not batch and self._dispatched == self._handed and isinstance(ev, Response):
                    # Nothing read earlier is still waiting for the event loop, so answering
                    # the client from here keeps the order it would have seen.
                    slot = self._pending.get(ev.id)
                    if slot is not None and slot.deliver is not None:
                        slot.result = ev.result
                        slot.delivered = slot.deliver(ev.result, True)
                batch.append(ev)
            if batch:
                self._handed += 1
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
            self._dispatched += 1

    def _dispatch_one(self, ev: Event) -> None:
        if isinstance(ev, Response | ErrorResponse):
            slot = self._pending.pop(ev.id, None) if ev.id is not None else None
            if slot is None:
                log.warning("appserver_unexpected_response", id=ev.id)
                return
            if isinstance(ev, Response):
                slot.result = ev.result
                if slot.deliver is not None and not slot.delivered:
                    slot.delivered = slot.deliver(ev.result, False)
            else:
                slot.error = ev.error
            slot.done.set()
        elif isinstance(ev, Notification):
            self._on_notification(ev.method, ev.params, ev.emitted_at_ms)
        elif isinstance(ev, Request):
            self._on_server_request(
                ServerRequestIn(self.generation, ev.id, ev.method, ev.params)
            )
        elif isinstance(ev, BadMessage):
            log.warning("appserver_bad_message", code=int(ev.code), error=ev.message)

    async def _read_stderr(self, process: trio.Process) -> None:
        assert process.stderr is not None
        await self.stderr.read(process.stderr)

    # ---------------------------------------------------------------------------- requests

    async def _write_stdin(self, stdin: trio.abc.SendStream, upstream: OutputQueue) -> None:
        """The generation's writer: what could not be written at once, in order."""
        try:
            while data := await upstream.get_batch():
                await stdin.send_all(data)
                upstream.written()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _Exit(f"stopped reading its stdin ({exc})") from None

    async def _send(self, data: bytes) -> None:
        self._write_upstream(data)

    def _write_upstream(self, data: bytes) -> None:
        """Write ``data`` to the app-server's stdin now, or queue it behind what is queued."""
        upstream = self._upstream
        if upstream is None:
            raise RpcError(ErrorCode.APPSERVER_RESTARTED, "the app-server is not running")
        if not upstream.send(data):
            raise RpcError(ErrorCode.APPSERVER_BUSY,
                           "the app-server is not reading its input; retry later")

    def try_send_now(
        self, method: str, params: msgspec.Raw | None, owner: Hashable, deliver: Deliver,
    ) -> tuple[RequestId, _Pending] | None:
        """Send a request upstream without waiting, if that can be done right now.

        The hot path of forwarding: ready and a free slot. ``deliver`` passes the result on
        (see :data:`Deliver`). Returns the pending slot to pass to :meth:`call` as
        ``presend``; None means use :meth:`call`.
        """
        if not self.is_ready or self._upstream is None or not self._limiter.try_acquire():
            return None
        payload: Any = msgspec.UNSET if params is None else params
        rid, data = self._rpc.send_request(method, payload)
        # Registered before the write: the pump thread may read the answer at once.
        slot = self._pending[rid] = _Pending(deliver=deliver)
        try:
            self._write_upstream(data)
        except RpcError:
            del self._pending[rid]
            self._rpc.forget_request(rid)
            self._limiter.release()
            return None
        return rid, slot

    async def _request_now(self, method: str, params: Any) -> msgspec.Raw:
        """Send one request on the current process and wait; no ready wait, no limiter."""
        rid, data = self._rpc.send_request(method, params)
        slot = self._pending[rid] = _Pending()
        try:
            await self._send(data)
            await slot.done.wait()
        finally:
            self._pending.pop(rid, None)
        if slot.lost is not None:
            raise RpcError(ErrorCode.APPSERVER_RESTARTED, slot.lost)
        if slot.error is not None:
            e = slot.error
            raise RpcError(e.code, e.message, None if e.data is msgspec.UNSET else e.data)
        assert slot.result is not None
        return slot.result

    def _fail_pending(self, why: str) -> None:
        for slot in list(self._pending.values()):
            if not slot.delivered:  # answered already (from the pump thread): not lost
                slot.lost = why
            slot.done.set()
        self._pending.clear()

    async def wait_ready(self, deadline: float) -> None:
        """Wait until ready or ``deadline`` (trio time); then fail with the state and a hint.

        In the ``failed`` state (the breaker is open) it fails at once: nothing will change
        until someone restarts the app-server.
        """
        if self.state is State.READY:
            return
        if not self.cfg.enabled:
            raise RpcError(ErrorCode.APPSERVER_NOT_READY,
                           "the app-server is disabled (appserver.enabled = false in config.toml)",
                           {"state": self.state.value})
        if self.state is not State.FAILED:
            with trio.move_on_at(deadline):
                while not self.is_ready:
                    await self._ready.wait()
                return
        data: dict[str, Any] = {"state": self.state.value}
        if self.state is State.FAILED:
            hint = "the app-server keeps crashing; fix the cause, then codexctl appserver restart"
            data["lastError"] = self.last_error
        elif not self.cfg.enabled:
            hint = "the app-server is disabled (appserver.enabled = false)"
        else:
            retry = 1.0
            if self.next_start_at:
                retry = max(0.5, self.next_start_at - time.time() + 1.0)
            data["retryAfterSeconds"] = round(retry, 1)
            hint = f"retry in {retry:.0f} s"
        raise RpcError(ErrorCode.APPSERVER_NOT_READY,
                       f"the app-server is {self.state.value}; {hint}", data)

    async def call(
        self, method: str, params: msgspec.Raw | None, owner: Hashable,
        *, sent: trio.Event | None = None,
        presend: tuple[RequestId, _Pending] | None = None,
    ) -> msgspec.Raw:
        """Forward one request and return the raw result; upstream errors are re-raised as-is.

        ``sent`` is set once the request is written upstream (callers use it to keep the order
        in which one client's requests reach the app-server). ``presend`` is a request
        :meth:`try_send_now` already wrote; its slot is waited for first.
        """
        deadline = trio.current_time() + self.cfg.ready_wait_seconds
        retry_until = trio.current_time() + self.cfg.overload_retry_seconds
        delay = 0.05
        payload: Any = msgspec.UNSET if params is None else params
        try:
            while True:
                if presend is not None:
                    rid, slot = presend
                    presend = None
                    try:
                        await slot.done.wait()
                    finally:
                        self._pending.pop(rid, None)
                        self._limiter.release()
                else:
                    await self.wait_ready(deadline)
                    async with self._limiter.slot(owner):
                        if not self.is_ready:
                            continue
                        rid, data = self._rpc.send_request(method, payload)
                        slot = self._pending[rid] = _Pending()
                        try:
                            await self._send(data)
                            if sent is not None:
                                sent.set()
                            await slot.done.wait()
                        finally:
                            self._pending.pop(rid, None)
                if slot.lost is not None:
                    raise RpcError(ErrorCode.APPSERVER_RESTARTED,
                                   f"{slot.lost} while {method} was in flight; retry it",
                                   {"method": method})
                if slot.error is not None:
                    e = slot.error
                    if e.code == OVERLOADED and trio.current_time() < retry_until:
                        await trio.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 2, 2.0)
                        deadline = trio.current_time() + self.cfg.ready_wait_seconds
                        continue
                    if e.code == OVERLOADED:
                        raise RpcError(ErrorCode.APPSERVER_BUSY,
                                       f"the app-server stayed overloaded for "
                                       f"{self.cfg.overload_retry_seconds:g} s; retry later")
                    raise RpcError(e.code, e.message,
                                   None if e.data is msgspec.UNSET else e.data)
                assert slot.result is not None
                return slot.result
        finally:
            if sent is not None:
                sent.set()

    def notify(self, method: str, params: msgspec.Raw | None) -> None:
        """Forward a client notification now, never waiting (dropped when not ready)."""
        if self.state is not State.READY:
            return
        payload: Any = msgspec.UNSET if params is None else params
        with contextlib.suppress(RpcError):
            self._write_upstream(self._rpc.send_notification(method, payload))

    async def respond(self, generation: int, upstream_id: RequestId, result: msgspec.Raw | None,
                      error: ErrorObject | None = None) -> bool:
        """Answer a server request of ``generation``; False if that process is gone."""
        if generation != self.generation or self._upstream is None:
            return False
        if error is not None:
            data = self._rpc.send_error(upstream_id, error.code, error.message,
                                        error.data if error.data is not msgspec.UNSET else None)
        else:
            data = self._rpc.send_response(upstream_id, result)
        try:
            await self._send(data)
        except RpcError:
            return False
        return True
