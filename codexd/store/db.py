"""The SQLite store: one apsw connection for writes, one for reads, both off the event loop.

WAL journal, ``synchronous=NORMAL`` (a committed transaction survives the process being killed at
any point; only a power cut can lose the last few), a busy timeout, foreign keys on. Every write
goes through one thread behind a ``CapacityLimiter(1)``, so writers are serialised without
blocking the event loop. apsw's exceptions are mapped to :mod:`codexd.errors` here, at the
boundary.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import apsw
import structlog
import trio

from codexd.errors import StoreBusy, StoreError
from codexd.store.migrations import migrate

log = structlog.get_logger("codexd.store")

T = TypeVar("T")

#: apsw errors that mean the database cannot be written at all (not a constraint or a bug).
_IO_ERRORS = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.CantOpenError,
              apsw.CorruptError)


def bump_counter(conn: apsw.Connection, key: str) -> int:
    """Increment a named counter in the ``meta`` table and return its new value."""
    row = conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = ? RETURNING value", (key,)
    ).fetchone()
    if row is None:
        raise KeyError(f"no counter {key!r} in meta")
    return int(row[0])


def iso_time(ts: float) -> str:
    """A Unix time as ISO 8601 UTC with milliseconds and a ``Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a ``Z``."""
    return iso_time(time.time())


@contextlib.contextmanager
def map_exceptions() -> Iterator[None]:
    """Turn apsw's exceptions into codexd's (the boundary the rest of the code relies on)."""
    try:
        yield
    except (apsw.BusyError, apsw.LockedError) as exc:
        raise StoreBusy(f"database is locked by another writer: {exc}") from exc
    except apsw.Error as exc:
        raise StoreError(f"database error: {exc}") from exc


def _connect(path: Path, busy_timeout_ms: int) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(busy_timeout_ms)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def scalar(conn: apsw.Connection, sql: str, params: object = None) -> int:
    """The first column of the first row of ``sql``, as an int (a count, a pragma)."""
    row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    assert row is not None, sql
    return int(row[0])


def _incremental_vacuum(conn: apsw.Connection) -> None:
    """auto_vacuum = INCREMENTAL, so that retention can give deleted pages back to the file
    system a step at a time. A new file takes it at once; a file made by an older codexd needs
    one VACUUM (a rewrite of the file, logged with how long it took)."""
    if scalar(conn, "PRAGMA auto_vacuum") == 2:
        return
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    tables = scalar(conn, "SELECT count(*) FROM sqlite_master")
    if tables:
        started = time.monotonic()
        conn.execute("VACUUM")
        log.info("database_auto_vacuum_enabled", seconds=round(time.monotonic() - started, 2))


class Store:
    """Owns the database connections. Create with :meth:`open` (blocking), close with :meth:`close`.

    :meth:`write` and :meth:`read` are the only ways to touch the database from async code; each
    runs its function in a worker thread with the connection as argument. Cancellation waits for
    the function to finish (a transaction is never left half-done).
    """

    def __init__(self, path: Path, writer: apsw.Connection, reader: apsw.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        self.migrated_from = 0
        #: Why the last write failed, while no write has succeeded since (full disk, I/O error,
        #: read-only file); health reports it.
        self.last_write_error: str | None = None

    @classmethod
    def open(cls, path: Path, *, busy_timeout_ms: int = 5000) -> Store:
        """Open (creating if needed) and migrate the database. Blocks; call from a thread.

        Raises:
            SchemaTooNew: the file comes from a newer codexd.
            StoreError: the file cannot be opened or is not a database.
        """
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)  # a folder that existed with looser modes is tightened
        # Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the
        # database's own mode, whatever the umask.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        with map_exceptions():
            writer = _connect(path, busy_timeout_ms)
            try:
                _incremental_vacuum(writer)
                before, _ = migrate(writer)
                reader = _connect(path, busy_timeout_ms)
            except BaseException:
                writer.close()
                raise
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)
        store = cls(path, writer, reader)
        store.migrated_from = before
        return store

    async def write(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction on the writer thread."""
        return await trio.to_thread.run_sync(
            self._in_transaction, fn, limiter=self._write_limiter
        )

    async def probe_write(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Like :meth:`write`, for health checks: its success does not clear
        :attr:`last_write_error` (a tiny probe may fit where real writes do not)."""
        return await trio.to_thread.run_sync(
            functools.partial(self._in_transaction, fn, probe=True), limiter=self._write_limiter
        )

    async def read(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Run ``fn(conn)`` on the reader connection (a consistent snapshot)."""
        return await trio.to_thread.run_sync(
            self._in_transaction_read, fn, limiter=self._read_limiter
        )

    def _in_transaction(self, fn: Callable[[apsw.Connection], T], probe: bool = False) -> T:
        try:
            with map_exceptions():
                with self._writer:
                    result = fn(self._writer)
        except StoreError as exc:
            if not isinstance(exc, StoreBusy) and isinstance(exc.__cause__, _IO_ERRORS):
                self.last_write_error = str(exc)
            raise
        if not probe:
            self.last_write_error = None
        return result

    def _in_transaction_read(self, fn: Callable[[apsw.Connection], T]) -> T:
        with map_exceptions():
            with self._reader:
                result = fn(self._reader)
            return result

    def write_sync(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Blocking :meth:`write` for start-up and shutdown paths that run before/after the loop."""
        return self._in_transaction(fn)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after retention freed pages)."""
        def run() -> None:
            with map_exceptions():
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        await trio.to_thread.run_sync(run, limiter=self._write_limiter)

    def close(self) -> None:
        """Checkpoint the WAL and close both connections (blocking)."""
        with contextlib.suppress(apsw.Error):
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._reader.close()
        self._writer.close()
