"""Interactive provider sessions (``session/*``): the real ``claude`` and ``codex`` TUIs in a
codexd terminal against the fake model server, driven with session/input, attached as
terminals, ended, resumed with the CLI's own resume."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from codexd.client import Client
from codexd.errors import RpcError
from codexd.runs.sessions import transcript
from tests.fake_model import message, shell_call
from tests.helpers import eventually, require_cli
from tests.helpers.bridge import wait_ready
from tests.helpers.daemon import make_bridge
from tests.helpers.runs import CLAUDE_TOKEN, Env, events, wait_done


def screen(c: Client, terminal_id: str) -> str:
    """What the terminal has shown so far, as text (attach gives its scrollback)."""
    snap = c.call("terminal/attach", {"terminalId": terminal_id, "readOnly": True})
    c.call("terminal/detach", {"terminalId": terminal_id})
    return transcript(base64.b64decode(snap["snapshot"]))


def showing(c: Client, terminal_id: str, pred: Any, timeout: float, what: str) -> Any:
    """``eventually(pred)``; on a timeout the failure shows the terminal's screen."""
    try:
        return eventually(pred, timeout, what=what, interval=0.3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the screen:\n{screen(c, terminal_id)[-3000:]}") from None


def wait_screen(c: Client, terminal_id: str, needle: str, timeout: float = 60) -> str:
    return showing(c, terminal_id, lambda: (lambda s: s if needle in s else None)(
        screen(c, terminal_id)), timeout, f"{needle!r} on the terminal")


def kinds(c: Client, run_id: str) -> list[str]:
    return [e["type"] for e in events(c, run_id)]


def event(c: Client, run_id: str, kind: str) -> dict[str, Any]:
    return next(e["data"] for e in events(c, run_id) if e["type"] == kind)


def onboarded_claude(home: Path, cwd: Path) -> None:
    """What a person has done once before claude's TUI takes a prompt: onboarding, the API
    key's approval, the folder's trust."""
    (home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "numStartups": 5,
        "customApiKeyResponses": {"approved": [CLAUDE_TOKEN[-20:]], "rejected": []},
        "projects": {str(cwd): {"hasTrustDialogAccepted": True,
                                "hasCompletedProjectOnboarding": True}}}))


