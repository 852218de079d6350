"""Handlers for ``run/*``, ``queue/list``, ``conversation/*``, ``profile/*``, ``provider/*``,
``secret/*``."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import trio

from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.base import NoParams
from codexd.protocol.runs import (
    CONVERSATION_ARCHIVE,
    CONVERSATION_CHANGED,
    CONVERSATION_CREATE,
    CONVERSATION_GET,
    CONVERSATION_LIST,
    CONVERSATION_RENAME,
    CONVERSATION_SEND,
    PROFILE_DELETE,
    PROFILE_LIST,
    PROFILE_SAVE,
    PROVIDER_CAPABILITIES,
    QUEUE_LIST,
    QUEUE_PAUSE,
    QUEUE_RESUME,
    RUN_ARTIFACTS,
    RUN_CANCEL,
    RUN_EVENTS,
    RUN_EXPORT,
    RUN_GET,
    RUN_LIST,
    RUN_PERMISSION,
    RUN_RERUN,
    RUN_START,
    RUN_SUBSCRIBE,
    SECRET_CLEAR,
    SECRET_HAS,
    SECRET_SET,
    Capabilities,
    CapabilitiesParams,
    Conversation,
    ConversationChanged,
    ConversationCreateParams,
    ConversationList,
    ConversationListParams,
    ConversationRef,
    ConversationRenameParams,
    ConversationSendParams,
    Exported,
    ExportParams,
    Options,
    PermissionAnswer,
    PermissionParams,
    Profile,
    ProfileDeleted,
    ProfileList,
    ProfileRef,
    ProfileSaveParams,
    QueueEntry,
    QueueLanes,
    QueueList,
    QueuePauseParams,
    QueueResumeParams,
    RerunParams,
    Run,
    RunArtifact,
    RunArtifacts,
    RunEvents,
    RunEventsParams,
    RunList,
    RunListParams,
    RunRef,
    RunStarted,
    RunStartParams,
    RunSubscribed,
    RunSubscribeParams,
    SecretRef,
    SecretSetParams,
    SecretState,
)
from codexd.runs import queue as q
from codexd.runs.service import RunService, now_ms
from codexd.session import ClientSession
from codexd.store import runs as repo

MASK = "[REDACTED]"


def _svc(session: ClientSession) -> RunService:
    return session.ctx.runs


def public(run: Run) -> Run:
    """A run as clients see it: env values never leave the daemon."""
    if not run.request.env:
        return run
    req = msgspec.structs.replace(run.request, env=dict.fromkeys(run.request.env, MASK))
    return msgspec.structs.replace(run, request=req)


def _who(session: ClientSession) -> str:
    return f"{session.client_name or 'client'}#{session.id}"


def _confine(session: ClientSession) -> Callable[[str], object] | None:
    """A confined client's runs must work inside workspace grants (their effective cwd)."""
    return session.ctx.workspaces.resolve if session.confined else None


@handles(RUN_START)
async def start(session: ClientSession, p: RunStartParams) -> RunStarted:
    run = await _svc(session).start(p, session=session, confine=_confine(session))
    return RunStarted(run_id=run.run_id, status=run.status)


@handles(RUN_GET)
async def get(session: ClientSession, p: RunRef) -> Run:
    return public(await _svc(session).get(p.run_id))


def _cursor(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    try:
        at, run_id = json.loads(base64.urlsafe_b64decode(value.encode()))
        return int(at), str(run_id)
    except (ValueError, TypeError):
        raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: cursor is not one this daemon "
                       "returned as nextCursor", {"field": "cursor"}) from None


@handles(RUN_LIST)
async def list_(session: ClientSession, p: RunListParams) -> RunList:
    before = _cursor(p.cursor)
    runs = await session.ctx.store.read(lambda c: repo.list_(
        c, status=p.status, provider=p.provider, conversation_id=p.conversation_id,
        limit=p.limit + 1, before=before, mode=p.mode))
    more = len(runs) > p.limit
    runs = runs[:p.limit]
    cursor = None
    if more:
        last = runs[-1]
        cursor = base64.urlsafe_b64encode(json.dumps([last.created_at, last.run_id])
                                          .encode()).decode()
    return RunList(runs=[public(r) for r in runs], next_cursor=cursor)


