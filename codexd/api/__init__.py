"""Method handlers, one module per namespace, collected in one dispatch table."""

from codexd.api import (  # noqa: F401  (importing registers the handlers)
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
from codexd.api.registry import ROUTES, wire_routes

#: The dispatch table of the app-server wire (``initialize`` is the app-server's there).
WIRE_ROUTES = wire_routes()

__all__ = ["ROUTES", "WIRE_ROUTES"]
