"""WebSocket for frontends: the same protocol as codexd.sock (shared test bodies, two
transports), TLS, tokens and roles, and every refusal with its code."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio_websocket

from tests.helpers import eventually, self_signed_certificate
from tests.helpers.daemon import DaemonProc, make_daemon
from tests.helpers.peers import Peer, line_unix, ws_tcp

WS_CONFIG = '[websocket]\nlisten = "127.0.0.1:0"\n'
INIT = {"clientInfo": {"name": "frontend", "version": "1"}}

Open = Callable[[], AbstractAsyncContextManager[Peer]]


@pytest.fixture
def ws_daemon(short_tmp: Path):
    d = make_daemon(short_tmp, config=WS_CONFIG).start()
    yield d
    d.stop()


def _url(d: DaemonProc) -> str:
    with d.client() as c:
        url: str = c.call("daemon/status")["websocket"]
    return url


def _token(d: DaemonProc, role: str = "operator", name: str | None = None) -> str:
    out = d.ctl("token", "create", "--name", name or f"t-{role}", "--role", role)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(params=["unix", "websocket", "websocket-tls"])
def open_peer(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[Open]:
    """Open an initialized peer on each transport (the test body does not know which)."""
    config, context = WS_CONFIG, None
    if request.param == "websocket-tls":
        cert, key = self_signed_certificate(short_tmp)
        config += f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
        context = ssl.create_default_context(cafile=str(cert))
    d = make_daemon(short_tmp, config=config).start()
    if request.param == "unix":
        def opener() -> AbstractAsyncContextManager[Peer]:
            return _initialized(line_unix(str(d.socket)))
    else:
        url, token = _url(d), _token(d)

        def opener() -> AbstractAsyncContextManager[Peer]:
            return _initialized(ws_tcp(url, token, ssl_context=context))
    yield opener
    d.stop()


@asynccontextmanager
async def _initialized(cm: AbstractAsyncContextManager[Any]) -> AsyncIterator[Peer]:
    async with cm as peer:
        peer.init = await peer.call("initialize", INIT)
        await peer.send({"jsonrpc": "2.0", "method": "initialized"})
        yield peer


# --------------------------------------------------------------- one protocol, two wires


async def test_session_rules_and_pipelined_order(open_peer: Open):
    async with open_peer() as p:
        assert p.init["server"] == "codexd" and p.init["epoch"]
        # Pipelined set then get: the get reads the set's write.
        await p.send({"jsonrpc": "2.0", "id": 10, "method": "atom/set",
                      "params": {"key": "k", "value": 1}})
        await p.send({"jsonrpc": "2.0", "id": 11, "method": "atom/get", "params": {"key": "k"}})
        first = await p.next(lambda m: m.get("id") in (10, 11))
        second = await p.next(lambda m: m.get("id") in (10, 11))
        assert [first["id"], second["id"]] == [10, 11] and second["result"]["value"] == 1
        assert all(json.loads(r).get("jsonrpc") == "2.0" for r in p.raw)


async def test_bad_input_gets_its_code_and_loses_nothing(open_peer: Open):
    async with open_peer() as p:
        await p.send_text("{not json")
        assert (await p.next(lambda m: "error" in m))["error"]["code"] == -32700
        await p.send_text("[" * 200 + "]" * 200)
        assert (await p.next(lambda m: "error" in m))["error"]["code"] == -32600
        assert (await p.error("no/such"))["code"] == -32601
        assert (await p.error("atom/set", {"key": 5}))["code"] == -32602
        assert (await p.call("atom/get", {"key": "absent"}))["exists"] is False


async def test_notifications_are_numbered_and_replayed(open_peer: Open):
    async with open_peer() as a, open_peer() as b:
        await a.call("atom/set", {"key": "shared", "value": "x"})
        note = await b.next(lambda m: m.get("method") == "atom/changed")
        assert note["seq"] > 0 and note["epoch"] == b.init["epoch"]
        replay = await b.call("events/replay", {"afterSeq": note["seq"] - 1})
        assert [e["seq"] for e in replay["events"]] == [note["seq"]]


# ------------------------------------------------------------------------ tokens, roles


async def _refused(url: str, token: str | None, *, origin: str | None = None,
                   host: str | None = None,
                   resource: str = "/") -> trio_websocket.ConnectionRejected:
    """Connect expecting a refusal (on a stream of our own, closed whatever happens)."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    headers = [] if token is None else [(b"Authorization", f"Bearer {token}".encode())]
    if origin is not None:
        headers.append((b"Origin", origin.encode()))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    rejected: list[trio_websocket.ConnectionRejected] = []
    try:
        try:
            async with trio.open_nursery() as nursery:
                await trio_websocket.wrap_client_stream(
                    nursery, stream, host or f"127.0.0.1:{port}", resource,
                    extra_headers=headers)
                nursery.cancel_scope.cancel()
        except* trio_websocket.ConnectionRejected as group:  # bare or from the reader task
            rejected += [e for e in group.exceptions
                         if isinstance(e, trio_websocket.ConnectionRejected)]
    finally:
        await stream.aclose()
    assert rejected, "the connection was accepted"
    return rejected[0]


