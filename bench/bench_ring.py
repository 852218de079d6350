"""Benchmark: the daemon's memory under large notifications, with the replay ring bounded in
bytes (the default, `events.ring_bytes` = 64 MiB) and, side by side, as it was before (bounded
only by count: `ring_bytes` at its 4 GiB maximum, `ring_size` 10,000).

Each daemon gets `--writes` writes of an atom of `--mib` MiB (every one becomes an
`atom/changed` notification carrying the whole value) with one more client connected and
reading; the figure is the daemon's RSS before, at the peak, and after the writes.

    .venv/bin/python bench/bench_ring.py [--writes 150] [--mib 7]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codexd.client import Client  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one(label: str, ring_bytes: int, writes: int, mib: int) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(prefix="cxd-ring-", dir="/tmp"))
    (base / "config" / "codexd").mkdir(parents=True)
    (base / "config" / "codexd" / "config.toml").write_text(
        f"[appserver]\nenabled = false\n[events]\nring_bytes = {ring_bytes}\n"
        "[rpc]\nmax_message_bytes = 16777216\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")}
    env["XDG_CONFIG_HOME"] = str(base / "config")
    sock = base / "codexd.sock"
    daemon = subprocess.Popen([sys.executable, "-m", "codexd", "run", "--socket", str(sock),
                               "--state-dir", str(base / "state"), "--log-format", "json",
                               "--log-level", "warning"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not sock.exists():
            time.sleep(0.05)
        stop = threading.Event()

        def reader() -> None:  # a second client that reads every notification
            with Client.connect(sock, client_name="reader") as r:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        r.next_notification(timeout=0.2)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        value = "v" * (mib * 1024 * 1024)
        with Client.connect(sock, client_name="bench") as c:
            before = rss_mb(daemon.pid)
            peak = before
            for _ in range(writes):
                c.call("atom/set", {"key": "big", "value": value})
                peak = max(peak, rss_mb(daemon.pid))
            time.sleep(1.0)
            after = rss_mb(daemon.pid)
            alive = "version" in c.call("daemon/status")
        stop.set()
        t.join(5)
        return {"config": label, "writes": writes, "valueMiB": mib,
                "rssBeforeMB": round(before, 1), "rssPeakMB": round(peak, 1),
                "rssAfterMB": round(after, 1), "daemonAnswers": alive}
    finally:
        daemon.terminate()
        daemon.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=150)
    ap.add_argument("--mib", type=int, default=7)
    args = ap.parse_args()
    rows = [one("ring bounded in bytes (64 MiB, the default)", 64 * 1024 * 1024,
                args.writes, args.mib),
            one("ring bounded by count only (as before)", 4096 * 1024 * 1024,
                args.writes, args.mib)]
    print(f"{'config':<46} {'before':>8} {'peak':>8} {'after':>8}  (daemon RSS, MB)")
    for r in rows:
        print(f"{r['config']:<46} {r['rssBeforeMB']:>8} {r['rssPeakMB']:>8} "
              f"{r['rssAfterMB']:>8}")
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
