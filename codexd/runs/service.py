"""The run service: the durable queue of provider runs and their execution.

A run is a row in ``runs`` from ``run/start`` on. The queue loop starts the best waiting run
(priority with aging) whenever a global and a per-provider slot are free. Each attempt is the
executor's (:class:`~codexd.runs.executor.LocalExecutor`: the CLI as a child in its own session,
its output as typed events); this service decides what an attempt means: done, retried with a
backoff, resumed without its session, failed. Events are redacted, numbered per run, written to
``run_events`` in batches and sent as ``run/event`` to subscribed clients
(:class:`~codexd.runs.eventlog.RunEventLog`). Cancel and timeout kill the whole process tree.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jsonschema
import msgspec
import structlog
import trio

from codexd.config import RunsSection
from codexd.errors import ErrorCode, RpcError
from codexd.fleet.remote import ExecutorUnavailable, RemoteRuns
from codexd.fleet.types import RunState
from codexd.protocol.runs import (
    Capability,
    Conversation,
    Options,
    Run,
    RunRequest,
    RunStartParams,
)
from codexd.runs import artifacts, limits, providers
from codexd.runs import queue as q
from codexd.runs.capabilities import Catalog
from codexd.runs.compat import Snapshot
from codexd.runs.eventlog import RunEventLog, Subscriber
from codexd.runs.executor import Attempt, LocalExecutor, blocked_message
from codexd.runs.secrets import SecretStore
from codexd.store import runs as repo
from codexd.subscriptions import Interest

if TYPE_CHECKING:
    from codexd.children import ChildRegistry, Survivor
    from codexd.faults import Faults
    from codexd.store import Store

log = structlog.get_logger("codexd.runs")
_enc = msgspec.json.Encoder()


def now_ms() -> int:
    return int(time.time() * 1000)


class Interactive(Protocol):
    """What the run service uses of the interactive sessions."""

    @property
    def live(self) -> Mapping[str, object]: ...

    @property
    def ephemeral(self) -> set[str]: ...

    async def end(self, run_id: str, by: str, *, sig: str | None = None,
                  cancel: bool = False) -> Run: ...

    def thread_opened(self, peer_pid: int, thread_id: str) -> None: ...


@dataclass(slots=True)
class _Active:
    run: Run
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    canceled_by: str | None = None
    #: The queue's pick order (this daemon life's count of runs it started).
    order: int = 0
    #: Set when the run's task has settled it (process tree gone, status written).
    done: trio.Event = field(default_factory=trio.Event)


class RunService:
    """The run queue and its execution. Start with ``await nursery.start(service.run)``.

    Collaborators: ``config`` returns the current ``[runs]`` section, ``store`` the open store,
    ``faults`` is each run's fault boundary, ``children`` records each CLI process,
    ``subscribers()`` the sessions ``run/event`` may go to; ``state_dir`` holds the secrets
    file when there is no keyring.
    """

    def __init__(self, config: Callable[[], RunsSection], *, store: Callable[[], Store],
                 faults: Faults, children: ChildRegistry,
                 subscribers: Callable[[], Iterable[Subscriber]], state_dir: Path) -> None:
        self._config = config
        self._store = store
        self._faults = faults
        self._children = children
        self.secrets = SecretStore(config().secret_store, state_dir)
        self.waiting: dict[str, q.Waiting] = {}
        self.active: dict[str, _Active] = {}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.catalog = Catalog(store)
        self.log = RunEventLog(store, faults, subscribers=subscribers,
                               secrets=self.secrets.known, now_ms=now_ms)
        self.executor = LocalExecutor(config, log=self.log, secrets=self.secrets,
                                      children=children, snapshot=self.catalog.snapshot)
        self.executor.homes_dir = state_dir / "codex-homes"
        #: The temporal executor (its client connects on first use).
        self.remote = RemoteRuns(lambda: config().executor, log=self.log, store=store)
        #: Remote runs a previous daemon life dispatched: followed again at start.
        self._reattach: list[Run] = []
        #: Runs the queue has started in this daemon life (their pick order).
        self._picked = 0
        #: Remote runs waiting for the Temporal server (warned once each).
        self._unavailable: set[str] = set()
        #: Paused lanes: provider → why (persisted in queue_lanes).
        self.paused: dict[str, str] = {}
        #: Lanes a usage limit paused: provider → when they resume by themselves (Unix ms).
        self.paused_until: dict[str, int] = {}
        #: Called with (provider, why) when a lane resumes by itself (a notification).
        self.on_lane_resumed: Callable[[str, str], None] = lambda _provider, _why: None
        #: Called with (event, conversation, run id, the client that did it) on a change.
        self.on_conversation: Callable[[str, Conversation, str | None, Any], None] = \
            lambda *_: None
        #: Called after any lane resumes, by hand too (the scheduler looks again).
        self.on_lanes_changed: Callable[[], None] = lambda: None
        #: The interactive sessions (session/*), which run/cancel hands their runs to.
        self.interactive: Interactive | None = None

    def store(self) -> Store:
        return self._store()

    @property
    def events_written(self) -> int:
        return self.log.events_written

    @property
    def subscriptions(self) -> Interest[Subscriber]:
        """The runs each session follows (their ``run/event`` notifications)."""
        return self.log.subscriptions

    @property
    def cfg(self) -> RunsSection:
        return self._config()

    # ------------------------------------------------------------------------- start-up

    async def startup(self, *, unclean: bool = False,
                      survivors: Sequence[Survivor] = ()) -> None:
        """Runs a dead daemon left running are interrupted (never re-run); queued ones wait.

        ``survivors`` are the CLIs that daemon left running, already killed (their runs say
        so). After an ``unclean`` stop, each provider lane with queued runs stays paused until
        someone resumes it (``runs.pause_after_unclean``), so nothing starts by surprise.
        """
        killed = {s.unit_id: s.pid for s in survivors if s.kind == "run"}

        def load(c: Any) -> tuple[list[Run], list[Run], dict[str, str], list[Run]]:
            # Runs dispatched to the fleet go on there: followed again, not interrupted.
            remote = [r for r in repo.by_status(c, ("running", "queued"))
                      if r.request.executor == "temporal" and repo.remote_get(c, r.run_id)]
            followed = {r.run_id for r in remote}
            stale = [r for r in repo.by_status(c, ("running",)) if r.run_id not in followed]
            done = []
            for run in stale:
                seq = run.last_seq + 1
                message = "codexd stopped during this run; it was not re-run"
                if run.run_id in killed:
                    message += (f" (its CLI, pid {killed[run.run_id]}, was still running and "
                                "was killed with its process group)")
                repo.add_events(c, [(run.run_id, seq, "run.interrupted", _enc.encode(
                    {"message": message}).decode(), now_ms(), run.attempt or None)])
                updated = repo.update(c, run.run_id, status="interrupted", reason="daemonStopped",
                                      error=message, finished_at=now_ms())
                if updated:
                    done.append(updated)
            queued = [r for r in repo.by_status(c, ("queued",)) if r.run_id not in followed]
            if unclean and self.cfg.pause_after_unclean:
                reason = ("codexd did not stop cleanly; check the interrupted runs, then "
                          "`codexctl runs queue resume`")
                for provider in sorted({r.request.provider for r in queued}):
                    repo.lane_pause(c, provider, reason, now_ms())
            self.paused_until = repo.lanes_resume_at(c)
            return done, queued, repo.lanes_paused(c), remote

        log.info("secret_store", store=self.secrets.describe())
        for provider in providers.PROVIDERS:
            # Every stored token is known to the redactor from the start.
            try:
                await trio.to_thread.run_sync(self.secrets.get, provider)
            except Exception as exc:
                log.error("secret_read_failed", provider=provider, error=type(exc).__name__)
        interrupted, queued, self.paused, self._reattach = await self._store().write(load)
        for run in interrupted:
            log.warning("run_interrupted", run_id=run.run_id, provider=run.request.provider)
        for lane, reason in self.paused.items():
            log.warning("queue_lane_paused", provider=lane, reason=reason)
        for run in queued:
            self._enqueue(run)
        if interrupted or queued or self._reattach:
            log.info("runs_loaded", queued=len(queued), interrupted=len(interrupted),
                     remote=len(self._reattach))

    def _enqueue(self, run: Run) -> None:
        self.waiting[run.run_id] = q.Waiting(run.run_id, run.request.provider,
                                             run.request.priority, run.created_at,
                                             run.next_attempt_at, payload=run)
        self.log.track(run)
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.log.run)
                nursery.start_soon(self._queue_loop)
                for run in self._reattach:
                    self.log.track(run)
                    active = _Active(run=run)
                    self.active[run.run_id] = active
                    nursery.start_soon(self._execute_remote, active, True)
                self._reattach = []
                task_status.started()
        finally:
            self.remote.close()

    # ----------------------------------------------------------------------- requests

    async def profile_defaults(self, name: str | None) -> Options:
        if name is None:
            return Options()
        prof = await self._store().read(lambda c: repo.profile_get(c, name))
        if prof is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no profile {name!r}; `profile/list` shows them",
                           {"profile": name})
        return prof.defaults

    def merge(self, p: Any, *layers: Options, profile: str | None) -> RunRequest:
        """Null-safe merge: the first non-null of the request, then each layer, then config."""
        def pick(name: str, default: Any) -> Any:
            for src in (p, *layers):
                value = getattr(src, name, None)
                if value is not None:
                    return value
            return default

        provider = pick("provider", None)
        if provider is None:
            raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: provider is required "
                           "(codex or claude), directly or from the profile", {"field": "provider"})
        cwd = pick("cwd", None)
        if cwd is None:
            raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: cwd is required, directly "
                           "or from the profile", {"field": "cwd"})
        if not os.path.isabs(cwd):
            raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: cwd {cwd!r} must be an "
                           "absolute path", {"field": "cwd"})
        req = RunRequest(
            provider=provider, prompt=getattr(p, "prompt", None) or "", cwd=cwd,
            model=pick("model", None),
            priority=pick("priority", 0), timeout_seconds=pick("timeout_seconds",
                                                               self.cfg.default_timeout_seconds),
            max_retries=pick("max_retries", 0), retry_backoff_ms=pick("retry_backoff_ms", 1000),
            sandbox=pick("sandbox", None), auto_approve=pick("auto_approve", False),
            profile=profile, output_schema=getattr(p, "output_schema", None),
            env=dict(getattr(p, "env", None) or {}), harness=getattr(p, "harness", None),
            max_budget_usd=pick("max_budget_usd", None),
            executor=pick("executor", self.cfg.executor.kind))
        h = req.harness
        if h is not None:
            for name in ("images", "add_dirs"):
                for path in getattr(h, name) or []:
                    if not os.path.isabs(path):
                        field = "harness." + ("images" if name == "images" else "addDirs")
                        raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {field} "
                                       f"entries must be absolute paths, not {path!r}",
                                       {"field": field})
            if h.session_id and h.continue_last:
                raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: harness.sessionId "
                               "and harness.continueLast exclude each other: name the session "
                               "or take the last one", {"field": "harness.continueLast"})
        if req.auto_approve and req.sandbox == "danger-full-access":
            raise RpcError(ErrorCode.POLICY_DENIED, "autoApprove with the danger-full-access "
                           "sandbox is refused by policy: choose one", {"field": "autoApprove"})
        if req.output_schema is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(req.output_schema)
            except jsonschema.SchemaError as exc:
                raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: outputSchema is not "
                               f"a JSON Schema: {exc.message}", {"field": "outputSchema"}) from None
        return req

    async def start(self, p: RunStartParams, *, session: Subscriber | None = None,
                    rerun_of: str | None = None, layers: tuple[Options, ...] = (),
                    confine: Callable[[str], object] | None = None) -> Run:
        """Queue a run. ``confine`` checks the run's effective cwd (after profile,
        conversation and rerun defaults) for a client confined to workspace grants."""
        conv = None
        if p.conversation_id is not None:
            conv = await self.conversation_for_send(p.conversation_id, p.provider)
            layers = (*layers, conv.defaults or Options(provider=conv.provider))
        profile_defaults = await self.profile_defaults(p.profile)
        req = self.merge(p, *layers, profile_defaults, profile=p.profile)
        if confine is not None:
            confine(req.cwd)
            for path in [*(req.harness.add_dirs or []), *(req.harness.images or [])] \
                    if req.harness else []:
                confine(path)
        if conv is not None and req.provider != conv.provider:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"conversation {conv.conversation_id} is "
                           f"a {conv.provider} conversation", {"field": "provider"})
        if req.executor == "temporal":
            await self.check_remote(req)
        else:
            await self.refuse_blocked(req.provider)
        capacity = self.cfg.queue_capacity
        run_id = "run_" + secrets.token_hex(6)

        def insert(c: Any) -> Run:
            if repo.count_queued(c) >= capacity:
                raise RpcError(ErrorCode.QUEUE_FULL, f"the run queue is full ({capacity} queued, "
                               "runs.queue_capacity); wait for runs to finish or cancel some",
                               {"capacity": capacity})
            return repo.insert(c, run_id, req, conversation_id=conv.conversation_id if conv
                               else None, rerun_of=rerun_of,
                               session_id=conv.session_id if conv else None)

        run = await self._store().write(insert)
        if session is not None:
            self.subscriptions.add(session, [run.run_id])
        self._enqueue(run)
        log.info("run_queued", run_id=run.run_id, provider=req.provider, priority=req.priority,
                 conversation_id=run.conversation_id)
        if conv is not None:
            self.on_conversation("messageSent", conv, run.run_id, session)
        return run

    async def conversation_for_send(self, conv_id: str, provider: str | None) -> Conversation:
        conv = await self._store().read(lambda c: repo.conv_get(c, conv_id))
        if conv is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no conversation {conv_id!r}",
                           {"conversationId": conv_id})
        if conv.archived:
            raise RpcError(ErrorCode.CONFLICT, f"conversation {conv_id} is archived; start a "
                           "new one", {"conversationId": conv_id})
        if provider is not None and provider != conv.provider:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"conversation {conv_id} is a "
                           f"{conv.provider} conversation; it cannot continue with {provider}",
                           {"field": "provider"})
        return conv

    async def get(self, run_id: str) -> Run:
        run = await self._store().read(lambda c: repo.get(c, run_id))
        if run is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id!r}; `codexctl runs ls` lists "
                           "them", {"runId": run_id})
        return run

    def active_cwds(self) -> list[tuple[str, str]]:
        """(run id, cwd) of every run executing now."""
        return [(run_id, a.run.request.cwd) for run_id, a in self.active.items()]

    async def cancel(self, run_id: str, by: str) -> Run:
        if self.interactive is not None and run_id in self.interactive.live:
            return await self.interactive.end(run_id, by, cancel=True)
        for _ in range(100):
            run = await self.get(run_id)
            if run.status not in ("queued", "running"):
                raise RpcError(ErrorCode.ALREADY_RESOLVED, f"run {run_id} has already ended "
                               f"({run.status})", {"status": run.status})
            if run_id in self.active or run_id in self.waiting:
                break
            # Between two states (its row is written, the queue does not hold it yet, or it
            # just ended): look again in a moment.
            await trio.sleep(0.01)
        active = self.active.get(run_id)
        if active is not None and active.run.request.executor == "temporal":
            active.canceled_by = by
            try:
                await self.remote.cancel(run_id, by)
            except ExecutorUnavailable as exc:
                raise RpcError(ErrorCode.EXECUTOR_UNAVAILABLE, f"cannot cancel run {run_id} "
                               f"now: {exc}", {"runId": run_id}) from None
            with trio.move_on_after(self.cfg.cancel_grace_seconds + 30):
                await active.done.wait()
            return await self.get(run_id)
        if active is not None:
            active.canceled_by = by
            active.scope.cancel()
            with trio.move_on_after(self.cfg.cancel_grace_seconds + 10):
                await active.done.wait()
            return await self.get(run_id)
        if self.waiting.pop(run_id, None) is None:
            raise RpcError(ErrorCode.CONFLICT, f"run {run_id} is changing state; retry the "
                           "cancel", {"status": run.status})
        return await self.log.final(run_id, "run.canceled", {"by": by, "while": "queued"},
                                 status="canceled", reason="canceled", finished_at=now_ms(),
                                 next_attempt_at=None) or run

    async def pause(self, provider: str | None, reason: str) -> dict[str, str]:
        """Hold a provider's lane (every lane for None): queued runs wait, running ones go on."""
        providers_ = [provider] if provider else list(providers.PROVIDERS)
        at = now_ms()

        def write(c: Any) -> tuple[dict[str, str], dict[str, int]]:
            for p in providers_:
                repo.lane_pause(c, p, reason, at)  # by hand: until resumed by hand
            return repo.lanes_paused(c), repo.lanes_resume_at(c)

        self.paused, self.paused_until = await self._store().write(write)
        log.info("queue_lane_paused", providers=providers_, reason=reason)
        return self.paused

    async def resume(self, provider: str | None) -> dict[str, str]:
        def write(c: Any) -> tuple[dict[str, str], dict[str, int]]:
            repo.lane_resume(c, provider)
            return repo.lanes_paused(c), repo.lanes_resume_at(c)

        self.paused, self.paused_until = await self._store().write(write)
        log.info("queue_lane_resumed", provider=provider or "all")
        self._wake.set()
        self.on_lanes_changed()
        return self.paused

    async def limit_reached(self, provider: str, limit: limits.Limit) -> int:
        """Pause ``provider``'s lane until the limit resets; returns when (Unix ms). A lane a
        person paused stays paused by hand; a later reset extends the pause."""
        reset = limit.reset_at or now_ms() + int(self.cfg.limit_pause_seconds * 1000)
        if provider in self.paused and provider not in self.paused_until:
            return reset
        # A reset already past (clocks apart, a rounded time): wait a moment, not a hot loop.
        reset = max(reset, self.paused_until.get(provider, 0), now_ms() + 2000)
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(reset / 1000))
        reason = (f"usage limit: resumes at {when}" if limit.reset_at else
                  f"rate limited (no reset time given): resumes at {when}")
        at = now_ms()

        def write(c: Any) -> tuple[dict[str, str], dict[str, int]]:
            repo.lane_pause(c, provider, reason, at, reset)
            return repo.lanes_paused(c), repo.lanes_resume_at(c)

        self.paused, self.paused_until = await self._store().write(write)
        log.warning("queue_lane_paused", provider=provider, reason=reason, resume_at=reset,
                    kind="usageLimit", source=limit.source or None)
        self._wake.set()
        return reset

    async def _resume_due_lanes(self, now: int) -> None:
        for provider, at in sorted(self.paused_until.items()):
            if at <= now:
                why = self.paused.get(provider, "usage limit")
                await self.resume(provider)
                self.on_lane_resumed(provider, f"the usage limit reset ({why})")

    async def _set(self, run_id: str, **fields: Any) -> Run | None:
        run: Run | None = await self._store().write(
            lambda c: repo.update(c, run_id, **fields))
        return run

    # ---------------------------------------------------------------------------- queue

    async def _queue_loop(self) -> None:
        while True:
            now = now_ms()
            if self.paused_until:
                await self._resume_due_lanes(now)
            running: dict[str, int] = {}
            for a in self.active.values():
                running[a.run.request.provider] = running.get(a.run.request.provider, 0) + 1
            eligible = [w for w in self.waiting.values() if w.provider not in self.paused]
            chosen = q.pick(eligible, running, now_ms=now,
                            aging_seconds=self.cfg.aging_seconds,
                            max_concurrent=self.cfg.max_concurrent,
                            max_per_provider=self.cfg.max_per_provider)
            for w in chosen:
                del self.waiting[w.run_id]
                assert self._nursery is not None
                self._picked += 1
                active = _Active(run=w.payload, order=self._picked)
                self.active[w.run_id] = active
                if w.payload.request.executor == "temporal":
                    self._nursery.start_soon(self._execute_remote, active, False)
                else:
                    self._nursery.start_soon(self._execute, active)
            wake_at = q.next_wake_ms(eligible, now, self.cfg.aging_seconds)
            if self.paused_until:
                soonest = min(self.paused_until.values())
                wake_at = soonest if wake_at is None else min(wake_at, soonest)
            timeout = (wake_at - now) / 1000 if wake_at else float("inf")
            with trio.move_on_after(max(timeout, 0)):
                await self._wake.wait()
            self._wake = trio.Event()

    # ------------------------------------------------------------------------ execution

    async def _execute(self, active: _Active) -> None:
        run = active.run
        req = run.request
        run_id = run.run_id
        started = now_ms()
        result: Attempt | None = None
        try:
            run = await self._set(run_id, status="running", attempt=run.attempt + 1,
                                  started_at=run.started_at or started,
                                  next_attempt_at=None) or run
            active.run = run
            self.log.set_attempt(run_id, run.attempt)
            timeout = (req.harness.timeout_ms / 1000 if req.harness and req.harness.timeout_ms
                       else req.timeout_seconds)
            with active.scope:
                with trio.move_on_after(timeout) as timer:
                    result = await self.executor.attempt(run)
                if timer.cancelled_caught:
                    result = Attempt("failed", reason="timeout",
                                      error=f"timed out after {timeout:g} s; the process tree "
                                            "was killed")
            if result is None:  # canceled by run/cancel
                result = Attempt("canceled", reason="canceled")
        except Exception as exc:  # the run is the unit: it fails, the queue goes on
            message = self._faults.record("run", run_id, exc)
            result = Attempt("failed", reason="internal", error=f"internal error: {message}")
        finally:
            with trio.CancelScope(shield=True):
                if result is None:  # the daemon is stopping
                    result = Attempt("interrupted", reason="daemonStopped",
                                      error="codexd stopped during this run")
                await self._settle(active, result)
                self._release(active)

    def _release(self, active: _Active) -> None:
        """The run's execution is over. Only our own entry goes: a retry may already have
        been picked up again, and that execution is the run's now."""
        if self.active.get(active.run.run_id) is active:
            del self.active[active.run.run_id]
        active.done.set()
        self._wake.set()

    async def _execute_remote(self, active: _Active, reattach: bool) -> None:
        """A run on the fleet: its workflow holds attempts, retries and worker losses; this
        follows it, stores its events and settles the run as a local one is settled."""
        run = active.run
        run_id, req = run.run_id, run.request
        result: Attempt | None = None
        stopping = False

        async def on_state(state: RunState) -> None:
            current = active.run
            if state.phase != "running" or (state.attempt == current.attempt
                                             and current.status == "running"
                                             and state.worker == current.worker):
                return
            fields: dict[str, Any] = {"attempt": state.attempt, "worker": state.worker,
                                      "started_at": current.started_at or now_ms(),
                                      "next_attempt_at": None}
            if current.status != "running":
                fields["status"] = "running"
            active.run = await self._set(run_id, **fields) or current
            self.log.set_attempt(run_id, state.attempt)
            self.log.emit(run_id, "run.attempt_started", {
                "attempt": state.attempt, "worker": state.worker, "executor": "temporal"})

        try:
            timeout = (req.harness.timeout_ms / 1000 if req.harness and req.harness.timeout_ms
                       else req.timeout_seconds)
            result = await self.remote.execute(run, attempt_timeout=timeout, reattach=reattach,
                                               on_state=on_state, order=active.order)
            await self._store().write(lambda c: repo.remote_drop(c, run_id))
        except ExecutorUnavailable as exc:
            await self._wait_for_executor(active, str(exc))
            return
        except trio.Cancelled:
            stopping = True  # the daemon is stopping: the run goes on, followed at start
            raise
        except Exception as exc:
            message = self._faults.record("run", run_id, exc)
            result = Attempt("failed", reason="internal", error=f"internal error: {message}")
        finally:
            with trio.CancelScope(shield=True):
                if result is not None and not stopping:
                    self._unavailable.discard(run_id)
                    await self._settle(active, result)
                self._release(active)

    async def _wait_for_executor(self, active: _Active, why: str) -> None:
        """The Temporal server is away at dispatch: the run goes back to the queue (it says
        so once) and is tried again in a while; local runs are not held up."""
        run_id = active.run.run_id
        if run_id not in self._unavailable:
            self._unavailable.add(run_id)
            self.log.emit(run_id, "run.warning", {
                "message": f"waiting for the Temporal server: {why}", "reason":
                "executorUnavailable"})
            log.warning("run_waits_for_temporal", run_id=run_id, error=why)
        updated = await self._set(run_id, next_attempt_at=now_ms() + int(
            self.cfg.executor.connect_timeout_seconds * 2000),
            reason="executorUnavailable", error=why)
        if updated is not None:
            self._enqueue(updated)

    async def check_remote(self, req: RunRequest) -> None:
        """run/start with the temporal executor: a clear error now, never a hang, when the
        server cannot be reached or the run cannot go there."""
        if req.env:
            raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: env cannot be sent to "
                           "the temporal executor (its values would be stored in Temporal's "
                           "history); set them in the worker's environment, or run locally",
                           {"field": "env"})
        try:
            await self.remote.client()
        except ExecutorUnavailable as exc:
            raise RpcError(ErrorCode.EXECUTOR_UNAVAILABLE, f"{exc}; nothing was queued",
                           {"executor": "temporal",
                            "address": self.cfg.executor.address}) from None

    async def _settle(self, active: _Active, res: Attempt) -> None:
        run, req, out = active.run, active.run.request, res.outcome
        run_id = run.run_id
        fields: dict[str, Any] = {"exit_code": res.exit_code}
        if out.session_id:
            fields["session_id"] = self.log.redact(run_id, out.session_id)
        if res.status == "failed" and res.resume_rejected and run.session_id:
            self.log.emit(run_id, "run.warning", {"message": f"the CLI rejected session "
                       f"{run.session_id}; retrying once without resume"})
            await self.log.drain()
            await self._set(run_id, status="queued", session_id=None, **{
                k: v for k, v in fields.items() if k != "session_id"})
            self._enqueue(await self.get(run_id))
            return
        if res.status == "failed" and res.limit is not None and \
                await self._after_limit(active, res, fields):
            return
        retries_left = run.attempt - run.limit_resumes <= req.max_retries
        if res.status == "failed" and res.retryable and retries_left:
            delay = min(req.retry_backoff_ms * 2 ** (run.attempt - 1), 600_000)
            self.log.emit(run_id, "run.warning", {
                "message": f"attempt {run.attempt} failed ({res.error}); retrying in {delay} ms",
                "attempt": run.attempt, "retryInMs": delay})
            await self.log.drain()
            updated = await self._set(run_id, status="queued", next_attempt_at=now_ms() + delay,
                                      error=res.error, reason=res.reason, **fields)
            if updated is not None:
                self._enqueue(updated)
            log.info("run_retry", run_id=run_id, attempt=run.attempt, delay_ms=delay)
            return
        text = out.result_text if out.result_text is not None else out.last_message
        data: dict[str, Any]
        if res.status == "succeeded":
            kind, data = "run.completed", {"resultText": text, "sessionId": out.session_id,
                                           "usage": out.usage}
        elif res.status == "canceled":
            kind, data = "run.canceled", {"by": active.canceled_by or "client",
                                          "while": "running"}
        elif res.status == "interrupted":
            kind, data = "run.interrupted", {"message": res.error}
        else:
            kind, data = "run.failed", {"reason": res.reason, "message": res.error,
                                        "exitCode": res.exit_code, "attempts": run.attempt}
        if res.artifacts is not None:
            items = [(k, n, m, self.log.redact(run_id, c)) for k, n, m, c in res.artifacts]
            if items:
                await self._store().write(lambda c: repo.put_artifacts(c, run_id, items))
        elif res.status in ("succeeded", "failed"):
            await self._store_artifacts(run_id, req.cwd, text, out)
        final = await self.log.final(
            run_id, kind, data, status=res.status, reason=res.reason, error=res.error,
            result_text=self.log.redact(run_id, text) if text else None,
            finished_at=now_ms(), **fields)
        if run.conversation_id and out.session_id:
            sid = out.session_id
            conv = await self._store().write(lambda c: repo.conv_update(
                c, run.conversation_id or "", session_id=sid))
            if conv is not None:
                self.on_conversation("sessionUpdated", conv, None, None)
        log.info("run_finished", run_id=run_id, status=res.status, reason=res.reason,
                 attempts=run.attempt, exit_code=res.exit_code,
                 duration_ms=(final.finished_at or 0) - (final.started_at or 0) if final else None)

    async def _store_artifacts(self, run_id: str, cwd: str, text: str | None,
                               out: providers.Outcome) -> None:
        """The run's artifacts, redacted; a failure to collect them is the run's fault only
        as a warning (the run's result stands)."""
        with self._faults.boundary("run", f"{run_id} artifacts"):
            items = await trio.to_thread.run_sync(lambda: artifacts.collect(
                text=text, structured=out.structured, has_structured=out.has_structured,
                changed=out.changed, todos=out.todos, cwd=cwd))
            clean = [(k, n, m, self.log.redact(run_id, c)) for k, n, m, c in items]
            if clean:
                await self._store().write(lambda c: repo.put_artifacts(c, run_id, clean))

    async def _after_limit(self, active: _Active, res: Attempt, fields: dict[str, Any]) -> bool:
        """Pause the lane; re-queue the run to continue after the reset (True) when
        ``runs.on_usage_limit`` and ``runs.max_limit_resumes`` allow."""
        run, limit = active.run, res.limit
        assert limit is not None
        reset = await self.limit_reached(run.request.provider, limit)
        resumes = (self.cfg.on_usage_limit == "resume"
                   and run.limit_resumes < self.cfg.max_limit_resumes)
        self.log.emit(run.run_id, "run.usage_limited", {
            "message": res.error, "resetAt": reset, "resetKnown": limit.reset_at is not None,
            "source": limit.source or None, "resumes": resumes,
            "sessionId": res.outcome.session_id})
        if not resumes:
            return False
        await self.log.drain()
        updated = await self._set(run.run_id, status="queued", next_attempt_at=reset,
                                  error=res.error, reason="usageLimit",
                                  limit_resumes=run.limit_resumes + 1, **fields)
        if updated is not None:
            self._enqueue(updated)
        log.info("run_waits_for_limit", run_id=run.run_id, resume_at=reset)
        return True

    # ---------------------------------------------------------------------- capabilities

    async def capabilities(self, refresh: bool) -> list[Capability]:
        return [await self.catalog.capability(provider, self.configured(provider),
                                              refresh=refresh)
                for provider in providers.PROVIDERS]

    def configured(self, provider: str) -> str:
        return self.cfg.codex_command if provider == "codex" else self.cfg.claude_command

    async def installed_cli(self, provider: str) -> tuple[str | None, Snapshot | None]:
        """The provider's CLI and what it offers: (None, None) when it is not installed, a
        None snapshot when it could not be run; CLI_UNSUPPORTED for a blocked one."""
        exe = await trio.to_thread.run_sync(providers.find_cli, provider,
                                            self.configured(provider), providers.ROOT)
        if exe is None:
            return None, None
        try:
            snap = await self.catalog.snapshot(provider, exe)
        except OSError:
            return exe, None
        if snap.status == "blocked":
            raise RpcError(ErrorCode.CLI_UNSUPPORTED, blocked_message(snap),
                           {"provider": provider, "path": snap.path, "version": snap.version,
                            "reasons": list(snap.reasons)})
        return exe, snap

    async def refuse_blocked(self, provider: str) -> None:
        """A clear error now, not a failed run later, for a CLI codexd cannot run (a missing
        one fails the run as cliMissing, with the install hint, when it starts)."""
        await self.installed_cli(provider)
