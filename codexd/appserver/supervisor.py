"""Supervising `codex app-server`: spawn, handshake, health, restart with backoff, stop.

One :class:`AppServer` owns the child process; each process it spawns (a *generation*) gets
an :class:`~codexd.appserver.upstream.Upstream`, its JSON-RPC connection (whose docstring has
the rules of the stdout pump thread). Its
:meth:`run` loop goes through the states in :mod:`codexd.appserver.states`; every change is
reported through ``on_state`` (the daemon turns it into a notification and a log line).

Requests from clients go through :meth:`call`: it waits (bounded) for the ready state, takes a
slot from a limiter that is fair between clients, sends the request with params as raw bytes, and
waits for the answer. An upstream "Server overloaded" (-32001) is retried here with backoff; a
process that dies answers every request in flight with ``APPSERVER_RESTARTED`` at once.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import msgspec
import structlog
import trio

from codexd import __version__
from codexd.appserver.backoff import Backoff, Breaker
from codexd.appserver.command import child_cwd, child_env, resolve_command
from codexd.appserver.limiter import FairLimiter
from codexd.appserver.process import stop_process
from codexd.appserver.states import Input, State, transition
from codexd.appserver.stderr import StderrTail
from codexd.appserver.upstream import (
    Deliver,
    NotificationHook,
    PendingCall,
    ServerRequestHook,
    Upstream,
    UpstreamGone,
)
from codexd.config import AppServerSection
from codexd.errors import CodexdError, ErrorCode, RpcError
from codexd.faults import Faults
from codexd.protocol.appserver import AppServerStatus
from codexd.rpc import ErrorObject, RequestId
from codexd.store.db import iso_time

log = structlog.get_logger("codexd.appserver")

OVERLOADED = -32001
#: The request the health probe sends: cheap, read-only, answered from memory.
HEALTH_METHOD = "thread/loaded/list"


class _Exit(Exception):
    """Ends one generation of the process (exit, hang, failed handshake, restart request)."""

    def __init__(self, reason: str, *, failure: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure


StateHook = Callable[[State, State, str], None]
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
        #: The running process's connection; None while none runs.
        self._upstream: Upstream | None = None
        self._ready = trio.Event()
        self._wake = trio.Event()  # restart requested or config changed
        self._restart_requested = False
        self._generation_scope: trio.CancelScope | None = None

    # ---------------------------------------------------------------------------- status

    @property
    def recent_failures(self) -> int:
        return self._breaker.recent

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
                cwd=child_cwd(self.cfg),
            )
        except OSError as exc:
            self.last_error = f"cannot start {argv[0]}: {exc.strerror or exc}"
            log.error("appserver_spawn_failed", argv=_shown(argv), error=self.last_error)
            await self._generation_ended(self.last_error)
            return
        self.pid = process.pid
        assert process.stdin is not None and process.stdout is not None
        upstream = Upstream(self.generation, _fileno(process.stdin),
                            max_message_bytes=self.cfg.max_message_bytes, faults=self._faults,
                            on_notification=self._on_notification,
                            on_server_request=self._on_server_request)
        log.info("appserver_spawned", pid=process.pid, argv=_shown(argv),
                 generation=self.generation)
        try:
            if self._on_spawned is not None:
                await self._on_spawned(process.pid)
            with trio.CancelScope() as scope:
                self._generation_scope = scope
                try:
                    async with trio.open_nursery() as nursery:
                        self._upstream = upstream
                        nursery.start_soon(self._ends_generation, upstream.write_stdin,
                                           process.stdin)
                        nursery.start_soon(self._ends_generation, upstream.read_stdout,
                                           _fileno(process.stdout))
                        nursery.start_soon(self._read_stderr, process)
                        nursery.start_soon(self._watch_exit, process)
                        nursery.start_soon(self._read_version, argv[0])
                        await self._handshake(upstream)
                        ready_at = time.monotonic()
                        self._set(Input.HANDSHAKE_OK, "handshake done")
                        log.info("appserver_ready", pid=process.pid,
                                 user_agent=self.init_result.get("userAgent"))
                        nursery.start_soon(self._health_loop, upstream)
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
        except* trio.Cancelled:
            reason = "stopped with codexd"
            raise
        finally:
            self._generation_scope = None
            if ready_at is not None:
                self._healthy_for = time.monotonic() - ready_at
            with trio.CancelScope(shield=True):
                self._upstream = None
                upstream.close(f"the app-server {reason}")
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

    async def _ends_generation(self, fn: Callable[[Any], Awaitable[None]], arg: Any) -> None:
        """Run one of the upstream's I/O loops; its end is the end of the generation."""
        try:
            await fn(arg)
        except UpstreamGone as exc:
            raise _Exit(str(exc)) from None

    async def _handshake(self, upstream: Upstream) -> None:
        params: dict[str, Any] = {
            "clientInfo": {"name": "codexd", "title": "codexd", "version": __version__}}
        if self.cfg.experimental_api:
            # One upstream connection serves every client: it opts in for those that do (the
            # stock TUI's turn/start uses experimental fields).
            params["capabilities"] = {"experimentalApi": True}
        with trio.move_on_after(self.cfg.handshake_timeout_seconds):
            try:
                result = await upstream.request("initialize", params)
                self.init_result = msgspec.json.decode(result)
                upstream.notify("initialized", msgspec.UNSET)
            except (RpcError, msgspec.DecodeError) as exc:
                raise _Exit(f"failed the handshake: {exc}") from None
            return
        raise _Exit(f"did not answer initialize within {self.cfg.handshake_timeout_seconds:g} s")

    async def _health_loop(self, upstream: Upstream) -> None:
        while True:
            await trio.sleep(self.cfg.health_interval_seconds)
            with trio.move_on_after(self.cfg.health_timeout_seconds):
                with contextlib.suppress(RpcError):  # any answer means it is alive
                    await upstream.request(HEALTH_METHOD, {})
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

    async def _read_stderr(self, process: trio.Process) -> None:
        assert process.stderr is not None
        await self.stderr.read(process.stderr)

    # ---------------------------------------------------------------------------- requests

    def try_send_now(
        self, method: str, params: msgspec.Raw | None, owner: Hashable, deliver: Deliver,
    ) -> PendingCall | None:
        """Send a request upstream without waiting, if that can be done right now.

        The hot path of forwarding: ready and a free slot. ``deliver`` passes the result on
        (see :data:`~codexd.appserver.upstream.Deliver`). Returns the call to pass to
        :meth:`call` as ``presend``; None means use :meth:`call`.
        """
        upstream = self._upstream
        if not self.is_ready or upstream is None or not self._limiter.try_acquire():
            return None
        try:
            return upstream.send_request(method, msgspec.UNSET if params is None else params,
                                         deliver)
        except RpcError:
            self._limiter.release()
            return None

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
        *, sent: trio.Event | None = None, presend: PendingCall | None = None,
    ) -> msgspec.Raw:
        """Forward one request and return the raw result; upstream errors are re-raised as-is.

        ``sent`` is set once the request is written upstream (callers use it to keep the order
        in which one client's requests reach the app-server). ``presend`` is a request
        :meth:`try_send_now` already wrote (it holds a limiter slot); it is waited for first.
        """
        deadline = trio.current_time() + self.cfg.ready_wait_seconds
        retry_until = trio.current_time() + self.cfg.overload_retry_seconds
        delay = 0.05
        payload: Any = msgspec.UNSET if params is None else params
        try:
            while True:
                if presend is not None:
                    call, presend = presend, None
                    try:
                        await call.wait()
                    finally:
                        self._limiter.release()
                else:
                    await self.wait_ready(deadline)
                    async with self._limiter.slot(owner):
                        upstream = self._upstream
                        if not self.is_ready or upstream is None:
                            continue
                        call = upstream.send_request(method, payload)
                        if sent is not None:
                            sent.set()
                        await call.wait()
                if call.lost is not None:
                    raise RpcError(ErrorCode.APPSERVER_RESTARTED,
                                   f"{call.lost} while {method} was in flight; retry it",
                                   {"method": method})
                if call.error is not None and call.error.code == OVERLOADED:
                    if trio.current_time() < retry_until:
                        await trio.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 2, 2.0)
                        deadline = trio.current_time() + self.cfg.ready_wait_seconds
                        continue
                    raise RpcError(ErrorCode.APPSERVER_BUSY,
                                   f"the app-server stayed overloaded for "
                                   f"{self.cfg.overload_retry_seconds:g} s; retry later")
                return call.raise_for_outcome()
        finally:
            if sent is not None:
                sent.set()

    def notify(self, method: str, params: msgspec.Raw | None) -> None:
        """Forward a client notification now, never waiting (dropped when not ready)."""
        upstream = self._upstream
        if self.state is not State.READY or upstream is None:
            return
        with contextlib.suppress(RpcError):
            upstream.notify(method, msgspec.UNSET if params is None else params)

    async def respond(self, generation: int, upstream_id: RequestId, result: msgspec.Raw | None,
                      error: ErrorObject | None = None) -> bool:
        """Answer a server request of ``generation``; False if that process is gone."""
        upstream = self._upstream
        if upstream is None or upstream.generation != generation:
            return False
        await trio.lowlevel.checkpoint()
        return upstream.respond(upstream_id, result, error)


def _fileno(stream: trio.abc.Stream | trio.abc.SendStream | trio.abc.ReceiveStream) -> int:
    """The fd of a process pipe (trio's FdStream has ``fileno``; its ABC does not say so)."""
    fileno: Callable[[], int] = getattr(stream, "fileno")  # noqa: B009
    return fileno()


def _shown(argv: list[str]) -> list[str]:
    """The command line as logged: a ``-c key=value`` override may hold a key."""
    from codexd.runs.redact import redact

    return [redact(a) for a in argv]
