"""Fault containment: a bug in one unit ends that unit, never the daemon.

The unit of failure is the smallest thing that owns a fault: one client session, one request,
one terminal, one provider run, one automation fire, one app-server generation, one background
task. Each unit's edge (and only its edge) is wrapped in :meth:`Faults.boundary` (or
:meth:`Faults.run` for a task). An unexpected exception that reaches the boundary

- is logged once, as the structured event ``unit_fault`` with the traceback in a field;
- is counted by unit kind (``daemon/status`` → ``faults``), and kept as the last fault;
- is reported to whoever is attached to the unit through ``on_fault(message)`` (the client gets
  an error or a close, a terminal's watchers its exit with a reason, a run ends ``failed``);
- and goes no further.

It is not swallowing: ``trio.Cancelled``, ``KeyboardInterrupt`` and every other
``BaseException`` that is not an ``Exception`` always pass, including the non-``Exception`` part
of an exception group (only the ``Exception`` part is contained). The daemon itself stops only on
a signal, ``daemon/shutdown``, or a fault in a core loop, which has no boundary of its own.

Fault injection (tests only): the environment variable ``CODEXD_INJECT_FAULTS`` names
comma-separated points (for example ``terminal.pump``); :func:`inject` raises
:class:`InjectedFault` at a named point. Unset in normal use, it costs one set lookup.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("codexd.faults")

_INJECT = frozenset(p.strip() for p in os.environ.get("CODEXD_INJECT_FAULTS", "").split(",")
                    if p.strip())


class InjectedFault(RuntimeError):
    """Raised at a fault-injection point named in ``CODEXD_INJECT_FAULTS``."""


def inject(point: str) -> None:
    """Raise :class:`InjectedFault` if ``point`` is enabled for fault injection."""
    if point in _INJECT:
        raise InjectedFault(f"injected fault at {point}")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    unit: str
    message: str
    at: float


def describe(exc: BaseException) -> str:
    """One line for a human: the exception type and its message (first of a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _split(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """(the part to contain, the part that must propagate)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(Exception)
    if isinstance(exc, Exception):
        return exc, None
    return None, exc


class Faults:
    """Counts and logs contained faults. Event loop only (no locking)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last: Fault | None = None

    def record(self, kind: str, unit: str, exc: BaseException, **context: Any) -> str:
        """Log and count one fault; returns the one-line message reported to the unit's users."""
        message = describe(exc)
        unit = unit[:200]  # a unit may be named by a client (a method name)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last = Fault(kind=kind, unit=unit, message=message, at=time.time())
        log.error("unit_fault", kind=kind, unit=unit, error=message,
                  traceback="".join(traceback.format_exception(exc)), **context)
        return message

    @contextlib.contextmanager
    def boundary(self, kind: str, unit: str = "", *,
                 on_fault: Callable[[str], None] | None = None) -> Iterator[None]:
        """Contain an unexpected exception raised inside the block (see the module docstring).

        ``on_fault`` runs after the fault is recorded; if it fails too, that is logged and
        contained as well.
        """
        try:
            yield
        except BaseException as exc:
            contained, rest = _split(exc)
            if contained is None:
                raise
            message = self.record(kind, unit, contained)
            if on_fault is not None:
                try:
                    on_fault(message)
                except Exception as again:
                    self.record(kind + ".report", unit, again)
            if rest is not None:
                raise rest from None

    async def run(self, kind: str, unit: str, fn: Callable[..., Awaitable[Any]], *args: Any,
                  on_fault: Callable[[str], None] | None = None) -> None:
        """Run ``await fn(*args)`` as a unit (for ``nursery.start_soon``)."""
        with self.boundary(kind, unit, on_fault=on_fault):
            await fn(*args)
