"""Containment: nothing a client sends and no bug in one unit takes the daemon down.

Every test here runs against a real daemon process.
"""

from __future__ import annotations

import time

import pytest

from codexd.errors import ErrorCode
from tests.conftest import make_daemon
from tests.helpers import eventually, log_events, pid_alive


def _status_ok(w) -> None:
    resp = w.call("daemon/status", rid="alive?")
    assert resp["id"] == "alive?" and "result" in resp, resp


def test_deeply_nested_json_gets_an_error_and_the_connection_goes_on(daemon, wire):
    """Regression: 100,000 levels of ``[`` killed the daemon before initialize."""
    w = wire(daemon)
    line = b'{"id":1,"method":"x","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    w.send(line)
    err = w.recv()
    assert err["id"] is None and err["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert "128 levels" in err["error"]["message"]
    assert err["error"]["data"] == {"maxDepth": 128}
    # Exactly at the limit is fine (the envelope is level 1): the request is answered.
    ok = b'{"id":2,"method":"x","params":' + b"[" * 127 + b"]" * 127 + b"}\n"
    w.send(ok)
    assert w.recv()["error"]["code"] == ErrorCode.NOT_INITIALIZED
    w.initialize()
    _status_ok(w)
    other = wire(daemon)
    other.initialize()
    _status_ok(other)


def test_killing_a_terminal_then_opening_another_keeps_the_daemon(daemon, short_tmp):
    """Regression: the PTY fd was closed while the pump waited on it; the next PTY reused the
    number and trio raised BusyResourceError in the daemon's nursery."""
    for _ in range(4):
        tid = daemon.ctl("term", "new", "--cwd", str(short_tmp)).stdout.strip()
        assert tid, daemon.log()[-2000:]
        time.sleep(0.3)
        assert daemon.ctl("term", "kill", tid).returncode == 0
    tid = daemon.ctl("term", "new", "--cwd", str(short_tmp)).stdout.strip()
    st = daemon.ctl("status")
    assert st.returncode == 0, st.stderr + daemon.log()[-3000:]
    with daemon.client() as c:
        listed = [t["terminalId"] for t in c.call("terminal/list")["terminals"]]
        assert listed == [tid]
        assert c.call("daemon/status")["faults"] == {}


# (what it is, the line sent, the error code expected or None for "no answer at all")
BAD_LINES = [
    ("invalid UTF-8 inside a string",
     b'{"id":1,"method":"daemon/status","params":{"x":"a\xffb"}}', ErrorCode.PARSE_ERROR),
    ("a lone surrogate in a \\u escape",
     b'{"id":1,"method":"atom/set","params":{"key":"k","value":"\\ud800"}}',
     ErrorCode.PARSE_ERROR),
    ("1e400 as the id", b'{"id":1e400,"method":"daemon/status"}', ErrorCode.INVALID_REQUEST),
    ("a 10,000-digit id", b'{"id":' + b"9" * 10_000 + b',"method":"daemon/status"}',
     ErrorCode.INVALID_REQUEST),
    ("a float id", b'{"id":1.5,"method":"daemon/status"}', ErrorCode.INVALID_REQUEST),
    ("a null id", b'{"id":null,"method":"daemon/status"}', ErrorCode.INVALID_REQUEST),
    ("an object id", b'{"id":{},"method":"daemon/status"}', ErrorCode.INVALID_REQUEST),
    ("an array id", b'{"id":[1],"method":"daemon/status"}', ErrorCode.INVALID_REQUEST),
    ("a boolean id", b'{"id":true,"method":"daemon/status"}', ErrorCode.INVALID_REQUEST),
    ("1e400 in params", b'{"id":1,"method":"approval/respond","params":{"approvalId":1e400,'
     b'"result":{}}}', ErrorCode.INVALID_PARAMS),
    ("a 10,000-digit int in params", b'{"id":1,"method":"approval/respond","params":'
     b'{"approvalId":' + b"9" * 10_000 + b',"result":{}}}', ErrorCode.INVALID_PARAMS),
    ("2^64 as an id in params", b'{"id":1,"method":"approval/respond","params":'
     b'{"approvalId":18446744073709551616,"result":{}}}', ErrorCode.INVALID_PARAMS),
    ("2^63 as an id in params", b'{"id":1,"method":"inbox/markRead","params":'
     b'{"itemIds":[9223372036854775808]}}', ErrorCode.INVALID_PARAMS),
    ("a NUL byte in a method name", b'{"id":1,"method":"daemon/\\u0000status"}',
     ErrorCode.METHOD_NOT_FOUND),
    ("a raw NUL byte", b'{"id":1,\x00"method":"daemon/status"}', ErrorCode.PARSE_ERROR),
    ("not JSON", b"hello", ErrorCode.PARSE_ERROR),
    ("a batch", b'[{"id":1,"method":"daemon/status"}]', ErrorCode.INVALID_REQUEST),
    ("a JSON string", b'"daemon/status"', ErrorCode.INVALID_REQUEST),
    ("an unknown method", b'{"id":1,"method":"no/such"}', ErrorCode.METHOD_NOT_FOUND),
    ("initialized sent with an id", b'{"id":1,"method":"initialized"}',
     ErrorCode.INVALID_REQUEST),
    ("initialize again", b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"x"}}}',
     ErrorCode.ALREADY_INITIALIZED),
    ("wrong params type", b'{"id":1,"method":"atom/get","params":{"key":5}}',
     ErrorCode.INVALID_PARAMS),
    ("params not an object", b'{"id":1,"method":"atom/get","params":"k"}',
     ErrorCode.INVALID_PARAMS),
    ("a response for an id the daemon never used", b'{"id":987654,"result":{"decision":"x"}}',
     None),
    ("an error response for an unknown id", b'{"id":987655,"error":{"code":1,"message":"m"}}',
     None),
    ("initialized twice", b'{"method":"initialized"}', None),
    ("an unknown notification", b'{"method":"no/such/notification","params":{}}', None),
]


