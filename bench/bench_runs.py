"""Benchmark: the provider-run queue with a trivial fake CLI.

1. 1,000 runs queued at once (8 at a time): the daemon's CPU time per run (queueing, spawning,
   reading and parsing output, storing and sending ~8 events, finishing), from /proc utime+stime
   (target: under 5 ms of daemon time per run), and the wall time;
2. one run whose CLI prints 200,000 lines as fast as it can: the rate at which their
   `run.chunk.stdout` events are redacted, stored in `run_events` and sent (target: over
   20,000 events/s).

    .venv/bin/python bench/bench_runs.py [--runs 1000] [--lines 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codexd.client import Client  # noqa: E402

TRIVIAL = """#!/bin/sh
cat >/dev/null
echo '{"type":"thread.started","thread_id":"t-1"}'
echo '{"type":"turn.started"}'
echo '{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"ok"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":1}}'
"""
CHATTY = """#!/bin/sh
cat >/dev/null
seq 1 {lines} | sed 's/^/line of output number /'
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_all(c: Client, timeout: float) -> None:
    """Until nothing runs or waits (queue/list is answered from memory: cheap to poll)."""
    deadline = time.monotonic() + timeout
    while True:
        q = c.call("queue/list")
        if not q["running"] and not q["queued"]:
            return
        assert time.monotonic() < deadline, f"{len(q['queued'])} runs still queued"
        time.sleep(0.25)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cxd-bench-", dir="/tmp"))
    (base / "ws").mkdir()
    trivial, chatty = base / "trivial-cli", base / "chatty-cli"
    trivial.write_text(TRIVIAL)
    chatty.write_text(CHATTY.replace("{lines}", str(args.lines)))
    for f in (trivial, chatty):
        f.chmod(0o755)
    (base / "config" / "codexd").mkdir(parents=True)
    (base / "config" / "codexd" / "config.toml").write_text(
        f'[appserver]\nenabled = false\n[runs]\ncodex_command = "{trivial}"\n'
        f'claude_command = "{chatty}"\nmax_concurrent = 8\nmax_per_provider = 8\n'
        f'queue_capacity = {args.runs + 10}\nsecret_store = "file"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")}
    env["XDG_CONFIG_HOME"] = str(base / "config")
    sock = base / "codexd.sock"
    log = open(base / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen([sys.executable, "-m", "codexd", "run", "--socket", str(sock),
                               "--state-dir", str(base / "state"), "--log-format", "json",
                               "--log-level", "warning"], env=env, stdout=log, stderr=log)
    figures: dict[str, object] = {}
    try:
        while not sock.exists():
            time.sleep(0.05)
        with Client.connect(sock, client_name="bench") as c:
            print(f"queueing {args.runs} runs of a trivial fake CLI ...", flush=True)
            cpu0, t0 = cpu_seconds(daemon.pid), time.perf_counter()
            ids = [c.call("run/start", {"provider": "codex", "prompt": f"run {i}",
                                        "cwd": str(base / "ws")})["runId"]
                   for i in range(args.runs)]
            wait_all(c, timeout=900)
            cpu1, t1 = cpu_seconds(daemon.pid), time.perf_counter()
            ok = sum(c.call("run/get", {"runId": r})["status"] == "succeeded" for r in ids)
            events = sum(c.call("run/get", {"runId": r})["lastSeq"] for r in ids[:50]) / 50
            figures["queue"] = {
                "runs": args.runs, "succeeded": ok, "wallSeconds": round(t1 - t0, 2),
                "runsPerSecond": round(args.runs / (t1 - t0), 1),
                "daemonCpuMsPerRun": round((cpu1 - cpu0) * 1000 / args.runs, 3),
                "eventsPerRun": events}
            print(f"printing {args.lines} lines from one run ...", flush=True)
            c.call("run/subscribe", {"all": True})
            t0 = time.perf_counter()
            rid = c.call("run/start", {"provider": "claude", "prompt": "chatty",
                                       "cwd": str(base / "ws")})["runId"]
            wait_all(c, timeout=600)
            t1 = time.perf_counter()
            run = c.call("run/get", {"runId": rid})
            first = c.call("run/events", {"runId": rid, "limit": 1})["events"][0]["at"]
            stored = run["lastSeq"]
            span = (run["finishedAt"] - first) / 1000
            figures["events"] = {"stored": stored, "seconds": round(span, 3),
                                 "eventsPerSecond": round(stored / span),
                                 "wallSeconds": round(t1 - t0, 2)}
    finally:
        daemon.terminate()
        daemon.wait(30)
        log.close()
    print(json.dumps(figures, indent=2))
    qf, ef = figures["queue"], figures["events"]
    assert isinstance(qf, dict) and isinstance(ef, dict)
    print(f"daemon CPU per run: {qf['daemonCpuMsPerRun']} ms (target < 5 ms: "
          f"{'met' if qf['daemonCpuMsPerRun'] < 5 else 'NOT met'})")
    print(f"run_events stored and sent: {ef['eventsPerSecond']}/s (target > 20,000/s: "
          f"{'met' if ef['eventsPerSecond'] > 20_000 else 'NOT met'})")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
