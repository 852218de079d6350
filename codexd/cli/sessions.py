"""``codexctl session``: a provider's own interactive CLI in a codexd terminal, as a run.

``start`` and ``resume`` print the run and its terminal (``--attach`` attaches at once, like
``codexctl term attach``: Ctrl-] detaches and the session goes on); ``input`` types into it;
``end`` closes it; ``ls`` lists the sessions, open ones first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

from codexd.cli import term
from codexd.cli.output import age, status, table
from codexd.cli.runs import _cwd, _env, _words
from codexd.client import Client
from codexd.protocol.runs import RUN_LIST, RunListParams
from codexd.protocol.sessions import (
    SESSION_END,
    SESSION_INPUT,
    SESSION_RESUME,
    SESSION_START,
    SessionEndParams,
    SessionInputParams,
    SessionResumeParams,
    SessionStarted,
    SessionStartParams,
)


def _size() -> tuple[int, int]:
    size = shutil.get_terminal_size((120, 40))
    return size.columns, size.lines


def _started(c: Client, a: argparse.Namespace, out: SessionStarted) -> Any:
    if a.attach:
        return term.cmd_attach(c, argparse.Namespace(id=out.terminal_id, read_only=False,
                                                     socket=a.socket))
    if a.json:
        return out
    print(out.run_id)
    print(f"[terminal {out.terminal_id}: `codexctl term attach {out.terminal_id}` to use it, "
          f"`codexctl session end {out.run_id}` to end it]", file=sys.stderr)
    return None


def cmd_start(c: Client, a: argparse.Namespace) -> Any:
    cols, rows = _size()
    out = c.request(SESSION_START, SessionStartParams(
        provider=a.provider or ("codex" if a.profile is None and a.conversation is None
                                else None),
        cwd=_cwd(a.cwd), model=a.model, profile=a.profile, conversation_id=a.conversation,
        prompt=_words(a.prompt_words) or None, env=_env(a.env) or None, cols=cols, rows=rows,
        name=a.name, remote=False if a.local else None))
    return _started(c, a, out)


def cmd_resume(c: Client, a: argparse.Namespace) -> Any:
    cols, rows = _size()
    out = c.request(SESSION_RESUME, SessionResumeParams(
        run_id=a.id, prompt=_words(a.prompt_words) or None, cols=cols, rows=rows, name=a.name))
    return _started(c, a, out)


def cmd_input(c: Client, a: argparse.Namespace) -> Any:
    text = _words(a.text_words) or (sys.stdin.read() if not sys.stdin.isatty() else "")
    out = c.request(SESSION_INPUT, SessionInputParams(run_id=a.id, text=text or None,
                                                      submit=not a.no_submit))
    if a.json:
        return out
    print(f"{out.bytes} bytes to {a.id}")
    return None


def cmd_end(c: Client, a: argparse.Namespace) -> Any:
    r = c.request(SESSION_END, SessionEndParams(run_id=a.id, signal=a.signal))
    if a.json:
        return r
    print(f"{a.id} {r.status}" + (f" ({r.reason})" if r.reason else ""))
    return None


def cmd_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(RUN_LIST, RunListParams(mode="interactive", limit=a.limit))
    if a.json:
        return out
    runs = sorted(out.runs, key=lambda r: r.status != "running")  # open ones first
    table(["ID", "PROVIDER", "STATUS", "AGE", "TERMINAL", "SESSION", "CWD"],
          [[r.run_id, r.request.provider, status(r.status), age(r.created_at),
            r.terminal_id or "-", r.session_id or "-", r.request.cwd] for r in runs],
          empty="no sessions (start one with `codexctl session start`)")
    return None


def add_commands(add: Any, sub: Any) -> None:
    ses = sub.add_parser("session", help="interactive codex / claude in a codexd terminal: "
                                         "start, input, end, resume, ls"
                         ).add_subparsers(dest="session_command", required=True,
                                          metavar="SESSION_COMMAND")
    sp = add("start", cmd_start, "start an interactive session; prints its run id", ses)
    sp.add_argument("--provider", choices=["codex", "claude"])
    sp.add_argument("--cwd", metavar="DIR", help="working directory (default: here)")
    sp.add_argument("--model")
    sp.add_argument("--profile")
    sp.add_argument("--conversation", metavar="ID", help="continue a conversation's session")
    sp.add_argument("--env", action="append", metavar="NAME=VALUE")
    sp.add_argument("--name", help="the terminal's name")
    sp.add_argument("--local", action="store_true",
                    help="codex: its own app-server, not codexd's (runs.session_codex_remote)")
    sp.add_argument("--attach", action="store_true", help="attach to it now (Ctrl-] detaches)")
    sp.add_argument("prompt_words", nargs="*", metavar="PROMPT", help="a first message")
    sp = add("resume", cmd_resume, "continue a session's agent session as a new one", ses)
    sp.add_argument("id")
    sp.add_argument("--name")
    sp.add_argument("--attach", action="store_true")
    sp.add_argument("prompt_words", nargs="*", metavar="PROMPT")
    sp = add("input", cmd_input, "type into a session (then Enter)", ses)
    sp.add_argument("id")
    sp.add_argument("--no-submit", action="store_true", help="do not press Enter after it")
    sp.add_argument("text_words", nargs="*", metavar="TEXT", help="the text, or on stdin")
    sp = add("end", cmd_end, "end a session and everything it started", ses)
    sp.add_argument("id")
    sp.add_argument("--signal", help="first signal (default SIGHUP)")
    add("ls", cmd_ls, "list sessions, open ones first", ses).add_argument(
        "--limit", type=int, default=20)
