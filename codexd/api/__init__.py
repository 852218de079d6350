"""Method handlers, one module per namespace, collected in one dispatch table."""

from codexd.api import atoms, daemon, settings  # noqa: F401  (registers the handlers)
from codexd.api.registry import ROUTES

__all__ = ["ROUTES"]
