"""SQLite persistence (apsw, WAL). :class:`Store` owns the connections; the modules beside it
hold the SQL for one concept each and are called through ``Store.write``/``Store.read``."""

from codexd.store.db import Store, iso_time, map_exceptions, now_iso
from codexd.store.migrations import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Store", "iso_time", "map_exceptions", "now_iso"]
