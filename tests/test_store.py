"""The SQLite store: migrations, an old checked-in database, compare-and-set, settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw
import msgspec
import pytest

from codexd.errors import SchemaTooNew
from codexd.protocol.settings import Settings, SettingsPatch, merge
from codexd.store import SCHEMA_VERSION, Store
from codexd.store import atoms as repo
from codexd.store import settings as settings_repo

DATA = Path(__file__).parent / "data"


def test_fresh_database_uses_wal_and_the_latest_schema(tmp_path):
    store = Store.open(tmp_path / "codexd.db")
    try:
        conn = apsw.Connection(str(tmp_path / "codexd.db"))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
        assert store.migrated_from == 0
    finally:
        store.close()


def test_opens_a_version_1_database_from_the_first_release(tmp_path):
    assert SCHEMA_VERSION > 1, "this test guards upgrades; it needs a later schema to exist"
    db = tmp_path / "codexd.db"
    shutil.copy(DATA / "codexd-v1.db", db)
    store = Store.open(db)
    try:
        assert store.migrated_from == 1
        rows = store.write_sync(lambda c: repo.list_(c, ""))
        assert [(r.key, msgspec.json.decode(r.value), r.revision) for r in rows] == [
            ("ui.theme", "light", 3),
            ("workspace.recent", ["/home/me/proj", {"pinned": True}], 2),
        ]
        # The revision counter carried over: the next write does not reuse revision 3.
        out = store.write_sync(lambda c: repo.set_(c, "new", "1", None))
        assert out.revision == 4
        assert store.write_sync(settings_repo.load) == (Settings(), None)
    finally:
        store.close()


def test_newer_schema_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "codexd.db"
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(SchemaTooNew, match="version 999 is newer"):
        Store.open(db)
    conn = apsw.Connection(str(db))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 999
    conn.close()


def test_compare_and_set_and_no_revision_reuse(tmp_path):
    store = Store.open(tmp_path / "codexd.db")
    try:
        w = store.write_sync
        a = w(lambda c: repo.set_(c, "k", "1", 0))  # 0 = create only
        assert a.revision == 1
        assert w(lambda c: repo.set_(c, "k", "2", 0)) == repo.Conflict(current=1)
        b = w(lambda c: repo.set_(c, "k", "2", 1))
        assert b.revision == 2
        assert w(lambda c: repo.delete(c, "k", 1)) == repo.Conflict(current=2)
        assert w(lambda c: repo.delete(c, "k", 2)) == 3
        assert w(lambda c: repo.delete(c, "k", None)) is None
        # Re-created: a client still holding revision 1 or 2 cannot overwrite it blindly.
        c_ = w(lambda c: repo.set_(c, "k", "3", None))
        assert c_.revision == 4
        assert w(lambda c: repo.set_(c, "k", "x", 1)) == repo.Conflict(current=4)
    finally:
        store.close()


def test_prefix_listing_is_literal(tmp_path):
    store = Store.open(tmp_path / "codexd.db")
    try:
        for key in ["a%", "a_b", "ab", "a", "b", "a\U0010ffff"]:
            store.write_sync(lambda c, k=key: repo.set_(c, k, "0", None))
        keys = [r.key for r in store.write_sync(lambda c: repo.list_(c, "a%"))]
        assert keys == ["a%"]
        keys = [r.key for r in store.write_sync(lambda c: repo.list_(c, "a"))]
        assert keys == ["a", "a%", "a_b", "ab", "a\U0010ffff"]
    finally:
        store.close()


def test_settings_merge_semantics():
    s = merge(Settings(), SettingsPatch(default_model="o3", inbox_retention_days=7))
    assert s.default_model == "o3" and s.inbox_retention_days == 7
    s = merge(s, SettingsPatch(default_model=None))  # null resets to the default
    assert s.default_model is None and s.inbox_retention_days == 7


def test_settings_survive_an_invalid_stored_field(tmp_path):
    store = Store.open(tmp_path / "codexd.db")
    try:
        store.write_sync(lambda c: c.execute(
            "INSERT INTO settings (id, value, updated_at) VALUES "
            "(1, '{\"defaultModel\":\"o3\",\"defaultSandbox\":\"gone-mode\"}', 'then')"))
        settings, _ = store.write_sync(settings_repo.load)
        assert settings.default_model == "o3"
        assert settings.default_sandbox == "workspace-write"
    finally:
        store.close()
