"""The official app-server wire served by codexd (``app-server.sock``): WebSocket over a Unix
socket, messages without ``"jsonrpc"``, the app-server's own ``initialize``; compared with a
real ``codex app-server --listen unix://``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import trio

from tests.fake_model import message, shell_call, write_codex_home
from tests.helpers import eventually, require_cli
from tests.helpers.bridge import wait_ready
from tests.helpers.daemon import make_bridge
from tests.helpers.peers import WsPeer, ws_unix

INIT = {"clientInfo": {"name": "codex-tui", "title": "Codex", "version": "0.169.0"},
        "capabilities": {"experimentalApi": True}}


def _wire(bridge) -> str:
    return str(bridge.daemon.socket.with_name("app-server.sock"))


async def _initialized(peer: WsPeer, **caps: object) -> dict:
    params = {**INIT, "capabilities": {**INIT["capabilities"], **caps}}
    result = await peer.call("initialize", params)
    await peer.send({"method": "initialized"})
    return result  # type: ignore[no-any-return]


def _reference_server(base: Path, model_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """A plain `codex app-server --listen unix://` on a private CODEX_HOME."""
    codex = require_cli("codex")
    home = write_codex_home(base / "ref-home", model_url)
    sock = str(base / "ref.sock")
    env = {**os.environ, "CODEX_HOME": str(home), "HOME": str(base / "home")}
    proc = subprocess.Popen([codex, "app-server", "--listen", f"unix://{sock}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    eventually(lambda: os.path.exists(sock), 30, what="the reference app-server's socket")
    return proc, sock


async def test_the_wire_looks_like_the_app_server_and_carries_codexd_too(bridge, short_tmp):
    with bridge.client() as c:
        wait_ready(c)
        status = c.call("daemon/status")
    wire = _wire(bridge)
    assert status["appServerSocket"] == wire
    assert (os.stat(wire).st_mode & 0o777) == 0o600
    ref, ref_sock = _reference_server(short_tmp, bridge.model.base_url)
    try:
        async with ws_unix(ref_sock) as theirs, ws_unix(wire) as ours:
            mine, real = await _initialized(ours), await _initialized(theirs)
            # The app-server's own result shape, and its 101 header, byte for byte in kind.
            assert set(mine) == set(real) == {"userAgent", "codexHome", "platformFamily",
                                              "platformOs"}
            assert mine["userAgent"].split("/")[0] == real["userAgent"].split("/")[0]
            header = "x-codex-websocket-max-unfragmented-message-bytes"
            assert header in ours.headers and header in theirs.headers
            listed_mine = await ours.call("thread/list", {})
            listed_real = await theirs.call("thread/list", {})
            assert set(listed_mine) == set(listed_real)
            # No "jsonrpc" member on this wire, from codexd as from the app-server.
            assert ours.raw and all('"jsonrpc"' not in f for f in ours.raw)
            assert all('"jsonrpc"' not in f for f in theirs.raw)
            # The app-server's errors pass through unchanged.
            bad_mine = await ours.error("thread/read", {"threadId": "nope"})
            bad_real = await theirs.error("thread/read", {"threadId": "nope"})
            assert bad_mine["code"] == bad_real["code"]
            # codexd's own methods are there too.
            assert (await ours.call("daemon/status"))["appServerSocket"] == wire
            again = await ours.error("initialize", INIT)
            assert again["code"] == -32600
    finally:
        os.killpg(ref.pid, 9)
        ref.wait(10)


async def test_a_turn_and_its_approval_over_the_wire(bridge):
    bridge.model.script([shell_call("echo wired > wired.txt", "write wired.txt")],
                        [message("done over the wire")])
    with bridge.client() as c:
        wait_ready(c)
    async with ws_unix(_wire(bridge)) as tui, ws_unix(_wire(bridge)) as stamped:
        await _initialized(tui)
        await _initialized(stamped, codexdEvents=True)
        thread_id = (await tui.call("thread/start", {"cwd": str(bridge.workspace)}))[
            "thread"]["id"]
        await stamped.call("events/subscribe", {"threadIds": [thread_id]})
        await tui.call("turn/start", {"threadId": thread_id,
                                      "input": [{"type": "text", "text": "write it"}]})
        # The approval reaches the wire client as the app-server's request, id = approval id.
        req = await tui.next(lambda m: m.get("method") == "item/commandExecution/"
                             "requestApproval")
        assert "jsonrpc" not in req and req["params"]["threadId"] == thread_id
        await tui.send({"id": req["id"], "result": {"decision": "accept"}})
        resolved = await tui.next(lambda m: m.get("method") == "serverRequest/resolved")
        assert resolved["params"]["requestId"] == req["id"]
        done = await tui.next(lambda m: m.get("method") == "turn/completed", within=60)
        assert done["params"]["threadId"] == thread_id
        # Official clients see the app-server's notifications exactly: no codexd stamps...
        assert "seq" not in done and "epoch" not in done
        # ...a client that asks for them gets them.
        seen = await stamped.next(lambda m: m.get("method") == "turn/completed", within=60)
        assert seen["seq"] > 0 and seen["epoch"]
    assert (bridge.workspace / "wired.txt").read_text() == "wired\n"
    # The thread is codexd's: an NDJSON client lists it.
    with bridge.client() as c:
        assert thread_id in [t["id"] for t in c.call("thread/list", {})["data"]]


async def test_the_wire_refuses_what_is_not_a_websocket_and_keeps_serving(bridge):
    with bridge.client() as c:
        wait_ready(c)
    wire = _wire(bridge)
    raw = await trio.open_unix_socket(wire)
    await raw.send_all(b'{"id":1,"method":"initialize"}\n')  # NDJSON on the wrong socket
    with trio.fail_after(15):
        rest = b""
        while chunk := await raw.receive_some(4096):
            rest += chunk
    await raw.aclose()
    assert not rest.startswith(b"HTTP/1.1 101")
    async with ws_unix(wire) as peer:  # the next client is served
        assert "userAgent" in await _initialized(peer)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_stock_tui_runs_a_turn_through_codexd(short_tmp):
    """`codex --remote unix://<codexd's app-server.sock>` in tmux completes a turn whose command
    approval is answered with codexctl; a second client sees the turn live."""
    codex = require_cli("codex")
    # The TUI names no cwd when attached: its thread runs in the app-server's (appserver.cwd).
    workspace = short_tmp / "tui-ws"
    workspace.mkdir()
    bridge = make_bridge(short_tmp, f'cwd = "{workspace}"\n')
    bridge.workspace = workspace
    bridge.daemon.start()
    try:
        _tui_turn(bridge, codex, short_tmp)
    finally:
        bridge.daemon.stop()
        bridge.model.stop()  # type: ignore[attr-defined]


def _tui_turn(bridge, codex: str, short_tmp: Path) -> None:
    bridge.model.script([shell_call("echo from-tui > tui.txt", "write tui.txt")],
                        [message("the TUI turn is done")])
    with bridge.client() as watcher:
        wait_ready(watcher)
        watcher.call("events/subscribe", {"all": True})
        tmux = ["tmux", "-L", f"cxw{os.getpid()}", "-f", "/dev/null"]
        env = {**os.environ, "CODEX_HOME": str(bridge.codex_home),
               "HOME": str(short_tmp / "home"), "TERM": "xterm-256color"}
        cmd = f"cd {bridge.workspace} && {codex} --remote unix://{_wire(bridge)}; sleep 600"
        subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "160", "-y", "45",
                        "-c", str(bridge.workspace), cmd], check=True, env=env)

        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], check=True,
                                  capture_output=True, text=True).stdout

        def wait(pred: object, timeout: float, what: str) -> object:
            try:
                return eventually(pred, timeout, what=what, interval=0.2)  # type: ignore[arg-type]
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the TUI's screen:\n{screen()}") from None

        try:
            time.sleep(3)  # the TUI draws its prompt
            for _ in range(3):  # trust prompts and the like: accept them
                if "trust" in screen().lower():
                    subprocess.run([*tmux, "send-keys", "-t", "t", "C-m"], check=True)
                    time.sleep(1)
            subprocess.run([*tmux, "send-keys", "-t", "t", "-l", "write tui.txt"], check=True)
            # Keys that arrive together read as a paste (Enter would be a newline): pause.
            time.sleep(1)
            subprocess.run([*tmux, "send-keys", "-t", "t", "C-m"], check=True)
            pending: list = wait(  # type: ignore[assignment]
                lambda: watcher.call("approval/list", {"status": "pending"})["approvals"],
                90, "the TUI's approval request")
            out = bridge.daemon.ctl("approvals", "accept", str(pending[0]["approvalId"]))
            assert out.returncode == 0, out.stderr
            # The TUI shows the approved command's run and the end of the turn.
            wait(lambda: "Ran echo from-tui" in screen() and "Worked for" in screen(), 90,
                 "the command's result and the turn's end on the TUI's screen")
            assert (bridge.workspace / "tui.txt").read_text() == "from-tui\n"
            thread_id = pending[0]["threadId"]
            listed = bridge.daemon.ctl("threads")
            assert thread_id in listed.stdout, listed.stdout
            seen = []
            while True:  # the watcher saw the TUI's turn as it ran
                try:
                    note = watcher.next_notification(timeout=1)
                except TimeoutError:
                    break
                if (note.params or {}).get("threadId") == thread_id:
                    seen.append(note.method)
            assert "turn/completed" in seen and "item/completed" in seen
        finally:
            subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)


def test_the_desktop_remote_pipe_codex_app_server_proxy_carries_a_session(bridge):
    """`codex app-server proxy --sock PATH` (the desktop's remote mode over SSH) only copies
    bytes: the WebSocket session runs through it to codexd."""
    import json

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    codex = require_cli("codex")
    with bridge.client() as c:
        wait_ready(c)
    proxy = subprocess.Popen([codex, "app-server", "proxy", "--sock", _wire(bridge)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env={**os.environ,
                                                             "CODEX_HOME": str(bridge.codex_home)})
    assert proxy.stdin is not None and proxy.stdout is not None
    ws = WSConnection(ConnectionType.CLIENT)

    def send(data: bytes) -> None:
        proxy.stdin.write(data)  # type: ignore[union-attr]
        proxy.stdin.flush()  # type: ignore[union-attr]

    def events(until: type) -> list[object]:
        got: list[object] = []
        while not any(isinstance(e, until) for e in got):
            chunk = os.read(proxy.stdout.fileno(), 65536)  # type: ignore[union-attr]
            assert chunk, "the proxy closed the pipe"
            ws.receive_data(chunk)
            got += list(ws.events())
        return got

    try:
        send(ws.send(Request(host="localhost", target="/")))
        assert any(isinstance(e, AcceptConnection) for e in events(AcceptConnection))
        send(ws.send(TextMessage(json.dumps({"id": 1, "method": "initialize", "params": INIT}))))
        (answer,) = [e for e in events(TextMessage) if isinstance(e, TextMessage)]
        result = json.loads(answer.data)["result"]
        assert {"userAgent", "codexHome"} <= set(result)
        send(ws.send(TextMessage(json.dumps({"id": 2, "method": "daemon/status"}))))
        (status,) = [e for e in events(TextMessage) if isinstance(e, TextMessage)]
        assert json.loads(status.data)["result"]["appServerSocket"] == _wire(bridge)
    finally:
        proxy.kill()
        proxy.wait(10)
        proxy.stdin.close()
        proxy.stdout.close()


async def test_the_codex_home_control_socket_leads_to_codexd_when_asked(short_tmp):
    """appserver.control_socket: `codex --remote unix://` (no path) lands on codexd; a live
    app-server already holding that path is left alone, with a clear log line."""
    import socket as stdsocket

    from codexd.appserver.control import control_path

    bridge = make_bridge(short_tmp, "control_socket = true\n")
    control = control_path(bridge.codex_home)
    bridge.daemon.start()
    try:
        with bridge.client() as c:
            wait_ready(c)
            assert c.call("daemon/status")["controlSocket"] == str(control)
        assert os.readlink(control) == _wire(bridge)
        async with ws_unix(str(control)) as peer:
            assert "codexHome" in await _initialized(peer)
    finally:
        bridge.daemon.stop()
    assert not control.is_symlink()  # released at stop

    # An official app-server daemon holds the path: codexd does not take it.
    holder = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    control.parent.mkdir(parents=True, exist_ok=True)
    holder.bind(str(control))
    holder.listen(1)
    try:
        bridge.daemon.start()
        with bridge.client() as c:
            assert c.call("daemon/status")["controlSocket"] is None
        bridge.daemon.stop()
        assert "control_socket_refused" in bridge.daemon.log()
        assert control.is_socket() and not control.is_symlink()
    finally:
        holder.close()
        bridge.model.stop()  # type: ignore[attr-defined]
