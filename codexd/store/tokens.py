"""Per-device tokens: a name, a role, a hash of the secret, an expiry, a revocation."""

from __future__ import annotations

from dataclasses import dataclass

import apsw


@dataclass(frozen=True, slots=True)
class TokenRow:
    token_id: str
    name: str
    role: str
    secret_hash: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


_COLUMNS = ("token_id, name, role, secret_hash, created_at, expires_at, revoked_at, "
            "last_used_at")


def insert(conn: apsw.Connection, row: TokenRow) -> None:
    conn.execute(f"INSERT INTO device_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (row.token_id, row.name, row.role, row.secret_hash, row.created_at,
                  row.expires_at, row.revoked_at, row.last_used_at))


def get(conn: apsw.Connection, token_id: str) -> TokenRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM device_tokens WHERE token_id = ?",
                       (token_id,)).fetchone()
    return TokenRow(*row) if row else None


def by_name(conn: apsw.Connection, name: str) -> TokenRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM device_tokens WHERE name = ?",
                       (name,)).fetchone()
    return TokenRow(*row) if row else None


def list_(conn: apsw.Connection) -> list[TokenRow]:
    return [TokenRow(*r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM device_tokens ORDER BY created_at, name")]


def revoke(conn: apsw.Connection, token_id: str, at: int) -> bool:
    conn.execute("UPDATE device_tokens SET revoked_at = ? WHERE token_id = ? AND "
                 "revoked_at IS NULL", (at, token_id))
    return conn.changes() > 0


def touch(conn: apsw.Connection, token_id: str, at: int) -> None:
    conn.execute("UPDATE device_tokens SET last_used_at = ? WHERE token_id = ?", (at, token_id))
