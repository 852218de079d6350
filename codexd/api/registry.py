"""The dispatch table: each handler module registers its methods with :func:`handles`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from codexd.protocol import MethodSpec
from codexd.session import Route

F = TypeVar("F", bound=Callable[..., Any])

ROUTES: dict[str, Route] = {}
#: What replaces a route on the app-server wire (``app-server.sock``): there a client sees an
#: app-server, so ``initialize`` is the app-server's. Every other method is as in ROUTES.
WIRE_OVERRIDES: dict[str, Route] = {}


def handles(
    spec: MethodSpec[Any, Any], *, during_shutdown: bool = False, ordered: bool = True,
    wire: bool = False,
) -> Callable[[F], F]:
    """Register the decorated function as the handler of ``spec``.

    The handler is called as ``fn(session, params)``; an ``async def`` handler runs as its own
    task, a plain function inline (use that only for work that never blocks). ``ordered`` handlers
    run in the order the client sent them; unordered ones may overtake (long waits). ``wire``
    registers the app-server wire's version of a method instead.
    """

    def register(fn: F) -> F:
        table = WIRE_OVERRIDES if wire else ROUTES
        if spec.name in table:
            raise ValueError(f"two handlers for {spec.name}")
        table[spec.name] = Route(
            spec=spec,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            during_shutdown=during_shutdown,
            ordered=ordered,
        )
        return fn

    return register


def wire_routes() -> dict[str, Route]:
    """The dispatch table of the app-server wire."""
    return {**ROUTES, **WIRE_OVERRIDES}
