"""Claude's permission prompts in codexd's durable approval queue: the real claude CLI against
the fake Messages server, asking through codexd's MCP helper (--permission-prompt-tool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_model import message, tool_use
from tests.helpers import eventually
from tests.helpers.runs import CLAUDE_TOKEN, Env, events, wait_done

METHOD = "run/permission/requestApproval"


def pending(c, run_id: str) -> dict:
    return eventually(lambda: next((a for a in c.call("approval/list", {"status": "pending"})[
        "approvals"] if a["params"]["runId"] == run_id), None), 60,
        what=f"run {run_id}'s permission prompt")


def bash(command: str) -> list[dict]:
    return [tool_use("Bash", {"command": command, "description": "write a file"})]


@pytest.mark.parametrize("release", ["current", "previous"])
def test_claude_asks_codexd_and_the_answer_decides(short_tmp: Path, release: str):
    e = Env(short_tmp, "[approvals]\ntimeout_seconds = 3\n"
                       f'defaults = {{"{METHOD}" = "decline"}}\n', release=release)
    e.daemon.start()
    try:
        with e.daemon.client() as c:
            c.call("secret/set", {"provider": "claude", "token": CLAUDE_TOKEN})
            # Accepted from codexctl: the tool runs.
            e.model.script(bash("echo approved > ok.txt"), [message("wrote ok.txt")])
            rid = c.call("run/start", {"provider": "claude", "prompt": "write ok.txt",
                                       "cwd": str(e.ws), "env": e.claude_env})["runId"]
            ask = pending(c, rid)
            assert ask["method"] == METHOD
            assert ask["params"]["toolName"] == "Bash"
            assert ask["params"]["input"]["command"] == "echo approved > ok.txt"
            assert not (e.ws / "ok.txt").exists()
            inbox = c.call("inbox/list")["items"]
            assert any(i["kind"] == "approvalWaiting" and i["approvalId"] == ask["approvalId"]
                       for i in inbox)
            out = e.daemon.ctl("approvals", "accept", str(ask["approvalId"]))
            assert out.returncode == 0, out.stderr
            run = wait_done(c, rid)
            assert run["status"] == "succeeded", (run, events(c, rid)[-5:])
            assert (e.ws / "ok.txt").read_text() == "approved\n"
            kinds = [ev["type"] for ev in events(c, rid)]
            assert kinds.index("run.approval_requested") < kinds.index("run.approval_resolved")
            resolved = next(ev["data"] for ev in events(c, rid)
                            if ev["type"] == "run.approval_resolved")
            assert resolved["behavior"] == "allow" and resolved["decision"] == "accept"

            # Declined: it does not run, and claude is told.
            e.model.script(bash("echo no > no.txt"), [message("could not write it")])
            rid = c.call("run/start", {"provider": "claude", "prompt": "write no.txt",
                                       "cwd": str(e.ws), "env": e.claude_env})["runId"]
            ask = pending(c, rid)
            c.call("approval/respond", {"approvalId": ask["approvalId"],
                                        "result": {"decision": "decline"}})
            assert wait_done(c, rid)["status"] == "succeeded"
            assert not (e.ws / "no.txt").exists()
            denied = next(ev["data"] for ev in events(c, rid)
                          if ev["type"] == "run.approval_resolved")
            assert denied["behavior"] == "deny"

        # Nobody connected: after approvals.timeout_seconds the default answer applies.
        with e.daemon.client() as c:
            e.model.script(bash("echo late > late.txt"), [message("gave up")])
            rid = c.call("run/start", {"provider": "claude", "prompt": "write late.txt",
                                       "cwd": str(e.ws), "env": e.claude_env})["runId"]
        with e.daemon.client() as c:
            run = wait_done(c, rid)
            assert run["status"] == "succeeded"
            assert not (e.ws / "late.txt").exists()
            timed = next(ev["data"] for ev in events(c, rid)
                         if ev["type"] == "run.approval_resolved")
            assert timed["status"] == "timedOut" and timed["behavior"] == "deny"
            closed = c.call("approval/list", {"status": "timedOut"})["approvals"]
            assert [a["params"]["runId"] for a in closed] == [rid]
    finally:
        e.close()
