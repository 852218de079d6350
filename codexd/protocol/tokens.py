"""``token/*``: per-device tokens for the WebSocket listener, each with a role."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from codexd.protocol.base import NoParams, Params, Struct, method

RoleName = Literal["observer", "approver", "operator"]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]


class TokenCreateParams(Params, frozen=True):
    name: TokenName
    role: RoleName
    #: The token stops working this long after creation; absent = never.
    expires_seconds: Annotated[int, msgspec.Meta(ge=60, le=10 * 365 * 86_400)] | None = None


class TokenInfo(Struct, frozen=True, omit_defaults=False):
    """A token as listed (the secret is never shown again)."""

    token_id: str
    name: str
    role: RoleName
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


class TokenCreated(Struct, frozen=True, omit_defaults=False):
    token: str  # shown once; send it as `Authorization: Bearer <token>`
    info: TokenInfo


class TokenList(Struct, frozen=True):
    tokens: list[TokenInfo]


class TokenRef(Params, frozen=True):
    """One of ``tokenId`` or ``name``."""

    token_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    name: TokenName | None = None


class TokenRevoked(Struct, frozen=True, omit_defaults=False):
    token_id: str
    revoked: bool
    #: Live connections that used the token, closed at once.
    closed_connections: int


class TicketParams(Params, frozen=True):
    #: The role the ticket grants (at most the caller's own); default the caller's.
    role: RoleName | None = None


class Ticket(Struct, frozen=True, omit_defaults=False):
    #: Connect once with `ws(s)://HOST:PORT/?ticket=<ticket>` within a minute.
    ticket: str
    role: RoleName
    expires_at: int


class Pairing(Struct, frozen=True, omit_defaults=False):
    #: Give the device this code (or the URL): it connects with `?pair=<code>` within ten
    #: minutes and calls token/claim once.
    code: str
    url: str | None
    name: str
    role: RoleName
    expires_at: int


TOKEN_PAIR = method("token/pair", TokenCreateParams, Pairing,
                    "A one-time code (ten minutes) a device exchanges for its own token.")
TOKEN_CLAIM = method("token/claim", NoParams, TokenCreated,
                     "On a connection opened with ?pair=CODE: the device's own token, once.")
TOKEN_TICKET = method("token/ticket", TicketParams, Ticket,
                      "A single-use, one-minute connect ticket for a browser (no header needed).")
TOKEN_CREATE = method("token/create", TokenCreateParams, TokenCreated,
                      "Create a device token with a role; the token is shown once.")
TOKEN_LIST = method("token/list", NoParams, TokenList, "Device tokens (never their secrets).")
TOKEN_REVOKE = method("token/revoke", TokenRef, TokenRevoked,
                      "Revoke a token; its live connections are closed at once.")
