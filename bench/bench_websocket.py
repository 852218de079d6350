"""Benchmark: codexd's protocol over WebSocket against the NDJSON Unix socket, in one run.

Starts `codexd run` with the real `codex app-server` (the pinned one in .tools/) against the fake
model server from tests/ and the WebSocket listener on a free loopback port, then prints:

1. sequential round trips of `daemon/status` (codexd's own) and of a forwarded `thread/list`,
   over the Unix socket and over WebSocket, alternated request by request: p50, p99 and the
   WebSocket/Unix ratio at p50 against the target (<= 1.3x);
2. fan-out: 10 WebSocket clients subscribed to one thread during a turn: notifications/s
   delivered and the delay from the app-server's `emittedAtMs` stamp to the client.

The clients are plain blocking sockets (wsproto for the upgrade, frames by hand), so what is
measured is codexd and the wire, not a client library.

    .venv/bin/python bench/bench_websocket.py [--sequential 3000]
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

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_model import FakeModel, message, write_codex_home  # noqa: E402

INIT = {"id": 0, "method": "initialize", "params": {"clientInfo": {"name": "bench"}}}
TARGET_RATIO = 1.3


class UnixPeer:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf = bytearray()
        self.call_json(INIT)
        self.send({"method": "initialized"})

    def send(self, msg: dict) -> None:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def messages(self) -> list[dict]:
        """Whatever whole messages the next read completes (blocking)."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError
        self.buf += chunk
        out = []
        while (nl := self.buf.find(b"\n")) >= 0:
            out.append(json.loads(bytes(self.buf[:nl])))
            del self.buf[: nl + 1]
        return out

    def call_json(self, msg: dict) -> dict:
        self.send(msg)
        while True:
            for m in self.messages():
                if m.get("id") == msg["id"] and "method" not in m:
                    return m


_MASK = b"\x11\x22\x33\x44"


