"""The run queue with a fake CLI (fault injection): order, limits, capacity, retries, secrets."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from codexd.client import Client
from codexd.errors import ErrorCode, RpcError
from tests.helpers.daemon import DaemonProc, make_daemon
from tests.helpers.runs import FAKE_CLI, events, wait_done


def fake_daemon(base: Path, extra: str = "") -> DaemonProc:
    (base / "ws").mkdir(exist_ok=True)
    return make_daemon(base, config=(
        f'[runs]\ncodex_command = "{FAKE_CLI}"\nclaude_command = "{FAKE_CLI}"\n'
        f'secret_store = "file"\n{extra}'))


def start(c: Client, d: DaemonProc, prompt: str, **kw: Any) -> str:
    params = {"provider": "codex", "prompt": prompt, "cwd": str(d.base / "ws"), **kw}
    return c.call("run/start", params)["runId"]  # type: ignore[no-any-return]


def wait_running(c: Client, run_id: str) -> None:
    deadline = time.monotonic() + 20
    while c.call("run/get", {"runId": run_id})["status"] != "running":
        assert time.monotonic() < deadline, f"{run_id} never started"
        time.sleep(0.02)


def starts(log: Path) -> list[str]:
    return [ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("start")]


def test_priority_order_and_aging(short_tmp: Path):
    d = fake_daemon(short_tmp, "max_concurrent = 1\naging_seconds = 0\n").start()
    gate, log = short_tmp / "gate", short_tmp / "log"
    env = {"FAKE_WAIT": str(gate), "FAKE_LOG": str(log)}
    try:
        with d.client() as c:
            first = start(c, d, "blocker", env=env)
            wait_running(c, first)
            ids = [start(c, d, name, priority=prio, env=env)
                   for name, prio in (("low", -5), ("mid", 0), ("high", 7), ("mid2", 0))]
            q = c.call("queue/list")
            assert [e["runId"] for e in q["running"]] == [first]
            assert [e["runId"] for e in q["queued"]] == [ids[2], ids[1], ids[3], ids[0]]
            gate.touch()
            for rid in ids:
                assert wait_done(c, rid)["status"] == "succeeded"
        assert starts(log) == ["blocker", "high", "mid", "mid2", "low"]
    finally:
        d.stop()


def test_aging_lifts_old_low_priority_work(short_tmp: Path):
    d = fake_daemon(short_tmp, "max_concurrent = 1\naging_seconds = 1\n").start()
    gate = short_tmp / "gate"
    try:
        with d.client() as c:
            start(c, d, "blocker", env={"FAKE_WAIT": str(gate)})
            old = start(c, d, "old", priority=-3)
            time.sleep(4.5)  # old ages by 4 steps: -3 + 4 = 1 > 0
            new = start(c, d, "new", priority=0)
            q = c.call("queue/list")["queued"]
            assert [e["runId"] for e in q] == [old, new], q
            assert q[0]["effectivePriority"] >= 1 and q[1]["effectivePriority"] == 0
            gate.touch()
    finally:
        d.stop()


def test_capacity_refusal(short_tmp: Path):
    d = fake_daemon(short_tmp, "max_concurrent = 1\nqueue_capacity = 3\n").start()
    gate = short_tmp / "gate"
    try:
        with d.client() as c:
            first = start(c, d, "blocker", env={"FAKE_WAIT": str(gate)})
            wait_running(c, first)
            for i in range(3):
                start(c, d, f"q{i}")
            with pytest.raises(RpcError) as exc:
                start(c, d, "one too many")
            assert exc.value.code == ErrorCode.QUEUE_FULL and exc.value.data == {"capacity": 3}
            assert "runs.queue_capacity" in exc.value.message
            assert len(c.call("run/list", {"status": "queued"})["runs"]) == 3
            gate.touch()
    finally:
        d.stop()


def test_per_provider_limit_under_20_concurrent_submissions(short_tmp: Path):
    import threading

    d = fake_daemon(short_tmp, "max_concurrent = 4\nmax_per_provider = 1\n").start()
    log = short_tmp / "log"
    ids: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        with d.client() as c:
            provider = "codex" if i % 2 else "claude"
            rid = start(c, d, f"{provider}-{i}", provider=provider,
                        env={"FAKE_LOG": str(log)})
            with lock:
                ids.append(rid)

    try:
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with d.client() as c:
            for rid in ids:
                assert wait_done(c, rid)["status"] == "succeeded"
        spans: dict[str, dict[str, list[float]]] = {}
        for line in log.read_text().splitlines():
            _what, tag, at = line.split()
            spans.setdefault(tag.split("-")[0], {}).setdefault(tag, []).append(float(at))
        assert set(spans) == {"codex", "claude"} and len(ids) == 20
        for provider, runs in spans.items():
            intervals = sorted((t[0], t[1]) for t in runs.values())
            assert len(intervals) == 10
            for (_s1, e1), (s2, _e2) in itertools.pairwise(intervals):
                assert s2 >= e1, f"two {provider} runs overlapped"
    finally:
        d.stop()


def test_retry_after_a_failure_before_any_output(short_tmp: Path):
    d = fake_daemon(short_tmp).start()
    try:
        with d.client() as c:
            marker = short_tmp / "failed-once"
            rid = start(c, d, "flaky", maxRetries=2, retryBackoffMs=100,
                        env={"FAKE_FAIL_ONCE": str(marker)})
            run = wait_done(c, rid)
            assert run["status"] == "succeeded" and run["attempt"] == 2
            kinds = [e["type"] for e in events(c, rid)]
            assert kinds.count("run.started") == 2
            warn = next(e for e in events(c, rid) if e["type"] == "run.warning")
            assert "retrying in 100 ms" in warn["data"]["message"]
            # No retries allowed: the failure is final.
            marker.unlink()
            rid = start(c, d, "flaky", env={"FAKE_FAIL_ONCE": str(marker)})
            run = wait_done(c, rid)
            assert run["status"] == "failed" and run["reason"] == "exitCode"
            assert run["exitCode"] == 3 and run["attempt"] == 1
    finally:
        d.stop()


def test_spawn_failure_is_retried_then_reported(short_tmp: Path):
    broken = short_tmp / "broken-cli"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    d = make_daemon(short_tmp, config=f'[runs]\ncodex_command = "{broken}"\n').start()
    (short_tmp / "ws").mkdir()
    try:
        with d.client() as c:
            rid = start(c, d, "x", maxRetries=2, retryBackoffMs=100)
            run = wait_done(c, rid)
            assert run["status"] == "failed" and run["reason"] == "spawnFailed"
            assert run["attempt"] == 3 and "cannot start" in run["error"]
    finally:
        d.stop()


def test_a_token_reaches_the_child_and_nothing_else(short_tmp: Path):
    d = fake_daemon(short_tmp).start()
    token = "sk-proj-" + "Tq4vX9" * 6
    try:
        with d.client() as c:
            state = c.call("secret/set", {"provider": "codex", "token": token})
            assert state == {"provider": "codex", "present": True, "store": "file"}
            assert c.call("secret/has", {"provider": "codex"})["present"] is True
            seen = short_tmp / "token-seen"
            rid = start(c, d, "leak", env={"FAKE_PRINT_ENV": "CODEX_API_KEY",
                                           "FAKE_TOKEN_FILE": str(seen)})
            run = wait_done(c, rid)
            assert run["status"] == "succeeded"
            assert seen.read_text() == token  # the child had it
            evs = events(c, rid)
            dump = str(evs) + c.call("run/export", {"runId": rid})["content"]
            assert token not in dump and "token is [REDACTED]" in dump
            # claude runs never get the codex token.
            rid = start(c, d, "other", provider="claude",
                        env={"FAKE_PRINT_ENV": "CODEX_API_KEY"})
            wait_done(c, rid)
            assert any(e["data"].get("text") == "token is " for e in events(c, rid))
            assert c.call("secret/clear", {"provider": "codex"})["present"] is False
            assert c.call("secret/has", {"provider": "codex"})["present"] is False
        secrets_file = d.state_dir / "secrets.json"
        assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    finally:
        d.stop()
    assert token not in d.log()


def test_codexctl_run_runs_conv_secret(short_tmp: Path):
    import json
    import subprocess
    import sys

    d = fake_daemon(short_tmp).start()
    ws = str(short_tmp / "ws")
    try:
        out = d.ctl("run", "--wait", "--cwd", ws, "--", "hello", "there")
        assert out.returncode == 0, out.stderr
        assert "echo: hello there" in out.stdout and "succeeded" in out.stderr
        rid = json.loads(d.ctl("runs", "ls", "--json").stdout)["runs"][0]["runId"]
        assert rid in d.ctl("runs", "ls").stdout
        assert "succeeded" in d.ctl("runs", "show", rid).stdout
        assert "echo: hello there" in d.ctl("runs", "logs", rid).stdout
        assert "echo: hello there" in d.ctl("runs", "logs", "-f", rid).stdout
        md = d.ctl("runs", "export", rid)
        assert md.stdout.startswith(f"# Run {rid}")
        exported = json.loads(d.ctl("runs", "export", rid, "--format", "json").stdout)
        assert exported["run"]["runId"] == rid
        queued = json.loads(d.ctl("run", "--cwd", ws, "--json", "--", "later").stdout)
        assert queued["status"] == "queued"
        rerun = d.ctl("runs", "rerun", rid, "--wait")
        assert rerun.returncode == 0 and "echo: hello there" in rerun.stdout
        assert json.loads(d.ctl("runs", "queue", "--json").stdout)["capacity"] == 512
        done = d.ctl("runs", "cancel", rid)
        assert done.returncode == 1 and "already ended" in done.stderr
        conv = d.ctl("conv", "new", "--cwd", ws, "--title", "chat").stdout.strip()
        sent = d.ctl("conv", "send", "--wait", conv, "--", "first")
        assert sent.returncode == 0 and "echo: first" in sent.stdout
        assert "chat" in d.ctl("conv", "ls").stdout
        assert "renamed" in d.ctl("conv", "rename", conv, "renamed").stdout
        assert "(archived)" in d.ctl("conv", "archive", conv).stdout
        assert d.ctl("conv", "send", conv, "--", "again").returncode == 1
        # The token comes from stdin, never from argv.
        p = subprocess.run([sys.executable, "-m", "codexd.cli.codexctl", "--socket",
                            str(d.socket), "secret", "set", "codex"], input="tok-123456\n",
                           env=d.env, capture_output=True, text=True, timeout=30, check=False)
        assert p.returncode == 0 and "stored (file)" in p.stdout
        assert "stored" in d.ctl("secret", "status", "codex").stdout
        assert "not stored" in d.ctl("secret", "clear", "codex").stdout
    finally:
        d.stop()


def test_structured_output_long_lines_and_a_rejected_resume(short_tmp: Path):
    d = fake_daemon(short_tmp, "max_line_bytes = 1024\n").start()
    schema = {"type": "object", "required": ["answer"],
              "properties": {"answer": {"type": "string"}}}
    try:
        with d.client() as c:
            ok = start(c, d, "json please", outputSchema=schema,
                       env={"FAKE_MESSAGE": '{"answer": "42"}'})
            assert wait_done(c, ok)["status"] == "succeeded"
            (out,) = [e for e in events(c, ok) if e["type"] == "run.structured_output"]
            assert out["data"]["value"] == {"answer": "42"}
            bad = start(c, d, "json please", outputSchema=schema,
                        env={"FAKE_MESSAGE": '{"answer": 42}'})
            run = wait_done(c, bad)
            assert run["status"] == "failed" and run["reason"] == "structuredOutputInvalid"
            assert any(e["type"] == "run.structured_output_invalid" for e in events(c, bad))

            long = start(c, d, "long", env={"FAKE_LONG_LINE": "5000"})
            assert wait_done(c, long)["status"] == "succeeded"
            evs = events(c, long)
            (chunk,) = [e for e in evs if e["type"] == "run.chunk.stdout"]
            assert chunk["data"]["text"] == "x" * 1024
            assert any("truncated" in (e["data"].get("message") or "") for e in evs
                       if e["type"] == "run.warning")

            conv = c.call("conversation/create", {"provider": "codex",
                                                  "cwd": str(d.base / "ws")})["conversationId"]
            first = c.call("conversation/send", {"conversationId": conv, "prompt": "one"})
            assert wait_done(c, first["runId"])["sessionId"] == "fake-thread-1"
            second = c.call("run/start", {"conversationId": conv, "prompt": "two",
                                          "env": {"FAKE_REJECT_RESUME": "1"}})["runId"]
            run = wait_done(c, second)
            assert run["status"] == "succeeded", run
            evs = events(c, second)
            starts = [e["data"]["resume"] for e in evs if e["type"] == "run.started"]
            assert starts == ["fake-thread-1", None]
            assert any("retrying once without resume" in (e["data"].get("message") or "")
                       for e in evs)
    finally:
        d.stop()


def test_auto_secret_store_falls_back_to_a_file_and_says_so(short_tmp: Path):
    (short_tmp / "ws").mkdir()
    d = make_daemon(short_tmp, config="[runs]\nsecret_store = \"auto\"\n",
                    env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}).start()
    try:
        with d.client() as c:
            status = c.call("daemon/status")
            assert "auto fell back to the file" in status["secretStore"]
            assert c.call("secret/set", {"provider": "claude", "token": "t0k3n-abcdef"})[
                "store"] == "file"
    finally:
        d.stop()


def test_profiles_fill_what_a_run_leaves_out(short_tmp: Path):
    d = fake_daemon(short_tmp).start()
    try:
        with d.client() as c:
            saved = c.call("profile/save", {"name": "slow", "defaults": {
                "provider": "claude", "cwd": str(d.base / "ws"), "priority": 4,
                "timeoutSeconds": 120, "model": "m-1"}})
            assert saved["defaults"]["priority"] == 4
            rid = c.call("run/start", {"prompt": "p", "profile": "slow", "model": "m-2"})["runId"]
            req = c.call("run/get", {"runId": rid})["request"]
            # Given fields win; missing ones come from the profile; the rest from the config.
            assert (req["provider"], req["model"], req["priority"], req["timeoutSeconds"],
                    req["maxRetries"], req["profile"]) == ("claude", "m-2", 4, 120, 0, "slow")
            assert [p["name"] for p in c.call("profile/list")["profiles"]] == ["slow"]
            with pytest.raises(RpcError) as exc:
                c.call("profile/save", {"name": "yolo", "defaults": {
                    "autoApprove": True, "sandbox": "danger-full-access"}})
            assert exc.value.code == ErrorCode.POLICY_DENIED
            assert c.call("profile/delete", {"name": "slow"})["deleted"] is True
            with pytest.raises(RpcError) as exc:
                c.call("profile/delete", {"name": "slow"})
            assert exc.value.code == ErrorCode.NOT_FOUND
            wait_done(c, rid)
    finally:
        d.stop()


def test_unknown_ids_and_paging(short_tmp: Path):
    d = fake_daemon(short_tmp).start()
    try:
        with d.client() as c:
            for method, params in (("run/get", {"runId": "run_nope"}),
                                   ("run/cancel", {"runId": "run_nope"}),
                                   ("run/events", {"runId": "run_nope"}),
                                   ("run/export", {"runId": "run_nope"}),
                                   ("run/rerun", {"runId": "run_nope"}),
                                   ("conversation/get", {"conversationId": "conv_nope"}),
                                   ("conversation/rename", {"conversationId": "conv_nope",
                                                            "title": "t"}),
                                   ("conversation/send", {"conversationId": "conv_nope",
                                                          "prompt": "p"})):
                with pytest.raises(RpcError) as exc:
                    c.call(method, params)
                assert exc.value.code == ErrorCode.NOT_FOUND, (method, exc.value)
            ids = [start(c, d, f"r{i}") for i in range(5)]
            for rid in ids:
                wait_done(c, rid)
            page1 = c.call("run/list", {"limit": 3})
            page2 = c.call("run/list", {"limit": 3, "cursor": page1["nextCursor"]})
            got = [r["runId"] for r in page1["runs"] + page2["runs"]]
            assert sorted(got) == sorted(ids) and len(set(got)) == 5
            assert "nextCursor" not in page2
            with pytest.raises(RpcError) as exc:
                c.call("run/list", {"cursor": "not-a-cursor"})
            assert exc.value.code == ErrorCode.INVALID_PARAMS
            assert exc.value.data == {"field": "cursor"}
            # A rerun keeps the request and applies overrides through the same merge.
            again = c.call("run/rerun", {"runId": ids[0], "overrides": {"priority": 3}})
            run = c.call("run/get", {"runId": again["runId"]})
            assert run["rerunOf"] == ids[0] and run["request"]["priority"] == 3
            assert run["request"]["prompt"] == "r0"
            wait_done(c, again["runId"])
    finally:
        d.stop()


def test_kill_9_leaves_no_cli_running_and_the_lane_waits_for_a_person(short_tmp: Path):
    """Regression: after kill -9 of codexd, a run's CLI kept working and the next queued run
    started beside it (max_per_provider = 1 broken). Now the next start kills what the dead
    daemon left (checked by pid and start time), marks the run interrupted, and keeps the lane
    paused until resumed."""
    from tests.helpers import eventually, log_events, pid_alive

    d = fake_daemon(short_tmp, "max_concurrent = 1\n").start()
    try:
        gate = short_tmp / "gate"
        env = {"FAKE_WAIT": str(gate)}
        with d.client() as c:
            first = start(c, d, "blocker", env=env)
            wait_running(c, first)
            cli_pid = eventually(lambda: next((e["data"]["pid"] for e in events(c, first)
                                               if e["type"] == "run.started"), None),
                                 what="run.started")
            nxt = start(c, d, "next", env=env)
            # The program ignores the hang-up the closed PTY sends.
            term_pid = c.call("terminal/create", {
                "cwd": str(short_tmp), "cols": 80, "rows": 24,
                "command": ["sh", "-c", "trap '' HUP; exec sleep 300"]})["pid"]
        # Only once the shell has set its trap (and exec'd sleep) is the hang-up ignored.
        eventually(lambda: Path(f"/proc/{term_pid}/cmdline").read_bytes()
                   == b"sleep\x00300\x00", what="the terminal's program to be running")
        assert d.proc is not None
        d.proc.kill()
        d.proc.wait(10)
        assert pid_alive(cli_pid) and pid_alive(term_pid)  # what a killed daemon leaves behind
        d.start()
        eventually(lambda: not pid_alive(cli_pid), what="the orphaned CLI to be killed")
        eventually(lambda: not pid_alive(term_pid), what="the orphaned shell to be killed")
        killed = {(e["kind"], e["pid"]) for e in log_events(d.log_path, "orphan_killed")}
        assert ("run", cli_pid) in killed and ("terminal", term_pid) in killed
        with d.client() as c:
            run = c.call("run/get", {"runId": first})
            assert run["status"] == "interrupted" and "was killed" in run["error"]
            q = c.call("queue/list")
            assert "codex" in q["paused"] and "did not stop cleanly" in q["paused"]["codex"]
            assert [e["runId"] for e in q["queued"]] == [nxt] and q["running"] == []
            gate.touch()
            out = d.ctl("runs", "queue", "resume", "--provider", "codex")
            assert out.returncode == 0 and "paused: none" in out.stdout, out
            assert wait_done(c, nxt)["status"] == "succeeded"
            assert c.call("queue/list")["paused"] == {}
    finally:
        d.stop()


def test_pause_and_resume_a_lane_by_hand(short_tmp: Path):
    d = fake_daemon(short_tmp).start()
    try:
        with d.client() as c:
            lanes = c.call("queue/pause", {"provider": "claude", "reason": "maintenance"})
            assert lanes == {"paused": {"claude": "maintenance"}, "pausedUntil": {}}
            held = start(c, d, "held", provider="claude")
            free = start(c, d, "free")
            assert wait_done(c, free)["status"] == "succeeded"
            assert c.call("run/get", {"runId": held})["status"] == "queued"
            assert c.call("queue/resume", {})["paused"] == {}
            assert wait_done(c, held)["status"] == "succeeded"
    finally:
        d.stop()


def test_env_values_given_to_a_run_are_redacted_from_its_output(short_tmp: Path):
    d = fake_daemon(short_tmp).start()
    value = "db-pass-0f3c9a"  # no known secret shape: only the env rule can catch it
    try:
        with d.client() as c:
            rid = start(c, d, "env", env={"FAKE_PRINT_ENV": "MY_DB_PASS", "MY_DB_PASS": value})
            assert wait_done(c, rid)["status"] == "succeeded"
            dump = str(events(c, rid)) + c.call("run/export", {"runId": rid})["content"]
            dump += str(c.call("run/get", {"runId": rid}))
            assert value not in dump and "token is [REDACTED]" in dump
    finally:
        d.stop()
    assert value not in d.log()


def test_conversation_changes_reach_the_other_clients(short_tmp: Path):
    d = fake_daemon(short_tmp).start()
    try:
        with d.client(client_name="writer") as c, d.client(client_name="sidebar") as watcher:
            conv = c.call("conversation/create", {"provider": "codex",
                                                  "cwd": str(d.base / "ws"), "title": "a"})
            cid = conv["conversationId"]
            sent = c.call("conversation/send", {"conversationId": cid, "prompt": "hello"})
            wait_done(c, sent["runId"])
            c.call("conversation/rename", {"conversationId": cid, "title": "b"})
            c.call("conversation/archive", {"conversationId": cid})
            seen = []
            while len(seen) < 5:
                note = watcher.next_notification(timeout=10)
                if note.method == "conversation/changed":
                    seen.append(note.params)
            assert [n["event"] for n in seen] == ["created", "messageSent", "sessionUpdated",
                                                  "renamed", "archived"]
            assert seen[1]["runId"] == sent["runId"]
            assert seen[2]["conversation"]["sessionId"] == "fake-thread-1"
            assert seen[3]["conversation"]["title"] == "b" and seen[4]["conversation"]["archived"]
            # The client that made a change is not told about it again; the session codexd
            # learned from the run is news to it too.
            c.call("daemon/status")
            own = []
            try:
                while True:
                    note = c.next_notification(timeout=0.5)
                    if note.method == "conversation/changed":
                        own.append(note.params["event"])
            except TimeoutError:
                pass
            assert own == ["sessionUpdated"]
    finally:
        d.stop()
