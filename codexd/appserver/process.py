"""Spawning and stopping a child process together with everything it started.

The child gets its own session (and so its own process group). Stopping closes its stdin, then
sends SIGTERM to the group, waits, then SIGKILLs the group and every descendant found in /proc
(descendants that moved to another group or session are found through their parent links).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import structlog
import trio

log = structlog.get_logger("codexd.appserver")


def close_fd(fd: int) -> None:
    """Close an fd a trio task may be waiting on: ``notify_closing`` first (trio's rule), so the
    waiter wakes with ``ClosedResourceError`` and the number can be reused safely."""
    with contextlib.suppress(OSError):
        trio.lowlevel.notify_closing(fd)
        os.close(fd)


def _processes() -> Iterator[tuple[int, int, int]]:
    """(pid, ppid, session id) of every live process (Linux /proc; nothing elsewhere)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        yield int(entry.name), int(fields[1]), int(fields[3])


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for child, ppid, _sid in _processes():
        children.setdefault(ppid, []).append(child)
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def session_members(sid: int) -> set[int]:
    """Every live process of session ``sid`` (a PTY's shell and all its jobs, even those whose
    parent died)."""
    return {pid for pid, _ppid, session in _processes() if session == sid}


def pid_alive(pid: int) -> bool:
    """Whether a process exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_tree(
    pid: int, pgid: int | None, sig: int, extra: frozenset[int] | set[int] = frozenset()
) -> None:
    """Send ``sig`` to the process group and to every known descendant; ignore the gone."""
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for p in {pid, *descendants(pid), *extra}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


async def stop_process(process: trio.Process, *, grace: float) -> int | None:
    """Close stdin, SIGTERM the group, wait ``grace``, SIGKILL the group and descendants.

    Returns the exit code (negative for a signal). Safe to call on a process that already exited:
    its group and leftover descendants are still killed.
    """
    pid = process.pid
    pgid = pid  # start_new_session=True makes the child a group leader
    family = descendants(pid)
    if process.stdin is not None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await process.stdin.aclose()
    if process.returncode is None:
        with trio.move_on_after(min(grace, 1.0)):
            await process.wait()
    if process.returncode is None:
        kill_tree(pid, pgid, signal.SIGTERM, family)
        with trio.move_on_after(grace):
            await process.wait()
    family |= descendants(pid)
    kill_tree(pid, pgid, signal.SIGKILL, family)
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        await process.wait()
    return process.returncode
