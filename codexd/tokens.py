"""Device tokens: created with a role, shown once, kept as a hash, checked on every connection.

A token reads ``cxd_<id>_<secret>``: the id finds the row, the secret (32 random bytes) is
compared with its SHA-256 in constant time. A slow password hash buys nothing for a secret of
that entropy. Revoking a token closes the connections that use it at once (``on_revoked``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from codexd.errors import ErrorCode, RpcError
from codexd.protocol.tokens import TokenInfo
from codexd.roles import TOKEN_ROLES, Role, TokenRole, allows
from codexd.store import tokens as repo

if TYPE_CHECKING:
    import apsw

    from codexd.store import Store

log = structlog.get_logger("codexd.tokens")

PREFIX = "cxd_"


def now_ms() -> int:
    return int(time.time() * 1000)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Auth:
    """Who a connection is: the token it authenticated with."""

    token_id: str
    name: str
    role: Role
    #: Set on a connection opened with a pairing code (it may only claim its token).
    pairing: str | None = None


class AuthRefused(Exception):
    """The token is missing, unknown, wrong, expired or revoked (the message says which)."""


def token_role(value: str) -> TokenRole:
    """A stored or given role as a token role; anything else grants the least."""
    for role in TOKEN_ROLES:
        if role == value:
            return role
    return "observer"


def to_info(row: repo.TokenRow) -> TokenInfo:
    return TokenInfo(token_id=row.token_id, name=row.name, role=token_role(row.role),
                     created_at=row.created_at, expires_at=row.expires_at,
                     revoked_at=row.revoked_at, last_used_at=row.last_used_at)


#: A connect ticket works once, within this many seconds.
TICKET_SECONDS = 60
#: A pairing code works once, within this many seconds.
PAIRING_SECONDS = 600
#: A browser session (the web console's cookie) ends after this long without use...
SESSION_IDLE_SECONDS = 12 * 3600
#: ...and this long after it was opened, used or not.
SESSION_MAX_SECONDS = 7 * 86_400
#: Browser sessions kept at most (the oldest is dropped past it).
MAX_SESSIONS = 1000
#: Pairing codes: no 0/O, 1/I/L (read aloud, typed on a phone).
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True, slots=True)
class PendingPairing:
    name: str
    role: Role
    expires_seconds: int | None
    deadline: float


@dataclass(slots=True)
class BrowserSession:
    auth: Auth
    opened: float
    used: float


class TokenBook:
    """Collaborators: ``store`` the open store; ``on_revoked(token_id) -> int`` closes the
    token's live connections and says how many.

    Besides tokens it issues *connect tickets* for browsers, which cannot put a header on a
    WebSocket: a client that holds a token (or a local one) asks for a ticket and hands it to
    the page, which connects with ``?ticket=…``. A ticket is single-use, expires after
    :data:`TICKET_SECONDS`, is kept in memory only, and carries a role no higher than its
    issuer's.
    """

    def __init__(self, store: Callable[[], Store], *,
                 on_revoked: Callable[[str], int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._on_revoked = on_revoked
        self._clock = clock
        self._tickets: dict[str, tuple[Auth, float]] = {}
        self._pairings: dict[str, PendingPairing] = {}
        #: Browser sessions by the SHA-256 of their cookie: (who, opened, last used).
        self._sessions: dict[str, BrowserSession] = {}

    def issue_ticket(self, issuer: Auth | None, role: Role) -> tuple[str, int]:
        """A one-time ticket for ``role`` (capped at the issuer's); returns it and its expiry
        (Unix ms)."""
        now = self._clock()
        self._tickets = {k: v for k, v in self._tickets.items() if v[1] > now}
        if issuer is not None and not allows(issuer.role, role):
            raise RpcError(ErrorCode.ROLE_REQUIRED, f"a ticket for {role} needs a token of that "
                           f"role; this one is {issuer.role}",
                           {"needs": role, "role": issuer.role})
        auth = Auth(token_id=issuer.token_id if issuer else "",
                    name=f"ticket from {issuer.name if issuer else 'a local client'}", role=role)
        ticket = "cxt_" + secrets.token_urlsafe(24)
        self._tickets[ticket] = (auth, now + TICKET_SECONDS)
        return ticket, now_ms() + TICKET_SECONDS * 1000

    def pair(self, name: str, role: Role, expires_seconds: int | None) -> tuple[str, int]:
        """A one-time pairing code for a device-to-be; returns it and its expiry (Unix ms)."""
        now = self._clock()
        self._pairings = {k: v for k, v in self._pairings.items() if v.deadline > now}
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))
        code = f"{raw[:5]}-{raw[5:]}"
        self._pairings[code] = PendingPairing(name, role, expires_seconds,
                                              now + PAIRING_SECONDS)
        log.info("pairing_started", name=name, role=role)
        return code, now_ms() + PAIRING_SECONDS * 1000

    def open_pairing(self, code: str) -> Auth:
        """The connection a device opens with its code: it may only claim its token."""
        pending = self._pairings.get(code.upper())
        if pending is None or pending.deadline <= self._clock():
            raise AuthRefused("unknown, used or expired pairing code (codes last ten minutes; "
                              "ask for a new one with `codexctl pair`)")
        return Auth(token_id="", name=f"pairing {pending.name}", role="pairing",
                    pairing=code.upper())

    async def claim(self, auth: Auth | None) -> tuple[str, TokenInfo]:
        """The paired device's own token (the code is used up)."""
        pending = self._pairings.pop(auth.pairing, None) if auth and auth.pairing else None
        if pending is None or pending.deadline <= self._clock():
            raise RpcError(ErrorCode.NOT_FOUND, "this connection's pairing code was used or has "
                           "expired; ask for a new one with `codexctl pair`")
        return await self.create(pending.name, pending.role, pending.expires_seconds)

    def redeem_ticket(self, ticket: str) -> Auth:
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            raise AuthRefused("unknown or already used ticket (a ticket works once; ask for a "
                              "new one with `codexctl token ticket`)")
        auth, deadline = entry
        if deadline <= self._clock():
            raise AuthRefused(f"the ticket expired (tickets last {TICKET_SECONDS} s)")
        return auth

    def open_session(self, auth: Auth) -> str:
        """A browser session for a redeemed ticket: the cookie value (kept only as a hash, in
        memory: a daemon restart ends every session, and `codexctl web` opens a new one)."""
        now = self._clock()
        self._sessions = {k: v for k, v in self._sessions.items() if self._live(v, now)}
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        cookie = "cxs_" + secrets.token_urlsafe(32)
        self._sessions[_digest(cookie)] = BrowserSession(auth, now, now)
        log.info("browser_session_opened", name=auth.name, role=auth.role)
        return cookie

    @staticmethod
    def _live(entry: BrowserSession, now: float) -> bool:
        return now - entry.used < SESSION_IDLE_SECONDS and now - entry.opened < SESSION_MAX_SECONDS

    def check_session(self, cookie: str) -> Auth:
        """The browser session's identity (and it counts as used), or :class:`AuthRefused`."""
        key = _digest(cookie)
        entry = self._sessions.get(key)
        now = self._clock()
        if entry is None or not self._live(entry, now):
            self._sessions.pop(key, None)
            raise AuthRefused("the browser session ended (the daemon restarted, it was idle for "
                              "12 hours, or you logged out): open the URL `codexctl web` prints")
        entry.used = now
        return entry.auth

    def close_session(self, cookie: str) -> bool:
        return self._sessions.pop(_digest(cookie), None) is not None

    def _end_sessions(self, token_id: str) -> None:
        self._sessions = {k: v for k, v in self._sessions.items()
                          if v.auth.token_id != token_id}

    async def create(self, name: str, role: Role, expires_seconds: int | None) -> tuple[str,
                                                                                        TokenInfo]:
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = now_ms()
        row = repo.TokenRow(token_id=token_id, name=name, role=role,
                            secret_hash=_digest(secret), created_at=now,
                            expires_at=now + expires_seconds * 1000 if expires_seconds else None,
                            revoked_at=None, last_used_at=None)

        def insert(c: apsw.Connection) -> None:
            if repo.by_name(c, name) is not None:
                raise RpcError(ErrorCode.CONFLICT, f"a token named {name!r} exists; revoke it "
                               "or choose another name", {"name": name})
            repo.insert(c, row)

        await self._store().write(insert)
        log.info("token_created", token_id=token_id, name=name, role=role,
                 expires_at=row.expires_at)
        return f"{PREFIX}{token_id}_{secret}", to_info(row)

    async def list(self) -> list[TokenInfo]:
        return [to_info(r) for r in await self._store().read(repo.list_)]

    async def revoke(self, token_id: str | None, name: str | None) -> tuple[str, bool, int]:
        def find(c: apsw.Connection) -> repo.TokenRow | None:
            if token_id:
                return repo.get(c, token_id)
            return repo.by_name(c, name or "")

        row = await self._store().read(find)
        if row is None:
            raise RpcError(ErrorCode.NOT_FOUND,
                           f"no token {token_id or name!r} (`codexctl token list` lists them)",
                           {"tokenId": token_id, "name": name})
        at = now_ms()
        changed = await self._store().write(lambda c: repo.revoke(c, row.token_id, at))
        self._end_sessions(row.token_id)  # browser sessions opened with its tickets too
        closed = self._on_revoked(row.token_id)
        log.info("token_revoked", token_id=row.token_id, name=row.name,
                 closed_connections=closed)
        return row.token_id, changed, closed

    async def authenticate(self, token: str | None) -> Auth:
        """The connection's identity, or :class:`AuthRefused` saying why not."""
        if not token:
            raise AuthRefused("no token: send `Authorization: Bearer <token>` (create one with "
                              "`codexctl token create`)")
        if not token.startswith(PREFIX) or token.count("_") < 2:
            raise AuthRefused("not a codexd token")
        token_id, secret = token[len(PREFIX):].split("_", 1)
        row = await self._store().read(lambda c: repo.get(c, token_id))
        if row is None or not hmac.compare_digest(row.secret_hash, _digest(secret)):
            raise AuthRefused("unknown or wrong token")
        now = now_ms()
        if row.revoked_at is not None:
            raise AuthRefused(f"token {row.name!r} was revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthRefused(f"token {row.name!r} has expired")
        await self._store().write(lambda c: repo.touch(c, row.token_id, now))
        return Auth(token_id=row.token_id, name=row.name, role=token_role(row.role))
