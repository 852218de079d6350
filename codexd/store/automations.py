"""Automations, their runs and the inbox, in SQLite. Times are Unix milliseconds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import apsw
import msgspec

from codexd.automations.definition import Definition
from codexd.protocol.automations import InboxItem, RunRow

_def_decoder = msgspec.json.Decoder(Definition)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class AutomationRow:
    definition: Definition
    next_run_at: int | None
    file_digest: str | None


def _row(r: Any) -> AutomationRow:
    return AutomationRow(_def_decoder.decode(r[0]), r[1], r[2])


def get(conn: apsw.Connection, automation_id: str) -> AutomationRow | None:
    r = conn.execute("SELECT definition, next_run_at, file_digest FROM automations WHERE id = ?",
                     (automation_id,)).fetchone()
    return _row(r) if r else None


def list_(conn: apsw.Connection) -> list[AutomationRow]:
    return [_row(r) for r in conn.execute(
        "SELECT definition, next_run_at, file_digest FROM automations ORDER BY created_at, id")]


def upsert(conn: apsw.Connection, d: Definition, *, file_digest: str | None) -> None:
    conn.execute(
        "INSERT INTO automations (id, definition, status, file_digest, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET definition = excluded.definition,"
        " status = excluded.status, file_digest = excluded.file_digest,"
        " updated_at = excluded.updated_at",
        (d.id, msgspec.json.encode(d).decode(), d.status, file_digest, d.created_at,
         d.updated_at))


def delete(conn: apsw.Connection, automation_id: str) -> bool:
    conn.execute("DELETE FROM automations WHERE id = ?", (automation_id,))
    return conn.changes() > 0


def set_next_runs(conn: apsw.Connection, values: list[tuple[int | None, str]]) -> None:
    conn.executemany("UPDATE automations SET next_run_at = ? WHERE id = ?", values)


# --------------------------------------------------------------------------------- runs


_RUN_COLS = ("id, automation_id, scheduled_at, trigger, status, created_at, decision, thread_id,"
             " turn_id, summary, error, started_at, finished_at")


def _run(r: Any) -> RunRow:
    started, finished = r[11], r[12]
    return RunRow(
        run_id=r[0], automation_id=r[1], scheduled_at=r[2], trigger=r[3], status=r[4],
        created_at=r[5], decision=r[6], thread_id=r[7], turn_id=r[8], summary=r[9], error=r[10],
        started_at=started, finished_at=finished,
        duration_ms=(finished - started) if started is not None and finished is not None else None)


def claim(conn: apsw.Connection, automation_id: str, scheduled_at: int, *, trigger: str,
          daemon_run: int | None, status: str = "queued", decision: str | None = None,
          next_run_at: int | None = None) -> RunRow | None:
    """Record the run of ``automation_id`` due at ``scheduled_at``; None if it already exists
    (another daemon, or this one before a restart, claimed it: it must not fire twice)."""
    now = now_ms()
    finished = now if status == "skipped" else None
    r = conn.execute(
        "INSERT INTO automation_runs (automation_id, scheduled_at, trigger, status, decision, "
        "daemon_run, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (automation_id, scheduled_at) DO NOTHING RETURNING " + _RUN_COLS,
        (automation_id, scheduled_at, trigger, status, decision, daemon_run, now, finished),
    ).fetchone()
    conn.execute("UPDATE automations SET next_run_at = ? WHERE id = ?",
                 (next_run_at, automation_id))
    return _run(r) if r else None


def claim_manual(conn: apsw.Connection, automation_id: str, *,
                 daemon_run: int | None) -> RunRow:
    at = now_ms()
    while True:
        r = conn.execute(
            "INSERT INTO automation_runs (automation_id, scheduled_at, trigger, status, "
            "daemon_run, created_at) VALUES (?, ?, 'manual', 'queued', ?, ?) "
            "ON CONFLICT (automation_id, scheduled_at) DO NOTHING RETURNING " + _RUN_COLS,
            (automation_id, at, daemon_run, now_ms())).fetchone()
        if r:
            return _run(r)
        at += 1


def update_run(conn: apsw.Connection, run_id: int, **fields: Any) -> RunRow | None:
    """Change a run's columns; None when it is gone (its automation was deleted)."""
    cols = ", ".join(f"{k} = ?" for k in fields)
    r = conn.execute(f"UPDATE automation_runs SET {cols} WHERE id = ? RETURNING {_RUN_COLS}",
                     (*fields.values(), run_id)).fetchone()
    return _run(r) if r else None


