"""Handlers for ``automation/*`` and ``inbox/*``."""

from __future__ import annotations

from typing import Any

import msgspec

from codexd.api.registry import handles
from codexd.automations.definition import Definition
from codexd.automations.firing import iso_local
from codexd.automations.service import AutomationService, new_id
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.automations import (
    AUTOMATION_CREATE,
    AUTOMATION_DELETE,
    AUTOMATION_GET,
    AUTOMATION_LIST,
    AUTOMATION_PAUSE,
    AUTOMATION_PREVIEW,
    AUTOMATION_RESCAN,
    AUTOMATION_RESUME,
    AUTOMATION_RUN_NOW,
    AUTOMATION_RUNS,
    AUTOMATION_UPDATE,
    INBOX_ARCHIVE,
    INBOX_LIST,
    INBOX_MARK_READ,
    AutomationInfo,
    AutomationList,
    AutomationRef,
    CreateParams,
    Deleted,
    InboxList,
    InboxListParams,
    InboxMarked,
    InboxMarkParams,
    ListParams,
    Occurrence,
    Preview,
    PreviewParams,
    RescanResult,
    RunList,
    RunResult,
    RunsParams,
    UpdateParams,
)
from codexd.protocol.base import NoParams
from codexd.session import ClientSession
from codexd.store import automations as repo


def _svc(session: ClientSession) -> AutomationService:
    return session.ctx.automations


@handles(AUTOMATION_CREATE)
async def create(session: ClientSession, p: CreateParams) -> AutomationInfo:
    svc = _svc(session)
    now = svc.wall_ms()
    lines = p.prompt.strip().splitlines()
    name = p.name or (lines[0] if lines else "")
    d = Definition(
        id=p.id or new_id(name or "automation"), kind=p.kind, name=(name or "")[:200],
        prompt=p.prompt, status=p.status, rrule=p.rrule, timezone=p.timezone or svc.default_tz,
        cwds=list(p.cwds), model=p.model, reasoning_effort=p.reasoning_effort,
        execution_environment=p.execution_environment, target_thread_id=p.target_thread_id,
        missed_policy=p.missed_policy, created_at=now, updated_at=now)
    return await svc.create(d)


@handles(AUTOMATION_UPDATE)
async def update(session: ClientSession, p: UpdateParams) -> AutomationInfo:
    changes = {f: getattr(p, f) for f in p.__struct_fields__
               if f != "automation_id" and getattr(p, f) is not msgspec.UNSET}
    if not changes:
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       "invalid params: nothing to change; give at least one field")
    return await _svc(session).update(p.automation_id, changes)


@handles(AUTOMATION_GET)
def get(session: ClientSession, p: AutomationRef) -> AutomationInfo:
    return _svc(session).info(p.automation_id)


@handles(AUTOMATION_LIST)
def list_(session: ClientSession, p: ListParams) -> AutomationList:
    return AutomationList(automations=_svc(session).list_infos(p.status, p.kind))


@handles(AUTOMATION_DELETE)
async def delete(session: ClientSession, p: AutomationRef) -> Deleted:
    await _svc(session).delete(p.automation_id)
    return Deleted(automation_id=p.automation_id, deleted=True)


@handles(AUTOMATION_PAUSE)
async def pause(session: ClientSession, p: AutomationRef) -> AutomationInfo:
    return await _svc(session).update(p.automation_id, {"status": "PAUSED"})


@handles(AUTOMATION_RESUME)
async def resume(session: ClientSession, p: AutomationRef) -> AutomationInfo:
    return await _svc(session).update(p.automation_id, {"status": "ACTIVE"})


@handles(AUTOMATION_RUN_NOW)
async def run_now(session: ClientSession, p: AutomationRef) -> RunResult:
    return RunResult(run=await _svc(session).run_now(p.automation_id))


@handles(AUTOMATION_PREVIEW)
def preview(session: ClientSession, p: PreviewParams) -> Preview:
    svc = _svc(session)
    now = svc.wall_ms()
    if (p.rrule is None) == (p.automation_id is None):
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       "invalid params: give either rrule or automationId", {"field": "rrule"})
    if p.automation_id is not None:
        schedule = svc.schedule_of(p.automation_id)
        if p.timezone is not None and p.timezone != schedule.tz.key:
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"invalid params: automation {p.automation_id!r} runs in its own zone "
                           f"({schedule.tz.key}); timezone applies to an rrule (change the "
                           "automation's with `codexctl auto edit ID --tz ZONE`)",
                           {"field": "timezone"})
    else:
        schedule = svc.check_rule(p.rrule or "", p.timezone)
    times = schedule.upcoming(p.after if p.after is not None else now, p.count)
    return Preview(timezone=schedule.tz.key,
                   occurrences=[Occurrence(at=t, local=iso_local(t, schedule.tz)) for t in times])


@handles(AUTOMATION_RESCAN)
async def rescan(session: ClientSession, p: NoParams) -> RescanResult:
    return await _svc(session).rescan(source="client")


@handles(AUTOMATION_RUNS)
async def runs(session: ClientSession, p: RunsParams) -> RunList:
    if p.automation_id is not None:
        _svc(session).info(p.automation_id)  # NOT_FOUND for an unknown id
    rows = await session.ctx.store.read(lambda c: repo.runs(c, p.automation_id, p.limit))
    return RunList(runs=rows)


@handles(INBOX_LIST)
async def inbox_list(session: ClientSession, p: InboxListParams) -> InboxList:
    def read(c: Any) -> InboxList:
        return InboxList(items=repo.list_items(c, unread_only=p.unread_only,
                                               include_archived=p.include_archived,
                                               limit=p.limit),
                         unread=repo.unread_count(c))
    return await session.ctx.store.read(read)


async def _mark(session: ClientSession, ids: list[int], column: str) -> InboxMarked:
    def mark(c: Any) -> list[int]:
        changed, unknown = repo.mark_items(c, ids, column)
        if unknown:
            # Raising rolls the transaction back: all or nothing.
            raise RpcError(ErrorCode.NOT_FOUND,
                           f"no inbox item {', '.join(map(str, unknown))}; nothing was changed",
                           {"itemIds": unknown})
        return changed
    return InboxMarked(item_ids=await session.ctx.store.write(mark))


@handles(INBOX_MARK_READ)
async def inbox_mark_read(session: ClientSession, p: InboxMarkParams) -> InboxMarked:
    return await _mark(session, p.item_ids, "read_at")


@handles(INBOX_ARCHIVE)
async def inbox_archive(session: ClientSession, p: InboxMarkParams) -> InboxMarked:
    return await _mark(session, p.item_ids, "archived_at")
