"""Handlers for ``approval/*``."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.approvals import to_wire
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.approvals import (
    APPROVAL_LIST,
    APPROVAL_RESPOND,
    ApprovalList,
    ApprovalListParams,
    ApprovalRespondParams,
    ApprovalRespondResult,
)
from codexd.session import ClientSession
from codexd.store import approvals as repo


@handles(APPROVAL_LIST)
async def list_(session: ClientSession, p: ApprovalListParams) -> ApprovalList:
    rows = await session.ctx.store.read(
        lambda c: repo.list_(c, status=p.status, thread_id=p.thread_id, limit=p.limit))
    return ApprovalList(approvals=[to_wire(r) for r in rows])


@handles(APPROVAL_RESPOND)
async def respond(session: ClientSession, p: ApprovalRespondParams) -> ApprovalRespondResult:
    if not bytes(p.result).lstrip().startswith(b"{"):  # known or not, never a non-object
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       'invalid params: result must be the JSON object the request expects, '
                       'e.g. {"decision": "accept"}', {"field": "result"})
    who = f"{session.client_name or 'client'}#{session.id}"
    status = await session.ctx.approvals.answer(p.approval_id, p.result, None, who)
    return ApprovalRespondResult(approval_id=p.approval_id, status=status)  # type: ignore[arg-type]
