"""Handlers for ``token/*`` (operator only, like every method not in codexd.roles)."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.base import NoParams
from codexd.protocol.tokens import (
    TOKEN_CLAIM,
    TOKEN_CREATE,
    TOKEN_LIST,
    TOKEN_PAIR,
    TOKEN_REVOKE,
    TOKEN_TICKET,
    Pairing,
    Ticket,
    TicketParams,
    TokenCreated,
    TokenCreateParams,
    TokenList,
    TokenRef,
    TokenRevoked,
)
from codexd.session import ClientSession
from codexd.tokens import token_role


@handles(TOKEN_PAIR)
def pair(session: ClientSession, p: TokenCreateParams) -> Pairing:
    code, expires_at = session.ctx.tokens.pair(p.name, p.role, p.expires_seconds)
    frontends = session.ctx.frontends
    return Pairing(code=code, url=f"{frontends.url}?pair={code}" if frontends else None,
                   name=p.name, role=p.role, expires_at=expires_at)


@handles(TOKEN_CLAIM)
async def claim(session: ClientSession, _p: NoParams) -> TokenCreated:
    token, info = await session.ctx.tokens.claim(session.auth)
    return TokenCreated(token=token, info=info)


@handles(TOKEN_TICKET)
def ticket(session: ClientSession, p: TicketParams) -> Ticket:
    role = token_role(p.role or session.role)
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
