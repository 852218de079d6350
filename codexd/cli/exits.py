"""The exit codes of ``codexd`` and ``codexctl``: one definition (README documents them)."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    #: codexctl: the daemon answered an error (or a check is unhealthy); codexd: it could not
    #: start (lock held, database unusable, socket not creatable).
    ERROR = 1
    #: Bad command line or configuration.
    USAGE = 2
    #: codexctl: the daemon is not reachable.
    UNREACHABLE = 3
    #: codexd: an internal error stopped the daemon (sysexits EX_SOFTWARE; logged as
    #: ``daemon_crashed``).
    CRASHED = 70
    #: Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_CRASHED, EXIT_INTERRUPTED = (
    Exit.OK, Exit.ERROR, Exit.USAGE, Exit.UNREACHABLE, Exit.CRASHED, Exit.INTERRUPTED)