def client_frame(payload: bytes) -> bytes:
    """A masked final text frame (RFC 6455 §5.2); a fixed key is fine for a benchmark."""
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    key = int.from_bytes((_MASK * (n // 4 + 1))[:n], "big")
    return head + _MASK + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class WsPeer(UnixPeer):
    """The upgrade through wsproto, then frames by hand: the client costs as little as the
    Unix one (a JSON line and a write), so the comparison is of codexd and the wire."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.sock = socket.create_connection((host, port))
        ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(ws.send(Request(
            host=f"{host}:{port}", target="/",
            extra_headers=[(b"authorization", f"Bearer {token}".encode())])))
        self.buf = bytearray()
        while True:
            chunk = self.sock.recv(1 << 20)
            ws.receive_data(chunk)
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                break
        self.call_json(INIT)
        self.send({"method": "initialized"})

    def send(self, msg: dict) -> None:
        self.sock.sendall(client_frame(json.dumps(msg).encode()))

    def messages(self) -> list[dict]:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError
        self.buf += chunk
        out = []
        buf = self.buf
        while len(buf) >= 2:
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                break
            out.append(json.loads(bytes(buf[at:at + n])))
            del buf[:at + n]
        return out


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


def alternate(peers: list[UnixPeer], method: str, params: dict, n: int) -> list[list[float]]:
    """Round trips on each peer, interleaved request by request so drift hits all alike."""
    times: list[list[float]] = [[] for _ in peers]
    for i in range(1, n + 300 + 1):
        for k, peer in enumerate(peers):
            t0 = time.perf_counter()
            peer.call_json({"id": i, "method": method, "params": params})
            if i > 300:  # warm-up excluded
                times[k].append(time.perf_counter() - t0)
    return times


def summary(unix: list[float], ws: list[float]) -> dict[str, float]:
    u50, w50 = statistics.median(unix), statistics.median(ws)
    return {"unix_p50_ms": round(u50 * 1000, 3),
            "unix_p99_ms": round(percentile(unix, 99) * 1000, 3),
            "ws_p50_ms": round(w50 * 1000, 3),
            "ws_p99_ms": round(percentile(ws, 99) * 1000, 3),
            "ratio_p50": round(w50 / u50, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequential", type=int, default=3000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cxd-bw-", dir="/tmp"))
    model = FakeModel().start()
    home = write_codex_home(base / "codex-home", model.base_url)
    (base / "home").mkdir()
    (base / "config" / "codexd").mkdir(parents=True)
    (base / "config" / "codexd" / "config.toml").write_text(
        f'[appserver]\ncodex_home = "{home}"\n[log]\nrpc_calls = false\n'
        '[websocket]\nlisten = "127.0.0.1:0"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")}
    env.update(XDG_CONFIG_HOME=str(base / "config"), HOME=str(base / "home"),
               XDG_RUNTIME_DIR=str(base / "run"))
    sock = base / "codexd.sock"
    log = open(base / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen([sys.executable, "-m", "codexd", "run", "--socket", str(sock),
                               "--state-dir", str(base / "state"), "--log-format", "json"],
                              stdout=log, stderr=log, env=env)
    figures: dict[str, object] = {}
    try:
        for _ in range(600):
            if sock.exists():
                break
            time.sleep(0.05)
        unix = UnixPeer(sock)
        while unix.call_json({"id": 9, "method": "daemon/appServer/status"})["result"][
                "state"] != "ready":
            time.sleep(0.1)
        url = unix.call_json({"id": 10, "method": "daemon/status"})["result"]["websocket"]
        host, port = url.split("://", 1)[1].strip("/").rsplit(":", 1)
        token = unix.call_json({"id": 11, "method": "token/create", "params": {
            "name": "bench", "role": "operator"}})["result"]["token"]
        ws = WsPeer(host, int(port), token)

        print("progress: sequential daemon/status, Unix and WebSocket alternated...",
              file=sys.stderr)
        u, w = alternate([unix, ws], "daemon/status", {}, args.sequential)
        figures["status"] = summary(u, w)
        print("progress: sequential forwarded thread/list...", file=sys.stderr)
        u, w = alternate([unix, ws], "thread/list", {"limit": 1}, args.sequential // 2)
        figures["thread_list"] = summary(u, w)

        print("progress: fan-out to 10 WebSocket clients...", file=sys.stderr)
        thread_id = unix.call_json({"id": 12, "method": "thread/start", "params": {
            "cwd": str(base)}})["result"]["thread"]["id"]
        subs = [WsPeer(host, int(port), token) for _ in range(10)]
        for s in subs:
            s.call_json({"id": 1, "method": "events/subscribe", "params": {
                "threadIds": [thread_id]}})
        model.script([message(f"line {i}") for i in range(400)])
        unix.send({"id": 13, "method": "turn/start", "params": {
            "threadId": thread_id, "input": [{"type": "text", "text": "go"}]}})
        delays: list[float] = []
        first = last = 0.0
        count = done = 0
        sel = selectors.DefaultSelector()
        for s in subs:
            sel.register(s.sock, selectors.EVENT_READ, s)
        while done < len(subs):
            for key, _ in sel.select(timeout=30):
                now = time.time()
                for msg in key.data.messages():
                    if "emittedAtMs" in msg and (msg.get("params") or {}).get("threadId"):
                        delays.append(now * 1000 - msg["emittedAtMs"])
                        count += 1
                        first = first or now
                        last = now
                    if msg.get("method") == "turn/completed":
                        done += 1
        figures["fanout_ws"] = {
            "clients": 10, "notifications": count,
            "per_second": round(count / max(last - first, 1e-6)),
            "delay_p50_ms": round(statistics.median(delays), 2),
            "delay_p99_ms": round(percentile(delays, 99), 2),
        }
    finally:
        daemon.terminate()
        daemon.wait(20)
        model.stop()
        log.close()
        shutil.rmtree(base, ignore_errors=True)

    if args.json:
        print(json.dumps(figures))
        return 0
    for name in ("status", "thread_list"):
        f = figures[name]
        verdict = "meets target" if f["ratio_p50"] <= TARGET_RATIO else "MISSES target"  # type: ignore[index]
        print(f"{name:<12} unix p50 {f['unix_p50_ms']} ms p99 {f['unix_p99_ms']} ms | websocket "  # type: ignore[index]
              f"p50 {f['ws_p50_ms']} ms p99 {f['ws_p99_ms']} ms | ratio {f['ratio_p50']}x "  # type: ignore[index]
              f"(target <= {TARGET_RATIO}x: {verdict})")
    f = figures["fanout_ws"]
    print(f"fan-out      {f['notifications']} notifications to {f['clients']} WebSocket "  # type: ignore[index]
          f"clients, {f['per_second']}/s, delay p50 {f['delay_p50_ms']} ms p99 "  # type: ignore[index]
          f"{f['delay_p99_ms']} ms")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
