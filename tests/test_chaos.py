"""Chaos against a real daemon: for a bounded time, several threads at random create, attach,
write to, resize, detach and kill terminals; start and cancel provider runs (the fault-injection
CLI); connect and drop clients mid-request; subscribe and unsubscribe.

Afterwards: the daemon is alive and answers, ``terminal/list`` and ``run/list`` match what the
test believes exists, no contained fault was needed, no child process outlives its unit, and
``PRAGMA integrity_check`` is ok. ``CODEXD_CHAOS_SECONDS`` sets the duration (20 s in the suite;
docs/reliability.md records longer runs).
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from pathlib import Path

import apsw

from codexd.client import Client
from codexd.errors import ErrorCode, RpcError
from tests.helpers import eventually, pid_alive
from tests.helpers.daemon import make_daemon

SECONDS = float(os.environ.get("CODEXD_CHAOS_SECONDS", "20"))
THREADS = 4
FAKE_CLI = Path(__file__).with_name("fake_cli.py")
#: Errors a racing client may legitimately get (the unit it named was closed by another).
RACY = {ErrorCode.NOT_FOUND, ErrorCode.TERMINAL_EXITED, ErrorCode.ALREADY_RESOLVED,
        ErrorCode.TOO_MANY_TERMINALS, ErrorCode.READ_ONLY, ErrorCode.QUEUE_FULL}


class World:
    """What the test believes exists, shared by the chaos threads."""

    def __init__(self, base: Path) -> None:
        self.lock = threading.Lock()
        self.terminals: dict[str, int] = {}  # id → pid
        self.closed_pids: list[int] = []
        self.runs: set[str] = set()
        self.canceled: set[str] = set()
        self.base = base
        self.gate = base / "gate-never"  # runs that wait on it wait until canceled
        self.ops: dict[str, int] = {}
        self.errors: list[str] = []

    def count(self, op: str) -> None:
        with self.lock:
            self.ops[op] = self.ops.get(op, 0) + 1


def _actor(sock: Path, world: World, seed: int, until: float) -> None:
    rng = random.Random(seed)
    with Client.connect(sock, client_name=f"chaos-{seed}") as c:
        while time.monotonic() < until:
            op = rng.choice(["create", "create", "attach", "write", "resize", "detach", "kill",
                             "run", "run", "cancel", "drop", "subscribe"])
            try:
                _do(op, c, sock, world, rng)
                world.count(op)
            except RpcError as exc:
                if exc.code not in RACY:
                    world.errors.append(f"{op}: {exc!r}")
                world.count(op + ":racy")
            _drain(c)


def _drain(c: Client) -> None:
    """Take what the client has read so far, so its inbox does not grow."""
    while True:
        try:
            c.next_notification(timeout=0.001)
        except TimeoutError:
            return


def _pick(world: World, rng: random.Random) -> str | None:
    with world.lock:
        ids = list(world.terminals)
    return rng.choice(ids) if ids else None


def _do(op: str, c: Client, sock: Path, world: World, rng: random.Random) -> None:
    if op == "create":
        cmd = rng.choice([["sh", "-c", "while :; do echo tick; sleep 0.05; done"],
                          ["cat"], ["sh", "-c", "sleep 0.2; exit 3"]])
        out = c.call("terminal/create", {"cwd": str(world.base), "cols": 80, "rows": 24,
                                         "command": cmd})
        with world.lock:
            world.terminals[out["terminalId"]] = out["pid"]
    elif op in ("attach", "write", "resize", "detach"):
        tid = _pick(world, rng)
        if tid is None:
            return
        if op == "attach":
            c.call("terminal/attach", {"terminalId": tid, "readOnly": rng.random() < 0.3})
        elif op == "write":
            c.call("terminal/write", {"terminalId": tid, "data": "hello\n" * rng.randint(1, 50)})
        elif op == "resize":
            c.call("terminal/resize", {"terminalId": tid, "cols": rng.randint(20, 200),
                                       "rows": rng.randint(5, 60)})
        else:
            c.call("terminal/detach", {"terminalId": tid})
    elif op == "kill":
        tid = _pick(world, rng)
        if tid is None:
            return
        with world.lock:
            pid = world.terminals.pop(tid, None)
        if pid is None:
            return
        c.call("terminal/close", {"terminalId": tid,
                                  "signal": rng.choice(["SIGHUP", "SIGTERM", "SIGKILL"])})
        with world.lock:
            world.closed_pids.append(pid)
    elif op == "run":
        env = {"FAKE_WAIT": str(world.gate)} if rng.random() < 0.2 else {}
        rid = c.call("run/start", {"provider": "codex", "prompt": f"chaos {rng.random()}",
                                   "cwd": str(world.base), "env": env})["runId"]
        with world.lock:
            world.runs.add(rid)
    elif op == "cancel":
        with world.lock:
            live = sorted(world.runs - world.canceled)
        if not live:
            return
        rid = rng.choice(live)
        with world.lock:
            world.canceled.add(rid)
        c.call("run/cancel", {"runId": rid})
    elif op == "drop":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock))
        s.sendall(b'{"id":0,"method":"initialize","params":{"clientInfo":{"name":"drop"}}}\n'
                  b'{"method":"initialized"}\n'
                  b'{"id":1,"method":"terminal/list"}\n{"id":2,"method":"run/list"}\n'
                  b'{"id":3,"method":"daemon/health"}\n'[: rng.randint(60, 200)])
        s.close()  # mid-request, without reading
    elif op == "subscribe":
        if rng.random() < 0.5:
            c.call("events/subscribe", {"all": True})
            c.call("run/subscribe", {"all": True})
        else:
            c.call("events/unsubscribe", {"all": False})


def _processes() -> dict[int, tuple[int, int, str]]:
    """One /proc snapshot: pid → (ppid, session id, command line)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] != "Z":
                out[int(entry)] = (int(fields[1]), int(fields[3]), cmd.decode(errors="replace"))
    return out


