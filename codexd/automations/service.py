"""The automation service: definitions (SQLite + automation.toml), the scheduler, runs, inbox.

Owned by the daemon. Reads are served from memory (``self.defs``); every change is written to the
database and the automation's file before it is announced. The scheduler wakes
:class:`~codexd.automations.firing.AutomationRuns` when one is due; that claims the run once,
executes it and reports it to the inbox. Only the daemon holding the CODEX_HOME lock fires.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

from codexd.appserver.process import pid_alive
from codexd.automations import definition as defs
from codexd.automations import schedule as sched_mod
from codexd.automations.definition import Definition, InvalidDefinition
from codexd.automations.firing import AutomationRuns, Known, Publish, wall_ms
from codexd.automations.runner import CodexRunner
from codexd.automations.scheduler import Scheduler
from codexd.config import AutomationsSection, Config
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.automations import (
    AUTOMATION_CHANGED,
    AutomationChanged,
    AutomationInfo,
    Change,
    FileIssue,
    RescanResult,
    RunRow,
)
from codexd.store import automations as repo
from codexd.store import daemon_runs
from codexd.transport.unix import InstanceLock

if TYPE_CHECKING:
    import apsw

    from codexd.faults import Faults
    from codexd.store import Store
    from codexd.store.approvals import ApprovalRow

log = structlog.get_logger("codexd.automations")


def codex_home(daemon_cfg: Any) -> Path:
    """``automations.codex_home``, else ``appserver.codex_home``, $CODEX_HOME, ~/.codex."""
    for value in (daemon_cfg.automations.codex_home, daemon_cfg.appserver.codex_home,
                  os.environ.get("CODEX_HOME", "")):
        if value:
            return Path(value).expanduser()
    return Path.home() / ".codex"


def new_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "automation"
    return f"{slug}-{secrets.token_hex(3)}"


#: In CODEX_HOME, beside the automations folder: held by the daemon that fires them.
LOCK_NAME = ".codexd-automations.lock"
PASSIVE_RETRY_SECONDS = 2.0


class AutomationService:
    def __init__(self, config: Callable[[], Config], *, store: Callable[[], Store],
                 faults: Faults, publish: Publish, runner: CodexRunner,
                 daemon_run: Callable[[], int | None], stopping: Callable[[], bool],
                 clock: Any = wall_ms) -> None:
        self._config = config
        self._store = store
        self._faults = faults
        self._publish = publish
        self._daemon_run = daemon_run
        self._stopping = stopping
        self.wall_ms = clock
        cfg = config().automations
        self.root = codex_home(config()) / "automations"
        self.default_tz = cfg.timezone or sched_mod.local_zone_name()
        self.defs: dict[str, Known] = {}
        self.runner = runner
        self.runs = AutomationRuns(lambda: self._config().automations, store=store,
                                   faults=faults, publish=publish, runner=runner,
                                   known=self.defs.get, daemon_run=daemon_run,
                                   stopping=stopping, wall_ms=self.wall_ms)
        self.scheduler = Scheduler(wall_ms=self.wall_ms, fire=self.runs.fire,
                                   clock_check_seconds=cfg.clock_check_seconds)
        self.runs.last_hold = lambda: self.scheduler.last_hold
        self._lock = trio.Lock()
        self._stat_cache: dict[Path, tuple[int, int]] = {}
        self._runs: trio.Nursery | None = None
        self._rescan_wake = trio.Event()
        #: Exactly-once per CODEX_HOME: only the daemon holding this lock fires schedules.
        self._home_lock = InstanceLock(self.root.parent / LOCK_NAME)
        #: The pid holding the lock while this daemon is passive; None while active.
        self.passive_for: str | None = None

    @property
    def cfg(self) -> AutomationsSection:
        return self._config().automations

    # --------------------------------------------------------------------------- start-up

    async def startup(self) -> None:
        """Before the socket exists: interrupted leftovers, stored definitions, the files."""
        run_id = self._daemon_run()
        owners = await self._store().read(daemon_runs.pids_with_open_automation_runs)
        alive = {pid for pid in owners if pid_alive(pid)}
        alive.discard(os.getpid())
        left = await self._store().write(lambda c: repo.interrupt_leftovers(c, run_id, alive))
        for run in left:
            log.warning("automation_run_interrupted", run_id=run.run_id,
                        automation_id=run.automation_id, reason="codexd stopped during the run")
        rows = await self._store().read(repo.list_)
        now = self.wall_ms()
        changed: list[str] = []
        for row in rows:
            d = row.definition
            try:
                schedule = sched_mod.parse(d.rrule, tz_name=d.timezone, anchor_ms=d.created_at)
            except sched_mod.ScheduleError as exc:
                log.error("automation_schedule_invalid", automation_id=d.id, error=str(exc))
                schedule = None
            self.defs[d.id] = Known(d, schedule, row.file_digest)
            if schedule is not None and d.status == "ACTIVE":
                # A stored next time in the past is a missed run: the scheduler decides at once.
                self.scheduler.set(d.id, schedule, row.next_run_at or schedule.next_after(now))
            if self.scheduler.next_due(d.id) != row.next_run_at:
                changed.append(d.id)
        for run in left:
            known = self.defs.get(run.automation_id)
            await self.runs.inbox(
                kind="runInterrupted", automation_id=run.automation_id, run_id=run.run_id,
                thread_id=run.thread_id,
                title=f"{known.definition.name if known else run.automation_id}: interrupted",
                body=run.error or "", publish=False)
        await self._persist_next(changed)
        await self.rescan(source="startup", publish=False)
        log.info("automations_loaded", count=len(self.defs), scheduled=len(self.scheduler),
                 interrupted=len(left), dir=str(self.root), timezone=self.default_tz)

    async def _persist_next(self, ids: list[str]) -> None:
        values = [(self.scheduler.next_due(i), i) for i in ids]
        if values:
            await self._store().write(lambda c: repo.set_next_runs(c, values))

    @property
    def mode(self) -> str:
        """``active``, ``passive (automations fired by codexd pid N)`` or ``disabled``."""
        if not self.cfg.enabled:
            return "disabled"
        if self.passive_for is not None:
            return f"passive (automations fired by codexd pid {self.passive_for})"
        return "active"

    def _take_home_lock(self) -> bool:
        """Whether this daemon fires this CODEX_HOME's schedules (another may already)."""
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            holder = self._home_lock.try_acquire()
        except OSError as exc:
            log.error("automations_lock_failed", dir=str(self.root), error=str(exc))
            holder = "unknown"
        if holder is None:
            if self.passive_for is not None:
                log.info("automations_active", dir=str(self.root), previous_holder=self.passive_for)
            self.passive_for = None
            return True
        if self.passive_for != holder:
            log.warning("automations_passive", dir=str(self.root), holder_pid=holder,
                        hint="another codexd fires this CODEX_HOME's automations; this one "
                             "takes over when it stops")
        self.passive_for = holder
        return False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._runs = nursery
                self.runs.bind(nursery)
                if self.cfg.enabled and self._take_home_lock():
                    await nursery.start(self.scheduler.run)
                nursery.start_soon(self._rescan_loop)
                task_status.started()
        finally:
            self._home_lock.release()

    async def _rescan_loop(self) -> None:
        while True:
            period = self.cfg.rescan_seconds
            # A passive daemon checks every few seconds whether the active one has gone.
            wait = period if period > 0 else float("inf")
            if self.passive_for is not None:
                wait = min(wait, PASSIVE_RETRY_SECONDS)
            with trio.move_on_after(wait):
                await self._rescan_wake.wait()
            self._rescan_wake = trio.Event()
            if self.passive_for is not None and self._take_home_lock():
                assert self._runs is not None
                await self._runs.start(self.scheduler.run)
            with self._faults.boundary("automation", "rescan"):
                await self.rescan(source="periodic" if period else "signal")

    def reconfigure(self) -> None:
        """SIGHUP: apply the run limit, re-read the files soon (in the rescan task)."""
        self.runs.reconfigure()
        self._rescan_wake.set()

    # ------------------------------------------------------------------------ reading

    def active_cwds(self) -> list[tuple[str, str]]:
        """(automation id, cwd) of every run executing now."""
        out = []
        for automation_id, _scope in self.runs.active.values():
            known = self.defs.get(automation_id)
            out += [(automation_id, cwd) for cwd in (known.definition.cwds if known else [])]
        return out

    def info(self, automation_id: str) -> AutomationInfo:
        known = self.defs.get(automation_id)
        if known is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no automation {automation_id!r}; "
                           "`codexctl auto ls` lists them", {"automationId": automation_id})
        return AutomationInfo(
            automation=known.definition, next_run_at=self.scheduler.next_due(automation_id),
            file=str(self.root / automation_id / defs.FILE_NAME))

    def list_infos(self, status: str | None, kind: str | None) -> list[AutomationInfo]:
        return [self.info(i) for i, k in self.defs.items()
                if (status is None or k.definition.status == status)
                and (kind is None or k.definition.kind == kind)]

    def schedule_of(self, automation_id: str) -> sched_mod.Schedule:
        self.info(automation_id)  # NOT_FOUND
        known = self.defs[automation_id]
        if known.schedule is None:
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"automation {automation_id!r} has an rrule that does not parse",
                           {"field": "rrule"})
        return known.schedule

    # ------------------------------------------------------------------------ changing

    def validate(self, d: Definition, *, cwds_must_exist: bool = True) -> sched_mod.Schedule:
        try:
            return defs.check(d, now_ms=self.wall_ms(),
                              min_interval_seconds=self.cfg.min_interval_seconds,
                              cwds_must_exist=cwds_must_exist)
        except InvalidDefinition as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {exc}",
                           {"field": exc.field} if exc.field else None) from None

    def check_rule(self, rrule: str, tz_name: str | None) -> sched_mod.Schedule:
        """A schedule as automation/create would accept it (for automation/preview)."""
        now = self.wall_ms()
        try:
            return defs.check_schedule(rrule, tz_name=tz_name or self.default_tz, anchor_ms=now,
                                       now_ms=now,
                                       min_interval_seconds=self.cfg.min_interval_seconds)
        except InvalidDefinition as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {exc}",
                           {"field": exc.field} if exc.field else None) from None

    async def create(self, d: Definition) -> AutomationInfo:
        schedule = self.validate(d)
        async with self._lock:
            if d.id in self.defs:
                raise RpcError(ErrorCode.CONFLICT, f"an automation {d.id!r} exists already",
                               {"automationId": d.id})
            await self._save(d, schedule, previous=None)
        return self._announce(d.id, "created", "client")

    async def update(self, automation_id: str, changes: dict[str, Any]) -> AutomationInfo:
        async with self._lock:
            old = self.info(automation_id).automation
            d = msgspec.structs.replace(old, **changes, updated_at=max(self.wall_ms(),
                                                                      old.updated_at + 1))
            cwds_changed = d.cwds != old.cwds
            schedule = self.validate(d, cwds_must_exist=cwds_changed)
            await self._save(d, schedule, previous=old)
        change: Change = "updated"
        if set(changes) == {"status"}:
            change = "paused" if d.status == "PAUSED" else "resumed"
        return self._announce(automation_id, change, "client")

    async def delete(self, automation_id: str) -> None:
        async with self._lock:
            self.info(automation_id)
            self.runs.cancel_runs_of(automation_id)
            await trio.to_thread.run_sync(defs.remove_dir, self.root, automation_id)
            await self._forget(automation_id)
        self._publish_changed(automation_id, "deleted", None, "client")

    async def _forget(self, automation_id: str) -> None:
        await self._store().write(lambda c: repo.delete(c, automation_id))
        self.defs.pop(automation_id, None)
        self.scheduler.remove(automation_id)
        self._stat_cache.pop(self.root / automation_id / defs.FILE_NAME, None)

    async def _save(self, d: Definition, schedule: sched_mod.Schedule,
                    previous: Definition | None) -> None:
        """File first (so a rescan never sees a row without its file), then the row."""
        path = self.root / d.id / defs.FILE_NAME

        def write_file() -> tuple[str, tuple[int, int]]:
            try:
                prev_bytes = path.read_bytes() if previous is not None else None
            except OSError:
                prev_bytes = None
            data = defs.to_toml(d, prev_bytes)
            defs.write_atomic(path, data)
            st = path.stat()
            return defs.digest(data), (st.st_mtime_ns, st.st_size)

        try:
            digest, stat_key = await trio.to_thread.run_sync(write_file)
        except OSError as exc:
            raise RpcError(ErrorCode.STORE_ERROR,
                           f"cannot write {path}: {exc.strerror}; check that the folder is "
                           "writable (automations.codex_home)", {"path": str(path)}) from None
        self._stat_cache[path] = stat_key
        await self._apply(d, schedule, digest)

    async def _apply(self, d: Definition, schedule: sched_mod.Schedule | None,
                     digest: str | None) -> None:
        await self._apply_many([(d, schedule, digest)])

    async def _apply_many(
        self, items: list[tuple[Definition, sched_mod.Schedule | None, str | None]]
    ) -> None:
        """Store definitions in one transaction, then (re)schedule them."""
        if not items:
            return

        def store(c: apsw.Connection) -> None:
            for d, _schedule, digest in items:
                repo.upsert(c, d, file_digest=digest)

        await self._store().write(store)
        for d, schedule, digest in items:
            old = self.defs.get(d.id)
            self.defs[d.id] = Known(d, schedule, digest)
            same_rule = (old is not None and old.definition.rrule == d.rrule
                         and old.definition.timezone == d.timezone
                         and old.definition.status == "ACTIVE")
            if schedule is not None and d.status == "ACTIVE":
                keep = self.scheduler.next_due(d.id) if same_rule else None
                self.scheduler.set(d.id, schedule, keep)
            else:
                self.scheduler.remove(d.id)
        await self._persist_next([d.id for d, _s, _g in items])

    def _announce(self, automation_id: str, change: Change, source: str) -> AutomationInfo:
        info = self.info(automation_id)
        self._publish_changed(automation_id, change, info, source)
        log.info("automation_changed", automation_id=automation_id, change=change, source=source,
                 next_run_at=info.next_run_at)
        return info

    def _publish_changed(self, automation_id: str, change: Change, info: AutomationInfo | None,
                         source: str) -> None:
        self._publish(AUTOMATION_CHANGED.name, AutomationChanged(
            automation_id=automation_id, change=change, automation=info, source=source))

    # -------------------------------------------------------------------------- files

    async def rescan(self, *, source: str = "client", publish: bool = True) -> RescanResult:
        """Pick up automation.toml files added, edited or removed by hand."""
        result = RescanResult(added=[], updated=[], removed=[], invalid=[])
        async with self._lock:
            known = dict(self._stat_cache)
            digests = {i: k.file_digest for i, k in self.defs.items()}
            now = self.wall_ms()
            min_interval = self.cfg.min_interval_seconds

            def scan_and_check() -> tuple[list[Any], set[str], bool]:
                # File reads and rule checks are CPU and I/O: never on the event loop.
                changed, present, exists = defs.scan(self.root, known,
                                                     default_tz=self.default_tz, now_ms=now)
                checked = []
                for item in changed:
                    d, problem, schedule = item.definition, item.problem, None
                    if d is not None:
                        if digests.get(d.id, "") == item.digest:
                            d = None  # our own write, or touched without a change
                        else:
                            try:
                                schedule = defs.check(d, now_ms=now, cwds_must_exist=False,
                                                      min_interval_seconds=min_interval)
                            except InvalidDefinition as exc:
                                d, problem = None, str(exc)
                    checked.append((item, d, schedule, problem))
                return checked, present, exists

            checked, present, root_exists = await trio.to_thread.run_sync(scan_and_check)
            to_apply: list[tuple[Definition, sched_mod.Schedule | None, str | None]] = []
            for item, d, schedule, problem in checked:
                self._stat_cache[item.path] = item.stat_key
                if d is not None:
                    to_apply.append((d, schedule, item.digest))
                    (result.updated if d.id in self.defs else result.added).append(d.id)
                    continue
                if problem is None:
                    continue
                assert problem is not None
                result.invalid.append(FileIssue(path=str(item.path), message=problem))
                log.warning("automation_file_invalid", path=str(item.path), problem=problem)
                await self.runs.inbox(
                    kind="automationInvalid", title=f"Invalid automation file in "
                    f"{item.path.parent.name}", body=f"{item.path}: {problem}",
                    dedupe_key=f"invalid:{item.path}:{item.digest}", publish=publish)
            await self._apply_many(to_apply)
            added = set(result.added)
            for d, _schedule, _digest in to_apply:
                if publish:
                    self._announce(d.id, "created" if d.id in added else "updated", "file")
                if len(to_apply) <= 100:
                    log.info("automation_file_loaded", automation_id=d.id, new=d.id in added)
            if root_exists:
                for gone in sorted(set(self.defs) - present):
                    await self._forget(gone)
                    result.removed.append(gone)
                    log.info("automation_file_removed", automation_id=gone)
                    if publish:
                        self._publish_changed(gone, "deleted", None, "file")
            else:
                # No folder at all (a new CODEX_HOME?): write the files back, delete nothing.
                for known_def in list(self.defs.values()):
                    if known_def.schedule is not None:
                        await self._save(known_def.definition, known_def.schedule,
                                         previous=None)
        if result.added or result.updated or result.removed or result.invalid:
            log.info("automations_rescanned", source=source, added=len(result.added),
                     updated=len(result.updated), removed=len(result.removed),
                     invalid=len(result.invalid))
        return result

    # ---------------------------------------------------------------------- daemon hooks

    def on_notification(self, method: str, params: msgspec.Raw | None,
                        thread_id: str | None) -> None:
        if self.runner.watches:
            self.runner.on_notification(method, params, thread_id)

    def on_appserver_lost(self, reason: str) -> None:
        self.runner.on_appserver_lost(reason)

    def on_approval(self, row: ApprovalRow) -> None:
        self.runs.on_approval(row)

    async def run_now(self, automation_id: str) -> RunRow:
        return await self.runs.run_now(self.info(automation_id).automation)


