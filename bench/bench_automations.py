"""Benchmark: 10,000 active automations: start-up load, idle CPU, and due → turn/start delay.

Writes N automation.toml files by hand (a mix of hourly, daily and weekly rules in several zones,
none due during the idle window), starts codexd with the real `codex app-server` and the fake model
server from tests/, and prints:

1. start-up: how long until the socket answers with all N loaded;
2. idle CPU of the codexd process over a window that includes a periodic rescan of all N files
   and an app-server health probe (target: under 1% of one core);
3. the delay from a run's due time to codexd sending its `turn/start` (target: under 250 ms),
   for automations created to fall due a few seconds later, from codexd's log.

    .venv/bin/python bench/bench_automations.py [--count 10000] [--idle-seconds 65] [--due 20]
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codexd.client import Client  # noqa: E402
from tests.fake_model import FakeModel, write_codex_home  # noqa: E402

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


def write_automations(root: Path, n: int, cwd: Path) -> None:
    """Rules that stay clear of the next two hours, so the idle window really is idle."""
    now_h = datetime.now(UTC).hour
    for i in range(n):
        zone = ZONES[i % len(ZONES)]
        hour = (now_h + 3 + i % 18) % 24  # UTC hour; written as a UTC DTSTART
        minute = i % 60
        kind = i % 3
        if kind == 0:
            rule = f"DTSTART:20260101T{hour:02d}{minute:02d}00Z\\nRRULE:FREQ=DAILY"
        elif kind == 1:
            rule = (f"DTSTART:20260101T{hour:02d}{minute:02d}00Z\\n"
                    "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR")
        else:
            rule = f"DTSTART:20260101T{hour:02d}{minute:02d}00Z\\nRRULE:FREQ=DAILY;INTERVAL=3"
        folder = root / f"bench-{i:05d}"
        folder.mkdir(parents=True)
        (folder / "automation.toml").write_text(
            f'version = 1\nid = "bench-{i:05d}"\nkind = "cron"\nname = "bench {i}"\n'
            f'prompt = "report {i}"\nstatus = "ACTIVE"\nrrule = "{rule}"\n'
            f'timezone = "{zone}"\ncwds = ["{cwd}"]\ncreated_at = 1767225600000\n'
            "updated_at = 1767225600000\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--idle-seconds", type=float, default=65.0)
    ap.add_argument("--due", type=int, default=20, help="runs whose delay is measured")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="cxd-bench-", dir="/tmp"))
    model = FakeModel().start()
    home = write_codex_home(base / "codex-home", model.base_url)
    (base / "ws").mkdir()
    (base / "home").mkdir()
    print(f"writing {args.count} automation.toml files ...", flush=True)
    write_automations(home / "automations", args.count, base / "ws")
    (base / "config" / "codexd").mkdir(parents=True)
    (base / "config" / "codexd" / "config.toml").write_text(
        f'[appserver]\ncodex_home = "{home}"\n[automations]\nrescan_seconds = 60\n'
        "max_concurrent_runs = 2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")}
    env.update(XDG_CONFIG_HOME=str(base / "config"), HOME=str(base / "home"))
    sock = base / "codexd.sock"
    log_path = base / "daemon.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "codexd", "run", "--socket", str(sock), "--state-dir",
             str(base / "state"), "--log-format", "json"], env=env, stdout=log, stderr=log)
    figures: dict[str, object] = {"count": args.count}
    try:
        while True:
            try:
                c = Client.connect(sock, client_name="bench")
                break
            except Exception:
                if daemon.poll() is not None:
                    print(log_path.read_text())
                    return 1
                time.sleep(0.05)
        with c:
            loaded = len(c.call("automation/list", {"status": "ACTIVE"})["automations"])
            figures["startupSeconds"] = round(time.perf_counter() - t0, 2)
            assert loaded == args.count, loaded
            while c.call("daemon/appServer/status")["state"] != "ready":
                time.sleep(0.05)
            print(f"started with {loaded} automations in {figures['startupSeconds']} s; "
                  f"measuring idle CPU for {args.idle_seconds:g} s ...", flush=True)
            time.sleep(3)
            cpu0, w0 = cpu_seconds(daemon.pid), time.perf_counter()
            time.sleep(args.idle_seconds)
            cpu1, w1 = cpu_seconds(daemon.pid), time.perf_counter()
            figures["idleCpuPercent"] = round(100 * (cpu1 - cpu0) / (w1 - w0), 3)
            figures["rssMiB"] = round(int(next(
                ln.split()[1] for ln in Path(f"/proc/{daemon.pid}/status").read_text()
                .splitlines() if ln.startswith("VmRSS"))) / 1024, 1)

            print(f"creating {args.due} automations due in the next seconds ...", flush=True)
            start = time.time() + 4
            ids = []
            for i in range(args.due):
                at = time.gmtime(start + i * 0.5)
                c.call("automation/create", {
                    "kind": "cron", "prompt": f"due {i}", "cwds": [str(base / "ws")],
                    "rrule": f"DTSTART:{time.strftime('%Y%m%dT%H%M%SZ', at)}\n"
                             "RRULE:FREQ=DAILY", "id": f"due-{i:03d}"})
                ids.append((f"due-{i:03d}", calendar.timegm(at) * 1000))
            deadline = time.monotonic() + 120
            while True:
                done = [r for aid, _ in ids for r in c.call(
                    "automation/runs", {"automationId": aid})["runs"]
                    if r["status"] not in ("queued", "running")]
                if len(done) == len(ids) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            figures["dueRunsSucceeded"] = sum(r["status"] == "succeeded" for r in done)
    finally:
        daemon.terminate()
        daemon.wait(30)
        model.stop()

    delays = [json.loads(ln)["due_delay_ms"] for ln in log_path.read_text().splitlines()
              if '"automation_turn_starting"' in ln]
    figures["dueDelayMs"] = {"n": len(delays), "p50": statistics.median(delays),
                             "max": max(delays)} if delays else None
    print(json.dumps(figures, indent=2))
    idle = figures["idleCpuPercent"]
    print(f"idle CPU with {args.count} automations: {idle}% of one core (target < 1%: "
          f"{'met' if isinstance(idle, float) and idle < 1 else 'NOT met'})")
    if delays:
        print(f"due -> turn/start delay over {len(delays)} runs: p50 {statistics.median(delays)} "
              f"ms, max {max(delays)} ms (target < 250 ms: "
              f"{'met' if max(delays) < 250 else 'NOT met'})")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
