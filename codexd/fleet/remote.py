"""The daemon's side of the temporal executor: dispatch a run as a workflow, follow it, read
its events from the worker that runs each attempt, answer its permission prompts.

The Temporal client lives on a thread of its own with its own asyncio loop
(:class:`~codexd.fleet.bridge.AsyncioThread`); everything here is trio and reaches it only
through :meth:`AsyncioThread.call`. The client connects on first use and stays connected.

Per dispatched run, ``run_remote`` holds its workflow id, the token its events are read with
and how far they were read; the events' own rows carry their attempt. A daemon that restarts
(even after kill -9) finds its running remote runs there and follows them on from that point:
no event twice, none lost while the worker still holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio
import trio_websocket

from codexd.config import ExecutorSection
from codexd.fleet import connect as fleet_connect
from codexd.fleet.bridge import AsyncioThread
from codexd.fleet.stream import attempt_path, token_sha256
from codexd.fleet.types import (
    QUERY_STATE,
    UPDATE_WAIT,
    WORKFLOW,
    AttemptResult,
    RunInput,
    RunState,
    workflow_id,
)
from codexd.protocol.runs import Run
from codexd.runs import limits, providers
from codexd.runs.executor import Attempt
from codexd.store import runs as repo

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from codexd.runs.eventlog import RunEventLog
    from codexd.store import Store

log = structlog.get_logger("codexd.fleet")

#: (run id, tool name, tool input, tool use id) → {"behavior", "message", "approvalId"}
AskPermission = Callable[[str, str, dict[str, Any], str | None], Awaitable[dict[str, Any]]]
#: How long the daemon waits, once a workflow is done, for the rest of its events.
DRAIN_SECONDS = 15.0


class ExecutorUnavailable(Exception):
    """The Temporal server cannot be reached (the message says what to do)."""


@dataclass(eq=False)
class _Follow:
    """What the daemon has read of one dispatched run."""

    run_id: str
    workflow_id: str
    token: str
    attempt: int
    received: int
    notes: int
    #: The connection to the current attempt's worker, while there is one.
    ws: trio_websocket.WebSocketConnection | None = None
    ended: dict[int, int] = field(default_factory=dict)  # attempt → its event count
    artifacts: dict[int, list[tuple[str, str, str, str]]] = field(default_factory=dict)
    answers: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    asking: set[tuple[int, int]] = field(default_factory=set)
    changed: trio.Event = field(default_factory=trio.Event)
    #: The workflow's phase and attempt as last seen, and since when (trio time).
    phase: tuple[str, int] = ("", 0)
    phase_since: float = 0.0

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class RemoteRuns:
    """Collaborators: ``config`` returns ``[runs.executor]``, ``log`` takes the runs' events,
    ``store`` the open store; ``ask_permission`` answers a remote claude's prompt."""

    def __init__(self, config: Callable[[], ExecutorSection], *, log: RunEventLog,
                 store: Callable[[], Store], origin: str = "") -> None:
        self._config = config
        self._log = log
        self._store = store
        self.origin = origin or f"{socket.gethostname()}:{os.getpid()}"
        self.thread = AsyncioThread("codexd-temporal")
        self._client: Client | None = None
        self._lock = trio.Lock()
        self.follows: dict[str, _Follow] = {}
        self.ask_permission: AskPermission | None = None

    @property
    def cfg(self) -> ExecutorSection:
        return self._config()

    # ----------------------------------------------------------------------- the client

    async def client(self) -> Client:
        """The connected client; raises :class:`ExecutorUnavailable` (within the connect
        timeout, never a hang)."""
        async with self._lock:
            if self._client is None:
                self.thread.start()
                try:
                    self._client = await self.thread.call(fleet_connect.client, self.cfg)
                except fleet_connect.Unreachable as exc:
                    raise ExecutorUnavailable(str(exc)) from None
                log.info("temporal_connected", address=self.cfg.address,
                         namespace=self.cfg.namespace, task_queue=self.cfg.task_queue)
            return self._client

    def close(self) -> None:
        self._client = None
        self.thread.stop()

    # ------------------------------------------------------------------------ execution

    async def execute(self, run: Run, *, attempt_timeout: float, reattach: bool,
                      on_state: Callable[[RunState], Awaitable[None]],
                      order: int = 0) -> Attempt:
        """Dispatch ``run`` (or, ``reattach``, follow its workflow on) until its workflow is
        done; returns how it ended, like a local attempt. Cancelling this stops following
        (the daemon is stopping): the run goes on remotely and is followed again at start."""
        run_id = run.run_id
        client = await self.client()
        rec = await self._store().read(lambda c: repo.remote_get(c, run_id))
        if rec is None or not reattach:
            token = secrets.token_urlsafe(32)
            wid = workflow_id(run_id)
            rec = await self._store().write(lambda c: repo.remote_put(c, run_id, wid, token))
            cfg = self.cfg
            inp = RunInput(
                run_id=run_id, run=msgspec.to_builtins(run), task_queue=cfg.task_queue,
                token_sha256=token_sha256(token), timeout_seconds=attempt_timeout,
                heartbeat_timeout_seconds=cfg.heartbeat_timeout_seconds,
                max_retries=run.request.max_retries,
                retry_backoff_ms=run.request.retry_backoff_ms,
                max_worker_losses=cfg.max_worker_losses, origin=self.origin)
            await self.thread.call(_start, client, inp, wid)
            self._log.emit(run_id, "run.dispatched", {
                "executor": "temporal", "workflowId": wid, "taskQueue": cfg.task_queue,
                "order": order})
            log.info("run_dispatched", run_id=run_id, workflow_id=wid)
        wid, token, attempt, received, notes = rec
        f = _Follow(run_id, wid, token, attempt, received, notes)
        self.follows[run_id] = f
        handle = client.get_workflow_handle(wid)
        try:
            state = await self._follow(f, handle, on_state)
        finally:
            self.follows.pop(run_id, None)
        return _attempt_of(state, f)

    async def _follow(self, f: _Follow, handle: WorkflowHandle[Any, Any],
                      on_state: Callable[[RunState], Awaitable[None]]) -> RunState:
        seen = 0
        warned = False
        reading: dict[int, trio.CancelScope] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_for_a_worker, f)
            while True:
                try:
                    state = await self.thread.call(_wait, handle, seen)
                    warned = False
                except Exception as exc:  # the server is away: keep trying, say so once
                    if not warned:
                        warned = True
                        self._log.emit(f.run_id, "run.warning", {
                            "message": f"lost touch with the Temporal server ({exc}); the run "
                                       "goes on there and codexd keeps trying"})
                        log.warning("temporal_unreachable", run_id=f.run_id, error=str(exc))
                    await trio.sleep(1.0)
                    continue
                seen = state.version
                if (state.phase, state.attempt) != f.phase:
                    f.phase, f.phase_since = (state.phase, state.attempt), trio.current_time()
                for note in state.notes[f.notes:]:
                    self._log.emit(f.run_id, note.kind, note.data, attempt=note.attempt)
                    f.notes += 1
                self._log.cursor(f.run_id, f.attempt, f.received, f.notes)
                await on_state(state)
                if state.phase == "running" and state.endpoint and \
                        state.attempt not in reading and state.attempt not in f.ended:
                    for old in reading.values():
                        old.cancel()  # an earlier attempt is over (lost): its worker is gone
                    scope = trio.CancelScope()
                    reading[state.attempt] = scope
                    nursery.start_soon(self._read, f, state.attempt, state.endpoint, scope)
                if state.phase == "done":
                    break
            res = state.result
            if res is not None and res.attempt not in f.ended and res.attempt not in reading \
                    and state.endpoint and res.worker == state.worker:
                # It ended while nobody read (this daemon was down): read the rest now.
                scope = trio.CancelScope()
                reading[res.attempt] = scope
                nursery.start_soon(self._read, f, res.attempt, state.endpoint, scope)
            if res is not None and res.attempt in reading and res.attempt not in f.ended:
                with trio.move_on_after(DRAIN_SECONDS):
                    while res.attempt not in f.ended:
                        await f.changed.wait()
                if res.attempt not in f.ended:
                    self._log.emit(f.run_id, "run.warning", {
                        "message": f"the worker's last events of attempt {res.attempt} did "
                                   f"not arrive within {DRAIN_SECONDS:g} s ({f.received} of "
                                   f"{res.events} read)"})
            nursery.cancel_scope.cancel()
        return state

    async def _watch_for_a_worker(self, f: _Follow) -> None:
        """Say so (once per attempt) when no worker takes a dispatched attempt. Until a
        worker runs the workflow itself, no state comes at all: that is waiting too."""
        warned = -1
        since = trio.current_time()
        while True:
            await trio.sleep(1.0)
            limit = self.cfg.worker_wait_warning_seconds
            phase, attempt = f.phase
            if f.phase_since > since:
                since = f.phase_since
            if limit and phase in ("", "queued") and attempt != warned and \
                    trio.current_time() - since >= limit:
                warned = attempt
                cfg = self.cfg
                self._log.emit(f.run_id, "run.warning", {
                    "reason": "noWorker", "attempt": attempt or None, "message":
                    f"no worker has taken this run for {limit:g} s; is a `codexd worker` "
                    f"polling task queue {cfg.task_queue!r} of {cfg.address} (namespace "
                    f"{cfg.namespace})? The run waits for one"})
                log.warning("run_waits_for_worker", run_id=f.run_id, task_queue=cfg.task_queue)

    async def _read(self, f: _Follow, attempt: int, endpoint: str,
                    scope: trio.CancelScope) -> None:
        """Read one attempt's events from its worker, reconnecting until it ends."""
        delay = 0.2
        failures, warned = 0, False
        with scope:
            while attempt not in f.ended:
                after = f.received if f.attempt == attempt else 0
                url = endpoint.rstrip("/") + attempt_path(f.run_id, attempt) + f"?after={after}"
                try:
                    async with trio_websocket.open_websocket_url(
                            url, _client_tls(url, self.cfg.worker_tls_ca), connect_timeout=5,
                            disconnect_timeout=2,
                            extra_headers=[(b"authorization", f"Bearer {f.token}".encode())],
                            max_message_size=64 * 1024 * 1024) as ws:
                        f.ws = ws
                        delay, failures = 0.2, 0
                        await self._receive(f, attempt, ws)
                except (OSError, trio_websocket.HandshakeError,
                        trio_websocket.ConnectionClosed, trio.BrokenResourceError) as exc:
                    failures += 1
                    log.debug("run_stream_retry", run_id=f.run_id, attempt=attempt,
                              error=str(exc))
                    if not warned and (failures >= 3 or isinstance(exc, ssl.SSLError)):
                        warned = True
                        # Said once: the worker is up (it heartbeats) but unreadable from here.
                        why = str(exc) or type(exc).__name__
                        self._log.emit(f.run_id, "run.warning", {
                            "reason": "workerUnreachable", "attempt": attempt, "message":
                            f"cannot read this run's events from its worker at {endpoint}: "
                            f"{why}; retrying (worker.listen/advertise, and for wss:// "
                            "runs.executor.worker_tls_ca)"})
                        log.warning("run_stream_unreachable", run_id=f.run_id,
                                    endpoint=endpoint, error=why)
                finally:
                    f.ws = None
                if attempt not in f.ended:
                    await trio.sleep(delay)
                    delay = min(delay * 2, 3.0)

    async def _receive(self, f: _Follow, attempt: int,
                       ws: trio_websocket.WebSocketConnection) -> None:
        """Until the attempt's end has been read and stored (returns), or the connection drops
        (returns too: the caller reconnects)."""
        async with trio.open_nursery() as nursery:
            try:
                await self._receive_loop(f, attempt, ws, nursery)
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, ValueError,
                    TypeError, KeyError) as exc:
                log.debug("run_stream_closed", run_id=f.run_id, attempt=attempt, error=str(exc))
            nursery.cancel_scope.cancel()

    async def _receive_loop(self, f: _Follow, attempt: int,
                            ws: trio_websocket.WebSocketConnection,
                            nursery: trio.Nursery) -> None:
        for (a, pid), answer in f.answers.items():
            if a == attempt:  # answered while the connection was down
                await ws.send_message(json.dumps({"answer": {"id": pid, **answer}}))
        while True:
            msg = json.loads(await ws.get_message())
            if "events" in msg:
                if f.attempt != attempt:
                    f.attempt, f.received = attempt, 0
                for i, kind, data, at in msg["events"]:
                    if i <= f.received:
                        continue  # sent again after a reconnect
                    f.received = i
                    self._log.emit(f.run_id, kind, data, at=at, attempt=attempt)
                self._log.cursor(f.run_id, f.attempt, f.received, f.notes)
            elif "approval" in msg:
                nursery.start_soon(self._approve, f, attempt, msg["approval"])
            elif "artifacts" in msg:
                f.artifacts[attempt] = [(str(k), str(n), str(m), str(c))
                                        for k, n, m, c in msg["artifacts"]]
            elif "end" in msg:
                await self._log.drain()  # stored before the worker forgets them
                f.ended[attempt] = int(msg["end"].get("events", 0))
                f.wake()
                await ws.send_message(json.dumps({"done": True}))
                return

    async def _approve(self, f: _Follow, attempt: int, prompt: dict[str, Any]) -> None:
        key = (attempt, int(prompt.get("id", 0)))
        if key in f.answers:
            answer = f.answers[key]
        elif key in f.asking or self.ask_permission is None:
            return
        else:
            f.asking.add(key)
            try:
                answer = await self.ask_permission(
                    f.run_id, str(prompt.get("toolName")), prompt.get("input") or {},
                    prompt.get("toolUseId"))
            finally:
                f.asking.discard(key)
            f.answers[key] = answer
        ws = f.ws
        if ws is not None:
            # (a connection that drops now: sent again when it is back)
            with contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                await ws.send_message(json.dumps({"answer": {"id": key[1], **answer}}))

    async def cancel(self, run_id: str, by: str) -> None:
        """Stop a remote run: at once through its worker's stream when connected, and
        durably by cancelling its workflow."""
        f = self.follows.get(run_id)
        if f is not None and f.ws is not None:
            with contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                await f.ws.send_message(json.dumps({"cancel": {"by": by}}))
        client = await self.client()
        await self.thread.call(_cancel, client, workflow_id(run_id))