@handles(RUN_CANCEL, ordered=False)
async def cancel(session: ClientSession, p: RunRef) -> Run:
    return public(await _svc(session).cancel(p.run_id, _who(session)))


@handles(RUN_RERUN)
async def rerun(session: ClientSession, p: RerunParams) -> RunStarted:
    earlier_run = await _svc(session).get(p.run_id)
    if earlier_run.mode == "interactive":
        raise RpcError(ErrorCode.INVALID_PARAMS, f"run {p.run_id} is an interactive session: "
                       "continue it with `session/resume` (`codexctl session resume`)",
                       {"field": "runId", "mode": "interactive"})
    old = earlier_run.request
    fields = Options.__struct_fields__
    overrides = {f: getattr(p.overrides, f) for f in fields} if p.overrides else {}
    params = RunStartParams(prompt=old.prompt, output_schema=old.output_schema,
                            env=old.env or None, harness=old.harness, **overrides)
    earlier = Options(**{f: getattr(old, f) for f in fields})
    run = await _svc(session).start(params, session=session, rerun_of=p.run_id,
                                    layers=(earlier,), confine=_confine(session))
    return RunStarted(run_id=run.run_id, status=run.status)


@handles(RUN_EVENTS)
async def events(session: ClientSession, p: RunEventsParams) -> RunEvents:
    run = await _svc(session).get(p.run_id)
    evs = await session.ctx.store.read(
        lambda c: repo.events(c, p.run_id, p.after_seq, p.limit))
    ended = run.status not in ("queued", "running")
    last = evs[-1].seq if evs else p.after_seq
    return RunEvents(events=evs, complete=ended and last >= run.last_seq)


@handles(RUN_SUBSCRIBE)
def subscribe(session: ClientSession, p: RunSubscribeParams) -> RunSubscribed:
    subs = _svc(session).subscriptions
    subs.add(session, p.run_ids or [])
    if p.all:
        subs.follow_all(session)
    return RunSubscribed(run_ids=subs.keys(session), all=subs.is_all(session))


@handles(RUN_EXPORT)
async def export(session: ClientSession, p: ExportParams) -> Exported:
    run = public(await _svc(session).get(p.run_id))
    evs = await session.ctx.store.read(lambda c: repo.events(c, p.run_id, 0, 1_000_000))
    arts = await _artifacts(session, p.run_id)
    if p.format == "json":
        doc = {"run": msgspec.to_builtins(run),
               "events": [{"seq": e.seq, "type": e.type, "at": e.at, "attempt": e.attempt,
                           "data": json.loads(bytes(e.data))} for e in evs],
               "artifacts": msgspec.to_builtins(arts)}
        content = json.dumps(doc, indent=2, ensure_ascii=False)
    else:
        content = _markdown(run, evs, arts)
    return Exported(run_id=run.run_id, format=p.format, content=content)


