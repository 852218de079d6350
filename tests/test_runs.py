"""Provider runs with the real codex and claude CLIs against fake model servers."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codexd.errors import ErrorCode, RpcError
from codexd.runs.compat import TESTED
from tests.fake_model import message, tool_use
from tests.helpers.runs import CLAUDE_TOKEN, FAKE_CLI, Env, events, wait_done


def _env(base: Path, release: str) -> Iterator[Env]:
    e = Env(base, release=release)
    e.daemon.start()
    yield e
    e.close()
    print("--- daemon log (last 40 lines) ---\n" + "\n".join(e.daemon.log().splitlines()[-40:]))


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    yield from _env(short_tmp, "current")


@pytest.fixture(params=["current", "previous"])
def each_release(short_tmp: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    """The current pins and the previous ones (compat.TESTED): the version matrix."""
    yield from _env(short_tmp, request.param)


def texts(evs: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["text"] for e in evs if e["type"] == "run.semantic"
            and e["data"]["kind"] == "agentMessage"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_codex_run_completes_with_its_text_and_streams_events(each_release: Env):
    env = each_release
    env.model.script([message("codex says hi")])
    with env.daemon.client() as c:
        started = c.call("run/start", {"provider": "codex", "prompt": "say hi",
                                       "cwd": str(env.ws)})
        assert started["status"] == "queued"
        run = wait_done(c, started["runId"])
        assert run["status"] == "succeeded", run
        assert run["resultText"] == "codex says hi" and run["sessionId"]
        evs = events(c, run["runId"])
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
        kinds = [e["type"] for e in evs]
        assert kinds[0] == "run.started" and kinds[-1] == "run.completed"
        assert "run.cli_exit" in kinds and "run.runner_metrics" in kinds
        assert texts(evs) == ["codex says hi"]
        assert evs[-1]["data"]["resultText"] == "codex says hi"
        # The starter was subscribed: the same events arrived as notifications, in order.
        notes = []
        while len(notes) < len(evs):
            n = c.next_notification(timeout=10)
            if n.method == "run/event":
                notes.append(n.params)
        assert [(n["seq"], n["type"]) for n in notes] == [(e["seq"], e["type"]) for e in evs]
        assert "say hi" in str(env.model.requests[-1])
        # The usage the model reported (through codex's turn.completed) is counted.
        m = c.call("daemon/metrics")
        assert m["tokens"]["codex"]["input"] == 10 and m["tokens"]["codex"]["output"] == 5
        assert m["runsFinished"] == {"codex": {"succeeded": 1}}


def test_a_claude_run_completes_with_its_text(each_release: Env):
    env = each_release
    env.model.script([message("claude says hi")])
    with env.daemon.client() as c:
        c.call("secret/set", {"provider": "claude", "token": CLAUDE_TOKEN})
        rid = c.call("run/start", {"provider": "claude", "prompt": "say hi", "cwd": str(env.ws),
                                   "env": env.claude_env})["runId"]
        run = wait_done(c, rid)
        assert run["status"] == "succeeded", (run, events(c, rid)[-5:])
        assert run["resultText"] == "claude says hi" and run["sessionId"]
        evs = events(c, rid)
        assert texts(evs) == ["claude says hi"] and evs[-1]["type"] == "run.completed"
        # env values never leave the daemon.
        assert run["request"]["env"] == {"ANTHROPIC_BASE_URL": "[REDACTED]"}
        tokens = c.call("daemon/metrics")["tokens"]["claude"]
        assert tokens["output"] >= 5, tokens


@pytest.mark.parametrize("provider", ["codex", "claude"])
def test_a_conversation_resumes_the_same_session(each_release: Env, provider: str):
    env = each_release
    env.model.script([message("first answer")], [message("second answer")])
    with env.daemon.client() as c:
        conv = c.call("conversation/create", {"provider": provider, "cwd": str(env.ws),
                                              "title": "chat"})
        cid = conv["conversationId"]
        extra = {"env": env.claude_env} if provider == "claude" else {}
        c.call("secret/set", {"provider": "claude", "token": CLAUDE_TOKEN})
        first = c.call("run/start", {"prompt": "one", "conversationId": cid, **extra})["runId"]
        r1 = wait_done(c, first)
        assert r1["status"] == "succeeded", r1
        if provider == "claude":
            second = c.call("run/start", {"prompt": "two", "conversationId": cid, **extra})
        else:
            second = c.call("conversation/send", {"conversationId": cid, "prompt": "two"})
        r2 = wait_done(c, second["runId"])
        assert r2["status"] == "succeeded", (r2, events(c, r2["runId"])[-4:])
        assert r2["resultText"] == "second answer"
        assert r2["sessionId"] == r1["sessionId"]
        started = events(c, r2["runId"])[0]["data"]
        assert started["resume"] == r1["sessionId"]
        # The model saw the first exchange again: the session really continued.
        assert "first answer" in json.dumps(env.model.requests[-1])
        got = c.call("conversation/get", {"conversationId": cid})
        assert got["runs"] == [first, r2["runId"]] and got["sessionId"] == r1["sessionId"]
        other = "claude" if provider == "codex" else "codex"
        with pytest.raises(RpcError) as exc:
            c.call("conversation/send", {"conversationId": cid, "prompt": "x",
                                         "provider": other})
        assert exc.value.code == ErrorCode.INVALID_PARAMS
        c.call("conversation/archive", {"conversationId": cid})
        with pytest.raises(RpcError) as exc:
            c.call("conversation/send", {"conversationId": cid, "prompt": "x"})
        assert exc.value.code == ErrorCode.CONFLICT and "archived" in exc.value.message


def test_cancel_kills_the_whole_tree(env: Env):
    gate = env.model.hold()
    try:
        with env.daemon.client() as c:
            rid = c.call("run/start", {"provider": "codex", "prompt": "stall",
                                       "cwd": str(env.ws)})["runId"]
            deadline = time.monotonic() + 60
            while not env.model.requests:
                assert time.monotonic() < deadline, "the run never reached the model"
                time.sleep(0.05)
            pid = events(c, rid)[0]["data"]["pid"]
            assert alive(pid)
            run = c.call("run/cancel", {"runId": rid})
            assert run["status"] == "canceled" and run["reason"] == "canceled"
            assert not alive(pid)
            assert not any("codex" in (Path(f"/proc/{p}/cmdline").read_bytes()
                                        .decode(errors="replace"))
                           for p in _started_by(env) if alive(p))
            evs = events(c, rid)
            assert evs[-1]["type"] == "run.canceled"
            with pytest.raises(RpcError) as exc:
                c.call("run/cancel", {"runId": rid})
            assert exc.value.code == ErrorCode.ALREADY_RESOLVED
    finally:
        gate.set()


def _started_by(env: Env) -> list[int]:
    """Processes whose environment names this test's codex home (what the run started)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if str(env.codex_home).encode() in (d / "environ").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def test_timeout_fails_the_run_and_kills_it(env: Env):
    gate = env.model.hold()
    try:
        with env.daemon.client() as c:
            rid = c.call("run/start", {"provider": "codex", "prompt": "stall",
                                       "cwd": str(env.ws), "timeoutSeconds": 5})["runId"]
            run = wait_done(c, rid, timeout=60)
            assert run["status"] == "failed" and run["reason"] == "timeout"
            assert "timed out after 5 s" in run["error"]
            pid = events(c, rid)[0]["data"]["pid"]
            assert not alive(pid)
            assert events(c, rid)[-1]["data"]["reason"] == "timeout"
    finally:
        gate.set()


