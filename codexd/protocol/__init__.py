"""codexd's wire types: method and notification names with their params and result structs.

Used alike by the daemon, codexctl and the Python client. Importing this package registers every
method and notification in :data:`METHODS` and :data:`NOTIFICATIONS`.
"""

from codexd.protocol import (
    approvals,
    appserver,
    atoms,
    audit,
    automations,
    daemon,
    events,
    git,
    notify,
    runs,
    sessions,
    settings,
    terminal,
    tokens,
    workspace,
)
from codexd.protocol.base import (
    METHODS,
    NOTIFICATIONS,
    MethodSpec,
    NoParams,
    NotificationSpec,
    Params,
    Struct,
    decode_params,
)

__all__ = [
    "METHODS",
    "NOTIFICATIONS",
    "MethodSpec",
    "NoParams",
    "NotificationSpec",
    "Params",
    "Struct",
    "approvals",
    "appserver",
    "atoms",
    "audit",
    "automations",
    "daemon",
    "decode_params",
    "events",
    "git",
    "notify",
    "runs",
    "sessions",
    "settings",
    "terminal",
    "tokens",
    "workspace",
]
