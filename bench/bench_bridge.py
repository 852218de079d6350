"""Benchmark: the app-server bridge, codexd against a client speaking stdio to its own app-server.

Runs the real `codex app-server` (the pinned one in .tools/, or `codex` on PATH) against the fake
model server from tests/, and prints, in one run:

1. sequential `thread/list` round trips, through codexd and straight over stdio: p50, p99, ratio;
2. a burst of 2000 pipelined requests from 10 clients through codexd, and 2000 written back to
   back to one app-server: answered, errors (overload), lost, wall time;
3. fan-out: 10 clients subscribed to one thread during a turn: notifications/s delivered and the
   p99 delay from the app-server's `emittedAtMs` stamp to the client.

    .venv/bin/python bench/bench_bridge.py [--sequential 2000]
"""

from __future__ import annotations

import argparse
import json
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codexd.appserver.command import resolve_command  # noqa: E402
from codexd.config import AppServerSection  # noqa: E402
from tests.fake_model import FakeModel, message, write_codex_home  # noqa: E402

INIT = (b'{"id":0,"method":"initialize","params":{"clientInfo":{"name":"bench","version":"1"}}}\n'
        b'{"method":"initialized"}\n')


class Lines:
    """Line reader over a socket or a pipe (blocking)."""

    def __init__(self, read) -> None:  # type: ignore[no-untyped-def]
        self.read = read
        self.buf = bytearray()

    def line(self) -> bytes:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                out = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                return out
            chunk = self.read(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def response(self, rid: int) -> dict:
        while True:
            msg = json.loads(self.line())
            if msg.get("id") == rid and "method" not in msg:
                return msg


def connect(sock_path: Path) -> tuple[socket.socket, Lines]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock_path))
    s.sendall(INIT)
    lines = Lines(s.recv)
    lines.response(0)
    return s, lines


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


def sequential(paths: list[tuple[object, Lines]], n: int) -> list[list[float]]:
    """Round trips on each path, interleaved request by request so drift hits both alike."""
    times: list[list[float]] = [[] for _ in paths]
    for i in range(1, n + 200 + 1):
        req = b'{"id":%d,"method":"thread/list","params":{"limit":1}}\n' % i
        for k, (send, lines) in enumerate(paths):
            t0 = time.perf_counter()
            send(req)  # type: ignore[operator]
            lines.response(i)
            if i > 200:  # warm-up excluded
                times[k].append(time.perf_counter() - t0)
    return times


