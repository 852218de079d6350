"""The audit trail: what a token holder did (operator calls, approval answers)."""

from __future__ import annotations

from dataclasses import dataclass

import apsw


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: int
    token_id: str
    token_name: str
    remote: str
    method: str
    outcome: str


def add(conn: apsw.Connection, rows: list[tuple[int, str, str, str, str, str]]) -> None:
    conn.executemany("INSERT INTO audit_log (at, token_id, token_name, remote, method, outcome) "
                     "VALUES (?, ?, ?, ?, ?, ?)", rows)


def list_(conn: apsw.Connection, *, token_name: str | None, limit: int) -> list[AuditRow]:
    sql = "SELECT id, at, token_id, token_name, remote, method, outcome FROM audit_log"
    args: tuple[object, ...] = ()
    if token_name:
        sql += " WHERE token_name = ?"
        args = (token_name,)
    sql += " ORDER BY id DESC LIMIT ?"
    return [AuditRow(*r) for r in conn.execute(sql, (*args, limit))]
