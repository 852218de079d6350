"""The app-server bridge against the real `codex` binary and a fake model server."""

from __future__ import annotations

import time

import pytest

from codexd.client import ReceivedNotification
from codexd.errors import ErrorCode, RpcError
from codexd.runs.compat import TESTED
from tests.fake_model import message, shell_call
from tests.helpers.bridge import start_thread, start_turn, until, wait_pending, wait_ready


def agent_texts(notes: list[ReceivedNotification]) -> list[str]:
    return [n.params["item"]["text"] for n in notes
            if n.method == "item/completed" and n.params["item"]["type"] == "agentMessage"]


def test_passthrough_and_initialize_merge(bridge):
    with bridge.client() as c:
        wait_ready(c)
        with bridge.client() as c2:
            info = c2.server_info
            assert info["server"] == "codexd"
            assert info["appServerState"] == "ready"
            assert info["codexHome"] == str(bridge.codex_home)
            assert info["userAgent"].startswith("codexd/")
            assert info["platformOs"] == "linux"
        # The start's timing includes the first app-server ready, after the socket was bound.
        startup = c.call("daemon/status")["startup"]
        assert 0 < startup["socketBoundMs"] < startup["appServerReadyMs"]
        listed = c.call("thread/list", {})
        assert listed["data"] == []
        # An app-server error passes through unchanged.
        with pytest.raises(RpcError) as err:
            c.call("thread/read", {"threadId": "no-such-thread"})
        assert err.value.code not in (ErrorCode.APPSERVER_NOT_READY, ErrorCode.INTERNAL_ERROR)
        with pytest.raises(RpcError) as err:  # unknown to both: -32601, not a 200-name list
            c.call("thread/lsit", {})
        assert err.value.code == ErrorCode.METHOD_NOT_FOUND
        assert err.value.data["suggestions"][0] == "thread/list"
        assert "expected one of" not in err.value.message and len(err.value.message) < 200
        with pytest.raises(RpcError) as err:
            c.call("no/such/method", {})
        assert err.value.code == ErrorCode.METHOD_NOT_FOUND
        with pytest.raises(RpcError) as err:  # a known method with bad params: -32600 upstream
            c.call("thread/start", {"cwd": 5})
        assert err.value.code == ErrorCode.INVALID_REQUEST
        methods = c.call("daemon/status")["methods"]
        assert "no/such/method" not in methods and methods["thread/list"]["calls"] == 1
        # Counted under its own name (only names the app-server does not know are "(unknown)").
        assert methods["thread/start"] == {"calls": 1, "errors": 1}
        assert methods["(unknown)"]["calls"] == 2
        # The same calls in daemon/metrics, with owners, error codes and windows.
        mm = c.call("daemon/metrics")["methods"]
        assert mm["thread/list"]["owner"] == "appserver"
        assert mm["thread/start"]["errorCodes"] == {str(int(ErrorCode.INVALID_REQUEST)): 1}
        assert mm["(unknown)"]["owner"] == "unknown"
        assert mm["(unknown)"]["errorCodes"] == {str(int(ErrorCode.METHOD_NOT_FOUND)): 2}
        assert mm["daemon/status"]["owner"] == "codexd"
        assert mm["thread/read"]["windows"]["1m"]["errors"] == 1
        assert mm["thread/list"]["windows"]["5m"]["p50Ms"] > 0
        gauges = c.call("daemon/metrics")["appServer"]
        assert gauges["state"] == "ready" and gauges["generation"] >= 1
        status = c.call("daemon/appServer/status")
        assert status["version"] == TESTED["codex"][0]
        assert status["pid"] > 0 and status["generation"] >= 1


