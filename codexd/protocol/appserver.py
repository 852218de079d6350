"""``daemon/appServer/*``: the supervised `codex app-server`."""

from __future__ import annotations

from typing import Literal

from codexd.protocol.base import NoParams, Struct, method, notification

AppServerState = Literal["stopped", "starting", "ready", "backoff", "failed"]


class AppServerStatus(Struct, frozen=True, omit_defaults=False):
    """Every field is always present (null when unknown), so clients need no defaults."""

    state: AppServerState
    enabled: bool
    command: list[str]
    pid: int | None = None
    version: str | None = None
    generation: int = 0
    restarts: int = 0
    recent_failures: int = 0
    last_exit_code: int | None = None
    last_error: str | None = None
    since: str | None = None
    next_start_at: str | None = None
    user_agent: str | None = None
    codex_home: str | None = None
    platform_os: str | None = None
    platform_family: str | None = None
    inflight: int = 0
    queued: int = 0
    stderr_tail: list[str] = []


class AppServerRestartResult(Struct, frozen=True):
    state: AppServerState
    generation: int


class AppServerStateChanged(Struct, frozen=True):
    state: AppServerState
    previous: AppServerState
    reason: str
    generation: int
    pid: int | None = None


APPSERVER_STATUS = method(
    "daemon/appServer/status", NoParams, AppServerStatus,
    "State, pid, version, restarts, last exit and stderr tail of the app-server.",
)
APPSERVER_RESTART = method(
    "daemon/appServer/restart", NoParams, AppServerRestartResult,
    "Restart the app-server now (also clears the failed state).",
)
APPSERVER_STATE_CHANGED = notification(
    "daemon/appServer/stateChanged", AppServerStateChanged,
    "The app-server changed state (starting, ready, backoff, failed, stopped).",
)
