"""Containment: nothing a client sends and no bug in one unit takes the daemon down.

Every test here runs against a real daemon process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codexd.errors import ErrorCode
from tests.helpers import eventually, log_events, pid_alive
from tests.helpers.daemon import make_daemon


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
            created = c.call("terminal/create", {"cwd": str(short_tmp), "cols": 80,
                                                 "rows": 24, "command": ["sleep", "30"]})
            tid, pid = created["terminalId"], created["pid"]
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


def scripted_config(extra: str = "") -> str:
    script = Path(__file__).with_name("scripted_appserver.py")
    return (f'[appserver]\ncommand = "{sys.executable}"\nargs = ["{script}"]\n'
            "backoff_initial_seconds = 0.05\n" + extra)


def test_nested_json_from_the_app_server_is_dropped_not_fatal(short_tmp):
    """Regression: a 2 KB line of depth 997 on the app-server's stdout killed the daemon through
    the pump thread."""
    d = make_daemon(short_tmp, config=scripted_config()).start()
    try:
        with d.client() as c:
            eventually(lambda: c.call("daemon/appServer/status")["state"] == "ready",
                       what="the app-server to be ready")
            assert c.call("test/deep", {"depth": 997}) == {}
            eventually(lambda: "appserver_bad_message" in d.log(), what="the bad line logged")
            assert c.call("thread/loaded/list", {}) == {"data": []}
            st = c.call("daemon/appServer/status")
            assert st["state"] == "ready" and st["restarts"] == 0
        bad = log_events(d.log_path, "appserver_bad_message")
        assert "128 levels" in bad[0]["error"]
    finally:
        d.stop()


def test_reconnect_with_subscriptions_replays_missed_thread_events(short_tmp, wire):
    """Regression: initialize {epoch, afterSeq} filtered the replay by the new connection's
    subscriptions, still empty then, so a missed turn/completed never came and gap was false."""
    d = make_daemon(short_tmp, config=scripted_config()).start()
    try:
        with d.client() as c:
            eventually(lambda: c.call("daemon/appServer/status")["state"] == "ready",
                       what="ready")
            epoch, seq = c.server_info["epoch"], c.call("events/replay", {"afterSeq": 0})[
                "lastSeq"]
            c.call("test/emit", {"threadId": "T1", "count": 3})
            c.call("test/emit", {"threadId": "T2", "count": 2})
        w = wire(d)
        res = w.call("initialize", {"clientInfo": {"name": "back"}, "epoch": epoch,
                                    "afterSeq": seq, "threadIds": ["T1"]}, 0)["result"]
        assert res["replay"] == {"gap": False, "count": 3, "more": False, "nextAfterSeq": None}
        w.send_json({"method": "initialized"})
        got = [w.recv() for _ in range(3)]
        assert [m["params"]["threadId"] for m in got] == ["T1"] * 3
        assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
        # Live events keep flowing for the restored subscription.
        w.send_json({"id": 5, "method": "test/emit", "params": {"threadId": "T1", "count": 1}})
        note = w.recv()
        assert note["method"] == "turn/completed" and note["seq"] > got[-1]["seq"]
        # An afterSeq this daemon never issued (no epoch given) is a gap, not "nothing missed".
        w2 = wire(d)
        res = w2.call("initialize", {"clientInfo": {"name": "odd"}, "afterSeq": 10**9}, 0)
        assert res["result"]["replay"]["gap"] is True
    finally:
        d.stop()


def test_replay_larger_than_the_client_queue_is_paged(short_tmp, wire):
    """A reconnect whose replay is bigger than the client's queue still catches up, by pages."""
    d = make_daemon(short_tmp, config=scripted_config(
        "[rpc]\nclient_queue_bytes = 1048576\n")).start()
    try:
        with d.client() as c:
            eventually(lambda: c.call("daemon/appServer/status")["state"] == "ready",
                       what="ready")
            epoch = c.server_info["epoch"]
            seq = c.call("events/replay", {"afterSeq": 0})["lastSeq"]
            for _ in range(6):  # 6 x 20 x 20 kB = 2.4 MB missed, over twice the queue
                c.call("test/emit", {"threadId": "T", "count": 20, "size": 20_000})
        w = wire(d, timeout=30)
        res = w.call("initialize", {"clientInfo": {"name": "pager"}, "epoch": epoch,
                                    "afterSeq": seq, "threadIds": ["T"]}, 0)["result"]
        assert res["replay"]["more"] is True and res["replay"]["gap"] is False
        w.send_json({"method": "initialized"})
        seen = [w.recv()["seq"] for _ in range(res["replay"]["count"])]
        after = res["replay"]["nextAfterSeq"]
        assert after == seen[-1]
        while True:
            page = w.call("events/replay", {"afterSeq": after, "epoch": epoch}, 7)["result"]
            seen += [e["seq"] for e in page["events"]]
            if not page["more"]:
                break
            after = page["nextAfterSeq"]
        assert len(seen) == 120 and seen == sorted(set(seen))
    finally:
        d.stop()


