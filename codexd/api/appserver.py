"""Handlers for ``daemon/appServer/*``."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol import NoParams
from codexd.protocol.appserver import (
    APPSERVER_RESTART,
    APPSERVER_STATUS,
    AppServerRestartResult,
    AppServerStatus,
)
from codexd.session import ClientSession


@handles(APPSERVER_STATUS, during_shutdown=True)
def status(session: ClientSession, _p: NoParams) -> AppServerStatus:
    return session.ctx.appserver.status()


@handles(APPSERVER_RESTART)
def restart(session: ClientSession, _p: NoParams) -> AppServerRestartResult:
    appserver = session.ctx.appserver
    if not appserver.cfg.enabled:
        raise RpcError(ErrorCode.APPSERVER_NOT_READY,
                       "the app-server is disabled (appserver.enabled = false in config.toml)")
    appserver.request_restart(f"requested by {session.client_name or 'a client'}")
    return AppServerRestartResult(state=appserver.state.value,
                                  generation=appserver.generation)