def test_guardrails_refuse_bad_requests(env: Env):
    base = {"provider": "codex", "prompt": "x", "cwd": str(env.ws)}
    cases = [({"timeoutSeconds": 4}, "timeoutSeconds"), ({"timeoutSeconds": 10801}, None),
             ({"maxRetries": 11}, "maxRetries"), ({"retryBackoffMs": 99}, "retryBackoffMs"),
             ({"retryBackoffMs": 600_001}, None), ({"priority": 11}, "priority"),
             ({"provider": "gemini"}, "provider"), ({"cwd": "relative"}, "cwd"),
             ({"sandbox": "yolo"}, "sandbox"), ({"outputSchema": {"type": 12}}, "outputSchema"),
             ({"profile": "nope"}, None)]
    with env.daemon.client() as c:
        for extra, field in cases:
            with pytest.raises(RpcError) as exc:
                c.call("run/start", {**base, **extra})
            assert exc.value.code in (ErrorCode.INVALID_PARAMS, ErrorCode.NOT_FOUND), extra
            if field:
                assert (exc.value.data or {}).get("field") == field, (extra, exc.value)
        with pytest.raises(RpcError) as exc:
            c.call("run/start", {**base, "autoApprove": True, "sandbox": "danger-full-access"})
        assert exc.value.code == ErrorCode.POLICY_DENIED
        assert c.call("run/list")["runs"] == []


