"""What every codexctl command shares: how JSON is printed and how a usage error is raised."""

from __future__ import annotations

import sys
from typing import Any

import msgspec


class UsageError(Exception):
    """The command line is wrong; codexctl prints its usage, the message, and exits 2."""


class CommandFailed(Exception):
    """The command could not do its job (not the daemon's error); codexctl prints the message,
    which says what to do, and exits 1."""


def print_json(obj: Any) -> None:
    """Indented JSON on stdout (structs as they are on the wire)."""
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode() + "\n")
