"""Retention: what codexd deletes from its database, and when, so that it does not grow forever.

Each policy is a table, a rule and a default (``[retention]`` in the config; the inbox follows
the ``inboxRetentionDays`` setting):

- finished runs (succeeded, failed, canceled, interrupted) older than ``runs_days``: their
  events first, then the runs;
- archived inbox items archived longer ago than ``inboxRetentionDays``;
- answered, expired and timed-out approvals older than ``approvals_days``;
- finished automation runs beyond the newest ``automation_runs_keep`` of each automation;
- the audit log older than ``audit_days``.

A pass deletes in batches of ``batch_rows``, each its own short write transaction (other writers
wait at most one batch), then frees the pages with ``PRAGMA incremental_vacuum`` and truncates the
WAL. The daemon runs a pass every ``interval_minutes``; ``daemon/gc`` (``codexctl gc``) runs one
now, or with ``dryRun`` only counts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from codexd.protocol.daemon import GcResult, GcTable
from codexd.store.db import iso_time, scalar

if TYPE_CHECKING:
    import apsw

    from codexd.config import RetentionSection
    from codexd.store import Store

log = structlog.get_logger("codexd.retention")

_DAY_MS = 86_400_000
_FINISHED_RUNS = "status IN ('succeeded', 'failed', 'canceled', 'interrupted')"
_OLD_RUNS = f"SELECT id FROM runs WHERE {_FINISHED_RUNS} AND finished_at < :cutoff"
#: Pages freed per incremental_vacuum step (one short transaction each).
_VACUUM_PAGES = 2000


@dataclass(frozen=True)
class Policy:
    name: str
    rule: str
    count: str
    #: Deletes at most :limit rows matching the rule.
    delete: str


POLICIES = (
    Policy("run_events", "events of finished runs older than {runs_days} days",
           f"SELECT count(*) FROM run_events WHERE run_id IN ({_OLD_RUNS})",
           f"DELETE FROM run_events WHERE (run_id, seq) IN (SELECT run_id, seq FROM run_events "
           f"WHERE run_id IN ({_OLD_RUNS}) LIMIT :limit)"),
    Policy("run_artifacts", "artifacts of finished runs older than {runs_days} days",
           f"SELECT count(*) FROM run_artifacts WHERE run_id IN ({_OLD_RUNS})",
           f"DELETE FROM run_artifacts WHERE rowid IN (SELECT rowid FROM run_artifacts "
           f"WHERE run_id IN ({_OLD_RUNS}) LIMIT :limit)"),
    Policy("runs", "finished runs older than {runs_days} days",
           f"SELECT count(*) FROM runs WHERE id IN ({_OLD_RUNS})",
           f"DELETE FROM runs WHERE id IN ({_OLD_RUNS} AND NOT EXISTS (SELECT 1 FROM run_events "
           "e WHERE e.run_id = runs.id) AND NOT EXISTS (SELECT 1 FROM run_artifacts a "
           "WHERE a.run_id = runs.id) LIMIT :limit)"),
    Policy("inbox_items", "archived inbox items after {inbox_days} days (inboxRetentionDays)",
           "SELECT count(*) FROM inbox_items WHERE archived_at < :inbox_cutoff",
           "DELETE FROM inbox_items WHERE id IN (SELECT id FROM inbox_items "
           "WHERE archived_at < :inbox_cutoff LIMIT :limit)"),
    Policy("approvals", "closed approvals older than {approvals_days} days",
           "SELECT count(*) FROM approvals WHERE status != 'pending' "
           "AND resolved_at < :approvals_cutoff",
           "DELETE FROM approvals WHERE id IN (SELECT id FROM approvals WHERE status != 'pending' "
           "AND resolved_at < :approvals_cutoff LIMIT :limit)"),
    Policy("automation_runs", "finished automation runs beyond the newest "
           "{automation_runs_keep} of each automation",
           "SELECT count(*) FROM (SELECT status, ROW_NUMBER() OVER (PARTITION BY automation_id "
           "ORDER BY scheduled_at DESC) AS n FROM automation_runs) WHERE n > :keep "
           "AND status IN ('succeeded', 'failed', 'skipped', 'interrupted')",
           "DELETE FROM automation_runs WHERE id IN (SELECT id FROM (SELECT id, status, "
           "ROW_NUMBER() OVER (PARTITION BY automation_id ORDER BY scheduled_at DESC) AS n "
           "FROM automation_runs) WHERE n > :keep AND status IN ('succeeded', 'failed', "
           "'skipped', 'interrupted') LIMIT :limit)"),
    Policy("audit_log", "audit entries older than {audit_days} days",
           "SELECT count(*) FROM audit_log WHERE at < :audit_cutoff",
           "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log "
           "WHERE at < :audit_cutoff LIMIT :limit)"),
)

#: A policy set to 0 keeps everything (its cutoff is the beginning of time).
_NEVER = -1


def _cutoff_ms(now_ms: int, days: int) -> int:
    return now_ms - days * _DAY_MS if days > 0 else _NEVER


def bindings(cfg: RetentionSection, inbox_days: int, now_ms: int, limit: int) -> dict[str, object]:
    approvals = _cutoff_ms(now_ms, cfg.approvals_days)
    return {
        "cutoff": _cutoff_ms(now_ms, cfg.runs_days),
        "inbox_cutoff": _cutoff_ms(now_ms, inbox_days),
        "approvals_cutoff": iso_time(approvals / 1000) if approvals > 0 else "",
        "keep": cfg.automation_runs_keep if cfg.automation_runs_keep > 0 else 2**62,
        "audit_cutoff": _cutoff_ms(now_ms, cfg.audit_days),
        "limit": limit,
    }


def _rule(policy: Policy, cfg: RetentionSection, inbox_days: int) -> str:
    return policy.rule.format(runs_days=cfg.runs_days, inbox_days=inbox_days,
                              approvals_days=cfg.approvals_days,
                              automation_runs_keep=cfg.automation_runs_keep,
                              audit_days=cfg.audit_days)


def _file_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


class Retention:
    """Collaborators: ``store`` the open store, ``config`` the live ``[retention]`` section,
    ``inbox_days`` the ``inboxRetentionDays`` setting."""

    def __init__(self, store: Callable[[], Store], config: Callable[[], RetentionSection],
                 inbox_days: Callable[[], Awaitable[int]],
                 homes: Callable[[], Path | None] = lambda: None) -> None:
        self._store = store
        self._homes = homes
        self._config = config
        self._inbox_days = inbox_days
        self._lock = trio.Lock()  # one pass at a time (the timer's or a client's)
        self.last: GcResult | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(min(300.0, self._config().interval_minutes * 60))
        while True:
            cfg = self._config()
            if cfg.enabled:
                try:
                    result = await self.collect(dry_run=False)
                except Exception as exc:  # a failed pass is retried at the next interval
                    log.error("retention_failed", error=str(exc), exc_info=True)
                else:
                    if any(t.deleted for t in result.tables):
                        log.info("retention_pass", deleted={t.name: t.deleted
                                                            for t in result.tables if t.deleted},
                                 freed_bytes=result.bytes_before - result.bytes_after,
                                 duration_ms=result.duration_ms)
            await trio.sleep(cfg.interval_minutes * 60)

    async def collect(self, *, dry_run: bool) -> GcResult:
        async with self._lock:
            return await self._collect(dry_run)

    async def _collect(self, dry_run: bool) -> GcResult:
        started = time.monotonic()
        cfg = self._config()
        store = self._store()
        inbox_days = await self._inbox_days()
        now_ms = int(time.time() * 1000)
        params = bindings(cfg, inbox_days, now_ms, cfg.batch_rows)
        before = _file_bytes(store.path)

        def count(c: apsw.Connection) -> list[int]:
            return [scalar(c, p.count, params) for p in POLICIES]

        eligible = await store.read(count)
        deleted = [0] * len(POLICIES)
        if not dry_run:
            for i, policy in enumerate(POLICIES):
                while True:
                    n = await store.write(functools.partial(_changes, sql=policy.delete,
                                                            params=params))
                    deleted[i] += n
                    if n < cfg.batch_rows:  # each batch its own transaction: other writers
                        break  # get the writer thread in between

            if any(deleted):
                await self._vacuum(store)
        tables = [GcTable(name=p.name, rule=_rule(p, cfg, inbox_days), eligible=eligible[i],
                          deleted=deleted[i]) for i, p in enumerate(POLICIES)]
        homes = self._homes()
        if homes is not None:
            tables.append(await self._prune_homes(store, homes, dry_run, params))
        result = GcResult(dry_run=dry_run, tables=tables, bytes_before=before,
                          bytes_after=_file_bytes(store.path),
                          duration_ms=round((time.monotonic() - started) * 1000, 1))
        if not dry_run:
            self.last = result
        return result

    async def _prune_homes(self, store: Store, homes: Path, dry_run: bool,
                           params: dict[str, object]) -> GcTable:
        """The isolated CODEX_HOMEs (``codex-homes/run_*``) of runs no longer in the database
        (a profile's, ``profile-*``, is shared by its runs and stays)."""
        def listed() -> list[str]:
            try:
                return [e.name for e in os.scandir(homes)
                        if e.name.startswith("run") and e.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                return []

        names = await trio.to_thread.run_sync(listed)

        def kept(c: apsw.Connection) -> set[str]:
            """The runs that stay (a dry run: those the pass would not delete)."""
            if not names:
                return set()
            marks = ",".join(f":n{i}" for i in range(len(names)))
            sql = f"SELECT id FROM runs WHERE id IN ({marks})"
            if dry_run:
                sql += f" AND id NOT IN ({_OLD_RUNS})"
            return {row[0] for row in c.execute(sql, {**params, **{
                f"n{i}": n for i, n in enumerate(names)}})}

        orphans = [n for n in names if n not in await store.read(kept)]
        deleted = 0
        if not dry_run:
            for name in orphans:
                try:
                    await trio.to_thread.run_sync(shutil.rmtree, homes / name)
                    deleted += 1
                except OSError as exc:
                    log.warning("codex_home_prune_failed", name=name, error=str(exc))
        return GcTable(name="codex_homes", rule="isolated CODEX_HOMEs of runs that are deleted",
                       eligible=len(orphans), deleted=deleted)

    async def _vacuum(self, store: Store) -> None:
        """Give the freed pages back to the file system, a step at a time, then shrink the WAL."""
        while await store.write(_vacuum_step):
            pass
        await store.checkpoint()


def _changes(c: apsw.Connection, *, sql: str, params: dict[str, object]) -> int:
    c.execute(sql, params)
    return c.changes()


def _vacuum_step(c: apsw.Connection) -> bool:
    """Free up to _VACUUM_PAGES pages; True while free pages are left and this step freed some
    (a database without auto_vacuum = INCREMENTAL frees none: nothing to loop on)."""
    before = scalar(c, "PRAGMA freelist_count")
    c.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES})").fetchall()
    after = scalar(c, "PRAGMA freelist_count")
    return 0 < after < before
