"""Handlers for ``initialize`` and ``daemon/*``."""

from __future__ import annotations

import functools
import os
import time

import msgspec
import trio

from codexd import __version__
from codexd.api.registry import handles
from codexd.appserver.states import State
from codexd.appserver.supervisor import AppServer
from codexd.errors import ErrorCode, RpcError
from codexd.protocol import NoParams
from codexd.protocol.appserver import WIRE_INITIALIZE, WireInitializeParams
from codexd.protocol.daemon import (
    DAEMON_GC,
    DAEMON_HEALTH,
    DAEMON_SHUTDOWN,
    DAEMON_STATUS,
    INITIALIZE,
    PROTOCOL_VERSION,
    CheckResult,
    DaemonHealth,
    DaemonStatus,
    FaultInfo,
    GcParams,
    GcResult,
    InitializeParams,
    InitializeResult,
    ReplayInfo,
    ShutdownParams,
    ShutdownResult,
    StartupTiming,
)
from codexd.roles import allows
from codexd.session import ClientSession, SessionInput, next_state
from codexd.statemachine import BadTransition
from codexd.store import daemon_runs, iso_time


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
    )


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


@handles(DAEMON_SHUTDOWN)
def shutdown(session: ClientSession, params: ShutdownParams) -> ShutdownResult:
    d = session.ctx
    reason = params.reason or f"requested by {session.client_name or 'a client'}"
    d.request_shutdown(reason)
    return ShutdownResult(stopping=True, grace_seconds=d.config.daemon.shutdown_grace_seconds)
