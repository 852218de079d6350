"""Handlers for ``initialize`` and ``daemon/*``."""

from __future__ import annotations

import os
import time

import trio

from codexd import __version__
from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol import NoParams
from codexd.protocol.daemon import (
    DAEMON_HEALTH,
    DAEMON_SHUTDOWN,
    DAEMON_STATUS,
    INITIALIZE,
    PROTOCOL_VERSION,
    CheckResult,
    DaemonHealth,
    DaemonStatus,
    FaultInfo,
    InitializeParams,
    InitializeResult,
    ReplayInfo,
    ShutdownParams,
    ShutdownResult,
)
from codexd.statemachine import BadTransition
from codexd.store import iso_time
from codexd.transport.session import ClientSession, SessionInput, next_state


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
    session.server_requests = bool(params.capabilities and params.capabilities.server_requests)
    d = session.daemon
    replay = None
    if params.after_seq is not None or params.epoch is not None:
        # Missed events are held with anything newer and flushed at `initialized`, in order.
        events, gap = d.events.replay(params.after_seq or 0, params.epoch, session)
        session.hold(events)
        replay = ReplayInfo(gap=gap, count=len(events))
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


@handles(DAEMON_STATUS, during_shutdown=True)
def status(session: ClientSession, _params: NoParams) -> DaemonStatus:
    d = session.daemon
    last = d.faults.last
    return DaemonStatus(
        version=__version__,
        protocol_version=PROTOCOL_VERSION,
        pid=os.getpid(),
        started_at=d.started_at_iso,
        uptime_seconds=round(time.monotonic() - d.started_monotonic, 3),
        socket=str(d.socket_path),
        db_path=str(d.db_path),
        state_dir=str(d.state_dir),
        config_file=str(d.config_source) if d.config_source else None,
        clients_connected=len(d.sessions),
        clients_total=d.stats.clients_total,
        methods=d.stats.methods(),
        secret_store=d.runs.secrets.describe(),
        faults=dict(sorted(d.faults.counts.items())),
        last_fault=FaultInfo(kind=last.kind, unit=last.unit, message=last.message,
                             at=iso_time(last.at)) if last else None,
        previous_run_unclean=d.previous_run_unclean,
    )


@handles(DAEMON_HEALTH, during_shutdown=True)
async def health(session: ClientSession, _params: NoParams) -> DaemonHealth:
    d = session.daemon
    checks: dict[str, CheckResult] = {}
    # The writer must be free and the database writable within a deadline.
    with trio.move_on_after(2) as scope:
        try:
            await d.store.write(lambda conn: conn.execute("SELECT 1").fetchall())
            checks["store"] = CheckResult(ok=True)
        except Exception as exc:
            checks["store"] = CheckResult(ok=False, detail=str(exc))
    if scope.cancelled_caught:
        checks["store"] = CheckResult(ok=False, detail="the database writer did not answer in 2 s")
    # Without its socket file nobody new can connect (someone deleted it, or a tmp cleaner did).
    if d.socket_path.is_socket():
        checks["socket"] = CheckResult(ok=True)
    else:
        checks["socket"] = CheckResult(
            ok=False, detail=f"{d.socket_path} is missing; restart the daemon to recreate it"
        )
    if d.shutting_down:
        checks["daemon"] = CheckResult(ok=False, detail="shutting down")
    return DaemonHealth(ok=all(c.ok for c in checks.values()), checks=checks)


@handles(DAEMON_SHUTDOWN)
def shutdown(session: ClientSession, params: ShutdownParams) -> ShutdownResult:
    d = session.daemon
    reason = params.reason or f"requested by {session.client_name or 'a client'}"
    d.request_shutdown(reason)
    return ShutdownResult(stopping=True, grace_seconds=d.config.daemon.shutdown_grace_seconds)