async def test_every_connection_needs_a_good_token(ws_daemon: DaemonProc):
    url = _url(ws_daemon)
    assert (await _refused(url, None)).status_code == 401
    assert (await _refused(url, "cxd_000000000000_nope")).status_code == 401
    good = _token(ws_daemon, "observer", "expiring")
    token_id = good.split("_")[1]
    # Expired: the row says so (tokens last at least a minute, a test does not wait).
    db = apsw.Connection(str(ws_daemon.state_dir / "codexd.db"))
    db.execute("UPDATE device_tokens SET expires_at = 1 WHERE token_id = ?", (token_id,))
    db.close()
    expired = await _refused(url, good)
    assert expired.status_code == 401 and b"expired" in (expired.body or b"")
    listed = json.loads(ws_daemon.ctl("--json", "token", "list").stdout)["tokens"]
    assert all("secret" not in json.dumps(t) for t in listed)


async def test_revoking_a_token_closes_its_live_connection(ws_daemon: DaemonProc):
    url, token = _url(ws_daemon), _token(ws_daemon, "operator", "laptop")
    async with _initialized(ws_tcp(url, token)) as p:
        out = ws_daemon.ctl("token", "revoke", "laptop")
        assert out.returncode == 0 and "1 live connection(s) closed" in out.stdout, out.stdout
        with pytest.raises((trio_websocket.ConnectionClosed, EOFError)):
            await p.next(lambda m: False, within=10)
    refused = await _refused(url, token)
    assert refused.status_code == 401 and b"revoked" in (refused.body or b"")


async def test_origin_and_host_are_checked_before_the_token(ws_daemon: DaemonProc):
    url, token = _url(ws_daemon), _token(ws_daemon)
    assert (await _refused(url, token, origin="https://evil.example")).status_code == 403
    port = int(url.rsplit(":", 1)[1].strip("/"))
    own = f"http://127.0.0.1:{port}"
    async with _initialized(ws_tcp(url, token, origin=own)) as p:  # its own origin passes
        assert (await p.call("daemon/status"))["websocket"] == url
    # A rebinding attack: the right address, another name.
    assert (await _refused(url, token, host="attacker.example")).status_code == 403


async def test_roles_limit_what_a_token_may_call(ws_daemon: DaemonProc):
    url = _url(ws_daemon)
    observer, approver = _token(ws_daemon, "observer"), _token(ws_daemon, "approver")
    with ws_daemon.client() as c:
        term = c.call("terminal/create", {"cwd": "/", "cols": 80, "rows": 24,
                                          "command": ["/bin/sh"]})["terminalId"]
    async with _initialized(ws_tcp(url, observer)) as p:
        assert (await p.call("daemon/status"))["version"]
        err = await p.error("turn/start", {"threadId": "t", "input": []})
        assert err["code"] == -32041 and err["data"]["needs"] == "operator"
        assert (await p.error("approval/respond", {"approvalId": 1,
                                                   "result": {}}))["data"]["needs"] == "approver"
        assert (await p.error("token/list"))["code"] == -32041
        assert (await p.call("terminal/attach", {"terminalId": term, "readOnly": True}))["readOnly"]
    async with _initialized(ws_tcp(url, approver)) as p:
        err = await p.error("terminal/write", {"terminalId": term, "data": "rm -rf ~\n"})
        assert err["code"] == -32041
        err = await p.error("terminal/attach", {"terminalId": term, "readOnly": False})
        assert err["code"] == -32041
        # An approver answers approvals: approval/respond gets past the role check.
        assert (await p.error("approval/respond", {"approvalId": 999,
                                                   "result": {}}))["code"] == -32011
    with ws_daemon.client() as c:
        c.call("terminal/close", {"terminalId": term})


# ------------------------------------------------------------------------ TLS, listening


