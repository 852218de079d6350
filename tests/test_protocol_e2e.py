"""The socket protocol end to end against a real `codexd run`: sessions and every bad input."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import trio

from codexd.client import open_client
from codexd.errors import ErrorCode
from tests.wire import Wire


def assert_still_works(daemon, wire: Wire) -> None:
    """The connection that sent bad input and a fresh one both still answer."""
    ok = wire.call("daemon/status", rid=999)
    assert ok["id"] == 999 and ok["result"]["pid"] > 0
    with daemon.client() as other:
        assert other.call("daemon/health")["ok"] is True


def test_initialize_result_and_session_rules(daemon, wire):
    w = wire(daemon)
    early = w.call("daemon/status", rid=1)
    assert early["error"]["code"] == ErrorCode.NOT_INITIALIZED
    assert "initialize" in early["error"]["message"]
    init = w.initialize()["result"]
    assert init["server"] == "codexd"
    assert init["protocolVersion"] == 1
    assert init["pid"] == daemon.proc.pid
    assert init["startedAt"].endswith("Z")
    again = w.call("initialize", {"clientInfo": {"name": "x"}}, rid=2)
    assert again["error"]["code"] == ErrorCode.ALREADY_INITIALIZED
    assert_still_works(daemon, w)


def test_jsonrpc_member_is_optional_inbound_and_always_outbound(daemon, wire):
    w = wire(daemon)
    w.send(b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"n"}}}\n')
    resp = w.recv()
    assert resp["jsonrpc"] == "2.0" and resp["id"] == 1 and "result" in resp


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"{this is not json\n", ErrorCode.PARSE_ERROR, "invalid JSON"),
        (b'{"jsonrpc":"2.0","id":5,"method":"daemon/status","x":"\xff\xfe"}\n',
         ErrorCode.PARSE_ERROR, "UTF-8"),
        (b"[1,2,3]\n", ErrorCode.INVALID_REQUEST, "batch"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"daemon/status"}]\n', ErrorCode.INVALID_REQUEST,
         "batch"),
        (b'"hello"\n', ErrorCode.INVALID_REQUEST, "JSON object"),
        (b'{"jsonrpc":"2.0","id":7}\n', ErrorCode.INVALID_REQUEST, "no method"),
        (b'{"jsonrpc":"2.0","id":7,"method":12}\n', ErrorCode.INVALID_REQUEST, "method"),
    ],
)
def test_bad_input_gets_an_error_and_loses_nothing(daemon, wire, payload, code, fragment):
    w = wire(daemon)
    w.initialize()
    w.send(payload)
    err = w.recv_response()
    assert err["jsonrpc"] == "2.0"
    assert err["id"] is None
    assert err["error"]["code"] == code
    assert fragment in err["error"]["message"]
    assert_still_works(daemon, w)


def test_unknown_method_and_wrong_params(daemon, wire):
    w = wire(daemon)
    w.initialize()
    unknown = w.call("no/such", {}, rid="abc")
    assert unknown["id"] == "abc"
    assert unknown["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
    assert "no/such" in unknown["error"]["message"]

    wrong = w.call("atom/get", {"key": 42}, rid=3)
    assert wrong["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "key" in wrong["error"]["message"] and "`str`" in wrong["error"]["message"]
    assert wrong["error"]["data"] == {"field": "key"}

    missing = w.call("atom/set", {"key": "a"}, rid=4)
    assert missing["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert missing["error"]["data"] == {"field": "value"}

    typo = w.call("atom/get", {"key": "a", "kye": 1}, rid=5)
    assert typo["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert typo["error"]["data"] == {"field": "kye"}

    nested = w.call("settings/update", {"patch": {"defaultSandbox": "yolo"}}, rid=6)
    assert nested["error"]["data"] == {"field": "patch.defaultSandbox"}

    not_object = w.call("atom/get", [1, 2], rid=7)
    assert not_object["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert_still_works(daemon, w)


def test_oversized_message_is_refused_and_discarded(daemon_factory, wire):
    d = daemon_factory(config="[rpc]\nmax_message_bytes = 65536\n").start()
    w = wire(d)
    w.initialize()
    # 5 MB in one line, sent in pieces; the daemon answers as soon as the limit is passed.
    big = b'{"jsonrpc":"2.0","id":1,"method":"atom/set","params":{"key":"k","value":"' + (
        b"x" * 5_000_000) + b'"}}\n'
    w.send(big)
    err = w.recv_response()
    assert err["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
    assert err["error"]["data"] == {"limit": 65536}
    assert_still_works(d, w)
    # Nothing of the big line was applied.
    assert w.call("atom/get", {"key": "k"}, rid=2)["result"]["exists"] is False


def test_default_limit_is_8_mib(daemon, wire):
    w = wire(daemon)
    w.initialize()
    value = "y" * (7 * 1024 * 1024)
    ok = w.call("atom/set", {"key": "big", "value": value}, rid=1)
    assert ok["result"]["revision"] >= 1
    head = b'{"id":2,"method":"atom/set","params":{"key":"k","value":"'
    w.send(head + b"z" * (9 << 20) + b'"}}\n')
    assert w.recv_response()["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
    assert len(w.call("atom/get", {"key": "big"}, rid=3)["result"]["value"]) == len(value)


def test_client_disconnecting_mid_request_harms_nobody(daemon, wire):
    for _ in range(20):
        w = Wire(daemon.socket)
        w.initialize()
        w.send(b'{"id":1,"method":"atom/set","params":{"key":"mid","value":1}}\n'
               b'{"id":2,"method":"atom/list","params":{}}\n{"id":3,"method":"daemon/st')
        w.sock.shutdown(socket.SHUT_RDWR)
        w.close()
    with daemon.client() as c:
        assert c.call("daemon/health")["ok"]
        assert c.call("atom/get", {"key": "mid"})["value"] == 1
        # The gone clients' sessions end once their in-flight requests have finished.
        deadline = time.monotonic() + 10
        while c.call("daemon/status")["clientsConnected"] != 1:
            assert time.monotonic() < deadline, "a disconnected client's session never ended"
            time.sleep(0.02)


def test_client_that_never_reads_is_dropped_and_others_are_not_slowed(daemon_factory, wire):
    d = daemon_factory(config="[rpc]\nclient_queue_bytes = 262144\n").start()
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _hog_is_dropped(d, hog)
    finally:
        hog.close()
    assert "output_queue_overflow" in d.log()


def _hog_is_dropped(d, hog):  # type: ignore[no-untyped-def]
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.connect(str(d.socket))
    hog.sendall(b'{"id":0,"method":"initialize","params":{"clientInfo":{"name":"hog"}}}\n')
    request = b'{"id":1,"method":"daemon/status"}\n'
    hog.settimeout(0.5)
    sent = 0
    dropped = False
    with d.client() as other:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                hog.sendall(request * 200)
                sent += 200
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            except TimeoutError:
                pass
            # The other client is answered promptly all along.
            t0 = time.monotonic()
            assert other.call("daemon/health")["ok"]
            assert time.monotonic() - t0 < 2.0
        assert dropped, f"hog was never disconnected after {sent} requests"
        deadline = time.monotonic() + 10
        while other.call("daemon/status")["clientsConnected"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_connections_that_never_initialize_get_no_notifications(daemon, wire):
    idle = wire(daemon)
    with daemon.client() as writer:
        for i in range(1500):  # more than rpc.pending_notifications
            writer.call("atom/set", {"key": "noise", "value": i})
    # The idle connection was neither flooded nor dropped: it can still start a session.
    assert idle.initialize()["result"]["server"] == "codexd"
    idle.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        idle.recv()


def test_notifications_are_held_until_initialized(daemon, wire):
    w = wire(daemon)
    w.call("initialize", {"clientInfo": {"name": "slow-starter"}}, rid=0)
    with daemon.client() as writer:
        writer.call("atom/set", {"key": "held", "value": 1})
    # Nothing arrives before `initialized`...
    w.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        w.recv()
    w.sock.settimeout(10)
    w.send_json({"jsonrpc": "2.0", "method": "initialized"})
    note = w.recv()
    assert note["method"] == "atom/changed" and note["params"]["key"] == "held"


async def test_hundred_clients_hundred_calls_each(daemon, wire):
    errors: list[str] = []
    with daemon.client() as c:
        total_before = c.call("daemon/status")["clientsTotal"]

    async def one_client(n: int) -> None:
        async with open_client(daemon.socket, client_name=f"c{n}") as c:
            for i in range(100):
                if i % 10 == 0:
                    rev = await c.call("atom/set", {"key": f"c{n}", "value": [n, i]})
                    got = await c.call("atom/get", {"key": f"c{n}"})
                    if got["value"] != [n, i] or got["revision"] != rev["revision"]:
                        errors.append(f"client {n} call {i}: {got}")
                else:
                    st = await c.call("daemon/status")
                    if st["pid"] != daemon.proc.pid:
                        errors.append(f"client {n} call {i}: bad pid")

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for n in range(100):
                nursery.start_soon(one_client, n)
    assert errors == []
    async with open_client(daemon.socket) as c:
        st = await c.call("daemon/status")
        assert st["methods"]["atom/set"]["calls"] == 1000
        assert st["methods"]["atom/get"]["calls"] == 1000
        # 9000 from the clients + the one before; this call counts only once answered.
        assert st["methods"]["daemon/status"]["calls"] == 9001
        assert st["clientsTotal"] == total_before + 101


def test_socket_and_folder_permissions(daemon, wire):
    assert oct(daemon.socket.stat().st_mode & 0o777) == "0o600"
    assert oct(daemon.socket.parent.stat().st_mode & 0o777) == "0o700"
    assert os.stat(daemon.state_dir / "codexd.db").st_mode & 0o077 == 0


def test_pipelined_requests_from_one_client_take_effect_in_order(daemon, wire):
    w = wire(daemon)
    w.initialize()
    batch = [
        ("atom/set", {"key": "p.a", "value": 1}),
        ("atom/get", {"key": "p.a"}),
        ("atom/set", {"key": "p.a", "value": 2, "expectedRevision": 999}),
        ("atom/list", {"prefix": "p."}),
        ("atom/delete", {"key": "p.a"}),
        ("atom/list", {"prefix": "p."}),
        ("daemon/status", None),
        ("atom/get", {"key": "p.a"}),
    ]
    payload = b"".join(
        json.dumps({"id": i, "method": m, **({"params": p} if p else {})}).encode() + b"\n"
        for i, (m, p) in enumerate(batch)
    )
    for _ in range(20):
        w.send(payload)
        got = {}
        while len(got) < len(batch):
            msg = w.recv_response()
            got[msg["id"]] = msg
        assert got[1]["result"]["value"] == 1
        assert got[2]["error"]["code"] == ErrorCode.CONFLICT
        assert [a["key"] for a in got[3]["result"]["atoms"]] == ["p.a"]
        assert got[4]["result"]["deleted"] is True
        assert got[5]["result"]["atoms"] == []
        assert got[7]["result"]["exists"] is False
