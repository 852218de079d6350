"""Error types and the one table of JSON-RPC error codes codexd uses.

Every code a client can receive is a member of :class:`ErrorCode`; docs/protocol.md documents each
one and a test keeps the two in step. Foreign exceptions (apsw, OS errors) are mapped to these at
the boundary where they occur, so a client sees a code and a clear message, never a traceback.

This module imports nothing from trio, apsw or structlog: the sans-IO rpc core depends on it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    """JSON-RPC error codes. Standard ones first, then codexd's own in -32000..-32099.

    -32001 is deliberately unused: the app-server answers "Server overloaded" with it, and codexd
    promises its clients never to pass that through, so the code must not mean anything else here.
    """

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603

    NOT_INITIALIZED = -32002
    ALREADY_INITIALIZED = -32003
    MESSAGE_TOO_LARGE = -32004
    SHUTTING_DOWN = -32005
    PEER_REFUSED = -32006
    TOO_MANY_CLIENTS = -32007
    CONFLICT = -32010
    NOT_FOUND = -32011
    APPSERVER_NOT_READY = -32030
    APPSERVER_RESTARTED = -32031
    APPSERVER_BUSY = -32032
    ALREADY_RESOLVED = -32040
    #: The connection's token role may not call this method (data.needs names the role).
    ROLE_REQUIRED = -32041
    READ_ONLY = -32050
    TOO_MANY_TERMINALS = -32051
    SPAWN_FAILED = -32052
    TERMINAL_EXITED = -32053
    QUEUE_FULL = -32060
    POLICY_DENIED = -32061
    #: A path outside every workspace grant (data.path, data.nearestGrant).
    OUTSIDE_WORKSPACE = -32070
    #: A tool codexd runs (git, rg) is not installed; the message names the package.
    TOOL_MISSING = -32071
    #: The installed provider CLI cannot be run (too old, or lacking what codexd reads);
    #: data.reasons says why.
    CLI_UNSUPPORTED = -32072
    #: The run's executor cannot be reached (the Temporal server); nothing was queued.
    EXECUTOR_UNAVAILABLE = -32073
    STORE_BUSY = -32020
    STORE_ERROR = -32021


class CodexdError(Exception):
    """Root of every exception codexd raises on purpose."""


class RpcError(CodexdError):
    """An error that is answered to a JSON-RPC peer as an error response.

    Attributes:
        code: the JSON-RPC error code.
        message: one sentence for a human, saying what went wrong and what to do.
        data: optional structured details (field names, current revision, limits).
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r}, data={self.data!r})"


class ConfigError(CodexdError):
    """The configuration file or an override is invalid; the message names the key."""


class StoreError(CodexdError):
    """The database could not do what was asked."""


class StoreBusy(StoreError):
    """The database stayed locked by another writer past the busy timeout."""


class SchemaTooNew(StoreError):
    """The database was written by a newer codexd than this one."""


class AlreadyRunning(CodexdError):
    """Another codexd holds the lock for this socket."""


_UNKNOWN_VARIANT = re.compile(r"unknown variant `([^`]*)`, expected one of (.*)", re.S)


def unknown_method(method: str, own: Iterable[str], upstream_error: str = "",
                   hint: str = "") -> RpcError:
    """-32601 for a method neither codexd nor the app-server knows, suggesting the closest names
    among codexd's own methods and the app-server's (read from its "unknown variant …, expected
    one of …" answer, which would otherwise list ~200 names as -32600); codexd's win ties."""
    own = sorted(own)
    upstream: list[str] = []
    if m := _UNKNOWN_VARIANT.search(upstream_error):
        upstream = [name for name in re.findall(r"`([^`]+)`", m.group(2)) if name not in own]
    scored = []
    for mine, names in ((True, own), (False, upstream)):
        for name in names:
            ratio = difflib.SequenceMatcher(None, method, name).ratio()
            if ratio >= 0.6:
                scored.append((-ratio, not mine, name))  # the closest first; codexd's on a tie
    close = [name for _r, _up, name in sorted(scored)[:5]]
    text = f"unknown method {method!r}{hint}"
    text += f"; did you mean {', '.join(close)}?" if close else ""
    text += " (docs/protocol.md lists codexd's methods)"
    return RpcError(ErrorCode.METHOD_NOT_FOUND, text, {"method": method, "suggestions": close})


def is_unknown_variant(method: str, message: str) -> bool:
    """Whether an app-server -32600 answer says it does not know ``method``."""
    m = _UNKNOWN_VARIANT.search(message)
    return m is not None and m.group(1) == method
