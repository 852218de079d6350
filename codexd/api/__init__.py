"""Method handlers, one module per namespace, collected in one dispatch table."""

from codexd.api import (  # noqa: F401  (importing registers the handlers)
    approvals,
    appserver,
    atoms,
    automations,
    daemon,
    events,
    runs,
    settings,
    terminal,
)
from codexd.api.registry import ROUTES

__all__ = ["ROUTES"]
