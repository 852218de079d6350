"""SQL for the daemon's own records: one ``daemon_runs`` row per life, the health probe, and the
processes spawned and not yet reaped (``child_processes``; used by :mod:`codexd.children`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import apsw


class PreviousRun(NamedTuple):
    id: int
    pid: int
    started_at: str


def record_start(conn: apsw.Connection, *, pid: int, version: str,
                 started_at: str) -> tuple[int, PreviousRun | None]:
    """Insert this life's row; returns its id and the last life that never recorded a stop."""
    prev = conn.execute("SELECT id, pid, started_at FROM daemon_runs "
                        "WHERE stopped_at IS NULL ORDER BY id DESC LIMIT 1").fetchone()
    conn.execute("UPDATE daemon_runs SET stopped_at = '' WHERE stopped_at IS NULL")
    row: Any = conn.execute("INSERT INTO daemon_runs (pid, version, started_at) VALUES "
                            "(?, ?, ?) RETURNING id", (pid, version, started_at)).fetchone()
    return int(row[0]), PreviousRun(int(prev[0]), int(prev[1]), str(prev[2])) if prev else None


def record_stop(conn: apsw.Connection, run_id: int, at: str) -> None:
    conn.execute("UPDATE daemon_runs SET stopped_at = ? WHERE id = ?", (at, run_id))


def pids_with_open_automation_runs(conn: apsw.Connection) -> list[int]:
    """Daemon pids that still own queued/running automation runs."""
    return [int(r[0]) for r in conn.execute(
        "SELECT DISTINCT d.pid FROM automation_runs r JOIN daemon_runs d ON d.id = r.daemon_run "
        "WHERE r.status IN ('queued', 'running')")]


def probe(conn: apsw.Connection, now: int) -> None:
    """A real write (a WAL frame): a full disk or a read-only file fails here the way every
    other write would, where a SELECT would still pass."""
    conn.execute("INSERT INTO meta (key, value) VALUES ('health_probe', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (now,))


def child_add(conn: apsw.Connection, pid: int, ticks: int | None, kind: str, unit_id: str,
              daemon_run: int | None, created_at: int) -> None:
    conn.execute("INSERT OR REPLACE INTO child_processes (pid, start_ticks, kind, unit_id, "
                 "daemon_run, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                 (pid, ticks, kind, unit_id, daemon_run, created_at))


def child_remove(conn: apsw.Connection, pid: int) -> None:
    conn.execute("DELETE FROM child_processes WHERE pid = ?", (pid,))


def children_take_all(conn: apsw.Connection) -> list[tuple[int, Any, str, str]]:
    """Every recorded child (oldest first), forgetting them all."""
    rows: list[Any] = conn.execute("SELECT pid, start_ticks, kind, unit_id FROM "
                                   "child_processes ORDER BY created_at").fetchall()
    conn.execute("DELETE FROM child_processes")
    return [(int(r[0]), r[1], str(r[2]), str(r[3])) for r in rows]
