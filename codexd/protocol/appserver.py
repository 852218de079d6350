"""``daemon/appServer/*``: the supervised `codex app-server`."""

from __future__ import annotations

from typing import Literal

import msgspec

from codexd.protocol.base import MethodSpec, NoParams, Struct, method, notification

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


# ------------------------------------------------------ the app-server wire (app-server.sock)


class WireClientInfo(msgspec.Struct, frozen=True):
    name: str = ""
    version: str = ""
    title: str | None = None


class WireCapabilities(msgspec.Struct, frozen=True, rename="camel"):
    """What an official client may send (kept lenient: unknown flags are ignored), plus
    codexd's opt-in: ``codexdEvents`` adds ``seq``/``epoch`` to every notification."""

    codexd_events: bool = False


class WireInitializeParams(msgspec.Struct, frozen=True):
    """``initialize`` as the app-server takes it: lenient, like the app-server itself."""

    clientInfo: WireClientInfo = WireClientInfo()
    capabilities: WireCapabilities | None = None


#: ``initialize`` on the app-server wire: answered with the upstream app-server's own result
#: (``userAgent``, ``codexHome``, ``platformFamily``, ``platformOs``). Not in the registry of
#: codexd's methods: on that socket it replaces codexd's ``initialize``.
WIRE_INITIALIZE: MethodSpec[WireInitializeParams, msgspec.Raw] = MethodSpec(
    "initialize", WireInitializeParams, msgspec.Raw,
    "Open a session on the app-server wire; the result is the app-server's own.")