def count_burst(readers: list[tuple[object, Lines]], expected: int, quiet: float) -> dict:
    """Read responses until all arrived or nothing came for ``quiet`` seconds."""
    answered = errors = overload = 0
    sel = selectors.DefaultSelector()
    for fileobj, lines in readers:
        sel.register(fileobj, selectors.EVENT_READ, lines)
    last = time.perf_counter()
    while answered + errors < expected:
        events = sel.select(timeout=0.2)
        if not events:
            if time.perf_counter() - last > quiet:
                break
            continue
        last = time.perf_counter()
        for key, _ in events:
            lines = key.data
            chunk = lines.read(1 << 20)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            lines.buf += chunk
            while (nl := lines.buf.find(b"\n")) >= 0:
                msg = json.loads(bytes(lines.buf[:nl]))
                del lines.buf[: nl + 1]
                if "method" in msg:
                    continue
                if "error" in msg:
                    errors += 1
                    overload += msg["error"].get("code") == -32001
                else:
                    answered += 1
    return {"answered": answered, "errors": errors, "overloadErrors": overload,
            "lost": expected - answered - errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequential", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--extra-config", default="",
                    help=r'TOML added to the config of codexd, e.g. "[log]\nrpc_calls = false"')
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cxd-bb-", dir="/tmp"))
    model = FakeModel().start()
    home = write_codex_home(base / "codex-home", model.base_url)
    (base / "home").mkdir()
    (base / "config" / "codexd").mkdir(parents=True)
    (base / "config" / "codexd" / "config.toml").write_text(
        f'[appserver]\ncodex_home = "{home}"\n' + args.extra_config.replace("\\n", "\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")}
    env.update(XDG_CONFIG_HOME=str(base / "config"), HOME=str(base / "home"))
    sock = base / "codexd.sock"
    log = open(base / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen([sys.executable, "-m", "codexd", "run", "--socket", str(sock),
                               "--state-dir", str(base / "state"), "--log-format", "json"],
                              stdout=log, stderr=log, env=env)
    argv = resolve_command(AppServerSection())
    direct = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=dict(env, CODEX_HOME=str(home)))
    figures: dict[str, object] = {}
    try:
        assert direct.stdin and direct.stdout
        dsend = lambda b: (direct.stdin.write(b), direct.stdin.flush())  # noqa: E731
        dlines = Lines(lambda n: os.read(direct.stdout.fileno(), n))
        dsend(INIT)
        dlines.response(0)
        for _ in range(600):
            if sock.exists():
                break
            time.sleep(0.05)
        c, clines = connect(sock)
        while True:  # wait until codexd's app-server is ready
            c.sendall(b'{"id":99999,"method":"daemon/appServer/status"}\n')
            if clines.response(99999)["result"]["state"] == "ready":
                break
            time.sleep(0.1)

        print("progress: sequential thread/list round trips...", file=sys.stderr)
        via, raw = sequential([(c.sendall, clines), (dsend, dlines)], args.sequential)
        figures["sequential"] = {
            "codexd_p50_ms": round(statistics.median(via) * 1000, 3),
            "codexd_p99_ms": round(percentile(via, 99) * 1000, 3),
            "direct_p50_ms": round(statistics.median(raw) * 1000, 3),
            "direct_p99_ms": round(percentile(raw, 99) * 1000, 3),
        }
        seq = figures["sequential"]
        seq["p50_overhead_pct"] = round(  # type: ignore[index]
            (seq["codexd_p50_ms"] / seq["direct_p50_ms"] - 1) * 100, 1)  # type: ignore[index]

        print("progress: burst of 2000 pipelined requests...", file=sys.stderr)
        clients = [connect(sock) for _ in range(10)]
        t0 = time.perf_counter()
        for s, _ in clients:
            s.sendall(b"".join(b'{"id":%d,"method":"thread/list","params":{"limit":1}}\n' % i
                               for i in range(1, 201)))
        burst_codexd = count_burst([(s, lines) for s, lines in clients], 2000, quiet=10)
        burst_codexd["wallSeconds"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        dsend(b"".join(b'{"id":%d,"method":"thread/list","params":{"limit":1}}\n' % i
                       for i in range(100_001, 102_001)))
        burst_direct = count_burst([(direct.stdout, dlines)], 2000, quiet=5)
        burst_direct["wallSeconds"] = round(time.perf_counter() - t0, 3)
        figures["burst"] = {"codexd": burst_codexd, "direct": burst_direct}
        for s, _ in clients:
            s.close()

        print("progress: fan-out to 10 subscribed clients...", file=sys.stderr)
        c.sendall(b'{"id":5,"method":"thread/start","params":{"cwd":"%s"}}\n'
                  % str(base).encode())
        thread_id = clines.response(5)["result"]["thread"]["id"]
        subs = [connect(sock) for _ in range(10)]
        for s, lines in subs:
            s.sendall(b'{"id":1,"method":"events/subscribe","params":{"threadIds":["%s"]}}\n'
                      % thread_id.encode())
            lines.response(1)
        model.script([message(f"line {i}") for i in range(400)])
        c.sendall(b'{"id":6,"method":"turn/start","params":{"threadId":"%s","input":'
                  b'[{"type":"text","text":"go"}]}}\n' % thread_id.encode())
        delays: list[float] = []
        first = last = 0.0
        count = 0
        sel = selectors.DefaultSelector()
        for s, lines in subs:
            sel.register(s, selectors.EVENT_READ, lines)
        done = 0
        while done < len(subs):
            for key, _ in sel.select(timeout=30):
                lines = key.data
                lines.buf += key.fileobj.recv(1 << 20)
                now = time.time()
                while (nl := lines.buf.find(b"\n")) >= 0:
                    msg = json.loads(bytes(lines.buf[:nl]))
                    del lines.buf[: nl + 1]
                    if "emittedAtMs" in msg and (msg.get("params") or {}).get("threadId"):
                        delays.append(now * 1000 - msg["emittedAtMs"])
                        count += 1
                        first = first or now
                        last = now
                    if msg.get("method") == "turn/completed":
                        done += 1
        figures["fanout"] = {
            "clients": 10, "notifications": count,
            "per_second": round(count / max(last - first, 1e-6)),
            "delay_p50_ms": round(statistics.median(delays), 2),
            "delay_p99_ms": round(percentile(delays, 99), 2),
        }
        for s, _ in subs:
            s.close()
        c.close()
    finally:
        daemon.terminate()
        daemon.wait(20)
        direct.kill()
        direct.wait(5)
        model.stop()
        log.close()
        shutil.rmtree(base, ignore_errors=True)

    if args.json:
        print(json.dumps(figures))
        return 0
    s = figures["sequential"]
    print(f"sequential thread/list  codexd p50 {s['codexd_p50_ms']} ms p99 {s['codexd_p99_ms']} ms"
          f" | direct stdio p50 {s['direct_p50_ms']} ms p99 {s['direct_p99_ms']} ms"
          f" | codexd adds {s['p50_overhead_pct']}% at p50 (target <= 25%: "
          f"{'meets target' if s['p50_overhead_pct'] <= 25 else 'MISSES target'})")
    for name, b in figures["burst"].items():  # type: ignore[attr-defined]
        print(f"burst 2000 via {name:<6}  answered {b['answered']}  errors {b['errors']} "
              f"(overload {b['overloadErrors']})  lost {b['lost']}  wall {b['wallSeconds']} s")
    f = figures["fanout"]
    print(f"fan-out 10 clients      {f['notifications']} notifications, {f['per_second']:,}/s "
          f"delivered, delay p50 {f['delay_p50_ms']} ms p99 {f['delay_p99_ms']} ms "
          "(emittedAtMs has 1 ms resolution)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
