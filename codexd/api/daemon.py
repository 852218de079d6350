"""Handlers for ``initialize`` and ``daemon/*``."""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING

import msgspec
import trio

from codexd import __version__
from codexd.api.registry import handles
from codexd.appserver.states import State
from codexd.appserver.supervisor import AppServer
from codexd.errors import ErrorCode, RpcError
from codexd.metrics import BOUNDS_MS, WINDOWS
from codexd.protocol import NoParams
from codexd.protocol.appserver import WIRE_INITIALIZE, WireInitializeParams
from codexd.protocol.daemon import (
    DAEMON_DIAGNOSTICS,
    DAEMON_GC,
    DAEMON_HEALTH,
    DAEMON_METRICS,
    DAEMON_SHUTDOWN,
    DAEMON_STATUS,
    INITIALIZE,
    PROTOCOL_VERSION,
    AppServerGauges,
    CallFingerprint,
    CheckResult,
    DaemonHealth,
    DaemonMetrics,
    DaemonStatus,
    DiagnosticsParams,
    DiagnosticsResult,
    FaultInfo,
    GcParams,
    GcResult,
    InitializeParams,
    InitializeResult,
    MethodMetrics,
    MetricsGauges,
    ReplayInfo,
    ShutdownParams,
    ShutdownResult,
    StartupTiming,
    WindowStats,
)
from codexd.roles import allows
from codexd.session import ClientSession, SessionInput, next_state

if TYPE_CHECKING:
    from codexd.context import DaemonContext
from codexd.statemachine import BadTransition
from codexd.store import daemon_runs, iso_time, now_iso


