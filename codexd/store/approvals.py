"""Server requests from the app-server, written before any client sees them."""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from codexd.store.db import bump_counter, now_iso


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    id: int
    generation: int
    upstream_id: str
    method: str
    thread_id: str | None
    turn_id: str | None
    params: str
    status: str
    result: str | None
    resolved_by: str | None
    reason: str | None
    created_at: str
    resolved_at: str | None


_COLUMNS = ("id, generation, upstream_id, method, thread_id, turn_id, params, status, result, "
            "resolved_by, reason, created_at, resolved_at")


def next_generation(conn: apsw.Connection) -> int:
    return bump_counter(conn, "appserver_generation")


def insert(conn: apsw.Connection, *, generation: int, upstream_id: str, method: str,
           thread_id: str | None, turn_id: str | None, params: str) -> ApprovalRow:
    created_at = now_iso()
    cur = conn.execute(
        "INSERT INTO approvals (generation, upstream_id, method, thread_id, turn_id, params, "
        "status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
        (generation, upstream_id, method, thread_id, turn_id, params, created_at),
    )
    (row_id,) = cur.fetchone()  # type: ignore[misc]
    return ApprovalRow(int(row_id), generation, upstream_id, method, thread_id, turn_id, params,
                       "pending", None, None, None, created_at, None)


def finish(conn: apsw.Connection, approval_id: int, *, status: str, result: str | None,
           resolved_by: str | None, reason: str | None) -> bool:
    """Move a pending row to its final status; False when it was no longer pending."""
    cur = conn.execute(
        "UPDATE approvals SET status = ?, result = ?, resolved_by = ?, reason = ?, "
        "resolved_at = ? WHERE id = ? AND status = 'pending' RETURNING id",
        (status, result, resolved_by, reason, now_iso(), approval_id),
    )
    return cur.fetchone() is not None


def expire_all_pending(conn: apsw.Connection, reason: str) -> int:
    cur = conn.execute(
        "UPDATE approvals SET status = 'expired', reason = ?, resolved_at = ? "
        "WHERE status = 'pending' RETURNING id", (reason, now_iso()))
    return len(cur.fetchall())


def get(conn: apsw.Connection, approval_id: int) -> ApprovalRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)).fetchone()
    return ApprovalRow(*row) if row else None


def list_(conn: apsw.Connection, *, status: str | None, thread_id: str | None,
          limit: int) -> list[ApprovalRow]:
    where, args = [], []
    if status:
        where.append("status = ?")
        args.append(status)
    if thread_id:
        where.append("thread_id = ?")
        args.append(thread_id)
    sql = f"SELECT {_COLUMNS} FROM approvals"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    return [ApprovalRow(*r) for r in conn.execute(sql, (*args, limit))]