@pytest.mark.parametrize(("what", "line", "code"), BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_bad_line_gets_its_documented_answer_and_the_connection_goes_on(
        daemon, wire, what, line, code):
    w = wire(daemon)
    w.initialize()
    w.send(line + b"\n")
    if code is not None:
        resp = w.recv_response()
        assert "error" in resp, (what, resp)
        assert resp["error"]["code"] == code, (what, resp)
        assert resp["error"]["message"]
    _status_ok(w)


def test_accepted_oddities(daemon, wire):
    """Documented tolerances: a BOM, CR-LF, duplicate keys (the last wins), string ids."""
    w = wire(daemon)
    w.initialize()
    w.send(b'\xef\xbb\xbf{"id":"bom","method":"daemon/status"}\r\n')
    assert w.recv_response()["id"] == "bom"
    w.send(b'{"id":1,"id":"dup","method":"daemon/status"}\n')
    assert w.recv_response()["id"] == "dup"
    w.send(b'{"id":18446744073709551616,"method":"daemon/status"}\n')
    assert w.recv_response()["id"] == 18446744073709551616
    w.send(b'{"id":"' + "é".encode() * 10 + b'","method":"daemon/status"}\n')
    assert w.recv_response()["id"] == "é" * 10


def test_initialize_with_wrong_types_is_refused_and_can_be_retried(daemon, wire):
    w = wire(daemon)
    for params in ({"clientInfo": 5}, {"clientInfo": {"name": 5}},
                   {"clientInfo": {"name": "x"}, "capabilities": "all"},
                   {"clientInfo": {"name": "x"}, "capabilities": {"serverRequests": "yes"}}):
        resp = w.call("initialize", params)
        assert resp["error"]["code"] == ErrorCode.INVALID_PARAMS, (params, resp)
    assert "result" in w.initialize()
    _status_ok(w)


def test_injected_fault_ends_one_terminal_only(short_tmp):
    """A terminal pump that raises: that terminal ends with a reason, the fault is counted
    and logged once as JSON, and the daemon and its other units carry on."""
    d = make_daemon(short_tmp, env={"CODEXD_INJECT_FAULTS": "terminal.pump"}).start()
    try:
        with d.client() as c:
            tid = c.call("terminal/create", {"cwd": str(short_tmp), "cols": 80, "rows": 24,
                                             "command": ["sleep", "30"]})["terminalId"]
            pid = eventually(lambda: [t["pid"] for t in c.call("terminal/list")["terminals"]]
                             or None, what="the terminal") [0]
            eventually(lambda: not c.call("terminal/list")["terminals"],
                       what="the faulty terminal to be closed")
            eventually(lambda: not pid_alive(pid), what="its process to be killed")
            status = c.call("daemon/status")
            assert status["faults"] == {"terminal": 1}
            assert status["lastFault"]["kind"] == "terminal"
            assert status["lastFault"]["unit"] == tid
            assert "injected fault" in status["lastFault"]["message"]
            c.call("atom/set", {"key": "still", "value": "here"})
            assert c.call("atom/get", {"key": "still"})["value"] == "here"
        faults = log_events(d.log_path, "unit_fault")
        assert len(faults) == 1, faults
        assert faults[0]["kind"] == "terminal" and "InjectedFault" in faults[0]["traceback"]
    finally:
        d.stop()


def test_attached_watcher_learns_why_its_terminal_ended(short_tmp):
    d = make_daemon(short_tmp, env={"CODEXD_INJECT_FAULTS": "terminal.pump"}).start()
    try:
        with d.client() as c:
            # The pump faults on its first turn; attach races it, so accept either order.
            tid = c.call("terminal/create", {"cwd": str(short_tmp), "cols": 80, "rows": 24,
                                             "command": ["sleep", "30"]})["terminalId"]
            try:
                c.call("terminal/attach", {"terminalId": tid})
            except Exception:
                return  # already gone: covered by the test above
            note = c.next_notification(timeout=10)
            while note.method != "terminal/exited":
                note = c.next_notification(timeout=10)
            assert note.params["reason"].startswith("internal error: InjectedFault")
    finally:
        d.stop()


def test_core_loop_fault_stops_cleanly_and_next_start_reports_unclean(short_tmp):
    d = make_daemon(short_tmp, env={"CODEXD_INJECT_FAULTS": "daemon.accept"}).start()
    sock = d.socket
    try:
        code = d.wait(15)
        assert code == 70
        assert not sock.exists(), "the socket must be removed"
        crashed = log_events(d.log_path, "daemon_crashed")
        assert len(crashed) == 1 and "InjectedFault" in crashed[0]["traceback"]
    finally:
        d.stop()
    d.env.pop("CODEXD_INJECT_FAULTS")
    d.env  # noqa: B018 - same state dir, no injection
    d.start()
    try:
        assert log_events(d.log_path, "previous_run_unclean")
        with d.client() as c:
            assert c.call("daemon/status")["previousRunUnclean"] is True
    finally:
        d.stop()
    d.start()
    try:
        with d.client() as c:
            assert c.call("daemon/status")["previousRunUnclean"] is False
    finally:
        d.stop()