@handles(INITIALIZE, during_shutdown=True)
def initialize(session: ClientSession, params: InitializeParams) -> InitializeResult:
    try:
        session.state = next_state(session.state, SessionInput.INITIALIZE)
    except BadTransition:
        raise RpcError(
            ErrorCode.ALREADY_INITIALIZED, "this connection is already initialized"
        ) from None
    session.client_name = params.client_info.name
    session.client_version = params.client_info.version
    # Server requests go to clients that answer them and may (an observer may not).
    session.server_requests = bool(params.capabilities and params.capabilities.server_requests
                                   and allows(session.role, "approver"))
    d = session.ctx
    # Subscriptions first: the replay below is filtered by them, as live delivery is.
    d.events.threads.add(session, params.thread_ids)
    if params.all_threads:
        d.events.threads.follow_all(session)
    d.runs.subscriptions.add(session, params.run_ids)
    if params.all_runs:
        d.runs.subscriptions.follow_all(session)
    replay = None
    if params.after_seq is not None or params.epoch is not None:
        # Missed events are held with anything newer and flushed at `initialized`, in order;
        # one page at most (what the held list and half the queue take), the rest by paging.
        page = d.events.replay(params.after_seq or 0, params.epoch, session,
                               max_count=max(1, d.config.rpc.pending_notifications // 2),
                               max_bytes=session.out.limit // 2)
        session.hold(page.events)
        replay = ReplayInfo(gap=page.gap, count=len(page.events), more=page.more,
                            next_after_seq=page.next_after_seq if page.more else None)
    init = d.appserver.init_result
    return InitializeResult(
        server="codexd",
        version=__version__,
        protocol_version=PROTOCOL_VERSION,
        pid=os.getpid(),
        started_at=d.started_at_iso,
        connection_id=session.id,
        epoch=d.events.epoch,
        last_seq=d.events.seq,
        app_server_state=d.appserver.state.value,
        user_agent=init.get("userAgent"),
        codex_home=init.get("codexHome"),
        platform_os=init.get("platformOs"),
        platform_family=init.get("platformFamily"),
        replay=replay,
    )


@handles(WIRE_INITIALIZE, during_shutdown=True, wire=True)
async def wire_initialize(session: ClientSession, params: WireInitializeParams) -> msgspec.Raw:
    """``initialize`` on the app-server wire: the client sees an app-server. The answer is the
    upstream's own result, so it waits (bounded) for the app-server to be ready."""
    d = session.ctx
    await d.appserver.wait_ready(trio.current_time() + d.config.appserver.ready_wait_seconds)
    try:
        session.state = next_state(session.state, SessionInput.INITIALIZE)
    except BadTransition:
        raise RpcError(ErrorCode.INVALID_REQUEST, "Already initialized") from None
    session.client_name = params.clientInfo.name or "app-server client"
    session.client_version = params.clientInfo.version
    # An app-server client always answers server requests; codexd's stamps only if asked.
    session.server_requests = True
    session.stamps = bool(params.capabilities and params.capabilities.codexd_events)
    result = dict(d.appserver.init_result)
    agent = result.get("userAgent")
    if isinstance(agent, str) and agent.startswith("codexd/") and params.clientInfo.name:
        # The app-server names the client first in its user agent: as it would for this one.
        result["userAgent"] = params.clientInfo.name + agent[len("codexd"):]
    return msgspec.Raw(msgspec.json.encode(result))


@handles(DAEMON_STATUS, during_shutdown=True)
def status(session: ClientSession, _params: NoParams) -> DaemonStatus:
    d = session.ctx
    last = d.faults.last
    return DaemonStatus(
        version=__version__,
        protocol_version=PROTOCOL_VERSION,
        pid=os.getpid(),
        started_at=d.started_at_iso,
        uptime_seconds=round(time.monotonic() - d.started_monotonic, 3),
        socket=str(d.socket_path),
        app_server_socket=str(d.wire_socket_path) if d.wire_socket_path else None,
        control_socket=str(d.control_socket_path) if d.control_socket_path else None,
        websocket=d.frontends.url if d.frontends else None,
        db_path=str(d.db_path),
        state_dir=str(d.state_dir),
        config_file=str(d.config_source) if d.config_source else None,
        clients_connected=len(d.sessions),
        clients_total=d.stats.clients_total,
        methods=d.stats.methods(),
        secret_store=d.runs.secrets.describe(),
        faults=dict(sorted(d.faults.counts.items())) if d.faults.counts else {},
        last_fault=FaultInfo(kind=last.kind, unit=last.unit, message=last.message,
                             at=iso_time(last.at)) if last else None,
        previous_run_unclean=d.previous_run_unclean,
        automations=d.automations.mode,
        startup=StartupTiming(**d.startup),
        lanes_paused=dict(d.runs.paused), lanes_paused_until=dict(d.runs.paused_until),
    )


@handles(DAEMON_METRICS, during_shutdown=True)
def metrics(session: ClientSession, _params: NoParams) -> DaemonMetrics:
    return metrics_snapshot(session.ctx)


def metrics_snapshot(d: DaemonContext) -> DaemonMetrics:
    """What ``daemon/metrics`` answers and ``/metrics`` renders."""
    now = time.perf_counter()
    m = d.metrics
    methods: dict[str, MethodMetrics] = {}
    for name, owner in m.methods():
        calls, errors, sum_ms, buckets, codes = m.totals(name)
        windows = {}
        for wname, seconds in WINDOWS:
            win = m.window(name, seconds, now)
            windows[wname] = WindowStats(calls=win.calls, errors=win.errors,
                                         mean_ms=win.mean_ms, p50_ms=win.quantile(0.5),
                                         p95_ms=win.quantile(0.95), p99_ms=win.quantile(0.99))
        methods[name] = MethodMetrics(owner=owner, calls=calls, errors=errors,
                                      sum_ms=round(sum_ms, 3), buckets=buckets,
                                      error_codes={str(k): v for k, v in sorted(codes.items())},
                                      windows=windows)
    by_transport: dict[str, int] = {}
    for s in d.sessions:
        kind = getattr(getattr(s, "transport", None), "kind", "other")
        by_transport[kind] = by_transport.get(kind, 0) + 1
    queued: dict[str, int] = {}
    for w in d.runs.waiting.values():
        queued[w.provider] = queued.get(w.provider, 0) + 1
    running: dict[str, int] = {}
    for active in d.runs.active.values():
        provider = active.run.request.provider
        running[provider] = running.get(provider, 0) + 1
    db, wal = _size(d.db_path), _size(d.db_path.with_name(d.db_path.name + "-wal"))
    a = d.appserver
    return DaemonMetrics(
        version=__version__, at=now_iso(),
        uptime_seconds=round(time.monotonic() - d.started_monotonic, 3),
        bucket_bounds_ms=list(BOUNDS_MS), methods=methods,
        gauges=MetricsGauges(
            clients_connected=len(d.sessions), clients_by_transport=dict(sorted(
                by_transport.items())),
            pending_approvals=d.approvals.pending_count,
            runs_queued=dict(sorted(queued.items())), runs_running=dict(sorted(running.items())),
            lanes_paused=sorted(d.runs.paused), terminals=len(d.terminals.terminals),
            automations_scheduled=len(d.automations.scheduler),
            scheduler_lag_ms=d.automations.scheduler.last_lag_ms,
            db_bytes=db, wal_bytes=wal, event_seq=d.events.seq),
        app_server=AppServerGauges(state=a.state.value if d.config.appserver.enabled
                                   else "disabled", generation=a.generation,
                                   restarts=a.restarts, breaker_open=a.state is State.FAILED,
                                   recent_failures=a.recent_failures),
        tokens={k: dict(sorted(v.items())) for k, v in sorted(m.tokens.items())},
        runs_finished={k: dict(sorted(v.items())) for k, v in sorted(m.runs_finished.items())},
        notifications={k: dict(sorted(v.items())) for k, v in sorted(m.notifications.items())},
        faults=dict(sorted(d.faults.counts.items())),
    )


def _size(path: os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@handles(DAEMON_HEALTH, during_shutdown=True)
async def health(session: ClientSession, _params: NoParams) -> DaemonHealth:
    d = session.ctx
    checks: dict[str, CheckResult] = {}
    # The writer must be free and the database writable within a deadline.
    with trio.move_on_after(2) as scope:
        try:
            await d.store.probe_write(
                functools.partial(daemon_runs.probe, now=int(time.time())))
            failed = d.store.last_write_error
            checks["store"] = CheckResult(ok=True) if failed is None else CheckResult(
                ok=False, detail=f"the last write failed: {failed}; free disk space under "
                                 f"{d.state_dir} (nothing has been written since)")
        except Exception as exc:
            checks["store"] = CheckResult(
                ok=False, detail=f"{exc}; writes fail (free disk space under {d.state_dir}, "
                                 "check its permissions)")
    if scope.cancelled_caught:
        checks["store"] = CheckResult(ok=False, detail="the database writer did not answer in 2 s")
    # Without its socket file nobody new can connect (someone deleted it, or a tmp cleaner did).
    if d.socket_path.is_socket():
        checks["socket"] = CheckResult(ok=True)
    else:
        checks["socket"] = CheckResult(
            ok=False, detail=f"{d.socket_path} is missing; restart the daemon to recreate it"
        )
    if d.config.appserver.enabled:
        checks["appserver"] = _appserver_check(d.appserver)
    if d.shutting_down:
        checks["daemon"] = CheckResult(ok=False, detail="shutting down")
    return DaemonHealth(ok=all(c.ok for c in checks.values()), checks=checks)


def _appserver_check(appserver: AppServer) -> CheckResult:
    state = appserver.state
    if state is State.READY:
        return CheckResult(ok=True)
    parts = [f"the app-server is {state.value}"]
    if appserver.last_error:
        parts.append(f"last error: {appserver.last_error}")
    tail = [line for line in appserver.stderr.lines if line.strip()][-3:]
    if tail:
        parts.append("stderr: " + " | ".join(tail))
    if state is State.FAILED:
        parts.append("the breaker is open: fix the cause, then `codexctl appserver restart`")
    elif state is State.BACKOFF:
        parts.append("restarting with backoff")
    return CheckResult(ok=False, detail="; ".join(parts))


@handles(DAEMON_GC)
async def gc(session: ClientSession, params: GcParams) -> GcResult:
    return await session.ctx.retention.collect(dry_run=params.dry_run)


@handles(DAEMON_DIAGNOSTICS, ordered=False)
async def diagnostics(session: ClientSession, params: DiagnosticsParams) -> DiagnosticsResult:
    from codexd import config as config_mod
    from codexd import diagnostics as diag
    from codexd import logs
    from codexd.runs.redact import redact

    d = session.ctx
    secrets = [*d.runs.secrets.known(), *config_mod.secret_values(d.config)]
    encode = msgspec.json.Encoder()

    def line(event: dict[str, object]) -> str:
        try:
            text = encode.encode(event).decode()
        except (TypeError, msgspec.EncodeError):
            text = encode.encode({k: repr(v) for k, v in event.items()}).decode()
        return redact(text, secrets)

    events = list(logs.RECENT)[-params.log_lines:] if params.log_lines else []
    calls = list(d.metrics.recent)[-params.calls:] if params.calls else []

    return DiagnosticsResult(
        log_tail=[line(e) for e in events],
        app_server_stderr=[redact(t, secrets) for t in d.appserver.stderr.lines],
        recent_calls=[CallFingerprint(at=iso_time(at), method=m, owner=o,
                                      duration_ms=round(ms, 3), code=code)
                      for at, m, o, ms, code in calls],
        tables=await d.store.read(diag.table_sizes),
        versions=diag.versions(d.appserver.version),
    )


@handles(DAEMON_SHUTDOWN)
def shutdown(session: ClientSession, params: ShutdownParams) -> ShutdownResult:
    d = session.ctx
    reason = params.reason or f"requested by {session.client_name or 'a client'}"
    d.request_shutdown(reason)
    return ShutdownResult(stopping=True, grace_seconds=d.config.daemon.shutdown_grace_seconds)
