"""The settings object in SQLite (one row of JSON, validated on the way in and out)."""

from __future__ import annotations

import apsw
import msgspec

from codexd.protocol.settings import Settings
from codexd.store.db import now_iso

_decoder = msgspec.json.Decoder(Settings)


def load(conn: apsw.Connection) -> tuple[Settings, str | None]:
    """The stored settings and when they were written; defaults when none are stored.

    A stored object that no longer validates (say a value an older codexd accepted) falls back to
    defaults field by field rather than failing the whole read.
    """
    row = conn.execute("SELECT value, updated_at FROM settings WHERE id = 1").fetchone()
    if row is None:
        return Settings(), None
    try:
        return _decoder.decode(row[0]), row[1]
    except msgspec.ValidationError:
        raw = msgspec.json.decode(row[0])
        kept = {}
        for name in Settings.__struct_fields__:
            camel = Settings.__struct_encode_fields__[Settings.__struct_fields__.index(name)]
            if camel in raw:
                try:
                    msgspec.convert({camel: raw[camel]}, Settings)
                except msgspec.ValidationError:
                    continue
                kept[camel] = raw[camel]
        return msgspec.convert(kept, Settings), row[1]


def save(conn: apsw.Connection, settings: Settings) -> str:
    updated_at = now_iso()
    conn.execute(
        "INSERT INTO settings (id, value, updated_at) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (msgspec.json.encode(settings).decode(), updated_at),
    )
    return updated_at
