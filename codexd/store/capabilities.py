"""Provider CLI capability snapshots (``capability_snapshots``): one row per binary path."""

from __future__ import annotations

import json

import apsw

from codexd.runs import compat


def get(conn: apsw.Connection, provider: str, path: str, mtime_ns: int,
        size: int) -> compat.Snapshot | None:
    """The snapshot of this exact binary (same path, mtime and size), re-assessed."""
    row = conn.execute(
        "SELECT version, flags, permission_modes, checked_at FROM capability_snapshots "
        "WHERE path = ? AND provider = ? AND mtime_ns = ? AND size = ?",
        (path, provider, mtime_ns, size)).fetchone()
    if row is None:
        return None
    version, flags_json, modes_json, checked_at = row
    flags = frozenset(json.loads(str(flags_json)))
    if provider == "codex" and not any(f.startswith("tui:") for f in flags):
        return None  # probed before codexd knew the interactive CLI's options: probe again
    modes = tuple(json.loads(str(modes_json)))
    status, reasons, missing = compat.assess(provider, version if isinstance(version, str)
                                             else None, flags, modes)
    return compat.Snapshot(provider=provider, path=path, mtime_ns=mtime_ns, size=size,
                           version=version if isinstance(version, str) else None, flags=flags,
                           permission_modes=modes, status=status, reasons=reasons,
                           checked_at=int(checked_at), missing=missing)


def put(conn: apsw.Connection, snap: compat.Snapshot) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO capability_snapshots (path, provider, mtime_ns, size, version, "
        "flags, permission_modes, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (snap.path, snap.provider, snap.mtime_ns, snap.size, snap.version,
         json.dumps(sorted(snap.flags)), json.dumps(list(snap.permission_modes)),
         snap.checked_at))