def get_run(conn: apsw.Connection, run_id: int) -> RunRow | None:
    r = conn.execute(f"SELECT {_RUN_COLS} FROM automation_runs WHERE id = ?",
                     (run_id,)).fetchone()
    return _run(r) if r else None


def runs(conn: apsw.Connection, automation_id: str | None, limit: int) -> list[RunRow]:
    if automation_id is None:
        cur = conn.execute(f"SELECT {_RUN_COLS} FROM automation_runs ORDER BY id DESC LIMIT ?",
                           (limit,))
    else:
        cur = conn.execute(f"SELECT {_RUN_COLS} FROM automation_runs WHERE automation_id = ? "
                           "ORDER BY id DESC LIMIT ?", (automation_id, limit))
    return [_run(r) for r in cur]


def interrupt_leftovers(conn: apsw.Connection, daemon_run: int | None,
                        alive_pids: set[int]) -> list[RunRow]:
    """Runs queued or running under a daemon that is gone: marked interrupted, never re-run."""
    rows: list[Any] = conn.execute(
        f"SELECT {', '.join('r.' + c.strip() for c in _RUN_COLS.split(','))}, d.pid "
        "FROM automation_runs r LEFT JOIN daemon_runs d ON d.id = r.daemon_run "
        "WHERE r.status IN ('queued', 'running') AND r.daemon_run IS NOT ?",
        (daemon_run,)).fetchall()
    out = []
    now = now_ms()
    for r in rows:
        if r[-1] is not None and r[-1] in alive_pids:
            continue  # another live daemon on this state dir owns it
        run = update_run(conn, int(r[0]), status="interrupted", finished_at=now,
                         error="codexd stopped while this run was in progress; it was not re-run")
        if run is not None:
            out.append(run)
    return out


# -------------------------------------------------------------------------------- inbox


_INBOX_COLS = ("id, kind, title, body, created_at, automation_id, run_id, thread_id, "
               "approval_id, read_at, archived_at")


def _item(r: Any) -> InboxItem:
    return InboxItem(item_id=r[0], kind=r[1], title=r[2], body=r[3], created_at=r[4],
                     automation_id=r[5], run_id=r[6], thread_id=r[7], approval_id=r[8],
                     read_at=r[9], archived_at=r[10])


def add_item(conn: apsw.Connection, *, kind: str, title: str, body: str,
             automation_id: str | None = None, run_id: int | None = None,
             thread_id: str | None = None, approval_id: int | None = None,
             dedupe_key: str | None = None) -> InboxItem | None:
    """Add an item; None when an item with ``dedupe_key`` exists already."""
    r = conn.execute(
        "INSERT INTO inbox_items (kind, title, body, automation_id, run_id, thread_id, "
        "approval_id, dedupe_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (dedupe_key) DO NOTHING RETURNING {_INBOX_COLS}",
        (kind, title, body, automation_id, run_id, thread_id, approval_id, dedupe_key, now_ms()),
    ).fetchone()
    return _item(r) if r else None


def list_items(conn: apsw.Connection, *, unread_only: bool, include_archived: bool,
               limit: int) -> list[InboxItem]:
    where = []
    if unread_only:
        where.append("read_at IS NULL")
    if not include_archived:
        where.append("archived_at IS NULL")
    sql = f"SELECT {_INBOX_COLS} FROM inbox_items"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [_item(r) for r in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (limit,))]


def mark_items(conn: apsw.Connection, ids: list[int], column: str) -> tuple[list[int], list[int]]:
    """Set ``column`` (read_at or archived_at) on ``ids``; returns (changed, unknown)."""
    assert column in ("read_at", "archived_at")
    now = now_ms()
    changed: list[int] = []
    unknown: list[int] = []
    for item_id in ids:
        r = conn.execute(f"UPDATE inbox_items SET {column} = coalesce({column}, ?) WHERE id = ? "
                         "RETURNING id", (now, item_id)).fetchone()
        (changed if r else unknown).append(item_id)
    return changed, unknown


def unread_count(conn: apsw.Connection) -> int:
    r = conn.execute("SELECT count(*) FROM inbox_items WHERE read_at IS NULL AND "
                     "archived_at IS NULL").fetchone()
    return int(r[0]) if r else 0
