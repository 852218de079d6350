"""Durable server requests: approvals (and every other request the app-server sends us).

Each request is written to SQLite before any client sees it, then sent to every connected client
that declared ``capabilities.serverRequests`` and wants the thread, with ``id`` = the approval id
(the same for all clients, so ``serverRequest/resolved`` means the same thing to everybody). The
first answer wins, from a client's response or from ``approval/respond``; it goes upstream and
everyone is told. Requests nobody answers wait, optionally until ``approvals.timeout_seconds``,
when a configured default answer (or a JSON-RPC error) goes upstream so no turn hangs forever.
When the app-server process they belong to ends, pending requests become expired.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import structlog
import trio

from codexd.appserver.upstream import ServerRequestIn
from codexd.config import ApprovalsSection
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.approvals import (
    SERVER_REQUEST_ANSWER_REJECTED,
    SERVER_REQUEST_RESOLVED,
    AnswerRejected,
    Approval,
    ServerRequestResolved,
)
from codexd.rpc import ErrorObject
from codexd.store import approvals as repo

if TYPE_CHECKING:
    from codexd.events import EventHub
    from codexd.faults import Faults
    from codexd.rpc import RpcConnection
    from codexd.store import Store

#: Answers a server request of a generation upstream; False when that process is gone.
Respond = Callable[[int, Any, "msgspec.Raw | None", "ErrorObject | None"], Awaitable[bool]]

log = structlog.get_logger("codexd.approvals")


class _Refs(msgspec.Struct):
    threadId: str | None = None
    turnId: str | None = None


_refs = msgspec.json.Decoder(_Refs)


def thread_refs(params: msgspec.Raw | None) -> tuple[str | None, str | None]:
    if params is None:
        return None, None
    try:
        r = _refs.decode(params)
    except msgspec.DecodeError:
        return None, None
    return r.threadId, r.turnId


class _Decision(msgspec.Struct):
    decision: Any = msgspec.UNSET


def check_answer(method: str, result: msgspec.Raw) -> str | None:
    """Why ``result`` cannot answer a ``method`` server request, or None if it can.

    Every app-server request is answered with a JSON object; an approval (a method named
    ``...requestApproval`` or ``...Approval``) needs its ``decision``.
    """
    if not bytes(result).lstrip().startswith(b"{"):
        return 'the answer must be the JSON object the request expects, e.g. {"decision": ' \
               '"accept"}'
    if method.endswith(("requestApproval", "Approval")):
        try:
            decision = msgspec.json.decode(result, type=_Decision).decision
        except msgspec.DecodeError:
            return "the answer is not valid JSON"
        if decision is msgspec.UNSET or decision is None:
            return f'an answer to {method} needs a "decision", e.g. {{"decision": "accept"}}'
    return None


@dataclass
class _Live:
    row: repo.ApprovalRow
    upstream_id: Any
    params: msgspec.Raw
    deadline: float = math.inf
    sent_to: set[int] = field(default_factory=set)
    #: Asked by codexd itself (request_local), not by the app-server.
    local: bool = False


#: The generation of approvals codexd asks for itself (app-server generations start at 1).
LOCAL_GENERATION = 0
_local_ids = itertools.count(1)


@dataclass
class _Waiter:
    done: trio.Event = field(default_factory=trio.Event)
    status: str = "resolved"
    result: msgspec.Raw | None = None
    error: ErrorObject | None = None


class Peer(Protocol):
    """What the book uses of a connected client (a session satisfies it)."""

    @property
    def id(self) -> int: ...
    @property
    def client_name(self) -> str: ...
    @property
    def server_requests(self) -> bool: ...
    @property
    def ready(self) -> bool: ...
    @property
    def rpc(self) -> RpcConnection: ...

    def send(self, data: bytes) -> None: ...

    def notify(self, data: bytes) -> None: ...


def to_wire(row: repo.ApprovalRow) -> Approval:
    return Approval(
        approval_id=row.id, method=row.method, status=row.status,  # type: ignore[arg-type]
        params=msgspec.Raw(row.params.encode()), created_at=row.created_at,
        thread_id=row.thread_id, turn_id=row.turn_id,
        result=msgspec.Raw(row.result.encode()) if row.result else msgspec.UNSET,
        resolved_by=row.resolved_by, resolved_at=row.resolved_at, reason=row.reason,
    )


class ApprovalBook:
    """All methods run on the event loop.

    Collaborators: ``config`` returns the current ``[approvals]`` section, ``store`` the open
    store, ``events`` numbers and sends ``serverRequest/resolved``, ``sessions()`` the connected
    clients, ``respond`` answers upstream, ``faults`` bounds each timeout, ``spawn`` runs a
    background unit, ``on_pending`` tells the automations a request waits.
    """

    def __init__(self, config: Callable[[], ApprovalsSection], *, store: Callable[[], Store],
                 events: EventHub, sessions: Callable[[], Iterable[Peer]],
                 respond: Respond, faults: Faults, spawn: Callable[[Awaitable[None]], None],
                 on_pending: Callable[[repo.ApprovalRow], None]) -> None:
        self._config = config
        self._store = store
        self._events = events
        self._sessions = sessions
        self._respond = respond
        self._faults = faults
        self._spawn = spawn
        self._on_pending = on_pending
        self._live: dict[int, _Live] = {}
        self._by_upstream: dict[tuple[int, str], int] = {}
        #: Local approvals' waiters, by their upstream id.
        self._local: dict[str, _Waiter] = {}
        self._timer_wake = trio.Event()
        #: Called with (row, status, by, reason) when a pending request closes, however it does.
        self.on_closed: Callable[[repo.ApprovalRow, str, str | None, str | None], None] = \
            lambda *_: None

    async def expire_leftovers(self) -> None:
        """At start-up: requests pending when codexd last stopped can never be answered now."""
        n = await self._store().write(
            lambda c: repo.expire_all_pending(c, "codexd restarted; the app-server process that "
                                                 "asked is gone"))
        if n:
            log.warning("approvals_expired_at_startup", count=n)

    # -------------------------------------------------------------------------- arrivals

    async def on_request(self, req: ServerRequestIn) -> None:
        params = req.params if req.params is not None else msgspec.Raw(b"null")
        thread_id, turn_id = thread_refs(req.params)
        upstream = msgspec.json.encode(req.upstream_id).decode()
        row = await self._store().write(lambda c: repo.insert(
            c, generation=req.generation, upstream_id=upstream, method=req.method,
            thread_id=thread_id, turn_id=turn_id, params=bytes(params).decode()))
        live = _Live(row=row, upstream_id=req.upstream_id, params=params)
        timeout = self._config().timeout_seconds
        if timeout > 0:
            live.deadline = trio.current_time() + timeout
            self._timer_wake.set()
        self._live[row.id] = live
        self._by_upstream[(req.generation, upstream)] = row.id
        log.info("server_request_pending", approval_id=row.id, method=req.method,
                 thread_id=thread_id)
        for session in list(self._sessions()):
            self._deliver(live, session)
        self._on_pending(row)

    async def request_local(
            self, method: str, params: dict[str, Any], *,
            on_stored: Callable[[repo.ApprovalRow], None] = lambda _row: None,
    ) -> tuple[str, msgspec.Raw | None, ErrorObject | None, int]:
        """An approval codexd itself asks for (a provider run's permission prompt): stored,
        announced and answered like the app-server's (timeouts and default answers included),
        its answer returned here. Returns (status, result, error, approval id). Cancelled
        (the asker is gone), it is closed as expired."""
        upstream = f"local:{next(_local_ids)}"
        encoded = msgspec.json.encode(params)
        row = await self._store().write(lambda c: repo.insert(
            c, generation=LOCAL_GENERATION, upstream_id=upstream, method=method,
            thread_id=None, turn_id=None, params=encoded.decode()))
        waiter = _Waiter()
        self._local[upstream] = waiter
        live = _Live(row=row, upstream_id=upstream, params=msgspec.Raw(encoded), local=True)
        timeout = self._config().timeout_seconds
        if timeout > 0:
            live.deadline = trio.current_time() + timeout
            self._timer_wake.set()
        self._live[row.id] = live
        on_stored(row)
        log.info("server_request_pending", approval_id=row.id, method=method, local=True)
        for session in list(self._sessions()):
            self._deliver(live, session)
        self._on_pending(row)
        try:
            await waiter.done.wait()
        finally:
            self._local.pop(upstream, None)
            if self._live.pop(row.id, None) is not None:  # nobody answered: the asker left
                with trio.CancelScope(shield=True):
                    await self._finish(live, "expired", None, "the run that asked ended")
        return waiter.status, waiter.result, waiter.error, row.id

    async def _answer_upstream(self, generation: int, upstream_id: Any,
                               result: msgspec.Raw | None, error: ErrorObject | None) -> bool:
        if generation != LOCAL_GENERATION:
            return await self._respond(generation, upstream_id, result, error)
        waiter = self._local.get(upstream_id)
        if waiter is None:
            return False
        waiter.result, waiter.error = result, error
        waiter.done.set()
        return True

    def _deliver(self, live: _Live, session: Peer) -> None:
        if (session.id in live.sent_to or not session.server_requests or not session.ready
                or not self._events.threads.wants(session.id, live.row.thread_id)):
            return
        if live.local and getattr(getattr(session, "transport", None), "kind", "") == "appserver":
            return  # a Codex TUI on the app-server wire knows only the app-server's requests
        live.sent_to.add(session.id)
        session.send(session.rpc.send_request_with_id(live.row.id, live.row.method, live.params))

    @property
    def pending_count(self) -> int:
        """Approvals waiting for an answer now."""
        return len(self._live)

    def pending_for_thread(self, thread_id: str) -> list[int]:
        """Ids of the pending requests of ``thread_id``, oldest first."""
        return sorted(i for i, live in self._live.items() if live.row.thread_id == thread_id)

    def deliver_pending(self, session: Peer) -> None:
        """Send ``session`` the pending requests it wants and has not had (late subscribers)."""
        for live in list(self._live.values()):
            self._deliver(live, session)

    # --------------------------------------------------------------------------- answers

    async def answer(self, approval_id: int, result: msgspec.Raw | None,
                     error: ErrorObject | None, by: str) -> str:
        """Resolve a request; the first answer wins. Returns the final status.

        Raises:
            RpcError: NOT_FOUND for an unknown id, ALREADY_RESOLVED when it is not pending.
        """
        live = self._live.get(approval_id)
        if live is not None and result is not None:
            wrong = check_answer(live.row.method, result)
            if wrong is not None:
                raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {wrong}; server "
                               f"request {approval_id} is still pending",
                               {"field": "result", "approvalId": approval_id})
        live = self._live.pop(approval_id, None)
        if live is None:
            row = await self._store().read(lambda c: repo.get(c, approval_id))
            if row is None:
                raise RpcError(ErrorCode.NOT_FOUND, f"no server request {approval_id}",
                               {"approvalId": approval_id})
            raise RpcError(ErrorCode.ALREADY_RESOLVED,
                           f"server request {approval_id} is already {row.status}"
                           + (f" (by {row.resolved_by})" if row.resolved_by else ""),
                           {"approvalId": approval_id, "status": row.status,
                            "resolvedBy": row.resolved_by})
        self._forget(live)
        delivered = await self._answer_upstream(live.row.generation, live.upstream_id, result,
                                                error)
        status = "resolved" if delivered else "expired"
        reason = None if delivered else "the app-server process that asked is gone"
        stored = (bytes(result).decode() if result is not None
                  else msgspec.json.encode({"error": error}).decode())
        await self._store().write(lambda c: repo.finish(
            c, approval_id, status=status, result=stored, resolved_by=by, reason=reason))
        log.info("server_request_answered", approval_id=approval_id, by=by, status=status)
        self._announce(live, status, by, reason)
        return status

    async def answer_from_client(self, session: Peer, approval_id: Any,
                                 result: msgspec.Raw | None, error: ErrorObject | None) -> None:
        """A client answered a request we sent it (a JSON-RPC response)."""
        if not isinstance(approval_id, int):
            return
        who = f"{session.client_name or 'client'}#{session.id}"
        try:
            await self.answer(approval_id, result, error, who)
        except RpcError as exc:
            if exc.code == ErrorCode.INVALID_PARAMS:
                # Nothing went upstream and the request stays pending for everyone else; the
                # sender is told (a response cannot be answered with an error response).
                log.info("server_request_answer_rejected", approval_id=approval_id, by=who,
                         error=exc.message)
                live = self._live.get(approval_id)
                if live is not None:  # the client may answer again, properly this time
                    session.rpc.expect_response(approval_id, live.row.method)
                session.notify(self._events.encode(
                    SERVER_REQUEST_ANSWER_REJECTED.name,
                    AnswerRejected(request_id=approval_id, approval_id=approval_id,
                                   message=exc.message), self._events.seq))
                return
            # A response cannot be answered with an error; the client already got (or gets)
            # serverRequest/resolved. Log it for whoever wonders why nothing happened.
            log.info("server_request_late_answer", approval_id=approval_id, by=who,
                     error=exc.message)

    def on_upstream_resolved(self, params: msgspec.Raw | None, generation: int) -> bool:
        """The app-server resolved a request itself (e.g. the turn was interrupted).

        Returns True if it was one of ours still pending (codexd then announces it).
        """
        class _R(msgspec.Struct):
            requestId: Any = None

        try:
            rid = msgspec.json.decode(params or b"{}", type=_R).requestId
        except msgspec.DecodeError:
            return False
        key = (generation, msgspec.json.encode(rid).decode())
        approval_id = self._by_upstream.get(key)
        live = self._live.pop(approval_id, None) if approval_id is not None else None
        if live is None:
            return False
        self._forget(live)
        self._spawn(self._finish(live, "resolved", "app-server", "resolved upstream"))
        return True

    async def expire_generation(self, generation: int, reason: str) -> None:
        """The app-server process ``generation`` ended: its pending requests can't be answered."""
        gone = [live for live in self._live.values() if live.row.generation == generation]
        for live in gone:
            self._live.pop(live.row.id, None)
            self._forget(live)
        for live in gone:
            await self._finish(live, "expired", None, f"the app-server {reason}")

    async def _finish(self, live: _Live, status: str, by: str | None, reason: str | None) -> None:
        await self._store().write(lambda c: repo.finish(
            c, live.row.id, status=status, result=None, resolved_by=by, reason=reason))
        log.info("server_request_closed", approval_id=live.row.id, status=status, reason=reason)
        self._announce(live, status, by, reason)

    def _forget(self, live: _Live) -> None:
        self._by_upstream.pop((live.row.generation, live.row.upstream_id), None)

    def _announce(self, live: _Live, status: str, by: str | None, reason: str | None) -> None:
        try:
            self.on_closed(live.row, status, by, reason)
        except Exception as exc:  # a notification's fault; the answer stands
            self._faults.record("notify", str(live.row.id), exc)
        self._events.publish(
            SERVER_REQUEST_RESOLVED.name,
            ServerRequestResolved(request_id=live.row.id, approval_id=live.row.id,
                                  status=status, thread_id=live.row.thread_id,  # type: ignore[arg-type]
                                  resolved_by=by, reason=reason),
            self._sessions(), thread_id=live.row.thread_id,
        )

    # -------------------------------------------------------------------------- timeouts

    async def run_timeouts(self) -> None:
        """Answer requests past their deadline; sleeps until the next one (no polling)."""
        while True:
            self._timer_wake = trio.Event()
            nearest = min((live.deadline for live in self._live.values()), default=math.inf)
            with trio.move_on_at(nearest):
                await self._timer_wake.wait()
                continue
            now = trio.current_time()
            for live in [lv for lv in self._live.values() if lv.deadline <= now]:
                # e.g. the database is locked: a fault of this one approval, the loop goes on
                with self._faults.boundary("approval", str(live.row.id)):
                    await self._time_out(live)

    async def _time_out(self, live: _Live) -> None:
        if self._live.pop(live.row.id, None) is None:
            return
        self._forget(live)
        decision = self._config().defaults.get(live.row.method)
        result: msgspec.Raw | None = None
        error: ErrorObject | None = None
        timeout = self._config().timeout_seconds
        if decision is not None:
            result = msgspec.Raw(msgspec.json.encode({"decision": decision}))
            reason = f"nobody answered within {timeout:g} s; answered {decision!r} by default"
        else:
            error = ErrorObject(code=int(ErrorCode.INTERNAL_ERROR),
                                message=f"no client answered within {timeout:g} s")
            reason = f"nobody answered within {timeout:g} s; answered with an error"
        waiter = self._local.get(live.upstream_id) if live.local else None
        if waiter is not None:
            waiter.status = "timedOut"
        await self._answer_upstream(live.row.generation, live.upstream_id, result, error)
        stored = bytes(result).decode() if result is not None else None
        await self._store().write(lambda c: repo.finish(
            c, live.row.id, status="timedOut", result=stored, resolved_by="codexd", reason=reason))
        log.warning("server_request_timed_out", approval_id=live.row.id, method=live.row.method,
                    decision=decision)
        self._announce(live, "timedOut", "codexd", reason)