def _codexd_processes(socket_path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"codexd" in cmd and str(socket_path).encode() in cmd:
                found.append(int(entry))
    return found


@pytest.mark.parametrize(("params", "field"), [
    ({"env": {"A": "x\u0000y"}}, "env"),
    ({"env": {"A\u0000B": "x"}}, "env"),
    ({"env": {"A=B": "x"}}, "env"),
    ({"command": ["sh", "-c", "echo\u0000hi"]}, "command"),
    ({"cwd": "/tmp\u0000/x"}, "cwd"),
])
def test_nul_bytes_in_terminal_create_are_refused_before_fork(daemon, short_tmp, params, field):
    base = {"cwd": str(short_tmp), "cols": 80, "rows": 24, **params}
    with daemon.client() as c:
        from codexd.errors import RpcError

        with pytest.raises(RpcError) as info:
            c.call("terminal/create", base)
        assert info.value.code == ErrorCode.INVALID_PARAMS
        assert info.value.data["field"].startswith(field)
        assert "NUL" in info.value.message or "'='" in info.value.message
        assert c.call("terminal/list")["terminals"] == []
    assert _codexd_processes(daemon.socket) == [daemon.proc.pid], "a forked copy of codexd"


@pytest.mark.parametrize("env", [{"A\u0000": "x"}, {"A": "\u0000"}, {"": "x"}])
def test_nul_bytes_in_a_run_env_are_refused_at_start(daemon, short_tmp, env):
    from codexd.errors import RpcError

    with daemon.client() as c, pytest.raises(RpcError) as info:
        c.call("run/start", {"provider": "codex", "prompt": "hi", "cwd": str(short_tmp),
                             "env": env})
    assert info.value.code == ErrorCode.INVALID_PARAMS
    assert info.value.data["field"].startswith("env")


@pytest.mark.parametrize(("text", "needle"), [
    ('[daemon]\nsocket = "/tmp/a"\nsocket = "/tmp/b"\n', 'Key "socket" already exists'),
    ('[daemon]\nstate_dir = "/tmp/a\\u0000b"\n', "`daemon.state_dir`: contains a NUL"),
    ('[daemon]\nsocket = "/tmp/a\\u0000b"\n', "`daemon.socket`: contains a NUL"),
])
def test_bad_config_files_get_a_clear_error_not_a_traceback(short_tmp, text, needle):
    cfg = short_tmp / "bad.toml"
    cfg.write_text(text)
    for cmd in ("config", "run"):
        out = subprocess.run([sys.executable, "-m", "codexd", cmd, "--config", str(cfg)],
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 2, out
        assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_connection_that_never_initializes_is_closed(short_tmp, wire):
    d = make_daemon(short_tmp, config="[rpc]\ninitialize_timeout_seconds = 0.5\n").start()
    try:
        w = wire(d)
        err = w.recv()
        assert err["error"]["code"] == ErrorCode.NOT_INITIALIZED
        assert "initialize_timeout_seconds" in err["error"]["message"]
        with pytest.raises(EOFError):
            w.recv()
        ok = wire(d)
        ok.initialize()
        time.sleep(0.8)
        _status_ok(ok)  # an initialized connection is never timed out
    finally:
        d.stop()


def test_health_and_status_say_when_the_app_server_cannot_start(short_tmp):
    d = make_daemon(short_tmp, config=(
        '[appserver]\ncommand = "/nonexistent/codex"\nbackoff_initial_seconds = 0.05\n'
        "backoff_max_seconds = 0.1\nbreaker_failures = 2\nready_wait_seconds = 60\n")).start()
    try:
        with d.client() as c:
            eventually(lambda: c.call("daemon/appServer/status")["state"] == "failed",
                       what="the breaker to open")
            # In the failed state a forwarded request is answered at once, not after 60 s.
            from codexd.errors import RpcError

            with pytest.raises(RpcError) as info:
                c.call("thread/list", {})
            assert info.value.code == ErrorCode.APPSERVER_NOT_READY
        out = d.ctl("health")
        assert out.returncode == 1, out.stdout
        assert "UNHEALTHY" in out.stdout and "/nonexistent/codex" in out.stdout
        assert "appserver restart" in out.stdout
        health = json.loads(d.ctl("health", "--json").stdout)
        assert health["ok"] is False and health["checks"]["appserver"]["ok"] is False
        assert health["checks"]["store"]["ok"] is True
        status = d.ctl("status")
        assert status.returncode == 0
        assert "appserver failed" in status.stdout and "/nonexistent/codex" in status.stdout
    finally:
        d.stop()


def test_files_are_private_whatever_the_umask(short_tmp):
    state = short_tmp / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    old = os.umask(0o022)
    try:
        d = make_daemon(short_tmp).start()
    finally:
        os.umask(old)
    try:
        with d.client() as c:
            c.call("atom/set", {"key": "k", "value": 1})
            mode = lambda p: oct(p.stat().st_mode & 0o777)  # noqa: E731
            assert mode(state) == "0o700"
            for name in ("codexd.db", "codexd.db-wal", "codexd.db-shm"):
                assert mode(state / name) == "0o600", name
    finally:
        d.stop()


def test_two_daemons_on_one_codex_home_fire_automations_once(short_tmp):
    """Exactly-once holds per CODEX_HOME: the second daemon (another state dir and socket) goes
    passive, says so, and takes over when the first stops."""
    home = short_tmp / "codex-home"
    cfg = f'[automations]\ncodex_home = "{home}"\n'
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    a = make_daemon(short_tmp / "a", config=cfg).start()
    b = make_daemon(short_tmp / "b", config=cfg).start()
    try:
        with a.client() as ca, b.client() as cb:
            assert ca.call("daemon/status")["automations"] == "active"
            mode = cb.call("daemon/status")["automations"]
            assert mode == f"passive (automations fired by codexd pid {a.proc.pid})"
            aid = ca.call("automation/create", {
                "kind": "cron", "prompt": "p", "rrule": "FREQ=DAILY", "name": "shared",
                "cwds": [str(short_tmp)]})["automation"]["id"]
            cb.call("automation/rescan")
            assert cb.call("automation/get", {"automationId": aid})  # both can read it
        assert log_events(b.log_path, "automations_passive")
        assert "automations passive" in b.ctl("status").stdout
        a.stop()
        with b.client() as cb:
            eventually(lambda: cb.call("daemon/status")["automations"] == "active",
                       what="the passive daemon to take over")
    finally:
        a.stop()
        b.stop()


def _mount_tmpfs(path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, check=False).returncode == 0


def test_health_fails_on_a_full_disk_and_recovers(short_tmp):
    """Regression: daemon/health said ok on a full disk (its store check was a SELECT) while
    every write failed with -32021. A real tmpfs, filled up."""
    from codexd.errors import RpcError

    state = short_tmp / "state"
    if not _mount_tmpfs(state, "3m"):
        pytest.skip("needs root to mount a small tmpfs as the state dir")
    d = make_daemon(short_tmp)
    filler = state / "filler"
    try:
        d.start()
        with d.client() as c:
            assert c.call("daemon/health")["ok"] is True
            with open(filler, "wb", buffering=0) as f:  # fill the disk to the last byte
                for chunk in (b"\0" * 65536, b"\0"):
                    try:
                        while True:
                            f.write(chunk)
                    except OSError:
                        pass
            def fill() -> None:
                for i in range(50):  # big enough to need new pages
                    c.call("atom/set", {"key": f"big{i}", "value": "v" * 200_000})

            with pytest.raises(RpcError) as info:
                fill()
            assert info.value.code == ErrorCode.STORE_ERROR
            assert "full" in info.value.message
            health = c.call("daemon/health")
            assert health["ok"] is False and health["checks"]["store"]["ok"] is False
            assert "full" in health["checks"]["store"]["detail"]
            out = d.ctl("health")
            assert out.returncode == 1 and "store" in out.stdout
            _status_ok_client(c)
            filler.unlink()
            c.call("atom/set", {"key": "after", "value": 1})
            assert c.call("daemon/health")["ok"] is True
    finally:
        d.stop()
        subprocess.run(["umount", "-l", str(state)], check=False)


def _status_ok_client(c) -> None:
    assert "version" in c.call("daemon/status")


def test_out_of_fds_clients_are_refused_clearly_and_the_daemon_recovers(daemon):
    """Regression: at the fd limit, clients hung in the backlog instead of getting -32007."""
    import resource
    import socket as socketlib

    resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, (64, 64))
    socks, answers = [], {"ok": 0, "refused": 0}
    try:
        for _ in range(90):
            s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
            s.settimeout(10)
            s.connect(str(daemon.socket))
            s.sendall(b'{"id":0,"method":"initialize","params":{"clientInfo":{"name":"fd"}}}\n')
            line = b""
            while not line.endswith(b"\n"):
                chunk = s.recv(65536)  # a hang here is the bug
                if not chunk:
                    break
                line += chunk
            msg = json.loads(line)
            if "result" in msg:
                answers["ok"] += 1
            else:
                assert msg["error"]["code"] == ErrorCode.TOO_MANY_CLIENTS, msg
                assert "file descriptors" in msg["error"]["message"]
                answers["refused"] += 1
            socks.append(s)
        assert answers["ok"] > 10 and answers["refused"] > 0, answers
    finally:
        for s in socks:
            s.close()
    fds = lambda: len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))  # noqa: E731
    eventually(lambda: fds() < 40, what=f"the daemon to close the clients' fds ({fds()} open)")
    with daemon.client() as c:  # the spare fd is back: the next overload is refused cleanly too
        assert c.call("daemon/health")["checks"]["store"]["ok"] is True