def _outliving(daemon_pid: int, live_terminals: set[int]) -> list[str]:
    """The daemon's descendants that belong to no live unit (a live terminal's session)."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _sid, _cmd) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [daemon_pid]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child)
            if procs[child][1] not in live_terminals:
                found.append(f"{child} {procs[child][2]}")
    return found


def test_chaos(short_tmp: Path) -> None:
    d = make_daemon(short_tmp, config=(
        f'[runs]\ncodex_command = "{FAKE_CLI}"\nmax_concurrent = 4\nmax_per_provider = 4\n'
        'secret_store = "file"\ncancel_grace_seconds = 0.5\n'
        "[terminal]\nclose_grace_seconds = 0.2\nmax_terminals = 40\n")).start()
    world = World(short_tmp)
    rss_before = _rss_mb(d.proc.pid) if d.proc else 0.0
    try:
        until = time.monotonic() + SECONDS
        threads = [threading.Thread(target=_actor, args=(d.socket, world, seed, until))
                   for seed in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 120)
        assert not any(t.is_alive() for t in threads), "a chaos thread hung"
        assert world.errors == [], world.errors[:10]
        assert d.proc is not None and d.proc.poll() is None, "the daemon died"
        with d.client() as c:
            listed = {t["terminalId"]: t["pid"] for t in c.call("terminal/list")["terminals"]}
            assert listed == world.terminals
            runs = _all_runs(c)
            assert set(runs) == world.runs
            for rid in world.canceled:
                assert runs[rid]["status"] in ("canceled", "succeeded", "failed"), runs[rid]
            status = c.call("daemon/status")
            # A contained fault is still a bug: show its traceback from the daemon's log.
            if status["faults"]:
                for line in d.log().splitlines():
                    if "unit_fault" in line:
                        print(json.loads(line).get("traceback", line))
            assert status["faults"] == {}, status["lastFault"]
            # Every closed terminal's process is gone (its unit ended, so must it).
            for pid in world.closed_pids:
                eventually(lambda pid=pid: not pid_alive(pid), what=f"closed terminal {pid}")
            # Cancel what still waits; then only the live terminals' processes remain.
            for rid, run in runs.items():
                if run["status"] in ("queued", "running"):
                    _cancel_if_live(c, rid)
            eventually(lambda: all(r["status"] not in ("queued", "running") for r in
                                   _all_runs(c).values()),
                       timeout=30, what="every run to end")
            live = set(listed.values())
            eventually(lambda: not _outliving(d.proc.pid, live), timeout=15,
                       what="no process outliving its unit")
        print(f"\nchaos: {SECONDS:g} s, {THREADS} threads, ops {dict(sorted(world.ops.items()))}, "
              f"{len(world.runs)} runs, {len(world.closed_pids)} terminals killed, faults "
              f"{status['faults']}, daemon RSS {rss_before:.1f} MB before, "
              f"{_rss_mb(d.proc.pid):.1f} MB after")
    finally:
        d.stop()
    for pid in world.terminals.values():  # the daemon's stop closed the live ones too
        eventually(lambda pid=pid: not pid_alive(pid), what=f"terminal {pid} after the stop")
    conn = apsw.Connection(str(d.state_dir / "codexd.db"))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def _cancel_if_live(c: Client, rid: str) -> None:
    try:
        c.call("run/cancel", {"runId": rid})
    except RpcError as exc:
        if exc.code != ErrorCode.ALREADY_RESOLVED:  # it ended meanwhile: fine
            raise


def _all_runs(c: Client) -> dict[str, dict]:
    out: dict[str, dict] = {}
    params: dict[str, object] = {"limit": 1000}
    while True:
        page = c.call("run/list", params)
        out.update((r["runId"], r) for r in page["runs"])
        if not page.get("nextCursor"):
            return out
        params["cursor"] = page["nextCursor"]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