def _client_tls(url: str, ca: str) -> ssl.SSLContext | None:
    """wss:// to a worker: its certificate checked (against ``ca``, else the system's CAs)."""
    if not url.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=os.path.expanduser(ca) if ca else None)


def _attempt_of(state: RunState, f: _Follow) -> Attempt:
    if state.canceled or state.result is None:
        return Attempt("canceled", reason="canceled")
    r: AttemptResult = state.result
    out = providers.Outcome(
        session_id=r.session_id, last_message=r.last_message, result_text=r.result_text,
        failure=r.failure, usage=r.usage, saw_output=r.saw_output, structured=r.structured,
        has_structured=r.has_structured, changed=set(r.changed), todos=r.todos)
    limit = limits.Limit(r.limit_message, r.limit_reset_at, r.limit_source) \
        if r.limit_message is not None else None
    return Attempt(r.status, reason=r.reason, error=r.error, exit_code=r.exit_code,
                   outcome=out, limit=limit, artifacts=f.artifacts.get(r.attempt, []))


# ---------------------------------------------------------------- on the asyncio thread

async def _start(client: Client, inp: RunInput, wid: str) -> None:
    from temporalio.common import WorkflowIDConflictPolicy

    # A workflow already running under this id is this run's (a daemon that died between
    # starting it and noting it): follow that one.
    await client.start_workflow(WORKFLOW, inp, id=wid, task_queue=inp.task_queue,
                                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


async def _wait(handle: WorkflowHandle[Any, Any], seen: int) -> RunState:
    """The workflow's state once it moves past ``seen``; a closed workflow's at once."""
    from temporalio.client import (
        WorkflowExecutionStatus,
        WorkflowUpdateFailedError,
        WorkflowUpdateRPCTimeoutOrCancelledError,
    )
    from temporalio.service import RPCError

    while True:
        try:
            state: RunState = await handle.execute_update(UPDATE_WAIT, seen,
                                                          result_type=RunState)
            return state
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we were cancelled (the SDK says it this way): stop asking
            continue  # a long wait: ask again
        except (WorkflowUpdateFailedError, RPCError):
            desc = await handle.describe()
            if desc.status == WorkflowExecutionStatus.RUNNING:
                raise
            break
    # Closed (completed, canceled, failed, terminated): its last state, by query.
    try:
        closed: RunState = await handle.query(QUERY_STATE, result_type=RunState)
    except RPCError:
        closed = RunState()
    if closed.phase != "done":
        closed.phase = "done"
        if desc.status == WorkflowExecutionStatus.CANCELED:
            closed.canceled = True
        else:
            name = desc.status.name if desc.status else "unknown"
            closed.result = AttemptResult(
                status="failed", attempt=closed.attempt, worker=closed.worker or "",
                reason="workflowFailed", error=f"the run's workflow ended {name.lower()} "
                f"without a result (see it in Temporal: {handle.id})")
    return closed


async def _cancel(client: Client, wid: str) -> None:
    from temporalio.service import RPCError

    with contextlib.suppress(RPCError):  # already closed
        await client.get_workflow_handle(wid).cancel()
