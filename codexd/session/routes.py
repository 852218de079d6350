"""A method codexd owns, as the dispatch table holds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codexd.protocol import MethodSpec

#: ``fn(session, params)``: the session is a :class:`~codexd.session.ClientSession`, the params
#: the method's params struct (each handler's own signature says so).
Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A method codexd owns: its spec, its handler and whether the handler is async."""

    spec: MethodSpec[Any, Any]
    fn: Handler
    is_async: bool
    #: Allowed while the daemon is shutting down (status and health stay answerable).
    during_shutdown: bool = False
    #: Run in arrival order with the client's other requests (see the module docstring).
    ordered: bool = True
