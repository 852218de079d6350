"""Workspace grants: the folders clients may work in."""

from __future__ import annotations

import apsw

from codexd.protocol.workspace import Grant


def insert(conn: apsw.Connection, g: Grant) -> None:
    conn.execute("INSERT OR IGNORE INTO workspace_grants (real_path, path, name, created_at) "
                 "VALUES (?, ?, ?, ?)", (g.real_path, g.path, g.name, g.created_at))


def delete(conn: apsw.Connection, real_path: str) -> None:
    conn.execute("DELETE FROM workspace_grants WHERE real_path = ?", (real_path,))


def list_(conn: apsw.Connection) -> list[Grant]:
    return [Grant(real_path=r[0], path=r[1], name=r[2], created_at=r[3]) for r in conn.execute(
        "SELECT real_path, path, name, created_at FROM workspace_grants ORDER BY created_at, "
        "real_path")]