def test_a_claude_session_is_a_run_typed_into_ended_and_resumed(short_tmp: Path):
    e = Env(short_tmp)
    onboarded_claude(short_tmp / "home", e.ws)
    e.daemon.start()
    try:
        with e.daemon.client() as c:
            c.call("secret/set", {"provider": "claude", "token": CLAUDE_TOKEN})
            e.model.script([message("first answer ALPHA")], [message("second answer BRAVO")])
            out = c.call("session/start", {"provider": "claude", "cwd": str(e.ws),
                                           "prompt": "say alpha", "env": e.claude_env})
            rid, tid, sid = out["runId"], out["terminalId"], out["sessionId"]
            assert out["status"] == "running" and sid
            wait_screen(c, tid, "ALPHA")
            run = c.call("run/get", {"runId": rid})
            assert run["mode"] == "interactive" and run["terminalId"] == tid
            assert run["status"] == "running"
            listed = c.call("run/list", {"mode": "interactive"})["runs"]
            assert [r["runId"] for r in listed] == [rid]
            assert c.call("run/list", {"mode": "exec"})["runs"] == []
            opened = event(c, rid, "session.opened")
            assert opened["terminalId"] == tid and "--session-id" in opened["argv"]
            # The key never shows in the recorded argv or env.
            assert CLAUDE_TOKEN not in json.dumps(events(c, rid))

            typed = e.daemon.ctl("session", "input", rid, "now", "say", "bravo")
            assert typed.returncode == 0 and "14 bytes" in typed.stdout, typed
            listed = json.loads(e.daemon.ctl("session", "ls", "--json").stdout)["runs"]
            assert [(r["runId"], r["terminalId"]) for r in listed] == [(rid, tid)]
            wait_screen(c, tid, "BRAVO")
            asked = json.dumps(e.model.requests[-1])
            assert "now say bravo" in asked and "say alpha" in asked

            # Bad input is refused clearly and the session carries on.
            for params, code in (({"runId": "run_000000000000", "text": "x"}, -32011),
                                 ({"runId": rid, "text": "x", "data": "eA=="}, -32602),
                                 ({"runId": rid, "data": "%%%"}, -32602),
                                 ({"runId": rid, "text": "a\u0000b"}, -32602)):
                with pytest.raises(RpcError) as err:
                    c.call("session/input", params)
                assert err.value.code == code, (params, err.value)
            assert c.call("run/get", {"runId": rid})["status"] == "running"

            ended = c.call("session/end", {"runId": rid})
            assert ended["status"] == "succeeded" and ended["reason"] == "ended"
            closed = event(c, rid, "session.closed")
            assert closed["reason"] == "ended" and closed["outputBytes"] > 0
            assert kinds(c, rid).count("session.input_accepted") == 1
            arts = c.call("run/artifacts", {"runId": rid})["artifacts"]
            text = next(a["content"] for a in arts if a["kind"] == "transcript")
            assert "ALPHA" in text and "BRAVO" in text and "\x1b" not in text
            assert tid not in [t["terminalId"] for t in c.call("terminal/list")["terminals"]]
            with pytest.raises(RpcError) as err:
                c.call("session/end", {"runId": rid})
            assert "already ended" in err.value.message

            # Resumed with claude's own resume: the model sees the earlier conversation.
            e.model.script([message("third answer CHARLIE")])
            again = c.call("session/resume", {"runId": rid, "prompt": "say charlie"})
            assert again["runId"] != rid and again["sessionId"] == sid
            assert event(c, again["runId"], "session.opened")["argv"][1:3] == ["--resume", sid]
            wait_screen(c, again["terminalId"], "CHARLIE")
            history = json.dumps(e.model.requests[-1])
            assert "now say bravo" in history and "say charlie" in history
            assert c.call("run/get", {"runId": again["runId"]})["rerunOf"] == rid
            # run/cancel ends a session like any run, and it is recorded as canceled.
            c.call("run/cancel", {"runId": again["runId"]})
            done = wait_done(c, again["runId"])
            assert done["status"] == "canceled"
            with pytest.raises(RpcError) as err:
                c.call("run/rerun", {"runId": rid})
            assert "session/resume" in err.value.message
    finally:
        e.close()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_codex_session_runs_on_codexds_app_server_and_its_thread_is_shared(short_tmp: Path):
    """The codex TUI of session/start attaches to codexd's app-server: its thread becomes the
    run's session, its approval is answered from codexctl, another client sees the turn."""
    require_cli("codex")
    # The TUI's own config (CODEX_HOME): the app-server's home.
    bridge = make_bridge(short_tmp, f'\n[runs]\ncodex_home = "{short_tmp / "codex-home"}"\n')
    ws = bridge.workspace
    bridge.daemon.start()
    try:
        bridge.model.script([shell_call("echo from-session > s.txt", "write s.txt")],
                            [message("the session turn is done")])
        with bridge.client() as c:
            wait_ready(c)
            out = c.call("session/start", {"provider": "codex", "cwd": str(ws),
                                           "cols": 160, "rows": 45})
            rid, tid = out["runId"], out["terminalId"]
            opened = event(c, rid, "session.opened")
            assert opened["remote"] is True and "--remote" in opened["argv"]
            # The folder's trust prompt (a first visit) is accepted with Enter; the TUI is
            # ready when its footer names the model.
            def state() -> str | None:
                shown = "".join(screen(c, tid).split()).lower()
                ready = shown.rfind("mock-model")
                trust = shown.rfind("trustthisfolder")
                return None if max(ready, trust) < 0 else "trust" if trust > ready else "ready"

            for _ in range(3):
                if showing(c, tid, state, 60, "the TUI's prompt") == "ready":
                    break
                c.call("session/input", {"runId": rid, "data": base64.b64encode(b"\r").decode()})
                showing(c, tid, lambda: state() == "ready", 30, "the TUI past its trust prompt")
            c.call("session/input", {"runId": rid, "text": "write s.txt"})
            pending = showing(
                c, tid, lambda: c.call("approval/list", {"status": "pending"})["approvals"], 90,
                "the session's approval request")
            thread_id = pending[0]["threadId"]
            # The thread the TUI started is the run's agent session.
            eventually(lambda: c.call("run/get", {"runId": rid})["sessionId"] == thread_id, 20,
                       what="the run's session id")
            accepted = bridge.daemon.ctl("approvals", "accept", str(pending[0]["approvalId"]))
            assert accepted.returncode == 0, accepted.stderr
            # (The TUI's title generation takes a reply of its own: the turn's text varies.)
            wait_screen(c, tid, "Worked for", 90)
            assert (ws / "s.txt").read_text() == "from-session\n"
            # The thread's cwd is the session's, and every client can read it.
            thread = c.call("thread/read", {"threadId": thread_id})["thread"]
            assert thread["cwd"] == str(ws)
            ended = c.call("session/end", {"runId": rid})
            assert ended["status"] == "succeeded" and ended["sessionId"] == thread_id
            # Resumed with `codex resume <thread>` on codexd's app-server: the TUI shows the
            # thread's history.
            again = c.call("session/resume", {"runId": rid, "cols": 160, "rows": 45})
            argv = event(c, again["runId"], "session.opened")["argv"]
            assert argv[1] == "resume" and thread_id in argv and "--remote" in argv
            wait_screen(c, again["terminalId"], "echo from-session", 60)
            assert c.call("session/end", {"runId": again["runId"]})["status"] == "succeeded"
            # The daemon is fine: its app-server still serves.
            assert c.call("daemon/appServer/status")["state"] == "ready"
    finally:
        bridge.daemon.stop()
        bridge.model.stop()  # type: ignore[attr-defined]