def test_export_in_both_formats(env: Env):
    env.model.script([message("exported answer")])
    with env.daemon.client() as c:
        rid = c.call("run/start", {"provider": "codex", "prompt": "export me",
                                   "cwd": str(env.ws)})["runId"]
        wait_done(c, rid)
        doc = json.loads(c.call("run/export", {"runId": rid, "format": "json"})["content"])
        assert doc["run"]["runId"] == rid and doc["run"]["status"] == "succeeded"
        assert doc["events"][-1]["type"] == "run.completed"
        assert doc["events"][-1]["data"]["resultText"] == "exported answer"
        md = c.call("run/export", {"runId": rid, "format": "markdown"})["content"]
        assert md.startswith(f"# Run {rid}") and "export me" in md and "exported answer" in md
        assert "status: **succeeded**" in md


def test_capabilities_detect_both_clis(each_release: Env):
    env = each_release
    which = 0 if env.release == "current" else 1
    with env.daemon.client() as c:
        caps = {p["provider"]: p for p in c.call("provider/capabilities")["providers"]}
        for provider in ("codex", "claude"):
            cap = caps[provider]
            assert cap["status"] == "supported", cap
            assert cap["version"] == TESTED[provider][which]
            assert cap["testedVersions"] == list(TESTED[provider])
            assert cap["reasons"] == [] and cap["missingOptions"] == []
        # claude's prompting permission mode changed its name between the two pins.
        assert ("manual" if which == 0 else "default") in caps["claude"]["permissionModes"]
        # Probed once: the snapshot is kept for this binary (path, mtime, size).
        again = {p["provider"]: p for p in c.call("provider/capabilities")["providers"]}
        assert again["codex"]["checkedAt"] == caps["codex"]["checkedAt"]
        fresh = {p["provider"]: p for p in c.call("provider/capabilities",
                                                   {"refresh": True})["providers"]}
        assert fresh["codex"]["checkedAt"] >= caps["codex"]["checkedAt"]
    # ... and survives a restart (capability_snapshots), still the same probe.
    env.daemon.stop()
    env.daemon.start()
    with env.daemon.client() as c:
        after = {p["provider"]: p for p in c.call("provider/capabilities")["providers"]}
        assert after["claude"]["checkedAt"] == fresh["claude"]["checkedAt"]


def test_a_missing_cli_fails_fast(short_tmp: Path):
    e = Env(short_tmp, 'claude_command = "/nonexistent/claude"\n')
    e.daemon.start()
    try:
        with e.daemon.client() as c:
            rid = c.call("run/start", {"provider": "claude", "prompt": "x",
                                       "cwd": str(e.ws), "maxRetries": 3})["runId"]
            run = wait_done(c, rid, timeout=20)
            assert run["status"] == "failed" and run["reason"] == "cliMissing"
            assert run["attempt"] == 1  # not retried: it cannot get better
            assert events(c, rid)[0]["type"] == "run.cli_missing"
            caps = {p["provider"]: p for p in c.call("provider/capabilities")["providers"]}
            assert caps["claude"]["status"] == "blocked"
    finally:
        e.close()


