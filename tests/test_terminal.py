"""Terminal host end to end: real PTYs through a real daemon."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from codexd.client import Client
from codexd.errors import ErrorCode, RpcError
from tests.helpers.daemon import make_daemon

BASH = ["bash", "--norc", "--noprofile", "-i"]


class _Params(msgspec.Struct):
    seq: int = 0
    data: str = ""
    snapshot: str = ""


class _Msg(msgspec.Struct):
    id: int | None = None
    method: str | None = None
    params: _Params | None = None
    result: dict[str, Any] | None = None


def create(c: Client, cwd: Path, command: list[str] | None = None, **kw: Any) -> str:
    params = {"cwd": str(cwd), "cols": 80, "rows": 24, **kw}
    if command:
        params["command"] = command
    return c.call("terminal/create", params)["terminalId"]


def read_until(c: Client, tid: str, needle: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        note = c.next_notification(timeout=max(0.1, deadline - time.monotonic()))
        if note.method == "terminal/output" and note.params["terminalId"] == tid:
            out += base64.b64decode(note.params["data"])
    return out


def test_shell_echo_resize_and_exit_status(daemon, short_tmp):
    with daemon.client() as c:
        tid = create(c, short_tmp, BASH)
        att = c.call("terminal/attach", {"terminalId": tid})
        assert att["seq"] >= 0 and att["cols"] == 80 and att["exited"] is None
        c.call("terminal/write", {"terminalId": tid, "data": "echo hi-$((40+2))\n"})
        assert b"hi-42" in read_until(c, tid, b"hi-42")
        c.call("terminal/resize", {"terminalId": tid, "cols": 132, "rows": 43})
        c.call("terminal/write", {"terminalId": tid, "data": "stty size\n"})
        assert b"43 132" in read_until(c, tid, b"43 132")
        c.call("terminal/write", {"terminalId": tid, "data": "exit 7\n"})
        while True:
            note = c.next_notification(timeout=10)
            if note.method == "terminal/exited":
                assert note.params == {"terminalId": tid, "exitCode": 7, "signal": None,
                                           "reason": None}
                break
        # The exit status is kept until the terminal is closed.
        (info,) = c.call("terminal/list")["terminals"]
        assert info["exited"] == {"exitCode": 7, "signal": None}
        with pytest.raises(RpcError) as err:
            c.call("terminal/write", {"terminalId": tid, "data": "x"})
        assert err.value.code == ErrorCode.TERMINAL_EXITED
        c.call("terminal/close", {"terminalId": tid})
        assert c.call("terminal/list")["terminals"] == []


def test_bad_input_is_refused_clearly(daemon, short_tmp):
    with daemon.client() as c:
        cases = [
            ({"cwd": str(short_tmp / "nope"), "cols": 80, "rows": 24}, ErrorCode.INVALID_PARAMS,
             "not an existing folder"),
            ({"cwd": str(short_tmp), "cols": 80, "rows": 24, "command": ["no-such-cmd-xyz"]},
             ErrorCode.SPAWN_FAILED, "command not found"),
            ({"cwd": str(short_tmp), "cols": 0, "rows": 24}, ErrorCode.INVALID_PARAMS, "cols"),
            ({"cwd": str(short_tmp), "cols": 80, "rows": 100000}, ErrorCode.INVALID_PARAMS, "rows"),
            ({"cwd": str(short_tmp), "cols": 80, "rows": 24, "command": []},
             ErrorCode.INVALID_PARAMS, "command"),
        ]
        for params, code, fragment in cases:
            with pytest.raises(RpcError) as err:
                c.call("terminal/create", params)
            assert err.value.code == code, params
            assert fragment in err.value.message, (fragment, err.value.message)
        with pytest.raises(RpcError) as err:
            c.call("terminal/attach", {"terminalId": "nope"})
        assert err.value.code == ErrorCode.NOT_FOUND
        tid = create(c, short_tmp, ["cat"])
        c.call("terminal/attach", {"terminalId": tid})
        with pytest.raises(RpcError) as err:
            c.call("terminal/write", {"terminalId": tid, "data": "%%%", "encoding": "base64"})
        assert err.value.code == ErrorCode.INVALID_PARAMS
        with pytest.raises(RpcError) as err:
            c.call("terminal/close", {"terminalId": tid, "signal": "SIGNOPE"})
        assert err.value.code == ErrorCode.INVALID_PARAMS
        assert c.call("daemon/health")["ok"]


def test_detach_reattach_shows_scrollback_and_two_attachers_agree(daemon, short_tmp):
    with daemon.client() as a:
        tid = create(a, short_tmp, BASH)
        a.call("terminal/attach", {"terminalId": tid})
        a.call("terminal/write", {"terminalId": tid, "data": "echo before-detach\n"})
        read_until(a, tid, b"before-detach\r\n")
        a.call("terminal/detach", {"terminalId": tid})
    # The client is gone; the terminal lives on and keeps its scrollback.
    with daemon.client() as a, daemon.client() as b:
        snap_a = a.call("terminal/attach", {"terminalId": tid})
        snap_b = b.call("terminal/attach", {"terminalId": tid})
        assert b"before-detach" in base64.b64decode(snap_a["snapshot"])
        assert snap_a["snapshot"] == snap_b["snapshot"] and snap_a["seq"] == snap_b["seq"]
        a.call("terminal/write", {"terminalId": tid,
                                  "data": "for i in $(seq 1 300); do echo line-$i; done\n"})
        got_a = read_until(a, tid, b"line-300\r\n")
        got_b = read_until(b, tid, b"line-300\r\n")
        assert got_a == got_b  # the same bytes in the same order
        lines = re.findall(rb"line-(\d+)\r\n", got_a)
        assert lines == [b"%d" % i for i in range(1, 301)]


def test_read_only_attacher_cannot_type_or_resize(daemon, short_tmp):
    with daemon.client() as c, daemon.client() as watcher:
        tid = create(c, short_tmp, ["cat"])
        watcher.call("terminal/attach", {"terminalId": tid, "readOnly": True})
        for method, extra in [("terminal/write", {"data": "x"}),
                              ("terminal/resize", {"cols": 10, "rows": 10})]:
            with pytest.raises(RpcError) as err:
                watcher.call(method, {"terminalId": tid, **extra})
            assert err.value.code == ErrorCode.READ_ONLY
        c.call("terminal/write", {"terminalId": tid, "data": "typed by the owner\n"})
        assert b"typed by the owner" in read_until(watcher, tid, b"typed by the owner")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_close_kills_background_children_too(daemon, short_tmp):
    with daemon.client() as c:
        tid = create(c, short_tmp, BASH)
        c.call("terminal/attach", {"terminalId": tid})
        # A background job in its own process group, immune to SIGHUP, plus a grandchild.
        c.call("terminal/write", {"terminalId": tid,
                                  "data": "nohup sleep 1000 >/dev/null 2>&1 & echo pid=$!\n"
                                          "(setsid sleep 1001 &) ; echo sta''rted\n"})
        # The marker is not in the echo of the typed line, so the pid line came before it.
        out = read_until(c, tid, b"started\r\n")
        sleeper = int(re.findall(rb"pid=(\d+)\r\n", out)[0])
        deadline = time.monotonic() + 5
        setsid_sleepers: list[int] = []
        while not setsid_sleepers and time.monotonic() < deadline:
            setsid_sleepers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                               and _cmdline(int(p.name)) == "sleep 1001"]
            time.sleep(0.05)
        assert _alive(sleeper)
        c.call("terminal/close", {"terminalId": tid})
        assert _gone_soon(sleeper), "the nohup'd background job survived the close"
    # A job started with setsid left the terminal's session on purpose: documented as not ours.
    for pid in setsid_sleepers:
        os.kill(pid, signal.SIGKILL)


def _gone_soon(pid: int, timeout: float = 5.0) -> bool:
    """Killed processes take a moment to be reaped by whoever inherits them."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_100_mb_of_output_with_bounded_daemon_memory(daemon, short_tmp):
    with daemon.client() as c:
        tid = create(c, short_tmp, ["sh", "-c", "sleep 0.5; head -c 100000000 /dev/zero; "
                                                "echo; echo END-OF-OUTPUT"])
        rss_before = _rss_kb(daemon.proc.pid)
        c.call("terminal/attach", {"terminalId": tid})
    # Read the stream on a raw socket: every byte must arrive, in order.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(daemon.socket))
    s.sendall(b'{"id":0,"method":"initialize","params":{"clientInfo":{"name":"reader"}}}\n'
              b'{"method":"initialized"}\n'
              b'{"id":1,"method":"terminal/attach","params":{"terminalId":"' + tid.encode() +
              b'"}}\n')
    decoder = msgspec.json.Decoder(_Msg)
    streamed = resynced = 0
    expected_seq = None
    peak = rss_before
    buf = b""
    s.settimeout(60)
    done = False
    while not done:
        chunk = s.recv(1 << 20)
        assert chunk, "daemon closed the connection"
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            msg = decoder.decode(line)
            if msg.id == 1:
                expected_seq = msg.result["seq"]
            elif msg.method == "terminal/output":
                assert msg.params.seq == expected_seq, "a gap or a repeat in the stream"
                data = base64.b64decode(msg.params.data)
                expected_seq += len(data)
                streamed += len(data)
                done = b"END-OF-OUTPUT" in data
            elif msg.method == "terminal/resync":
                # This client fell behind: it gets the tail instead of the backlog, and the
                # stream continues exactly from the snapshot's end.
                resynced += 1
                expected_seq = msg.params.seq
                done = b"END-OF-OUTPUT" in base64.b64decode(msg.params.snapshot)
        if streamed // 10_000_000 != (streamed - len(chunk)) // 10_000_000:
            peak = max(peak, _rss_kb(daemon.proc.pid))
    s.close()
    with daemon.client() as c:
        (info,) = c.call("terminal/list")["terminals"]
    assert info["outputBytes"] >= 100_000_000
    assert streamed > 0
    print(f"streamed {streamed / 1e6:.0f} MB of {info['outputBytes'] / 1e6:.0f} MB, "
          f"{resynced} resyncs")
    growth_mb = (peak - rss_before) / 1024
    assert growth_mb < 64, f"daemon memory grew by {growth_mb:.0f} MB"