def _iso(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else "-"


async def _artifacts(session: ClientSession, run_id: str) -> list[RunArtifact]:
    rows = await session.ctx.store.read(lambda c: repo.artifacts(c, run_id))
    return [RunArtifact(kind=k, name=n, media_type=m, content=c, created_at=t)
            for k, n, m, c, t in rows]


@handles(RUN_ARTIFACTS)
async def run_artifacts(session: ClientSession, p: RunRef) -> RunArtifacts:
    run = await _svc(session).get(p.run_id)  # NOT_FOUND for an unknown run
    return RunArtifacts(run_id=run.run_id, artifacts=await _artifacts(session, run.run_id))


def _markdown(run: Run, evs: list[Any], arts: list[RunArtifact]) -> str:
    r = run.request
    lines = [f"# Run {run.run_id}", "",
             f"- provider: {r.provider}" + (f" (model {r.model})" if r.model else ""),
             f"- status: **{run.status}**" + (f" ({run.reason})" if run.reason else ""),
             f"- cwd: `{r.cwd}`", f"- created: {_iso(run.created_at)}, started: "
             f"{_iso(run.started_at)}, finished: {_iso(run.finished_at)}",
             f"- attempts: {run.attempt}" + (f", session: `{run.session_id}`"
                                             if run.session_id else ""),
             "", "## Prompt", "", r.prompt, "", "## Transcript", ""]
    for e in evs:
        data = json.loads(bytes(e.data))
        if e.type == "run.semantic":
            if data.get("kind") == "agentMessage":
                lines += [data.get("text") or "", ""]
            elif data.get("kind") == "command":
                cmd = data.get("command") or json.dumps(data.get("input"))
                lines += ["```sh", f"$ {cmd}", (data.get("output") or "").rstrip(), "```", ""]
            else:
                detail = json.dumps(data.get("changes") or data.get("input"))
                lines += [f"- {data.get('kind')}: `{detail}`", ""]
        elif e.type in ("run.warning", "run.failed", "run.canceled", "run.interrupted"):
            lines += [f"> {e.type}: {data.get('message') or data.get('by') or ''}", ""]
    lines += ["## Result", "", run.result_text or run.error or "(none)", ""]
    for a in arts:
        if a.kind == "diff":
            lines += ["## Changes", "", "```diff", a.content.rstrip(), "```", ""]
        elif a.kind == "structuredOutput":
            lines += ["## Structured output", "", "```json", a.content, "```", ""]
    return "\n".join(lines)


@handles(QUEUE_LIST)
def queue_list(session: ClientSession, p: NoParams) -> QueueList:
    svc = _svc(session)
    cfg = svc.cfg
    now = now_ms()
    running = [QueueEntry(run_id=a.run.run_id, provider=a.run.request.provider,
                          status="queued" if a.run.status == "queued" else "running",
                          priority=a.run.request.priority,
                          effective_priority=a.run.request.priority, position=None,
                          waiting_ms=0, executor=a.run.request.executor,
                          worker=a.run.worker) for a in svc.active.values()]
    ordered = q.order(list(svc.waiting.values()), now, cfg.aging_seconds)
    queued = [QueueEntry(run_id=w.run_id, provider=w.provider, status="queued",
                         priority=w.priority,
                         effective_priority=q.effective_priority(w, now, cfg.aging_seconds),
                         position=i + 1, waiting_ms=now - w.queued_at_ms,
                         next_attempt_at=w.not_before_ms) for i, w in enumerate(ordered)]
    return QueueList(running=running, queued=queued, capacity=cfg.queue_capacity,
                     max_concurrent=cfg.max_concurrent, max_per_provider=cfg.max_per_provider,
                     paused=dict(svc.paused), paused_until=dict(svc.paused_until))


# ------------------------------------------------------------------------ conversations


def _no_conv(conv_id: str) -> RpcError:
    return RpcError(ErrorCode.NOT_FOUND, f"no conversation {conv_id!r}; `conversation/list` "
                    "shows them", {"conversationId": conv_id})


@handles(CONVERSATION_CREATE)
async def conv_create(session: ClientSession, p: ConversationCreateParams) -> Conversation:
    base = await _svc(session).profile_defaults(p.profile)
    provider = p.provider or base.provider
    if provider is None:
        raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: provider is required (codex "
                       "or claude), directly or from the profile", {"field": "provider"})
    fields = {f: getattr(p, f) for f in Options.__struct_fields__}
    defaults = Options(**{f: v if v is not None else getattr(base, f) for f, v in fields.items()})
    defaults = msgspec.structs.replace(defaults, provider=provider)
    conv_id = "conv_" + secrets.token_hex(6)
    title = p.title or f"{provider} conversation"
    conv: Conversation = await session.ctx.store.write(
        lambda c: repo.conv_insert(c, conv_id, provider, title, defaults))
    _conv_changed(session, "created", conv)
    return conv


def _conv_changed(session: ClientSession, event: str, conv: Conversation) -> None:
    session.ctx.publish(CONVERSATION_CHANGED.name, ConversationChanged(
        event=event, conversation=conv), exclude=session)  # type: ignore[arg-type]


@handles(CONVERSATION_LIST)
async def conv_list(session: ClientSession, p: ConversationListParams) -> ConversationList:
    return ConversationList(conversations=await session.ctx.store.read(
        lambda c: repo.conv_list(c, include_archived=p.include_archived, provider=p.provider)))


@handles(CONVERSATION_GET)
async def conv_get(session: ClientSession, p: ConversationRef) -> Conversation:
    conv = await session.ctx.store.read(
        lambda c: repo.conv_get(c, p.conversation_id, with_runs=True))
    if conv is None:
        raise _no_conv(p.conversation_id)
    return conv


async def _conv_update(session: ClientSession, conv_id: str, **fields: Any) -> Conversation:
    conv = await session.ctx.store.write(lambda c: repo.conv_update(c, conv_id, **fields))
    if conv is None:
        raise _no_conv(conv_id)
    return conv


@handles(CONVERSATION_RENAME)
async def conv_rename(session: ClientSession, p: ConversationRenameParams) -> Conversation:
    conv = await _conv_update(session, p.conversation_id, title=p.title)
    _conv_changed(session, "renamed", conv)
    return conv


@handles(CONVERSATION_ARCHIVE)
async def conv_archive(session: ClientSession, p: ConversationRef) -> Conversation:
    conv = await _conv_update(session, p.conversation_id, archived=1)
    _conv_changed(session, "archived", conv)
    return conv


@handles(CONVERSATION_SEND)
async def conv_send(session: ClientSession, p: ConversationSendParams) -> RunStarted:
    run = await _svc(session).start(
        RunStartParams(prompt=p.prompt, provider=p.provider, priority=p.priority,
                       conversation_id=p.conversation_id), session=session,
        confine=_confine(session))
    return RunStarted(run_id=run.run_id, status=run.status)


# ----------------------------------------------------------------------------- profiles


@handles(PROFILE_LIST)
async def profile_list(session: ClientSession, p: NoParams) -> ProfileList:
    return ProfileList(profiles=await session.ctx.store.read(repo.profile_list))


@handles(PROFILE_SAVE)
async def profile_save(session: ClientSession, p: ProfileSaveParams) -> Profile:
    d = p.defaults
    if d.auto_approve and d.sandbox == "danger-full-access":
        raise RpcError(ErrorCode.POLICY_DENIED, "autoApprove with the danger-full-access "
                       "sandbox is refused by policy: choose one", {"field": "defaults"})
    return await session.ctx.store.write(
        lambda c: repo.profile_save(c, p.name, d))


@handles(PROFILE_DELETE)
async def profile_delete(session: ClientSession, p: ProfileRef) -> ProfileDeleted:
    if not await session.ctx.store.write(lambda c: repo.profile_delete(c, p.name)):
        raise RpcError(ErrorCode.NOT_FOUND, f"no profile {p.name!r}", {"profile": p.name})
    return ProfileDeleted(name=p.name, deleted=True)


# ----------------------------------------------------------------- providers, secrets


@handles(PROVIDER_CAPABILITIES)
async def capabilities(session: ClientSession, p: CapabilitiesParams) -> Capabilities:
    return Capabilities(providers=await _svc(session).capabilities(p.refresh))


def _state(session: ClientSession, provider: str, present: bool) -> SecretState:
    return SecretState(provider=provider, present=present, store=_svc(session).secrets.kind)


@handles(SECRET_SET)
async def secret_set(session: ClientSession, p: SecretSetParams) -> SecretState:
    store = _svc(session).secrets
    try:
        await trio.to_thread.run_sync(store.set, p.provider, p.token)
    except Exception as exc:
        raise RpcError(ErrorCode.STORE_ERROR, f"cannot store the token in the {store.kind}: "
                       f"{type(exc).__name__}; set runs.secret_store = \"file\" to use a 0600 "
                       "file instead") from None
    return _state(session, p.provider, True)


@handles(SECRET_CLEAR)
async def secret_clear(session: ClientSession, p: SecretRef) -> SecretState:
    await trio.to_thread.run_sync(_svc(session).secrets.clear, p.provider)
    return _state(session, p.provider, False)


@handles(SECRET_HAS)
async def secret_has(session: ClientSession, p: SecretRef) -> SecretState:
    token = await trio.to_thread.run_sync(_svc(session).secrets.get, p.provider)
    return _state(session, p.provider, bool(token))


@handles(QUEUE_PAUSE)
async def queue_pause(session: ClientSession, p: QueuePauseParams) -> QueueLanes:
    who = session.client_name or "a client"
    svc = _svc(session)
    paused = await svc.pause(p.provider, p.reason or f"paused by {who}")
    return QueueLanes(paused=paused, paused_until=dict(svc.paused_until))


@handles(QUEUE_RESUME)
async def queue_resume(session: ClientSession, p: QueueResumeParams) -> QueueLanes:
    svc = _svc(session)
    return QueueLanes(paused=await svc.resume(p.provider), paused_until=dict(svc.paused_until))


#: The approval method of a provider run's permission prompt.
PERMISSION_METHOD = "run/permission/requestApproval"  # in upstream.APPROVAL_DECISIONS too
_ALLOW = frozenset({"accept", "acceptForSession", "approved", "allow"})


@handles(RUN_PERMISSION, ordered=False)
async def run_permission(session: ClientSession, p: PermissionParams) -> PermissionAnswer:
    svc = _svc(session)
    active = svc.active.get(p.run_id)
    if active is None or active.run.request.provider != "claude":
        raise RpcError(ErrorCode.NOT_FOUND, f"no running claude run {p.run_id!r} (only a run's "
                       "own permission helper asks)", {"runId": p.run_id})
    return await ask_permission(session.ctx, p.run_id, p.tool_name, p.input, p.tool_use_id)


async def ask_permission(ctx: Any, run_id: str, tool_name: str, tool_input: dict[str, Any],
                         tool_use_id: str | None) -> PermissionAnswer:
    """A claude run's permission prompt as a pending approval (in the inbox too); its answer
    in the form the permission helper returns to claude. A remote run's prompts come here
    through its worker's stream."""
    svc: RunService = ctx.runs
    active = svc.active.get(run_id)
    params = {"runId": run_id, "provider": "claude", "toolName": tool_name,
              "input": tool_input, "toolUseId": tool_use_id,
              "cwd": active.run.request.cwd if active else None}
    svc.log.emit(run_id, "run.approval_requested", {"toolName": tool_name,
                                                   "input": tool_input})

    async def inbox_note(approval_id: int) -> None:
        await ctx.automations.runs.inbox(
            kind="approvalWaiting", title=f"claude run {run_id} is waiting for approval",
            body=f"{tool_name}: {_tool_detail(tool_input)}\nAnswer it with `codexctl approvals "
                 f"accept {approval_id}` or `codexctl approvals decline {approval_id}`.",
            approval_id=approval_id, dedupe_key=f"approval:{approval_id}")

    status, result, error, approval_id = await ctx.approvals.request_local(
        PERMISSION_METHOD, params, on_stored=lambda row: ctx.spawn(inbox_note(row.id)))
    decision = None
    if result is not None:
        with contextlib.suppress(msgspec.DecodeError, AttributeError):
            decision = msgspec.json.decode(result).get("decision")
    allowed = decision in _ALLOW
    message = None if allowed else (
        f"a person declined {tool_name} (approval {approval_id})" if status == "resolved"
        else f"nobody answered approval {approval_id} in time; answered "
             f"{decision or 'with an error'} by default" if status == "timedOut"
        else f"approval {approval_id} could not be answered")
    svc.log.emit(run_id, "run.approval_resolved", {
        "approvalId": approval_id, "decision": decision, "status": status,
        "behavior": "allow" if allowed else "deny",
        "error": error.message if error is not None else None})
    return PermissionAnswer(behavior="allow" if allowed else "deny", approval_id=approval_id,
                            message=message)


def _tool_detail(tool_input: dict[str, Any]) -> str:
    for key in ("command", "file_path", "path", "url", "pattern"):
        if isinstance(tool_input.get(key), str):
            return str(tool_input[key])[:500]
    return json.dumps(tool_input)[:500]
