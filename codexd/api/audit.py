"""Handlers for ``audit/*``."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.protocol.audit import AUDIT_LIST, AuditEntry, AuditList, AuditListParams
from codexd.session import ClientSession
from codexd.store import audit as repo


@handles(AUDIT_LIST)
async def list_(session: ClientSession, p: AuditListParams) -> AuditList:
    rows = await session.ctx.store.read(
        lambda c: repo.list_(c, token_name=p.token_name, limit=p.limit))
    return AuditList(entries=[AuditEntry(id=r.id, at=r.at, token_id=r.token_id,
                                         token_name=r.token_name, remote=r.remote,
                                         method=r.method, outcome=r.outcome) for r in rows])
