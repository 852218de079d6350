"""A usage limit pauses a provider's lane until it resets, instead of failing runs: the real
codex and claude CLIs against a fake model server that answers with each API's usage-limit
error for a few seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.fake_model import message
from tests.helpers import eventually
from tests.helpers.bridge import start_thread, start_turn, wait_ready
from tests.helpers.daemon import make_bridge
from tests.helpers.notify import Recorder
from tests.helpers.runs import Env, events, wait_done

OAUTH = "sk-ant-oat01-" + "Qm7" * 12


def test_a_usage_limit_pauses_the_lane_and_runs_continue_after_the_reset(short_tmp: Path):
    hook = Recorder(short_tmp)
    e = Env(short_tmp, f"max_per_provider = 1\n[notify]\n{hook.toml()}\n")
    e.daemon.start()
    try:
        reset = e.model.limit(8)
        e.model.script([message("first, after the reset")], [message("second one")],
                       [message("claude, after the reset")])
        with e.daemon.client() as c:
            first = c.call("run/start", {"provider": "codex", "prompt": "task one",
                                         "cwd": str(e.ws)})["runId"]
            # The first run stops at the limit: the codex lane pauses until its reset, to the
            # second (codex's rollout has the exact time; its message only the minute).
            limited = eventually(lambda: next((ev for ev in events(c, first)
                                               if ev["type"] == "run.usage_limited"), None),
                                 60, what="the first run to hit the limit")
            assert limited["data"]["resetAt"] == int(reset) * 1000
            assert limited["data"]["source"] == "rolloutRateLimits"
            assert limited["data"]["resumes"] is True
            assert "usage limit" in limited["data"]["message"]
            second = c.call("run/start", {"provider": "codex", "prompt": "task two",
                                          "cwd": str(e.ws)})["runId"]
            lanes = c.call("queue/list")
            assert lanes["pausedUntil"]["codex"] == int(reset) * 1000
            assert lanes["paused"]["codex"].startswith("usage limit: resumes at ")
            assert {q["runId"] for q in lanes["queued"]} == {first, second}
            assert c.call("run/get", {"runId": first})["status"] == "queued"
            assert c.call("daemon/status")["lanesPausedUntil"] == {"codex": int(reset) * 1000}
            # claude logged in with a subscription (an API key has no usage limit, only rate
            # limits without a reset time) reports the reset in its stream.
            claude = c.call("run/start", {"provider": "claude", "prompt": "task three",
                                          "cwd": str(e.ws),
                                          "env": {**e.claude_env,
                                                  "CLAUDE_CODE_OAUTH_TOKEN": OAUTH}})["runId"]
            waited = eventually(lambda: next((ev for ev in events(c, claude)
                                              if ev["type"] == "run.usage_limited"), None),
                                60, what="the claude run to hit the limit")
            assert waited["data"]["resetAt"] == int(reset) * 1000
            assert waited["data"]["source"] in ("rateLimitEvent", "transcript")
            assert time.time() < reset, "the limit was over before the checks: raise it"
            # Nothing started during the pause but those two.
            assert not [ev for ev in events(c, second) if ev["type"] == "run.started"]

            # After the reset every run completes; the limited ones in their own sessions.
            try:
                runs = {rid: wait_done(c, rid, timeout=40) for rid in (first, second, claude)}
            except AssertionError:
                for rid in (first, second, claude):
                    print("DBG", rid, c.call("run/get", {"runId": rid})["status"],
                          [(ev["type"], ev["data"]) for ev in events(c, rid)][-5:])
                print("DBG queue", c.call("queue/list"))
                print("DBG log", "\n".join(e.daemon.log().splitlines()[-30:]))
                raise
            for rid, run in runs.items():
                assert run["status"] == "succeeded", (run, events(c, rid)[-4:])
            for rid in (first, claude):
                started = [ev["data"] for ev in events(c, rid) if ev["type"] == "run.started"]
                assert len(started) == 2 and started[1]["resume"] == runs[rid]["sessionId"]
                assert runs[rid]["limitResumes"] == 1
            assert runs[first]["resultText"] == "first, after the reset"
            assert "limitResumes" not in runs[second]  # 0, left off the wire
            assert e.model.refused >= 2
            # The resumed turn asked the model to go on, in the session that held the task.
            resumed = [json.dumps(r) for r in e.model.requests if "task one" in json.dumps(r)]
            assert resumed and "usage limit that stopped you has reset" in resumed[0]
            assert c.call("queue/list")["paused"] == {}
        resumed_notes = hook.wait("lane-resumed", 2)
        assert {n["provider"] for n in resumed_notes} == {"codex", "claude"}
    finally:
        e.close()


def test_the_app_server_reporting_the_account_limit_pauses_codex_runs(short_tmp: Path):
    bridge = make_bridge(short_tmp, extra_config=(
        f'[runs]\ncodex_home = "{short_tmp / "codex-home"}"\n'))
    bridge.daemon.start()
    try:
        with bridge.client() as c:
            wait_ready(c)
            thread_id = start_thread(c, bridge.workspace)
            reset = bridge.model.limit(30)
            start_turn(c, thread_id, "hello")
            # The TUI's turn hit the limit; codex runs on the same account wait for the reset.
            lanes = eventually(lambda: (lambda q: q if "codex" in q["pausedUntil"] else None)(
                c.call("queue/list")), 30, what="the codex lane to pause")
            assert lanes["pausedUntil"]["codex"] == int(reset) * 1000
            rid = c.call("run/start", {"provider": "codex", "prompt": "later",
                                       "cwd": str(bridge.workspace)})["runId"]
            assert c.call("run/get", {"runId": rid})["status"] == "queued"
            # An automation due during the pause waits too, then follows its missed_policy.
            due = time.gmtime(time.time() + 2)
            auto = c.call("automation/create", {
                "kind": "cron", "name": "nightly", "prompt": "summarize",
                "rrule": f"DTSTART:{time.strftime('%Y%m%dT%H%M%SZ', due)}\nRRULE:FREQ=DAILY",
                "cwds": [str(bridge.workspace)], "timezone": "UTC",
                "missedPolicy": "skip"})["automation"]
            time.sleep(3.5)  # past its due time, inside the pause
            assert c.call("automation/runs", {"automationId": auto["id"]})["runs"] == []
            c.call("queue/resume", {"provider": "codex"})  # a person decides to try now
            assert c.call("queue/list")["pausedUntil"] == {}
            [skipped] = eventually(lambda: c.call("automation/runs", {
                "automationId": auto["id"]})["runs"], 10, what="the held automation's run")
            assert skipped["status"] == "skipped" and skipped["trigger"] == "missed"
            assert "usage limit" in skipped["decision"]
    finally:
        bridge.daemon.stop()
        bridge.model.stop()  # type: ignore[attr-defined]
