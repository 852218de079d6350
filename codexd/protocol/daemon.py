"""The session and ``daemon/*`` methods."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import NoParams, Params, Struct, method, notification

PROTOCOL_VERSION = 1


class ClientInfo(Params, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    version: Annotated[str, msgspec.Meta(max_length=200)] = ""
    title: str | None = None


class InitializeParams(Params, frozen=True):
    client_info: ClientInfo
    capabilities: dict[str, object] | None = None


class InitializeResult(Struct, frozen=True):
    server: str
    version: str
    protocol_version: int
    pid: int
    started_at: str
    connection_id: int


class MethodCount(Struct, frozen=True):
    calls: int
    errors: int


class DaemonStatus(Struct, frozen=True):
    version: str
    protocol_version: int
    pid: int
    started_at: str
    uptime_seconds: float
    socket: str
    db_path: str
    state_dir: str
    config_file: str | None
    clients_connected: int
    clients_total: int
    methods: dict[str, MethodCount]


class CheckResult(Struct, frozen=True):
    ok: bool
    detail: str | None = None


class DaemonHealth(Struct, frozen=True):
    ok: bool
    checks: dict[str, CheckResult]


class ShutdownParams(Params, frozen=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ShutdownResult(Struct, frozen=True):
    stopping: bool
    grace_seconds: float


class ShuttingDown(Struct, frozen=True):
    reason: str
    grace_seconds: float


class Initialized(NoParams, frozen=True):
    pass


INITIALIZE = method(
    "initialize",
    InitializeParams,
    InitializeResult,
    "Open the session; must be the first request on a connection.",
)
DAEMON_STATUS = method(
    "daemon/status", NoParams, DaemonStatus, "Version, paths, uptime, clients and call counts."
)
DAEMON_HEALTH = method(
    "daemon/health", NoParams, DaemonHealth, "Whether the daemon and its store are working."
)
DAEMON_SHUTDOWN = method(
    "daemon/shutdown", ShutdownParams, ShutdownResult, "Answer, then stop the daemon gracefully."
)

INITIALIZED = notification(
    "initialized", Initialized, "Client → daemon: the client is ready for notifications."
)
SHUTTING_DOWN = notification(
    "daemon/shuttingDown", ShuttingDown, "The daemon is stopping; reconnect after it restarts."
)
