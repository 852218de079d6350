"""The processes codexd started and has not reaped yet, kept in SQLite.

Every child that gets its own session (the app-server, a provider run's CLI, a terminal's shell)
is recorded with its pid and its start time (``/proc/<pid>/stat`` field 22, clock ticks since
boot) when it starts, and forgotten once it is reaped. A daemon that is killed (``kill -9``, OOM)
cannot clean up; the next start finds the rows it left, and every process whose pid *and* start
time still match (a reused pid has another start time) is killed with its whole process group
and descendants before anything new is spawned. Where the start time cannot be read (no
``/proc``), a survivor is not touched: a wrong kill is worse than a leftover.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio

from codexd.appserver.process import descendants, group_alive, kill_tree
from codexd.store import Store, daemon_runs

log = structlog.get_logger("codexd.children")


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None (gone, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 of the whole line; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Survivor:
    pid: int
    kind: str
    unit_id: str


class ChildRegistry:
    """Owned by the daemon; ``add``/``remove`` are called by whoever spawns and reaps."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._daemon_run: int | None = None

    def open(self, store: Store, daemon_run: int | None) -> None:
        """Start recording (once the store is open); before that, add/remove do nothing."""
        self._store, self._daemon_run = store, daemon_run

    async def add(self, kind: str, unit_id: str, pid: int) -> None:
        """Record a child that just started. Never raises: a database that cannot take the row
        (full disk) must not stop the child; only the clean-up after a kill -9 is lost."""
        if self._store is None:
            return
        ticks = start_ticks(pid)
        now = int(time.time() * 1000)
        try:
            await self._store.write(functools.partial(
                daemon_runs.child_add, pid=pid, ticks=ticks, kind=kind, unit_id=unit_id,
                daemon_run=self._daemon_run, created_at=now))
        except Exception as exc:
            log.warning("child_record_failed", pid=pid, kind=kind, error=str(exc))

    async def remove(self, pid: int) -> None:
        """Forget a reaped child (never raises). Shielded: it runs on cancellation paths."""
        if self._store is None:
            return
        with trio.CancelScope(shield=True):
            try:
                await self._store.write(functools.partial(daemon_runs.child_remove, pid=pid))
            except Exception as exc:
                log.warning("child_record_failed", pid=pid, error=str(exc))

    async def kill_survivors(self, grace: float = 2.0) -> list[Survivor]:
        """At start-up: kill what a previous daemon life left running; forget every row."""
        assert self._store is not None, "kill_survivors() before open()"
        found: list[Survivor] = []
        for pid, ticks, kind, unit_id in await self._store.write(daemon_runs.children_take_all):
            if ticks is None or start_ticks(pid) != ticks:
                continue  # gone, or the pid now belongs to someone else
            found.append(Survivor(pid, kind, unit_id))
            family = descendants(pid)
            kill_tree(pid, pid, signal.SIGTERM, family)
            log.warning("orphan_killed", pid=pid, kind=kind, unit=unit_id,
                        descendants=len(family))
        if found:
            with trio.move_on_after(grace):
                while any(_alive(s.pid) for s in found):  # noqa: ASYNC110 - start-up, bounded
                    await trio.sleep(0.02)
            for s in found:
                kill_tree(s.pid, s.pid, signal.SIGKILL, descendants(s.pid))
        return found


def _alive(pid: int) -> bool:
    """Still running (a zombie of ours would be reaped; of another parent, it is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return group_alive(pid) if not os.path.isdir("/proc") else False
    return state != "Z"
