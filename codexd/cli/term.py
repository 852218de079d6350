"""``codexctl term``: create, list, attach to and kill terminals hosted by codexd.

``attach`` puts the local terminal in raw mode and relays keystrokes to the remote one, output
back, and the window size on every SIGWINCH. The detach key (Ctrl-], as in telnet) leaves the
terminal running; the local terminal's settings are restored however attach ends.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import sys
import termios
import tty
from datetime import datetime
from typing import Any

import trio

from codexd.cli.output import age, status, table
from codexd.client import AsyncClient, Client, open_client
from codexd.errors import RpcError
from codexd.protocol.base import NoParams
from codexd.protocol.terminal import (
    TERMINAL_ATTACH,
    TERMINAL_CLOSE,
    TERMINAL_CREATE,
    TERMINAL_DETACH,
    TERMINAL_EXITED,
    TERMINAL_LIST,
    TERMINAL_OUTPUT,
    TERMINAL_RESIZE,
    TERMINAL_RESYNC,
    TERMINAL_WRITE,
    Attached,
    AttachParams,
    CloseParams,
    CreateParams,
    ResizeParams,
    TerminalRef,
    WriteParams,
)

DETACH_KEY = b"\x1d"  # Ctrl-]


def cmd_new(c: Client, a: argparse.Namespace) -> Any:
    size = shutil.get_terminal_size((80, 24))
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    out = c.request(TERMINAL_CREATE, CreateParams(
        cwd=os.path.abspath(a.cwd or os.getcwd()), cols=size.columns, rows=size.lines,
        name=a.name or None, command=cmd or None))
    if a.json:
        return out
    print(out.terminal_id)
    return None


def cmd_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(TERMINAL_LIST, NoParams())
    if a.json:
        return out
    rows = []
    for t in out.terminals:
        state = "running"
        if t.exited:
            e = t.exited
            state = f"exited {e.exit_code}" if e.exit_code is not None else \
                f"killed by {e.signal}"
        created = datetime.fromisoformat(t.created_at.replace("Z", "+00:00")).timestamp()
        rows.append([t.terminal_id, t.name or "", t.pid, status(state), t.attached,
                     f"{t.cols}x{t.rows}", age(created * 1000), " ".join(t.command), t.cwd])
    table(["ID", "NAME", "PID>", "STATE", "ATTACHED>", "SIZE", "AGE", "COMMAND", "CWD"], rows,
          empty="no terminals (start one with `codexctl term new`)")
    return None


def cmd_kill(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(TERMINAL_CLOSE, CloseParams(terminal_id=a.id, signal=a.signal or None))
    if a.json:
        return out
    print(f"terminal {a.id} closed")
    return None


def cmd_attach(_c: Client, a: argparse.Namespace) -> Any:
    _c.close()  # attach runs its own trio client
    return trio.run(_attach, a)


async def _attach(a: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    saved = termios.tcgetattr(0) if interactive else None
    async with open_client(a.socket, client_name="codexctl-term") as c:
        snap = await c.request(TERMINAL_ATTACH, AttachParams(terminal_id=a.id,
                                                             read_only=a.read_only))
        a.id = snap.terminal_id  # a name was given: notifications carry the id
        out = sys.stdout.buffer
        out.write(snap.snapshot)
        out.flush()
        if not a.read_only and interactive:
            with contextlib.suppress(RpcError):
                await _resize(c, a.id)
        if saved is not None:
            tty.setraw(0)
        try:
            status = await _relay(c, a, snap)
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
        with contextlib.suppress(RpcError, Exception):
            await c.request(TERMINAL_DETACH, TerminalRef(terminal_id=a.id))
    print(f"\r\n[{status}]", file=sys.stderr)
    return 0


async def _relay(c: AsyncClient, a: argparse.Namespace, snap: Attached) -> str:
    done = trio.Event()
    status = "detached (the terminal keeps running)"
    if snap.exited:
        return "the terminal has exited"

    async def output() -> None:
        nonlocal status
        out = sys.stdout.buffer
        async for note in c.notifications():
            p = note.params
            if not isinstance(p, dict) or p.get("terminalId") != a.id:
                continue
            if note.method == TERMINAL_OUTPUT.name:
                out.write(base64.b64decode(p["data"]))
                out.flush()
            elif note.method == TERMINAL_RESYNC.name:
                out.write(b"\x1bc" + base64.b64decode(p["snapshot"]))  # reset, then redraw
                out.flush()
            elif note.method == TERMINAL_EXITED.name:
                code = p.get("exitCode")
                status = f"exited with code {code}" if code is not None else \
                    f"killed by signal {p.get('signal')}"
                done.set()
                return
        status = "codexd closed the connection"
        done.set()

    async def keys() -> None:
        stdin = trio.lowlevel.FdStream(os.dup(0))
        async with stdin:
            while data := await stdin.receive_some(4096):
                if DETACH_KEY in data:
                    data = data[: data.index(DETACH_KEY)]
                    if data and not a.read_only:
                        await _send(c, a.id, data)
                    done.set()
                    return
                if not a.read_only:
                    await _send(c, a.id, data)
        done.set()

    async def winch() -> None:
        with trio.open_signal_receiver(signal.SIGWINCH) as signals:
            async for _ in signals:
                with contextlib.suppress(RpcError):
                    await _resize(c, a.id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(output)
        nursery.start_soon(keys)
        if not a.read_only:
            nursery.start_soon(winch)
        await done.wait()
        nursery.cancel_scope.cancel()
    return status


async def _resize(c: AsyncClient, terminal_id: str) -> None:
    size = shutil.get_terminal_size()
    await c.request(TERMINAL_RESIZE, ResizeParams(terminal_id=terminal_id, cols=size.columns,
                                                  rows=size.lines))


async def _send(c: AsyncClient, terminal_id: str, data: bytes) -> None:
    await c.request(TERMINAL_WRITE, WriteParams(terminal_id=terminal_id, encoding="base64",
                                                data=base64.b64encode(data).decode()))


def add_commands(add: Any, sub: Any, common: Any) -> None:
    term = sub.add_parser("term", help="terminals hosted by codexd").add_subparsers(
        dest="term_command", required=True, metavar="TERM_COMMAND")
    sp = add("new", cmd_new, "start a terminal (default: your login shell); prints its id", term)
    sp.add_argument("--cwd", metavar="DIR")
    sp.add_argument("--name")
    sp.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS... (optional)")
    add("ls", cmd_ls, "list terminals", term)
    sp = add("attach", cmd_attach, "attach interactively (Ctrl-] detaches)", term)
    sp.add_argument("id", metavar="ID|NAME")
    sp.add_argument("--read-only", action="store_true", help="watch without typing")
    sp = add("kill", cmd_kill, "close a terminal and stop its processes", term)
    sp.add_argument("id", metavar="ID|NAME")
    sp.add_argument("--signal", help="first signal (default SIGHUP)")
