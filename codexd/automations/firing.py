"""Runs of automations: a due run claimed once, executed within the limits, recorded, reported.

The scheduler calls :meth:`AutomationRuns.fire` when an automation is due. The run is claimed in
SQLite with a unique (automation, scheduled time) key before anything starts, so it fires once
even with two daemons on one state dir or a restart in between; missed runs follow the
automation's ``missed_policy``. A run executes through the :class:`CodexRunner` (a thread and a
turn on the app-server) under ``automations.max_concurrent_runs`` and
``automations.run_timeout_seconds``, and ends in the inbox either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

from codexd.automations import schedule as sched_mod
from codexd.automations.definition import Definition
from codexd.automations.runner import CodexRunner, Outcome
from codexd.config import AutomationsSection
from codexd.protocol.automations import (
    AUTOMATION_RUN_COMPLETED,
    AUTOMATION_RUN_STARTED,
    INBOX_ITEM_ADDED,
    InboxItem,
    ItemAdded,
    RunEvent,
    RunRow,
)
from codexd.store import automations as repo

if TYPE_CHECKING:
    from codexd.faults import Faults
    from codexd.store import Store
    from codexd.store.approvals import ApprovalRow

#: Numbers and sends a notification to every client that wants it (``Daemon.publish``).
Publish = Callable[..., None]

log = structlog.get_logger("codexd.automations")


def wall_ms() -> int:
    return int(time.time() * 1000)


def iso_local(ms: int, tz: Any) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).isoformat(timespec="seconds")


@dataclass(slots=True)
class Known:
    """An automation as the service holds it."""

    definition: Definition
    schedule: sched_mod.Schedule | None  # None when the stored rule no longer parses
    file_digest: str | None


class AutomationRuns:
    """Collaborators: ``config`` returns the ``[automations]`` section, ``known`` looks an
    automation up, ``runner`` executes a run, ``publish`` sends notifications, ``daemon_run``
    is this daemon life's row (runs are tagged with it), ``stopping`` says the daemon stops."""

    def __init__(self, config: Callable[[], AutomationsSection], *, store: Callable[[], Store],
                 faults: Faults, publish: Publish, runner: CodexRunner,
                 known: Callable[[str], Known | None], daemon_run: Callable[[], int | None],
                 stopping: Callable[[], bool], wall_ms: Callable[[], int]) -> None:
        self._config = config
        self._store = store
        self._faults = faults
        self._publish = publish
        self._runner = runner
        self._known = known
        self._daemon_run = daemon_run
        self._stopping = stopping
        self._wall_ms = wall_ms
        self._limiter = trio.CapacityLimiter(config().max_concurrent_runs)
        self._nursery: trio.Nursery | None = None
        #: Runs executing now: run id → (automation id, its cancel scope).
        self.active: dict[int, tuple[str, trio.CancelScope]] = {}
        #: The scheduler's last hold (a usage limit): what came due in it counts as missed.
        self.last_hold: Callable[[], tuple[int, int] | None] = lambda: None

    @property
    def cfg(self) -> AutomationsSection:
        return self._config()

    def bind(self, nursery: trio.Nursery) -> None:
        """Runs execute in ``nursery`` (the service's, cancelled when the daemon stops)."""
        self._nursery = nursery

    def reconfigure(self) -> None:
        self._limiter.total_tokens = self.cfg.max_concurrent_runs

    def cancel_runs_of(self, automation_id: str) -> None:
        for aid, scope in list(self.active.values()):
            if aid == automation_id:
                scope.cancel()

    async def fire(self, automation_id: str, times: list[int], next_ms: int | None) -> None:
        """The scheduler's callback: claim the due run (once) and start it."""
        known = self._known(automation_id)
        if known is None:
            return
        d = known.definition
        now = self._wall_ms()
        late = now - times[-1] > self.cfg.missed_after_seconds * 1000
        hold = self.last_hold()
        held = hold is not None and hold[0] - 1000 <= times[-1] <= hold[1]
        trigger, status, decision = "schedule", "queued", None
        if len(times) > 1 or late or held:
            n = len(times)
            first = iso_local(times[0], known.schedule.tz if known.schedule else UTC)
            what = f"{n} scheduled run{'s' if n > 1 else ''} missed (first due {first})"
            if held:
                what += " while the account's usage limit held automations"
            trigger = "missed"
            if d.missed_policy == "skip":
                status, decision = "skipped", f"{what}; skipped (missed_policy = skip)"
            else:
                decision = f"{what}; running once now (missed_policy = runOnce)"
        claimed = False
        with self._faults.boundary("automation", f"{automation_id} claim"):
            run = await self._store().write(lambda c: repo.claim(
                c, automation_id, times[-1], trigger=trigger, status=status, decision=decision,
                daemon_run=self._daemon_run(), next_run_at=next_ms))
            claimed = True
        if not claimed:
            return  # the fault is logged and counted; the next fire tries again
        if run is None:
            log.info("automation_run_claimed_elsewhere", automation_id=automation_id,
                     scheduled_at=times[-1])
            return
        if decision:
            log.warning("automation_runs_missed", automation_id=automation_id, count=len(times),
                        decision=decision)
        if status == "skipped":
            await self._completed(d, run)
            return
        self.start(d, run)

    async def run_now(self, d: Definition) -> RunRow:
        run: RunRow = await self._store().write(
            lambda c: repo.claim_manual(c, d.id, daemon_run=self._daemon_run()))
        self.start(d, run)
        return run

    def start(self, d: Definition, run: RunRow) -> None:
        assert self._nursery is not None, "runs before the service started"
        scope = trio.CancelScope()
        self.active[run.run_id] = (d.id, scope)
        self._nursery.start_soon(self._execute, d, run, scope)

    async def _execute(self, d: Definition, run: RunRow, scope: trio.CancelScope) -> None:
        outcome = Outcome(status="interrupted", error="codexd stopped during the run")
        started = False
        try:
            with scope:
                async with self._limiter:
                    run = await self._update(run, status="running", started_at=self._wall_ms())
                    started = True
                    self._publish(AUTOMATION_RUN_STARTED.name,
                                        RunEvent(run=run, automation_name=d.name))
                    log.info("automation_run_started", automation_id=d.id, run_id=run.run_id,
                             trigger=run.trigger)
                    outcome = await self._execute_bounded(d, run)
            if scope.cancelled_caught:
                outcome = Outcome(status="interrupted", thread_id=outcome.thread_id,
                                  turn_id=outcome.turn_id,
                                  error="the automation was deleted during the run")
        except Exception as exc:  # the fire is the unit: it fails, the scheduler goes on
            message = self._faults.record("automation", f"{d.id} run {run.run_id}", exc)
            outcome = Outcome(status="failed", error=f"internal error: {message}")
        finally:
            self.active.pop(run.run_id, None)
            with trio.CancelScope(shield=True):
                await self._finish(d, run, outcome, started)

    async def _execute_bounded(self, d: Definition, run: RunRow) -> Outcome:
        ids: dict[str, str | None] = {"thread": None, "turn": None}

        async def on_ids(thread_id: str | None, turn_id: str | None) -> None:
            ids["thread"], ids["turn"] = thread_id, turn_id
            await self._update(run, thread_id=thread_id, turn_id=turn_id)

        timeout = self.cfg.run_timeout_seconds
        with trio.move_on_after(timeout) as timer:
            return await self._runner.execute(d, run, on_ids)
        assert timer.cancelled_caught
        if ids["thread"] and ids["turn"]:
            await self._runner.interrupt(ids["thread"], ids["turn"])
        return Outcome(status="interrupted", thread_id=ids["thread"], turn_id=ids["turn"],
                       error=f"timed out after {timeout:g} s (automations.run_timeout_seconds); "
                             "the turn was interrupted")

    async def _update(self, run: RunRow, **fields: Any) -> RunRow:
        updated = await self._store().write(lambda c: repo.update_run(c, run.run_id, **fields))
        return updated or run

    async def _finish(self, d: Definition, run: RunRow, outcome: Outcome, started: bool) -> None:
        now = self._wall_ms()
        fields: dict[str, Any] = {
            "status": outcome.status, "finished_at": now, "summary": outcome.summary,
            "error": outcome.error,
        }
        if not started:
            fields["started_at"] = now
        if outcome.thread_id:
            fields["thread_id"] = outcome.thread_id
        if outcome.turn_id:
            fields["turn_id"] = outcome.turn_id
        if outcome.decision:
            fields["decision"] = ((run.decision + "; ") if run.decision else "") + outcome.decision
        final = None
        with self._faults.boundary("automation", f"{run.automation_id} run {run.run_id}"):
            final = await self._store().write(lambda c: repo.update_run(c, run.run_id, **fields))
        if final is None:
            return  # the automation (and its runs) were deleted meanwhile
        log.info("automation_run_completed", automation_id=d.id, run_id=run.run_id,
                 status=final.status, duration_ms=final.duration_ms, thread_id=final.thread_id,
                 error=final.error)
        await self._completed(d, final)

    async def _completed(self, d: Definition, run: RunRow) -> None:
        self._publish(AUTOMATION_RUN_COMPLETED.name,
                            RunEvent(run=run, automation_name=d.name))
        body = run.summary or run.error or run.decision or "(no message)"
        await self.inbox(kind=f"run{run.status.capitalize()}", title=f"{d.name}: {run.status}",
                          body=body, automation_id=d.id, run_id=run.run_id,
                          thread_id=run.thread_id)

    async def inbox(self, *, kind: str, title: str, body: str, publish: bool = True,
                     **refs: Any) -> InboxItem | None:
        item: InboxItem | None = None
        with self._faults.boundary("automation", f"inbox {kind}"):
            item = await self._store().write(
                lambda c: repo.add_item(c, kind=kind, title=title, body=body, **refs))
        if item is not None and publish and not self._stopping():
            self._publish(INBOX_ITEM_ADDED.name, ItemAdded(item=item))
        return item

    def on_approval(self, row: ApprovalRow) -> None:
        watch = self._runner.watches.get(row.thread_id or "")
        if watch is None or self._nursery is None:
            return
        detail = _approval_detail(row.params)
        self._nursery.start_soon(lambda: self.inbox(
            kind="approvalWaiting", title=f"{watch.automation_name} is waiting for approval",
            body=f"{row.method}: {detail}\nAnswer it with `codexctl approvals accept {row.id}` "
                 f"or `codexctl approvals decline {row.id}`.",
            automation_id=self.run_owner(watch.run_id),
            run_id=watch.run_id, thread_id=row.thread_id, approval_id=row.id,
            dedupe_key=f"approval:{row.id}"))

    def run_owner(self, run_id: int) -> str | None:
        entry = self.active.get(run_id)
        return entry[0] if entry else None


def _approval_detail(params: str) -> str:
    try:
        p = msgspec.json.decode(params)
    except msgspec.DecodeError:
        return ""
    if not isinstance(p, dict):
        return ""
    parts = [str(p[k]) for k in ("command", "reason", "question") if p.get(k)]
    return " — ".join(parts)[:2000]



