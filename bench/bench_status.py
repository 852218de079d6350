"""Benchmark: ``daemon/status`` round trips through a real ``codexd run``.

Prints p50/p99 latency for one client calling in sequence, aggregate calls/s for 1, 10 and 100
concurrent clients, and the daemon's idle RSS, each against its target. The load generators are
separate processes speaking the wire with pre-encoded requests, so what is measured is the daemon.

    .venv/bin/python bench/bench_status.py [--seconds 3] [--sequential 20000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"daemon/status"}\n'
INIT = (b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"bench"}}}\n'
        b'{"jsonrpc":"2.0","method":"initialized"}\n')
TARGETS = {"p50_ms": 0.2, "calls_per_s_10": 10_000, "idle_rss_mb": 60}


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(INIT)
    buf = b""
    while b"\n" not in buf:
        buf += s.recv(65536)
    return s


def recv_line(s: socket.socket, buf: bytearray) -> None:
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            del buf[: nl + 1]
            return
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk


def sequential(path: str, n: int) -> list[float]:
    s = connect(path)
    buf = bytearray()
    for _ in range(2000):  # warm up
        s.sendall(REQUEST)
        recv_line(s, buf)
    times = []
    perf = time.perf_counter
    for _ in range(n):
        t0 = perf()
        s.sendall(REQUEST)
        recv_line(s, buf)
        times.append(perf() - t0)
    s.close()
    return times


def load_worker(path: str, clients: int, seconds: float, start_at: float, out: mp.Queue) -> None:
    socks = [connect(path) for _ in range(clients)]
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = bytearray()
    while time.time() < start_at:
        time.sleep(0.001)
    for s in socks:
        s.send(REQUEST)
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            buf = bufs[s]
            buf += s.recv(65536)
            n = buf.count(b"\n")
            if n:
                del buf[: buf.rfind(b"\n") + 1]
                count += n
                s.send(REQUEST * n)
    out.put(count)
    for s in socks:
        s.close()


def aggregate(path: str, clients: int, seconds: float) -> float:
    workers = min(clients, 2)
    per = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    q: mp.Queue = mp.Queue()
    start_at = time.time() + 0.5 + clients * 0.002
    procs = [mp.Process(target=load_worker, args=(path, k, seconds, start_at, q)) for k in per]
    for p in procs:
        p.start()
    total = sum(q.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each load run")
    ap.add_argument("--sequential", type=int, default=20_000, help="sequential calls to time")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--config", metavar="FILE", help="run the daemon with this config file")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="cxd-bench-", dir="/tmp"))
    sock = base / "codexd.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")}
    env["XDG_CONFIG_HOME"] = str(base / "config")
    log = open(base / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen(
        [sys.executable, "-m", "codexd", "run", "--socket", str(sock), "--state-dir",
         str(base / "state"), "--log-format", "json",
         *(["--config", args.config] if args.config else [])],
        stdout=log, stderr=log, env=env,
    )
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.02)
        time.sleep(1.0)
        idle_rss = rss_mb(daemon.pid)
        print("codexd daemon/status benchmark "
              f"(python {sys.version.split()[0]}, {os.cpu_count()} cores)", file=sys.stderr)
        print(f"  progress: sequential {args.sequential} calls...", file=sys.stderr)
        times = sequential(str(sock), args.sequential)
        p50 = statistics.median(times) * 1000
        p99 = statistics.quantiles(times, n=100)[98] * 1000
        rates = {}
        for c in (1, 10, 100):
            print(f"  progress: {c} concurrent clients for {args.seconds} s...", file=sys.stderr)
            rates[c] = aggregate(str(sock), c, args.seconds)
        loaded_rss = rss_mb(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(15)
        log.close()
        shutil.rmtree(base, ignore_errors=True)

    figures = {
        "sequential_p50_ms": round(p50, 4), "sequential_p99_ms": round(p99, 4),
        "calls_per_s": {str(c): round(r) for c, r in rates.items()},
        "idle_rss_mb": round(idle_rss, 1), "rss_after_load_mb": round(loaded_rss, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return 0

    def verdict(ok: bool) -> str:
        return "meets target" if ok else "MISSES target"

    print(f"sequential round trip  p50 {p50:.3f} ms   p99 {p99:.3f} ms   "
          f"(target p50 < {TARGETS['p50_ms']} ms: {verdict(p50 < TARGETS['p50_ms'])})")
    for c, r in rates.items():
        extra = ""
        if c == 10:
            ok = r > TARGETS["calls_per_s_10"]
            extra = f"   (target > {TARGETS['calls_per_s_10']:,}/s: {verdict(ok)})"
        print(f"{c:>3} concurrent clients  {r:>10,.0f} calls/s{extra}")
    rss_ok = verdict(idle_rss < TARGETS["idle_rss_mb"])
    print(f"daemon RSS idle {idle_rss:.1f} MB, after load {loaded_rss:.1f} MB   "
          f"(target idle < {TARGETS['idle_rss_mb']} MB: {rss_ok})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