def test_turn_streams_to_two_subscribed_clients(bridge):
    bridge.model.script([message("hello from the model")])
    with bridge.client(name="a") as a, bridge.client(name="b") as b, \
            bridge.client(name="bystander") as bystander:
        wait_ready(a)
        thread_id = start_thread(a, bridge.workspace)  # a is subscribed by starting it
        assert b.call("events/subscribe", {"threadIds": [thread_id]})["threadIds"] == [thread_id]
        start_turn(a, thread_id, "say hello")
        done = lambda n: n.method == "turn/completed"  # noqa: E731
        seen_a, seen_b = until(a, done), until(b, done)
        assert agent_texts(seen_a) == agent_texts(seen_b) == ["hello from the model"]
        thread_notes_a = [n for n in seen_a if n.params and n.params.get("threadId") == thread_id]
        thread_notes_b = [n for n in seen_b if n.params and n.params.get("threadId") == thread_id]
        assert [n.method for n in thread_notes_a] == [n.method for n in thread_notes_b]
        # The app-server's top-level emittedAtMs stamp is passed on with seq and epoch.
        raw = a.call("events/replay", {"afterSeq": 0})["events"]
        stamped = [e for e in raw if e["method"] == "turn/completed"]
        assert stamped and stamped[0]["emittedAtMs"] > 0 and stamped[0]["seq"] > 0
        # The bystander never subscribed: no thread-scoped notification reached it.
        bystander.call("daemon/status")
        leaked = []
        try:
            while True:
                note = bystander.next_notification(timeout=0.5)
                if (note.params or {}).get("threadId"):
                    leaked.append(note.method)
        except TimeoutError:
            pass
        assert leaked == []


def test_approval_answered_by_second_client_first_sees_it_resolved(bridge):
    bridge.model.script([shell_call("echo approved > out.txt")], [message("wrote it")])
    with bridge.client(name="a", server_requests=True) as a, \
            bridge.client(name="b", server_requests=True) as b:
        wait_ready(a)
        thread_id = start_thread(a, bridge.workspace)
        b.call("events/subscribe", {"threadIds": [thread_id]})
        start_turn(a, thread_id, "write the file")
        # Both capable clients receive the request with the same id (the approval id).
        req_b = b.next_request(timeout=30)
        req_a = a.next_request(timeout=30)
        assert req_a.method == req_b.method == "item/commandExecution/requestApproval"
        assert req_a.id == req_b.id
        b.respond(req_b.id, {"decision": "accept"})
        resolved = until(a, lambda n: n.method == "serverRequest/resolved")[-1]
        assert resolved.params["requestId"] == req_a.id
        assert resolved.params["status"] == "resolved"
        assert resolved.params["resolvedBy"] == f"b#{b.server_info['connectionId']}"
        until(a, lambda n: n.method == "turn/completed")
        assert (bridge.workspace / "out.txt").read_text() == "approved\n"
        # A second answer is refused.
        with pytest.raises(RpcError) as err:
            a.call("approval/respond", {"approvalId": req_a.id, "result": {"decision": "decline"}})
        assert err.value.code == ErrorCode.ALREADY_RESOLVED


