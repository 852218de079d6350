"""Automations end to end: the real codex app-server, the fake model server, real files."""

from __future__ import annotations

import calendar
import re
import signal
import time
from pathlib import Path
from typing import Any

import tomlkit

from codexd.client import Client
from tests.fake_model import message, shell_call
from tests.helpers.bridge import start_thread, start_turn, until, wait_ready
from tests.helpers.daemon import Bridge, make_bridge


def runs(c: Client, aid: str) -> list[dict[str, Any]]:
    return c.call("automation/runs", {"automationId": aid})["runs"]  # type: ignore[no-any-return]


def wait_run(c: Client, aid: str, status: str | tuple[str, ...], timeout: float = 60) -> dict:
    want = (status,) if isinstance(status, str) else status
    deadline = time.monotonic() + timeout
    while True:
        got = runs(c, aid)
        if got and got[0]["status"] in want:
            return got[0]
        assert time.monotonic() < deadline, f"run never reached {want}: {got}"
        time.sleep(0.1)


def dtstart_in(seconds: float) -> tuple[str, int]:
    t = time.gmtime(time.time() + seconds)
    return time.strftime("%Y%m%dT%H%M%SZ", t), calendar.timegm(t) * 1000


def test_a_due_cron_automation_runs_a_real_turn_and_reports(bridge: Bridge):
    bridge.model.script([message("Three commits landed; the build is green.")])
    with bridge.client() as c:
        wait_ready(c)
        dtstart, due = dtstart_in(2)
        a = c.call("automation/create", {
            "kind": "cron", "name": "standup", "prompt": "Summarize the repo",
            "rrule": f"DTSTART:{dtstart}\nRRULE:FREQ=DAILY", "cwds": [str(bridge.workspace)],
            "timezone": "UTC"})["automation"]
        path = bridge.codex_home / "automations" / a["id"] / "automation.toml"
        doc = tomlkit.parse(path.read_text()).unwrap()
        assert doc["kind"] == "cron" and doc["prompt"] == "Summarize the repo"

        notes = until(c, lambda n: n.method == "automation/runCompleted", timeout=60)
        done = notes[-1].params["run"]
        assert done["status"] == "succeeded", done
        assert done["summary"] == "Three commits landed; the build is green."
        assert done["scheduledAt"] == due and done["trigger"] == "schedule"
        assert done["threadId"] and done["turnId"] and done["durationMs"] >= 0
        started = next(n for n in notes if n.method == "automation/runStarted")
        assert started.params["run"]["runId"] == done["runId"]
        # The prompt reached the model, and the thread runs in the automation's cwd.
        assert any("Summarize the repo" in str(r) for r in bridge.model.requests)
        thread = c.call("thread/read", {"threadId": done["threadId"]})["thread"]
        assert thread["cwd"] == str(bridge.workspace)

        items = c.call("inbox/list")["items"]
        assert items[0]["kind"] == "runSucceeded" and items[0]["title"] == "standup: succeeded"
        assert items[0]["body"] == "Three commits landed; the build is green."
        assert items[0]["threadId"] == done["threadId"]
        # It fired once and is scheduled for tomorrow.
        assert len(runs(c, a["id"])) == 1
        assert c.call("automation/get", {"automationId": a["id"]})["nextRunAt"] == \
            due + 86_400_000

    # `codexctl auto run --wait` runs it now and waits for the summary.
    bridge.model.script([message("Nothing new since this morning.")])
    out = bridge.daemon.ctl("auto", "run", a["id"], "--wait", timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Nothing new since this morning."
    assert re.search(r"\[run \d+ succeeded", out.stderr), out.stderr


def test_heartbeat_continues_a_thread_and_skips_it_while_busy(bridge: Bridge):
    with bridge.client() as c:
        wait_ready(c)
        thread_id = start_thread(c, bridge.workspace)
        start_turn(c, thread_id, "first")
        until(c, lambda n: n.method == "turn/completed")
        a = c.call("automation/create", {
            "kind": "heartbeat", "prompt": "Keep going", "rrule": "FREQ=HOURLY",
            "targetThreadId": thread_id})["automation"]

        bridge.model.script([message("Continued where we left off.")])
        c.call("automation/runNow", {"automationId": a["id"]})
        run = wait_run(c, a["id"], ("succeeded", "failed", "skipped"))
        assert run["status"] == "succeeded", run
        assert run["threadId"] == thread_id and run["summary"] == "Continued where we left off."
        turns = c.call("thread/read", {"threadId": thread_id, "includeTurns": True})
        assert len(turns["thread"]["turns"]) == 2

        # A turn in progress on the thread: the heartbeat is skipped, not piled on.
        gate = bridge.model.hold()
        try:
            start_turn(c, thread_id, "a long one")
            until(c, lambda n: n.method == "turn/started")
            c.call("automation/runNow", {"automationId": a["id"]})
            run = wait_run(c, a["id"], ("succeeded", "failed", "skipped"))
            assert run["status"] == "skipped" and "busy" in run["decision"], run
        finally:
            gate.set()
        items = c.call("inbox/list")["items"]
        assert items[0]["kind"] == "runSkipped" and "busy" in items[0]["body"]


def test_a_run_waiting_on_an_approval_says_so_in_the_inbox(bridge: Bridge):
    bridge.model.script([shell_call("echo auto > auto.txt", "write auto.txt")],
                        [message("auto.txt is written")])
    with bridge.client() as c:
        wait_ready(c)
        a = c.call("automation/create", {
            "kind": "cron", "name": "writer", "prompt": "write auto.txt", "rrule": "FREQ=DAILY",
            "cwds": [str(bridge.workspace)]})["automation"]
        c.call("automation/runNow", {"automationId": a["id"]})
        note = until(c, lambda n: n.method == "inbox/itemAdded", timeout=60)[-1]
        item = note.params["item"]
        assert item["kind"] == "approvalWaiting" and item["title"] == \
            "writer is waiting for approval"
        assert "echo auto > auto.txt" in item["body"] and item["automationId"] == a["id"]
        assert wait_run(c, a["id"], "running")["threadId"] == item["threadId"]
        # Durable like any approval: answered later, from anywhere.
        out = bridge.daemon.ctl("approvals", "accept", str(item["approvalId"]))
        assert out.returncode == 0, out.stderr
        run = wait_run(c, a["id"], ("succeeded", "failed"))
        assert run["status"] == "succeeded" and run["summary"] == "auto.txt is written"
        assert (bridge.workspace / "auto.txt").read_text() == "auto\n"


def test_daemon_killed_mid_run_marks_it_interrupted_and_never_fires_twice(short_tmp: Path):
    b = make_bridge(short_tmp)
    b.daemon.start()
    try:
        gate = b.model.hold()
        with b.client() as c:
            wait_ready(c)
            dtstart, due = dtstart_in(2)
            a = c.call("automation/create", {
                "kind": "cron", "name": "slow", "prompt": "take your time",
                "rrule": f"DTSTART:{dtstart}\nRRULE:FREQ=DAILY",
                "cwds": [str(b.workspace)]})["automation"]
            wait_run(c, a["id"], "running")
            deadline = time.monotonic() + 30
            while not b.model.requests:  # the turn reached the model
                assert time.monotonic() < deadline, "the turn never reached the model"
                time.sleep(0.05)
        b.daemon.signal(signal.SIGKILL)
        b.daemon.wait()
        gate.set()
        b.daemon.start()
        with b.client() as c:
            (run,) = runs(c, a["id"])
            assert run["status"] == "interrupted" and run["scheduledAt"] == due
            assert "not re-run" in run["error"]
            items = c.call("inbox/list")["items"]
            assert items[0]["kind"] == "runInterrupted" and items[0]["runId"] == run["runId"]
            # The due time was claimed once: a few seconds later there is still one run.
            time.sleep(1.5)
            assert len(runs(c, a["id"])) == 1
            assert c.call("automation/get", {"automationId": a["id"]})["nextRunAt"] == \
                due + 86_400_000
    finally:
        b.daemon.stop()
        b.model.stop()  # type: ignore[attr-defined]


def test_runs_beyond_the_concurrency_limit_wait_their_turn(short_tmp: Path):
    b = make_bridge(short_tmp, "[automations]\nmax_concurrent_runs = 1\n")
    b.daemon.start()
    try:
        gate = b.model.hold()
        with b.client() as c:
            wait_ready(c)
            ids = []
            for name in ("first", "second"):
                ids.append(c.call("automation/create", {
                    "kind": "cron", "name": name, "prompt": name, "rrule": "FREQ=DAILY",
                    "cwds": [str(b.workspace)]})["automation"]["id"])
                c.call("automation/runNow", {"automationId": ids[-1]})
            wait_run(c, ids[0], "running")
            time.sleep(0.5)
            assert runs(c, ids[1])[0]["status"] == "queued"
            gate.set()
            assert wait_run(c, ids[0], "succeeded")["summary"] == "done"
            assert wait_run(c, ids[1], "succeeded")["summary"] == "done"
    finally:
        b.daemon.stop()
        b.model.stop()  # type: ignore[attr-defined]