def test_wrong_shape_answer_to_a_server_request_reaches_nobody(short_tmp):
    """The sender is told, nothing goes upstream, the request stays pending for the others."""
    d = make_daemon(short_tmp, config=scripted_config()).start()
    try:
        from codexd.client import Client

        a = Client.connect(d.socket, client_name="a", initialize=False)
        a.call("initialize", {"clientInfo": {"name": "a"}, "capabilities":
                              {"serverRequests": True}, "threadIds": ["T"]})
        a.notify("initialized")
        with a, d.client() as watcher:
            eventually(lambda: watcher.call("daemon/appServer/status")["state"] == "ready",
                       what="ready")
            watcher.call("events/subscribe", {"all": True})
            watcher.call("test/ask", {"method": "item/commandExecution/requestApproval",
                                      "threadId": "T"})
            req = a.next_request(timeout=10)
            for wrong in ("yes", {"approve": True}, None):
                a.respond(req.id, wrong)
                note = a.next_notification(timeout=10)
                while note.method != "serverRequest/answerRejected":
                    note = a.next_notification(timeout=10)
                assert note.params["approvalId"] == req.id
                assert "still pending" in note.params["message"]
            pending = watcher.call("approval/list", {"status": "pending"})["approvals"]
            assert [p["approvalId"] for p in pending] == [req.id]
            watcher.call("approval/respond", {"approvalId": req.id,
                                              "result": {"decision": "accept"}})
            answered = watcher.next_notification(timeout=10)
            while answered.method != "test/answered":
                answered = watcher.next_notification(timeout=10)
            assert answered.params["result"] == {"decision": "accept"}
            time.sleep(0.3)  # nothing else reaches the app-server
            for _ in range(50):
                try:
                    extra = watcher.next_notification(timeout=0.01)
                except TimeoutError:
                    break
                assert extra.method != "test/answered", extra
    finally:
        d.stop()


