"""Notifications that reach a person: a notify program, a webhook and the desktop, against a
real daemon (and, for the events of real turns and approvals, the real codex app-server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codexd.errors import ErrorCode
from tests.fake_model import message, shell_call
from tests.helpers import eventually, log_events, pid_alive
from tests.helpers.bridge import start_thread, start_turn, until, wait_pending, wait_ready
from tests.helpers.daemon import make_bridge, make_daemon
from tests.helpers.notify import Desktop, Recorder, Webhook

SECRET = "whsec-" + "Kd9" * 10


def test_notify_test_reports_each_channel_and_a_hung_hook_never_holds_the_daemon(
        short_tmp: Path):
    hook = Recorder(short_tmp, mode="hang")
    webhook = Webhook(SECRET)
    d = make_daemon(short_tmp, config=(
        f"[notify]\n{hook.toml()}\n{webhook.toml()}\ntimeout_seconds = 1.5\n"))
    d.start()
    try:
        ctl = subprocess.Popen(
            [sys.executable, "-m", "codexd.cli.codexctl", "--socket", str(d.socket), "notify",
             "test", "--json"], env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        eventually(hook.pids, 10, what="the hung hook to start")
        # While the hook hangs, the daemon answers everyone else.
        with d.client() as c:
            for _ in range(20):
                assert c.call("daemon/health")["ok"] is True
            assert ctl.poll() is None, "notify test returned before the hook's timeout"
        out, err = ctl.communicate(timeout=30)
        assert ctl.returncode == 1, (out, err)
        results = {r["channel"]: r for r in json.loads(out)["results"]}
        assert set(results) == {"program", "webhook"}
        assert not results["program"]["ok"]
        assert "notify.timeout_seconds (1.5 s)" in results["program"]["error"]
        assert results["webhook"]["ok"] and results["webhook"]["error"] is None
        # The hook and what it started were killed with their process group.
        for pid in hook.pids():
            eventually(lambda pid=pid: not pid_alive(pid), 10, what=f"pid {pid} to be killed")
        [got] = webhook.received
        assert got["signed"] and got["fresh"] and got["path"] == "/hooks/codexd"
        assert got["headers"]["x-codexd-event"] == "test"
        assert got["payload"]["type"] == "test" and got["payload"]["source"] == "codexd"

        # A channel that is not configured says which key turns it on.
        out2 = d.ctl("notify", "test", "--channel", "desktop", "--json")
        assert out2.returncode == 1
        error = json.loads(out2.stdout)["error"]
        assert error["code"] == ErrorCode.NOT_FOUND and "[notify] desktop" in error["message"]

        # A failing receiver is reported with its status; one that works still is.
        webhook.status = 500
        out3 = d.ctl("notify", "test", "--channel", "webhook")
        assert out3.returncode == 1
        assert "webhook: FAILED: POST http://127.0.0.1:" in out3.stdout
        assert "answered 500" in out3.stdout
        with d.client() as c:
            counted = c.call("daemon/metrics")["notifications"]
        assert counted == {"program": {"failed": 1}, "webhook": {"failed": 1, "sent": 1}}
        failures = log_events(d.log_path, "notification_failed")
        assert [f["channel"] for f in failures] == ["program", "webhook"]
        assert SECRET not in d.log()
        # `codexd config` shows that a secret is set, never the secret.
        shown = subprocess.run([sys.executable, "-m", "codexd", "config", "--json"], env=d.env,
                               capture_output=True, text=True, check=True).stdout
        assert SECRET not in shown
        assert json.loads(shown)["config"]["notify"]["webhook_secret"] == "[REDACTED]"
    finally:
        d.stop()
        webhook.close()


def test_a_bad_webhook_url_is_refused_at_start(short_tmp: Path):
    d = make_daemon(short_tmp, config='[notify]\nwebhook_url = "http://example.com/hook"\n')
    try:
        with pytest.raises(AssertionError) as failed:
            d.start(timeout=10)
    finally:
        d.stop()
    assert "webhook_url must use https unless it is on a loopback address" in str(failed.value)


@pytest.fixture
def notified(short_tmp: Path):
    """A real codex bridge whose notifications go to a program, a webhook and a desktop."""
    hook = Recorder(short_tmp)
    webhook = Webhook(SECRET)
    desktop = Desktop(short_tmp)
    bridge = make_bridge(short_tmp, extra_config=(
        f'[runs]\ncodex_home = "{short_tmp / "codex-home"}"\n'
        f"[notify]\n{hook.toml()}\n{webhook.toml()}\ndesktop = \"on\"\n"
        "approval_delay_seconds = 2\n"))
    bridge.daemon.env["DBUS_SESSION_BUS_ADDRESS"] = desktop.address
    bridge.daemon.start()
    yield bridge, hook, webhook, desktop
    bridge.daemon.stop()
    bridge.model.stop()  # type: ignore[attr-defined]
    webhook.close()
    desktop.close()


def test_turns_approvals_and_runs_notify_unless_someone_is_looking(notified):
    bridge, hook, webhook, desktop = notified
    model = bridge.model
    turn_done = lambda n: n.method == "turn/completed"  # noqa: E731
    with bridge.client(name="tui") as c:
        wait_ready(c)
        thread_id = start_thread(c, bridge.workspace)

        # A completed turn: Codex's own notify payload, on every channel.
        model.script([message("hello from the model")])
        turn_id = start_turn(c, thread_id, "say hello")
        until(c, turn_done)
        [payload] = hook.wait("agent-turn-complete")
        assert {k: payload[k] for k in ("thread-id", "turn-id", "cwd", "input-messages",
                                        "last-assistant-message")} == {
            "thread-id": thread_id, "turn-id": turn_id, "cwd": str(bridge.workspace),
            "input-messages": ["say hello"], "last-assistant-message": "hello from the model"}
        assert webhook.wait("agent-turn-complete") == [payload]
        assert all(r["signed"] for r in webhook.received)
        [shown] = desktop.wait("Codex finished")
        assert shown["app"] == "codexd" and shown["body"] == "hello from the model"

        # An approval answered quickly notifies no one.
        model.script([shell_call("echo quick > quick.txt")], [message("quick done")])
        start_turn(c, thread_id, "write quick.txt")
        [quick] = wait_pending(c)
        c.call("approval/respond", {"approvalId": quick["approvalId"],
                                    "result": {"decision": "accept"}})
        until(c, turn_done)

        # One still pending after the delay does; its answer follows and replaces it.
        model.script([shell_call("echo slow > slow.txt", "write slow.txt")],
                     [message("slow done")])
        start_turn(c, thread_id, "write slow.txt")
        [slow] = wait_pending(c)
        [requested] = hook.wait("approval-requested")
        assert requested["approval-id"] == slow["approvalId"]
        assert requested["thread-id"] == thread_id and requested["waited-seconds"] == 2
        assert requested["command"] and "echo slow > slow.txt" in requested["command"]
        assert requested["answer"] == f"codexctl approvals accept {slow['approvalId']}"
        assert bridge.daemon.ctl("approvals", "accept", str(slow["approvalId"])).returncode == 0
        [resolved] = hook.wait("approval-resolved")
        assert resolved["approval-id"] == slow["approvalId"]
        assert resolved["resolved-by"].startswith("codexctl#")
        assert resolved["body"].startswith("answered by codexctl#")
        [ask] = desktop.wait("Codex asks to run a command")
        [answer] = desktop.wait("Codex approval answered")
        assert answer["replaces"] == ask["id"] and ask["hints"]["urgency"] == ("y", 2)
        until(c, turn_done)
        assert all(p["approval-id"] == slow["approvalId"] for p in hook.payloads()
                   if p["type"].startswith("approval"))

        # A focused client showing the thread keeps its turns quiet; unfocused, they notify.
        c.call("client/visibility", {"focused": True, "threadIds": [thread_id]})
        model.script([message("seen on screen")])
        start_turn(c, thread_id, "while looking")
        until(c, turn_done)
        c.call("client/visibility", {"focused": False})
        model.script([message("nobody looking")])
        start_turn(c, thread_id, "after looking away")
        until(c, turn_done)
        turns = hook.wait("agent-turn-complete", 4)
        # The channel keeps order: had the focused turn been sent, it would be here.
        assert [t["last-assistant-message"] for t in turns] == [
            "hello from the model", "quick done", "slow done", "nobody looking"]
        assert c.call("daemon/metrics")["notifications"]["program"]["suppressed"] == 1

        # An automation's run notifies as the automation, not as one more turn.
        model.script([message("standup: all green")])
        auto = c.call("automation/create", {
            "kind": "cron", "name": "standup", "prompt": "Summarize the repo",
            "rrule": "DTSTART:20300101T090000Z\nRRULE:FREQ=DAILY",
            "cwds": [str(bridge.workspace)], "timezone": "UTC"})["automation"]
        c.call("automation/runNow", {"automationId": auto["id"]})
        [standup] = hook.wait("automation-finished")
        assert standup["automation-id"] == auto["id"] and standup["status"] == "succeeded"
        assert standup["title"] == "standup: succeeded"
        assert standup["summary"] == "standup: all green"
        assert len(hook.wait("agent-turn-complete", 4)) == 4

        # notifyOnTurnComplete false: turns stop notifying; a provider run still does.
        c.call("settings/update", {"patch": {"notifyOnTurnComplete": False}})
        model.script([message("not announced")])
        start_turn(c, thread_id, "quietly")
        until(c, turn_done)
        model.script([message("the run's answer")])
        run = c.call("run/start", {"provider": "codex", "prompt": "run it",
                                   "cwd": str(bridge.workspace)})
        [finished] = hook.wait("run-finished")
        assert finished["run-id"] == run["runId"] and finished["status"] == "succeeded"
        assert finished["last-message"] == "the run's answer"
        assert len(hook.wait("agent-turn-complete", 4)) == 4
        assert webhook.payloads() == hook.payloads()
