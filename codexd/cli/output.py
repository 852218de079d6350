"""What every codexctl command shares: JSON output, tables, the status line, usage errors.

Tables and colour come from rich: colour only on a terminal and never with ``NO_COLOR`` (rich
honours it), tables sized to the terminal there and never truncated when piped. rich is
imported on first use, so commands that print JSON do not pay for it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status


class UsageError(Exception):
    """The command line is wrong; codexctl prints its usage, the message, and exits 2."""


class CommandFailed(Exception):
    """The command could not do its job (not the daemon's error); codexctl prints the message,
    which says what to do, and exits 1."""


def print_json(obj: Any) -> None:
    """Indented JSON on stdout (structs as they are on the wire)."""
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode() + "\n")


def _console(stream: Any) -> Console:
    from rich.console import Console

    tty = stream.isatty()
    # Piped: no colour, no wrapping (a script reads whole lines), no terminal codes.
    return Console(file=stream, width=None if tty else 100_000, force_terminal=None,
                   no_color=not tty or "NO_COLOR" in os.environ, highlight=False,
                   soft_wrap=not tty)


#: How a status reads at a glance (colour on a terminal only).
_STATUS_STYLE = {
    "succeeded": "green", "resolved": "green", "active": "green", "running": "yellow",
    "ACTIVE": "green", "queued": "cyan", "pending": "yellow", "PAUSED": "dim",
    "failed": "red", "expired": "dim", "canceled": "magenta", "interrupted": "magenta",
    "revoked": "dim", "skipped": "dim",
}


class Styled:
    """A table cell with a rich style (a colour is dropped when colour is off)."""

    __slots__ = ("style", "text")

    def __init__(self, text: str, style: str) -> None:
        self.text = text
        self.style = style

    def __str__(self) -> str:
        return self.text


def status(text: str) -> Styled | str:
    """A status cell, coloured by what it means."""
    style = _STATUS_STYLE.get(text.split()[0] if text else "")
    return Styled(text, style) if style else text


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "") -> None:
    """A table with a header row on stdout; ``empty`` (on stderr) when there are no rows.

    A column whose header ends in ``>`` is right-aligned (numbers)."""
    if not rows:
        if empty:
            print(empty, file=sys.stderr)
        return
    from rich import box
    from rich.table import Table

    console = _console(sys.stdout)
    tty = sys.stdout.isatty()
    t = Table(box=box.SIMPLE_HEAD if tty else None, show_edge=False, pad_edge=False,
              header_style="bold" if tty else "", expand=False)
    for h in headers:
        right = h.endswith(">")
        t.add_column(h.rstrip(">"), justify="right" if right else "left",
                     overflow="fold" if tty else "ignore", no_wrap=not tty)
    from rich.text import Text

    for row in rows:
        t.add_row(*(Text(v.text, style=v.style) if isinstance(v, Styled) else
                    "" if v is None else str(v) for v in row))
    if tty:
        console.print(t)
        return
    with console.capture() as cap:
        console.print(t)
    sys.stdout.write("\n".join(line.rstrip() for line in cap.get().splitlines()) + "\n")


def age(ms: int | float | None, now: float | None = None) -> str:
    """How long ago (``45s``, ``3m``, ``2h``, ``5d``); ``-`` for none."""
    if not ms:
        return "-"
    seconds = max(0.0, (now or time.time()) - ms / 1000)
    return span(seconds)


def span(seconds: float | None) -> str:
    """A duration, short (``850ms``, ``12s``, ``4m05s``, ``3h12m``, ``2d4h``)."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


class StatusLine:
    """What a command is waiting on, as one transient line on stderr (rich's spinner).

    Only on a terminal: piped or redirected, nothing is written. ``clear()`` before printing
    anything else; the next ``show()`` brings the line back."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._status: Status | None = None
        self.text = ""

    def show(self, text: str) -> None:
        self.text = text
        if not self.enabled:
            return
        if self._status is None:
            self._status = _console(sys.stderr).status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def clear(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> StatusLine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.clear()
