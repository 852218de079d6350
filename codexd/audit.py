"""The audit trail of token holders: every operator call and every approval answer.

A local client (a Unix socket of the same user) is not audited: it could do anything as that
user anyway. What a WebSocket client with a token does that changes something is written to
``audit_log`` (token, remote address, method, outcome, time) and listed by ``audit/list``. Notes
are written in batches off the request path, so auditing never slows the call it records.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from codexd.store import audit as repo

if TYPE_CHECKING:
    import apsw

    from codexd.store import Store
    from codexd.tokens import Auth

Row = tuple[int, str, str, str, str, str]


class AuditLog:
    """Collaborators: ``store`` the open store, ``spawn`` runs the batch writer as a unit."""

    def __init__(self, store: Callable[[], Store],
                 spawn: Callable[[Awaitable[None]], None]) -> None:
        self._store = store
        self._spawn = spawn
        self._pending: list[Row] = []

    def note(self, auth: Auth, remote: str, method: str, outcome: str) -> None:
        first = not self._pending
        self._pending.append((int(time.time() * 1000), auth.token_id, auth.name, remote, method,
                              outcome))
        if first:
            self._spawn(self._flush())

    async def _flush(self) -> None:
        rows, self._pending = self._pending, []

        def write(c: apsw.Connection) -> None:
            repo.add(c, rows)

        await self._store().write(write)
