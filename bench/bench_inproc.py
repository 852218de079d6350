"""Benchmark: CPU per request inside one daemon process, without the noise of a socket server.

Builds a ``Daemon`` (not started: no store, no app-server), serves one client on a socket pair
through the daemon's own client path, pipelines ``--calls`` requests of one method in batches of
100, and prints the CPU time per call (client included, same process). The method should be one
that needs no store (``daemon/status``, ``events/unsubscribe``). Per-call logging is off, as the
point is the request path. Imports codexd from the current directory, so ``bench/ab.py`` can
compare two trees:

    .venv/bin/python bench/bench_inproc.py [--calls 30000] [--method daemon/status]
    .venv/bin/python bench/ab.py --base REV -- bench/bench_inproc.py --method events/unsubscribe
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())

import msgspec
import trio

from codexd import config as config_mod
from codexd.daemon import Daemon


async def measure(calls: int, method: str) -> dict[str, float]:
    home = tempfile.mkdtemp(prefix="cxd-bench-")
    cfg = config_mod.with_overrides(config_mod.load(None), socket=home + "/s.sock",
                                    state_dir=home)
    cfg = msgspec.structs.replace(
        cfg, appserver=msgspec.structs.replace(cfg.appserver, enabled=False),
        log=msgspec.structs.replace(cfg.log, rpc_calls=False))
    daemon = Daemon(cfg)
    a, b = socket.socketpair()
    server = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    client = trio.SocketStream(trio.socket.from_stdlib_socket(b))
    async with trio.open_nursery() as nursery:
        daemon._services = nursery
        if hasattr(daemon, "serve_client"):  # a session over a transport
            from codexd.transport.ndjson import NdjsonTransport
            nursery.start_soon(daemon.serve_client, NdjsonTransport(server, None))
        else:  # older trees: the session took the stream
            nursery.start_soon(daemon._serve_client, server)  # type: ignore[attr-defined]
        await client.send_all(b'{"id":0,"method":"initialize","params":{"clientInfo":'
                              b'{"name":"bench"}}}\n{"method":"initialized"}\n')
        buf = b""
        while b"\n" not in buf:
            buf += await client.receive_some(65536)
        batch = (b'{"id":1,"method":"%s"}\n' % method.encode()) * 100
        answered = 0

        async def read() -> None:
            nonlocal answered
            while answered < calls:
                answered += (await client.receive_some(1 << 20)).count(b"\n")

        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as inner:
            inner.start_soon(read)
            for _ in range(calls // 100):
                await client.send_all(batch)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        nursery.cancel_scope.cancel()
    return {"cpu_us_per_call": round(cpu / calls * 1e6, 2),
            "wall_us_per_call": round(wall / calls * 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=30_000)
    ap.add_argument("--method", default="daemon/status")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    out = trio.run(measure, args.calls - args.calls % 100, args.method)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.method}: {out['cpu_us_per_call']} µs CPU per call "
              f"({out['wall_us_per_call']} µs wall), {args.calls} pipelined calls")


if __name__ == "__main__":
    main()
