"""Services and the session built in a test, in-process: real SQLite in a temp dir, a list for
what is published, a transport of the test's own making. No daemon process, no sockets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import trio

from codexd import config as config_mod
from codexd.approvals import ApprovalBook
from codexd.appserver.upstream import ServerRequestIn
from codexd.daemon import Daemon
from codexd.errors import ErrorCode, RpcError
from codexd.events import EventHub
from codexd.faults import Faults
from codexd.rpc import Event, RpcConnection
from codexd.store import Store
from codexd.store import approvals as approvals_repo
from codexd.subscriptions import Interest

# ------------------------------------------------------------------- a message transport


class MessageTransport:
    """One JSON text per message, no newline framing (the way a WebSocket frames them)."""

    kind = "memory"
    peer = None
    direct_fd = -1
    frame = None  # canonical lines in send(); split there
    auth = None
    remote = "memory"

    def bind(self, output: Any) -> None:
        pass

    def __init__(self) -> None:
        self._in_send, self._in_recv = trio.open_memory_channel[bytes](100)
        self.sent: list[dict[str, Any]] = []
        self._arrived = trio.Event()
        self.closed = False

    async def receive(self, rpc: RpcConnection) -> list[Event] | None:
        try:
            message = await self._in_recv.receive()
        except trio.EndOfChannel:
            return None
        return [rpc.decode_message(message)]

    async def send(self, data: bytes) -> None:
        # Canonical lines in, one message each out (a WebSocket transport sends a frame each).
        self.sent += [json.loads(line) for line in data.splitlines()]
        self._arrived.set()

    async def refuse(self, code: ErrorCode, message: str) -> None:
        self.sent.append({"error": {"code": int(code), "message": message}})
        await self.aclose()

    async def aclose(self) -> None:
        self.closed = True

    # The test's side.
    async def put(self, message: str | bytes) -> None:
        await self._in_send.send(message.encode() if isinstance(message, str) else message)

    async def end(self) -> None:
        await self._in_send.aclose()

    async def answer(self, rid: int) -> dict[str, Any]:
        with trio.fail_after(5):
            while True:
                for msg in self.sent:
                    if msg.get("id") == rid:
                        return msg
                self._arrived = trio.Event()
                await self._arrived.wait()


def _daemon(tmp_path: Any) -> Daemon:
    cfg = config_mod.with_overrides(config_mod.load(None), socket=str(tmp_path / "s.sock"),
                                    state_dir=str(tmp_path))
    cfg = msgspec.structs.replace(cfg, appserver=msgspec.structs.replace(cfg.appserver,
                                                                         enabled=False))
    return Daemon(cfg)


async def test_a_session_serves_a_message_framed_transport(tmp_path):
    """The session runs over any transport: messages arrive whole (a pretty-printed one with
    newlines inside works), answers leave as one message each, and closing forgets what the
    session followed."""
    d = _daemon(tmp_path)
    t = MessageTransport()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.serve_client, t)
        await t.put('{"id": 1, "method": "daemon/health"}')
        assert (await t.answer(1))["error"]["code"] == ErrorCode.NOT_INITIALIZED
        await t.put(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "initialize",
                                "params": {"clientInfo": {"name": "mem", "version": "1"}}},
                               indent=2))
        init = await t.answer(2)
        assert init["result"]["server"] == "codexd"
        await t.put('{"jsonrpc": "2.0", "method": "initialized"}')
        await t.put('{"jsonrpc": "2.0", "id": 3, "method": "events/subscribe",'
                    ' "params": {"threadIds": ["t1"]}}')
        assert (await t.answer(3))["result"] == {"threadIds": ["t1"], "all": False}
        await t.put('{"id": 4, "method": "no/such"}')
        assert (await t.answer(4))["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
        (session,) = d.sessions
        assert d.events.threads.keys(session) == ["t1"]
        d.publish("turn/completed", {"threadId": "t1"}, thread_id="t1")
        d.publish("turn/completed", {"threadId": "t2"}, thread_id="t2")
        await t.put('{"id": 5, "method": "events/unsubscribe", "params": {"threadIds": ["t1"]}}')
        await t.answer(5)
        got = [m for m in t.sent if m.get("method") == "turn/completed"]
        assert [m["params"]["threadId"] for m in got] == ["t1"]
        assert all("seq" in m and "epoch" in m for m in got)
        await t.put('{"id": 6, "method": "events/subscribe", "params": {"threadIds": ["t9"]}}')
        await t.answer(6)
        await t.end()
    assert t.closed and not d.sessions
    assert d.events.threads.keys(session) == []  # forgotten with the session


async def test_the_owner_refuses_clients_past_the_limit_through_their_transport(tmp_path):
    d = _daemon(tmp_path)
    d.config = msgspec.structs.replace(
        d.config, rpc=msgspec.structs.replace(d.config.rpc, max_clients=1))
    first, second = MessageTransport(), MessageTransport()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.serve_client, first)
        await trio.testing.wait_all_tasks_blocked()
        await d.serve_client(second)
        assert second.closed
        assert second.sent[0]["error"]["code"] == ErrorCode.TOO_MANY_CLIENTS
        await first.end()


# ------------------------------------------------------------------------- approval book


@dataclass
class _Client:
    id: int
    server_requests: bool = True
    ready: bool = True
    client_name: str = "test"
    rpc: RpcConnection = field(default_factory=lambda: RpcConnection(max_message_bytes=1 << 20))
    got: list[dict[str, Any]] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        self.got.append(json.loads(data))

    notify = send


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "codexd.db")
    yield s
    s.close()


async def test_approval_book_persists_delivers_to_followers_and_first_answer_wins(store):
    events = EventHub(ring_size=100)
    alice, bob, idle = _Client(1), _Client(2), _Client(3, server_requests=False)
    clients = [alice, bob, idle]
    answered: list[tuple[int, Any, Any]] = []

    async def respond(generation: int, upstream_id: Any, result: Any, error: Any) -> bool:
        answered.append((generation, upstream_id, bytes(result) if result else None))
        return True

    pending: list[int] = []
    book = ApprovalBook(lambda: config_mod.ApprovalsSection(), store=lambda: store,
                        events=events, sessions=lambda: clients, respond=respond,
                        faults=Faults(), spawn=lambda coro: None,
                        on_pending=lambda row: pending.append(row.id))
    events.threads.on_added = book.deliver_pending
    events.threads.add(alice, ["th"])
    params = msgspec.Raw(b'{"threadId":"th","turnId":"tu","itemId":"i","command":"ls"}')
    await book.on_request(ServerRequestIn(7, 41, "item/commandExecution/requestApproval",
                                          params))
    (row,) = await store.read(lambda c: approvals_repo.list_(c, status="pending", limit=10,
                                                             thread_id=None))
    assert row.generation == 7 and row.thread_id == "th" and pending == [row.id]
    assert [m["id"] for m in alice.got] == [row.id] and bob.got == [] and idle.got == []
    events.threads.add(bob, ["th"])  # a late follower gets what is waiting
    events.threads.add(idle, ["th"])  # ...but only if it answers server requests
    assert [m["id"] for m in bob.got] == [row.id] and idle.got == []

    status = await book.answer(row.id, msgspec.Raw(b'{"decision":"accept"}'), None, "alice")
    assert status == "resolved"
    assert answered == [(7, 41, b'{"decision":"accept"}')]
    with pytest.raises(RpcError) as second:
        await book.answer(row.id, msgspec.Raw(b'{"decision":"decline"}'), None, "bob")
    assert second.value.code == ErrorCode.ALREADY_RESOLVED and "by alice" in second.value.message
    stored = await store.read(lambda c: approvals_repo.get(c, row.id))
    assert stored is not None and stored.status == "resolved" and stored.resolved_by == "alice"
    resolved = [m for m in bob.got if m.get("method") == "serverRequest/resolved"]
    assert resolved and resolved[0]["params"]["resolvedBy"] == "alice"


# ----------------------------------------------------------------------------- interest


def test_interest_is_kept_per_session_and_forgotten_with_it():
    added: list[int] = []
    interest: Interest[_Client] = Interest(lambda who: added.append(who.id))
    a, b = _Client(1), _Client(2)
    interest.add(a, ["x", "y"])
    interest.add(a, ["x"])  # nothing new: no callback
    interest.follow_all(b)
    assert added == [1, 2]
    assert interest.wants(1, "x") and not interest.wants(1, "z") and interest.wants(1, None)
    assert interest.wants(2, "anything") and interest.any(2) and not interest.any(3)
    assert interest.discard(a, "x") and not interest.discard(a, "x")
    assert interest.keys(a) == ["y"] and interest.is_all(b)
    interest.forget(a)
    interest.stop_all(b)
    assert not interest.any(1) and not interest.any(2)


# ----------------------------------------------------------------------- connect tickets


async def test_tickets_work_once_within_a_minute_and_never_above_their_issuer(store):
    from codexd.tokens import Auth, AuthRefused, TokenBook

    now = [1000.0]
    book = TokenBook(lambda: store, on_revoked=lambda _id: 0, clock=lambda: now[0])
    approver = Auth(token_id="t1", name="phone", role="approver")
    with pytest.raises(RpcError) as err:
        book.issue_ticket(approver, "operator")
    assert err.value.code == ErrorCode.ROLE_REQUIRED
    ticket, _ = book.issue_ticket(approver, "observer")
    assert book.redeem_ticket(ticket).role == "observer"
    with pytest.raises(AuthRefused, match="already used"):
        book.redeem_ticket(ticket)
    late, _ = book.issue_ticket(None, "operator")  # a local client may ask for any role
    now[0] += 61
    with pytest.raises(AuthRefused, match="expired"):
        book.redeem_ticket(late)
    # Tokens: created once, found by their secret only, refused when revoked.
    token, info = await book.create("laptop", "operator", None)
    assert (await book.authenticate(token)).name == "laptop"
    with pytest.raises(AuthRefused, match="unknown or wrong"):
        await book.authenticate(token[:-2] + "xx")
    await book.revoke(info.token_id, None)
    with pytest.raises(AuthRefused, match="revoked"):
        await book.authenticate(token)
