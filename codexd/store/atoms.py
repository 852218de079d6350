"""Persisted atoms in SQLite. Plain functions of a connection, called through :class:`Store`.

Revisions come from one database-wide counter, so a key that is deleted and created again never
reuses a revision a client may still hold (no ABA on compare-and-set). Revision 0 means "absent":
``expected_revision=0`` creates only if the key does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from codexd.store.db import bump_counter, now_iso


@dataclass(frozen=True, slots=True)
class AtomRow:
    key: str
    value: str
    revision: int
    updated_at: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """A compare-and-set lost: ``current`` is the revision in the store (0 when absent)."""

    current: int


def get(conn: apsw.Connection, key: str) -> AtomRow | None:
    row = conn.execute(
        "SELECT key, value, revision, updated_at FROM atoms WHERE key = ?", (key,)
    ).fetchone()
    return AtomRow(*row) if row else None


def _current_revision(conn: apsw.Connection, key: str) -> int:
    row = conn.execute("SELECT revision FROM atoms WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def _next_revision(conn: apsw.Connection) -> int:
    return bump_counter(conn, "atom_revision")


def set_(
    conn: apsw.Connection, key: str, value: str, expected_revision: int | None
) -> AtomRow | Conflict:
    """Write ``value`` (JSON text); must run inside a write transaction."""
    if expected_revision is not None:
        current = _current_revision(conn, key)
        if current != expected_revision:
            return Conflict(current)
    revision = _next_revision(conn)
    updated_at = now_iso()
    conn.execute(
        "INSERT INTO atoms (key, value, revision, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision, "
        "updated_at = excluded.updated_at",
        (key, value, revision, updated_at),
    )
    return AtomRow(key, value, revision, updated_at)


def delete(
    conn: apsw.Connection, key: str, expected_revision: int | None
) -> int | Conflict | None:
    """Delete ``key``; returns the deletion's revision, None if absent, or a Conflict."""
    current = _current_revision(conn, key)
    if expected_revision is not None and current != expected_revision:
        return Conflict(current)
    if current == 0:
        return None
    conn.execute("DELETE FROM atoms WHERE key = ?", (key,))
    return _next_revision(conn)


def list_(conn: apsw.Connection, prefix: str) -> list[AtomRow]:
    if prefix:
        # Range scan on the primary key; no LIKE, so '%' and '_' in keys are literal.
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = conn.execute(
            "SELECT key, value, revision, updated_at FROM atoms "
            "WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, upper),
        )
    else:
        rows = conn.execute("SELECT key, value, revision, updated_at FROM atoms ORDER BY key")
    return [AtomRow(*r) for r in rows]