def test_runs_interrupted_by_kill_9_are_marked_interrupted(short_tmp: Path):
    e = Env(short_tmp)
    e.daemon.start()
    gate = e.model.hold()
    try:
        with e.daemon.client() as c:
            rid = c.call("run/start", {"provider": "codex", "prompt": "stall",
                                       "cwd": str(e.ws)})["runId"]
            queued = c.call("run/start", {"provider": "codex", "prompt": "later",
                                          "cwd": str(e.ws)})["runId"]
            deadline = time.monotonic() + 60
            while c.call("run/get", {"runId": rid})["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        e.daemon.signal(signal.SIGKILL)
        e.daemon.wait()
        gate.set()
        e.daemon.start()
        with e.daemon.client() as c:
            run = c.call("run/get", {"runId": rid})
            assert run["status"] == "interrupted" and run["reason"] == "daemonStopped"
            assert events(c, rid)[-1]["type"] == "run.interrupted"
            # The queued one stays queued, its lane paused after the unclean stop, until resumed.
            assert "codex" in c.call("queue/list")["paused"]
            assert c.call("run/get", {"runId": queued})["status"] == "queued"
            c.call("queue/resume", {"provider": "codex"})
            assert wait_done(c, queued)["status"] == "succeeded"
            assert c.call("run/get", {"runId": rid})["status"] == "interrupted"
    finally:
        gate.set()
        e.close()


def test_a_blocked_cli_is_refused_clearly_and_a_degraded_one_warns(short_tmp: Path):
    e = Env(short_tmp, f'codex_command = "{FAKE_CLI}"\nclaude_command = "{FAKE_CLI}"\n',
            env={"FAKE_VERSION": "0.50.0"})
    e.daemon.start()
    try:
        with e.daemon.client() as c:
            caps = {p["provider"]: p for p in c.call("provider/capabilities")["providers"]}
            assert caps["codex"]["status"] == "blocked"
            assert "0.50.0 is older than 0.100.0" in caps["codex"]["reason"]
            with pytest.raises(RpcError) as refused:
                c.call("run/start", {"provider": "codex", "prompt": "x", "cwd": str(e.ws)})
            err = refused.value
            assert err.code == ErrorCode.CLI_UNSUPPORTED
            assert "npm install -g @openai/codex@" in err.message
            assert err.data["version"] == "0.50.0" and err.data["reasons"]
            with pytest.raises(RpcError) as refused:  # an interactive session too
                c.call("session/start", {"provider": "codex", "cwd": str(e.ws)})
            assert refused.value.code == ErrorCode.CLI_UNSUPPORTED
            assert c.call("run/list")["runs"] == []  # nothing was queued
        doctor = json.loads(e.daemon.ctl("doctor", "--json", "--state-dir",
                                         str(e.daemon.state_dir), timeout=90).stdout)
        clis = next(x for x in doctor["checks"] if x["name"] == "clis")
        assert clis["status"] == "warn" and "0.50.0 is older than" in clis["summary"]
    finally:
        e.close()


def test_options_a_cli_lacks_are_dropped_with_a_compatibility_warning(short_tmp: Path):
    e = Env(short_tmp, f'codex_command = "{FAKE_CLI}"\n',
            env={"FAKE_NO_FLAGS": "--output-schema,--add-dir"})
    e.daemon.start()
    try:
        with e.daemon.client() as c:
            cap = next(p for p in c.call("provider/capabilities")["providers"]
                       if p["provider"] == "codex")
            assert cap["status"] == "degraded"
            assert cap["missingOptions"] == ["--output-schema", "--add-dir"]
            rid = c.call("run/start", {
                "provider": "codex", "prompt": "hello", "cwd": str(e.ws),
                "outputSchema": {"type": "string"}, "maxBudgetUsd": 2.5})["runId"]
            run = wait_done(c, rid)
            warned = {ev["data"]["option"]: ev["data"] for ev in events(c, rid)
                      if ev["type"] == "run.compatibility_warning"}
            assert set(warned) == {"outputSchema", "maxBudgetUsd"}
            assert warned["outputSchema"]["reason"] == "this codex has no --output-schema"
            assert "harness.maxTokens" in warned["maxBudgetUsd"]["reason"]
            argv = next(ev for ev in events(c, rid) if ev["type"] == "run.started")["data"]["argv"]
            assert "--output-schema" not in argv
            # The schema is still checked after the run: the echo is no JSON string.
            assert run["status"] == "failed" and run["reason"] == "structuredOutputInvalid"
    finally:
        e.close()


def test_claude_gets_the_budget_and_schema_flags_and_codex_a_token_cap(env: Env):
    env.model.script([message("over budget")])
    with env.daemon.client() as c:
        rid = c.call("run/start", {"provider": "codex", "prompt": "spend", "cwd": str(env.ws),
                                   "harness": {"maxTokens": 10}})["runId"]
        run = wait_done(c, rid)
        assert run["status"] == "failed" and run["reason"] == "limitExceeded", run
        assert "used 15 tokens, more than harness.maxTokens (10)" in run["error"]
        limit = next(ev for ev in events(c, rid) if ev["type"] == "run.limit_exceeded")
        assert limit["data"] == {"limit": "maxTokens", "max": 10, "used": 15}
        c.call("secret/set", {"provider": "claude", "token": CLAUDE_TOKEN})
        schema = {"type": "object", "properties": {"answer": {"type": "string"}},
                  "required": ["answer"]}
        env.model.script([tool_use("StructuredOutput", {"answer": "forty-two"})],
                         [message("returned it")])
        rid = c.call("run/start", {"provider": "claude", "prompt": "json", "cwd": str(env.ws),
                                   "env": env.claude_env, "maxBudgetUsd": 1.5,
                                   "outputSchema": schema})["runId"]
        run = wait_done(c, rid)
        assert run["status"] == "succeeded", (run, events(c, rid)[-4:])
        got = next(ev for ev in events(c, rid) if ev["type"] == "run.structured_output")
        assert got["data"]["value"] == {"answer": "forty-two"}
        kept = {a["kind"]: a for a in c.call("run/artifacts", {"runId": rid})["artifacts"]}
        assert json.loads(kept["structuredOutput"]["content"]) == {"answer": "forty-two"}
        # The schema and the budget reached the model through claude's own flags.
        assert any("$1.5 remaining" in json.dumps(r) for r in env.model.requests)
        argv = next(ev for ev in events(c, rid) if ev["type"] == "run.started")["data"]["argv"]
        assert argv[argv.index("--max-budget-usd") + 1] == "1.5"
        assert json.loads(argv[argv.index("--json-schema") + 1]) == schema
        assert not [ev for ev in events(c, rid) if ev["type"] == "run.compatibility_warning"]
        # harness.maxTurns: claude's own --max-turns stops it after the first response.
        glob = [tool_use("Glob", {"pattern": "*"})]
        env.model.replies.clear()  # (the structured output ended its run a reply early)
        env.model.script(glob, glob, glob, [message("never asked")])
        asked = len(env.model.requests)
        rid = c.call("run/start", {"provider": "claude", "prompt": "look", "cwd": str(env.ws),
                                   "env": env.claude_env, "harness": {"maxTurns": 1}})["runId"]
        run = wait_done(c, rid)
        assert run["status"] == "failed" and run["reason"] == "limitExceeded", run
        assert "harness.maxTurns (1)" in run["error"]
        limit = next(ev for ev in events(c, rid) if ev["type"] == "run.limit_exceeded")
        assert limit["data"]["limit"] == "maxTurns" and limit["data"]["max"] == 1
        assert len(env.model.requests) - asked == 1, "claude asked past its turn limit"


def test_a_codex_run_takes_its_harness_mcp_config_and_profile(env: Env):
    import sys

    (env.codex_home / "fast.config.toml").write_text('model = "profile-model"\n')
    extra = env.base / "extra"
    extra.mkdir()
    env.model.script([message("configured")])
    with env.daemon.client() as c:
        rid = c.call("run/start", {"provider": "codex", "prompt": "use the tools",
                                   "cwd": str(env.ws), "harness": {
            "mcp": {"helper": {"command": sys.executable,
                               "args": [str(Path(__file__).with_name("mcp_stub.py"))]}},
            "config": {"model_reasoning_effort": "low"}, "addDirs": [str(extra)],
            "codexProfile": "fast"}})["runId"]
        run = wait_done(c, rid)
        assert run["status"] == "succeeded", (run, events(c, rid)[-4:])
        assert not [ev for ev in events(c, rid) if ev["type"] == "run.compatibility_warning"]
        sent = env.model.requests[-1]
        assert sent["model"] == "profile-model"  # the profile layered on the config
        assert "approve" in json.dumps(sent.get("tools"))  # the run's MCP server's tool
        with pytest.raises(RpcError) as bad:
            c.call("run/start", {"provider": "codex", "prompt": "x", "cwd": str(env.ws),
                                 "harness": {"addDirs": ["relative/dir"]}})
        assert bad.value.data["field"] == "harness.addDirs"


def test_a_silent_run_is_stopped_by_the_idle_timeout(short_tmp: Path):
    e = Env(short_tmp, f'codex_command = "{FAKE_CLI}"\n',
            env={"FAKE_WAIT": str(short_tmp / "never")})
    e.daemon.start()
    try:
        with e.daemon.client() as c:
            rid = c.call("run/start", {"provider": "codex", "prompt": "hang",
                                       "cwd": str(e.ws),
                                       "harness": {"idleTimeoutMs": 1000}})["runId"]
            run = wait_done(c, rid, timeout=30)
            assert run["status"] == "failed" and run["reason"] == "idleTimeout", run
            assert "printed nothing for 1 s" in run["error"]
    finally:
        e.close()


def test_artifacts_keep_what_a_run_produced(env: Env):
    import subprocess

    subprocess.run(["git", "init", "-q", str(env.ws)], check=True)
    (env.ws / "README").write_text("old\n")
    git = ["git", "-C", str(env.ws), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    notes = str(env.ws / "notes.txt")
    env.model.script([tool_use("Write", {"file_path": notes, "content": "hello\n"}),
                      tool_use("TodoWrite", {"todos": [
                          {"content": "write notes", "status": "completed",
                           "activeForm": "writing"}]})],
                     [message("wrote the notes")])
    with env.daemon.client() as c:
        c.call("secret/set", {"provider": "claude", "token": CLAUDE_TOKEN})
        rid = c.call("run/start", {"provider": "claude", "prompt": "write notes",
                                   "cwd": str(env.ws), "env": env.claude_env,
                                   "harness": {"allowedTools": ["Write", "TodoWrite"]}})["runId"]
        run = wait_done(c, rid)
        assert run["status"] == "succeeded", (run, events(c, rid)[-4:])
        kinds = {ev["data"].get("kind") for ev in events(c, rid) if ev["type"] == "run.semantic"}
        assert {"fileChange", "todoList", "agentMessage"} <= kinds
        arts = {a["kind"]: a for a in c.call("run/artifacts", {"runId": rid})["artifacts"]}
        assert arts["message"]["content"] == "wrote the notes"
        assert json.loads(arts["files"]["content"]) == [notes]
        assert "+hello" in arts["diff"]["content"] and "notes.txt" in arts["diff"]["content"]
        assert arts["diff"]["mediaType"] == "text/x-diff"
        assert json.loads(arts["todos"]["content"]) == [{"text": "write notes",
                                                         "completed": True}]
        doc = json.loads(c.call("run/export", {"runId": rid, "format": "json"})["content"])
        assert {a["kind"] for a in doc["artifacts"]} == set(arts)
        md = c.call("run/export", {"runId": rid, "format": "markdown"})["content"]
        assert "## Changes" in md and "+hello" in md
        with pytest.raises(RpcError) as missing:
            c.call("run/artifacts", {"runId": "run_nope"})
        assert missing.value.code == ErrorCode.NOT_FOUND


def test_an_isolated_codex_home_with_the_login_copied(env: Env):
    import stat

    (env.codex_home / "auth.json").write_text('{"OPENAI_API_KEY": "sk-test-login"}')
    os.chmod(env.codex_home / "auth.json", 0o600)
    (env.codex_home / "history.jsonl").write_text("private\n")
    provider = {"model": "mock-model", "model_provider": "mock",
                "model_providers.mock.name": "mock",
                "model_providers.mock.base_url": env.model.base_url,
                "model_providers.mock.wire_api": "responses",
                "model_providers.mock.request_max_retries": 0,
                "model_providers.mock.stream_max_retries": 0,
                "model_providers.mock.supports_websockets": False}
    env.model.script([message("from my own home")])
    with env.daemon.client() as c:
        rid = c.call("run/start", {"provider": "codex", "prompt": "hi", "cwd": str(env.ws),
                                   "harness": {"isolatedHome": True, "copyLogin": True,
                                               "config": provider}})["runId"]
        run = wait_done(c, rid)
        assert run["status"] == "succeeded", (run, events(c, rid)[-4:])
        home = next(ev["data"] for ev in events(c, rid)
                    if ev["data"].get("phase") == "codexHome")
    own = env.daemon.state_dir / "codex-homes" / home["name"]
    assert home["copied"] == ["auth.json"] and home["name"] == rid
    assert stat.S_IMODE(own.stat().st_mode) == 0o700
    assert stat.S_IMODE((own / "auth.json").stat().st_mode) == 0o600
    assert (own / "auth.json").read_text() == (env.codex_home / "auth.json").read_text()
    assert not (own / "history.jsonl").exists()  # the login only, nothing else
    assert list(own.glob("sessions/*/*/*/rollout-*.jsonl"))  # the session lives there
    assert not list(env.codex_home.glob(f"sessions/*/*/*/rollout-*{run['sessionId']}.jsonl"))