def test_approval_with_nobody_connected_answered_later_by_codexctl(bridge):
    bridge.model.script([shell_call("echo later > later.txt", "write later.txt")],
                        [message("all done")])
    # A client without serverRequests capability starts the turn and leaves.
    with bridge.client(name="starter") as c:
        wait_ready(c)
        thread_id = start_thread(c, bridge.workspace)
        start_turn(c, thread_id, "write later.txt")
        wait_pending(c)
    # Nobody is connected now; the request waits in the database.
    out = bridge.daemon.ctl("approvals", "ls")
    assert out.returncode == 0, out.stderr
    header, line = out.stdout.strip().splitlines()[:2]
    assert header.split()[:3] == ["ID", "STATUS", "DECISION"]
    approval_id = int(line.split()[0])
    assert "pending" in line and "echo later > later.txt" in line
    assert not (bridge.workspace / "later.txt").exists()
    out = bridge.daemon.ctl("approvals", "accept", str(approval_id))
    assert out.returncode == 0, out.stderr
    assert f"approval {approval_id}: accept (resolved)" in out.stdout
    deadline = time.monotonic() + 30
    while not (bridge.workspace / "later.txt").exists():
        assert time.monotonic() < deadline, "the approved command never ran"
        time.sleep(0.1)
    assert (bridge.workspace / "later.txt").read_text() == "later\n"
    again = bridge.daemon.ctl("approvals", "decline", str(approval_id))
    assert again.returncode == 1 and "already resolved" in again.stderr
    listed = bridge.daemon.ctl("approvals", "ls", "--all", "--json")
    assert '"resolvedBy": "codexctl#' in listed.stdout
    # The table shows how a resolved approval was answered, and by whom.
    rows = bridge.daemon.ctl("approvals", "ls", "--all").stdout.splitlines()
    row = next(r.split() for r in rows if r.split()[0] == str(approval_id))
    assert row[1:3] == ["resolved", "accept"] and row[4].startswith("codexctl#")


def test_late_subscriber_gets_pending_requests(bridge):
    bridge.model.script([shell_call("echo x > x.txt")], [message("ok")])
    with bridge.client(name="starter") as c:
        wait_ready(c)
        thread_id = start_thread(c, bridge.workspace)
        start_turn(c, thread_id, "go")
        wait_pending(c)
    with bridge.client(name="late", server_requests=True) as late:
        late.call("events/subscribe", {"threadIds": [thread_id]})
        req = late.next_request(timeout=10)
        assert req.method == "item/commandExecution/requestApproval"
        assert req.params["threadId"] == thread_id
        late.respond(req.id, {"decision": "decline"})
        until(late, lambda n: n.method == "turn/completed")
    assert not (bridge.workspace / "x.txt").exists()


def test_codexctl_ask_streams_and_approves(bridge):
    bridge.model.script([shell_call("echo asked > asked.txt")], [message("the file is written")])
    with bridge.client() as c:
        wait_ready(c)
    out = bridge.daemon.ctl("ask", "write asked.txt", "--cwd", str(bridge.workspace),
                            "--approve", "all", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "the file is written" in out.stdout
    assert (bridge.workspace / "asked.txt").read_text() == "asked\n"
    threads = bridge.daemon.ctl("threads")
    assert threads.returncode == 0 and str(bridge.workspace) in threads.stdout
    status = bridge.daemon.ctl("appserver", "status")
    assert "state     ready" in status.stdout


def test_ask_ctrl_c_interrupts_the_turn_it_started(bridge):
    """Ctrl-C in `codexctl ask` interrupts the turn it started (turn/interrupt), exits 130
    quietly and says how to continue the thread."""
    import re
    import signal
    import subprocess
    import sys

    bridge.model.script([message("too late")])
    release = bridge.model.hold()
    with bridge.client() as c:
        wait_ready(c)
        ask = subprocess.Popen(
            [sys.executable, "-m", "codexd.cli.codexctl", "--socket", str(bridge.daemon.socket),
             "ask", "--cwd", str(bridge.workspace), "take your time"],
            env=bridge.daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not bridge.model.requests:  # the turn is with the model
            assert time.monotonic() < deadline and ask.poll() is None, ask.communicate()
            time.sleep(0.05)
        ask.send_signal(signal.SIGINT)
        _out, err = ask.communicate(timeout=30)
        release.set()
        assert ask.returncode == 130, err
        assert "Traceback" not in err and "turn interrupted" in err
        thread_id = re.search(r"codexctl ask --thread (\S+)", err).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while True:
            turns = c.call("thread/read", {"threadId": thread_id,
                                           "includeTurns": True})["thread"]["turns"]
            if turns and turns[-1]["status"] != "inProgress":
                break
            assert time.monotonic() < deadline, turns
            time.sleep(0.1)
        assert turns[-1]["status"] == "interrupted"
