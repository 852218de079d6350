"""Spawning and stopping a child process together with everything it started.

The child gets its own session (and so its own process group). Stopping closes its stdin, then
sends SIGTERM to the group, waits, then SIGKILLs the group and every descendant found in /proc
(descendants that moved to another group or session are found through their parent links).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import structlog
import trio

log = structlog.get_logger("codexd.appserver")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses.
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def session_members(sid: int) -> set[int]:
    """Every live process whose session id is ``sid`` (a PTY's shell and all its jobs, even
    those whose parent died). Linux /proc; empty elsewhere."""
    found: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) == sid:  # state ppid pgrp session ...
            found.add(int(entry.name))
    return found


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