async def test_tls_listener_serves_wss_with_the_same_protocol(short_tmp: Path):
    cert, key = self_signed_certificate(short_tmp)
    d = make_daemon(short_tmp, config=WS_CONFIG + f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    d.start()
    try:
        url = _url(d)
        assert url.startswith("wss://")
        context = ssl.create_default_context(cafile=str(cert))
        with trio.fail_after(20):
            async with _initialized(ws_tcp(url, _token(d), ssl_context=context)) as p:
                assert (await p.call("atom/set", {"key": "tls", "value": True}))["revision"] > 0
        # Plain text on the TLS port gets nowhere: the connection is closed (nothing runs).
        port = int(url.rsplit(":", 1)[1].strip("/"))
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        await raw.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw=="
                           b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        with trio.fail_after(15):
            got = b""
            with contextlib.suppress(trio.BrokenResourceError):
                while chunk := await raw.receive_some(4096):
                    got += chunk
        await raw.aclose()
        assert b"101" not in got
    finally:
        d.stop()


def test_a_remote_listen_without_tls_refuses_to_start(short_tmp: Path):
    d = make_daemon(short_tmp, config='[websocket]\nlisten = "0.0.0.0:0"\n')
    proc = subprocess.run([sys.executable, "-m", "codexd", "run", "--socket", str(d.socket),
                           "--state-dir", str(d.state_dir)], env=d.env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode != 0
    assert "not a loopback address" in proc.stderr and "tls_cert" in proc.stderr


def test_a_taken_port_moves_to_the_next_free_one(short_tmp: Path):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    d = make_daemon(short_tmp, config=f'[websocket]\nlisten = "127.0.0.1:{port}"\n').start()
    try:
        url = _url(d)
        assert url.startswith("ws://127.0.0.1:") and int(url.rsplit(":", 1)[1].strip("/")) > port
        assert "websocket_port_taken" in d.log()
    finally:
        d.stop()
        holder.close()


async def test_a_browser_connects_once_with_a_ticket(ws_daemon: DaemonProc):
    """Browsers cannot put a header on a WebSocket: a one-time, one-minute ticket in the URL."""
    out = ws_daemon.ctl("token", "ticket", "--role", "observer")
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert "?ticket=cxt_" in url
    port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    async with _initialized(ws_tcp(url.split("?")[0], None, origin=f"http://127.0.0.1:{port}",
                                   resource="/?" + url.split("?", 1)[1])) as p:
        assert (await p.error("atom/set", {"key": "k", "value": 1}))["data"]["role"] == "observer"
    reused = await _refused(url.split("?")[0], None, resource="/?" + url.split("?", 1)[1])
    assert reused.status_code == 401 and b"already used" in (reused.body or b"")
    # A token holder cannot mint a ticket above its own role.
    async with _initialized(ws_tcp(_url(ws_daemon), _token(ws_daemon, "approver"))) as p:
        assert (await p.error("token/ticket", {"role": "operator"}))["code"] == -32041
        assert (await p.call("token/ticket", {}))["role"] == "approver"


async def test_a_websocket_client_that_never_reads_is_dropped_alone(short_tmp: Path):
    d = make_daemon(short_tmp, config=WS_CONFIG + "[rpc]\nclient_queue_bytes = 65536\n").start()
    try:
        url, token = _url(d), _token(d)
        async with _initialized(ws_tcp(url, token)) as slow, \
                _initialized(ws_tcp(url, _token(d, name="fast"))) as fast:
            await slow.call("events/subscribe", {"all": True})
            big = "x" * 200_000
            with trio.fail_after(30):
                for i in range(40):  # 8 MB of atom/changed the slow one never reads
                    await fast.call("atom/set", {"key": f"big{i % 4}", "value": big})
            assert (await fast.call("daemon/status"))["version"]
        assert "output_queue_overflow" in d.log()
    finally:
        d.stop()


async def test_token_holders_leave_an_audit_trail(ws_daemon: DaemonProc):
    url = _url(ws_daemon)
    async with _initialized(ws_tcp(url, _token(ws_daemon, "operator", "laptop"))) as op, \
            _initialized(ws_tcp(url, _token(ws_daemon, "approver", "phone"))) as ap:
        await op.call("atom/set", {"key": "audited", "value": 1})
        await op.call("atom/get", {"key": "audited"})  # a read: not audited
        assert (await ap.error("approval/respond", {"approvalId": 42, "result": {}}))[
            "code"] == -32011
    with ws_daemon.client() as c:
        c.call("atom/set", {"key": "local", "value": 1})  # local clients are not audited
        entries = eventually(lambda: c.call("audit/list", {})["entries"], 10,
                             what="the audit entries")
    seen = {(e["tokenName"], e["method"], e["outcome"]) for e in entries}
    assert ("laptop", "atom/set", "ok") in seen
    assert ("phone", "approval/respond", "-32011") in seen
    assert not any(e["method"] in ("atom/get", "initialize") for e in entries)
    assert all(e["remote"].startswith("127.0.0.1:") for e in entries)
    out = ws_daemon.ctl("audit", "--token", "laptop")
    assert out.returncode == 0 and "atom/set" in out.stdout and "phone" not in out.stdout


async def test_a_new_device_pairs_with_a_one_time_code(ws_daemon: DaemonProc):
    out = ws_daemon.ctl("pair", "--name", "tablet", "--role", "approver")
    assert out.returncode == 0, out.stderr
    code, url = out.stdout.split()[:2]
    base, query = url.split("?", 1)
    assert query == f"pair={code}"
    async with _initialized(ws_tcp(base, None, resource="/?" + query)) as p:
        # The pairing connection can do nothing else...
        assert (await p.error("daemon/status"))["data"]["needs"] == "observer"
        token = (await p.call("token/claim"))["token"]
        # ...and claims once.
        assert (await p.error("token/claim"))["code"] == -32011
    async with _initialized(ws_tcp(base, token)) as device:
        assert (await device.call("daemon/status"))["websocket"] == base
        assert (await device.error("atom/set", {"key": "k", "value": 1}))["data"][
            "role"] == "approver"
    used = await _refused(base, None, resource="/?" + query)
    assert used.status_code == 401 and b"pairing code" in (used.body or b"")
    names = [t["name"] for t in json.loads(ws_daemon.ctl("--json", "token", "list").stdout)[
        "tokens"]]
    assert "tablet" in names