def test_non_reading_client_is_resynced_while_another_streams(daemon, short_tmp):
    with daemon.client() as c:
        tid = create(c, short_tmp, ["sh", "-c", "stty -echo; exec cat"])  # output = input, once
    lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.connect(str(daemon.socket))
    lazy.sendall(b'{"id":0,"method":"initialize","params":{"clientInfo":{"name":"lazy"}}}\n'
                 b'{"method":"initialized"}\n'
                 b'{"id":1,"method":"terminal/attach","params":{"terminalId":"' + tid.encode() +
                 b'"}}\n')
    with daemon.client() as reader, daemon.client() as writer:
        att = reader.call("terminal/attach", {"terminalId": tid})
        seq = att["seq"]
        block = "y" * 4000 + "\n"
        received = 0
        for i in range(1500):  # ~6 MB through the PTY
            writer.call("terminal/write", {"terminalId": tid, "data": block})
            while received < (i + 1) * 4000:
                note = reader.next_notification(timeout=10)
                if note.method == "terminal/output":
                    assert note.params["seq"] == seq
                    data = base64.b64decode(note.params["data"])
                    seq += len(data)
                    received += data.count(b"y")
        assert reader.call("daemon/status")["clientsConnected"] == 3  # nobody was dropped
    # The lazy client, once it reads, gets a snapshot instead of megabytes of backlog.
    lazy.settimeout(10)
    buf = b""
    while b'"terminal/resync"' not in buf:
        chunk = lazy.recv(1 << 20)
        assert chunk
        buf += chunk
    lazy.close()
    deadline = time.monotonic() + 5  # the log line follows the write the client already read
    while "terminal_resync" not in daemon.log():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_codexctl_term_attach_inside_tmux(daemon, short_tmp):
    out = daemon.ctl("term", "new", "--cwd", str(short_tmp), "--name", "t1", "--", *BASH)
    assert out.returncode == 0, out.stderr
    tid = out.stdout.strip()
    # A private tmux server, and a pane that outlives codexctl so its last words stay readable.
    tmux = ["tmux", "-L", f"cxd{os.getpid()}", "-f", "/dev/null"]
    env = dict(daemon.env, CODEXD_SOCKET=str(daemon.socket))
    attach = f"{sys.executable} -m codexd.cli.codexctl term attach {tid}"
    cmd = f"{attach}; echo attach-exit=$?; sleep 600"
    subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", cmd],
                   env=env, check=True)
    try:
        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"],
                                  capture_output=True, text=True, check=True).stdout

        def wait_for(text: str) -> None:
            deadline = time.monotonic() + 15
            while text not in screen():
                assert time.monotonic() < deadline, f"{text!r} never showed:\n{screen()}"
                time.sleep(0.1)

        time.sleep(1.0)
        subprocess.run([*tmux, "send-keys", "-t", "t", "echo tmux-$((6*7))", "Enter"],
                       check=True)
        wait_for("tmux-42")
        subprocess.run([*tmux, "send-keys", "-t", "t", "stty size", "Enter"], check=True)
        wait_for("30 100")  # the window size followed the tmux pane
        subprocess.run([*tmux, "send-keys", "-t", "t", "C-]"], check=True)
        wait_for("attach-exit=0")
        assert "detached" in screen()
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)
    ls = daemon.ctl("term", "ls", "--json")
    (t,) = json.loads(ls.stdout)["terminals"]
    assert t["terminalId"] == tid and t["exited"] is None and t["attached"] == 0
    assert daemon.ctl("term", "kill", tid).returncode == 0


def test_daemon_shutdown_closes_terminals(short_tmp):
    d = make_daemon(short_tmp).start()
    with d.client() as c:
        tid = create(c, short_tmp, ["sleep", "1000"])
        pid = c.call("terminal/list")["terminals"][0]["pid"]
        assert tid
    assert _alive(pid)
    d.stop()
    assert _gone_soon(pid)


def test_detached_terminals_are_reaped_when_configured(short_tmp):
    d = make_daemon(short_tmp, config="[terminal]\nreap_detached_seconds = 1\n").start()
    try:
        with d.client() as c:
            kept = create(c, short_tmp, ["sleep", "1000"])
            c.call("terminal/attach", {"terminalId": kept})
            with d.client() as other:
                gone = create(other, short_tmp, ["sleep", "1001"])
            deadline = time.monotonic() + 10
            while gone in [t["terminalId"] for t in c.call("terminal/list")["terminals"]]:
                assert time.monotonic() < deadline, "the detached terminal was never reaped"
                time.sleep(0.1)
            # The attached one stays.
            assert [t["terminalId"] for t in c.call("terminal/list")["terminals"]] == [kept]
        assert "terminal_reaped" in d.log()
    finally:
        d.stop()