def test_forwarded_notifications_keep_their_place_among_requests(short_tmp, wire):
    """A client's notification for the app-server is written in order with its requests (it
    used to go through a spawned task, so a later request could overtake it and an earlier
    queued one could be overtaken)."""
    d = make_daemon(short_tmp, config=scripted_config()).start()
    try:
        w = wire(d)
        w.initialize()
        eventually(lambda: w.call("daemon/appServer/status", rid="s")["result"]["state"]
                   == "ready", what="ready")
        for _ in range(20):
            # health (async, the store) first, so the forwarded request queues behind it.
            w.send(b'{"id":"h","method":"daemon/health"}\n'
                   b'{"id":"a","method":"test/a"}\n'
                   b'{"method":"test/note"}\n'
                   b'{"id":"b","method":"test/b"}\n')
            got = {w.recv_response()["id"] for _ in range(3)}
            assert got == {"h", "a", "b"}
        seen = [m for m in w.call("test/seen", rid="seen")["result"]["methods"]
                if m.startswith("test/")]
        assert seen[:-1] == ["test/a", "test/note", "test/b"] * 20
    finally:
        d.stop()


def test_app_server_stderr_is_logged_without_colours_at_its_own_level(short_tmp):
    d = make_daemon(short_tmp, config=scripted_config()).start()
    try:
        with d.client() as c:
            eventually(lambda: c.call("daemon/appServer/status")["state"] == "ready",
                       what="ready")
            for line in ("\x1b[2m2026-12-01T10:00:00Z\x1b[0m \x1b[31mERROR\x1b[0m "
                         "\x1b[2mcodex_core::x\x1b[0m: model refused",
                         "2026-12-01T10:00:01Z  WARN codex_core: slow",
                         "plain line"):
                c.call("test/stderr", {"line": line})
            eventually(lambda: len(log_events(d.log_path, "appserver_stderr")) >= 3,
                       what="three stderr lines logged")
            lines = {e["line"]: e["level"] for e in log_events(d.log_path, "appserver_stderr")}
            assert lines == {"2026-12-01T10:00:00Z ERROR codex_core::x: model refused": "error",
                             "2026-12-01T10:00:01Z  WARN codex_core: slow": "warning",
                             "plain line": "info"}
            tail = c.call("daemon/appServer/status")["stderrTail"]
            assert not any("\x1b" in t for t in tail)
    finally:
        d.stop()
