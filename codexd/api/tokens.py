"""Handlers for ``token/*`` (operator only, like every method not in codexd.roles)."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.base import NoParams
from codexd.protocol.tokens import (
    TOKEN_CREATE,
    TOKEN_LIST,
    TOKEN_REVOKE,
    TOKEN_TICKET,
    Ticket,
    TicketParams,
    TokenCreated,
    TokenCreateParams,
    TokenList,
    TokenRef,
    TokenRevoked,
)
from codexd.session import ClientSession


@handles(TOKEN_TICKET)
def ticket(session: ClientSession, p: TicketParams) -> Ticket:
    role = p.role or session.role
    value, expires_at = session.ctx.tokens.issue_ticket(session.auth, role)
    return Ticket(ticket=value, role=role, expires_at=expires_at)


@handles(TOKEN_CREATE)
async def create(session: ClientSession, p: TokenCreateParams) -> TokenCreated:
    token, info = await session.ctx.tokens.create(p.name, p.role, p.expires_seconds)
    return TokenCreated(token=token, info=info)


@handles(TOKEN_LIST)
async def list_(session: ClientSession, _p: NoParams) -> TokenList:
    return TokenList(tokens=await session.ctx.tokens.list())


@handles(TOKEN_REVOKE)
async def revoke(session: ClientSession, p: TokenRef) -> TokenRevoked:
    if (p.token_id is None) == (p.name is None):
        raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: give tokenId or name",
                       {"field": "tokenId"})
    token_id, revoked, closed = await session.ctx.tokens.revoke(p.token_id, p.name)
    return TokenRevoked(token_id=token_id, revoked=revoked, closed_connections=closed)
