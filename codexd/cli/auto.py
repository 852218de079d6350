"""``codexctl auto`` and ``codexctl inbox``: automations, their runs, and the inbox."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from codexd.cli.exits import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from codexd.cli.output import (
    CommandFailed,
    StatusLine,
    UsageError,
    age,
    print_json,
    span,
    status,
    table,
)
from codexd.client import Client
from codexd.errors import ErrorCode, RpcError
from codexd.protocol import MethodSpec
from codexd.protocol.automations import (
    AUTOMATION_CREATE,
    AUTOMATION_DELETE,
    AUTOMATION_GET,
    AUTOMATION_LIST,
    AUTOMATION_PAUSE,
    AUTOMATION_PREVIEW,
    AUTOMATION_RESCAN,
    AUTOMATION_RESUME,
    AUTOMATION_RUN_COMPLETED,
    AUTOMATION_RUN_NOW,
    AUTOMATION_RUN_STARTED,
    AUTOMATION_RUNS,
    AUTOMATION_UPDATE,
    INBOX_ARCHIVE,
    INBOX_LIST,
    INBOX_MARK_READ,
    AutomationRef,
    CreateParams,
    InboxListParams,
    InboxMarkParams,
    ListParams,
    PreviewParams,
    RunEvent,
    RunRow,
    RunsParams,
    UpdateParams,
)
from codexd.protocol.base import NoParams


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _prompt(a: argparse.Namespace) -> str:
    words = a.prompt_words[1:] if a.prompt_words[:1] == ["--"] else a.prompt_words
    text = a.prompt or " ".join(words)
    if not text and not sys.stdin.isatty():
        text = sys.stdin.read()
    return text.strip()


def cmd_new(c: Client, a: argparse.Namespace) -> Any:
    prompt = _prompt(a)
    if not prompt:
        raise UsageError("give the prompt after --, with --prompt, or on stdin")
    cwds = a.cwd or ([] if a.thread else [os.getcwd()])
    params = CreateParams(
        kind="heartbeat" if a.thread else "cron", prompt=prompt, rrule=a.rrule,
        missed_policy=a.missed, target_thread_id=a.thread or None,
        cwds=[os.path.abspath(p) for p in cwds], name=a.name or None, timezone=a.tz or None,
        model=a.model or None, reasoning_effort=a.effort or None, id=a.id or None,
        status="PAUSED" if a.paused else "ACTIVE")
    out = c.request(AUTOMATION_CREATE, params)
    if a.json:
        return out
    print(out.automation.id)
    print(f"next run: {_when(out.next_run_at)}", file=sys.stderr)
    return None


def cmd_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(AUTOMATION_LIST, ListParams())
    if a.json:
        return out
    table(["ID", "STATUS", "KIND", "NEXT RUN", "SCHEDULE", "NAME"],
          [[i.automation.id, status(i.automation.status), i.automation.kind, _when(i.next_run_at),
            i.automation.rrule, i.automation.name] for i in out.automations],
          empty="no automations (create one with `codexctl auto new`)")
    return None


def cmd_show(c: Client, a: argparse.Namespace) -> Any:
    info = c.request(AUTOMATION_GET, AutomationRef(automation_id=a.id))
    runs = c.request(AUTOMATION_RUNS, RunsParams(automation_id=a.id, limit=a.runs)).runs
    if a.json:
        return {**msgspec.to_builtins(info), "runs": runs}
    d = info.automation
    rows = [("id", d.id), ("name", d.name), ("kind", d.kind), ("status", d.status),
            ("rrule", d.rrule), ("timezone", d.timezone),
            ("next run", _when(info.next_run_at)), ("missed runs", d.missed_policy),
            ("cwds", ", ".join(d.cwds) or "-"), ("thread", d.target_thread_id or "-"),
            ("model", d.model or "-"), ("effort", d.reasoning_effort or "-"),
            ("file", info.file)]
    for k, v in rows:
        print(f"{k:<12} {v}")
    print(f"prompt\n  {d.prompt.replace(chr(10), chr(10) + '  ')}")
    if runs:
        print("recent runs")
    for r in runs:
        text = (r.summary or r.error or r.decision or "").splitlines()
        print(f"  #{r.run_id:<5} {_when(r.scheduled_at)}  {r.status:<11} {r.trigger:<8}"
              f" {text[0][:80] if text else ''}")
    return None


def cmd_edit(c: Client, a: argparse.Namespace) -> Any:
    if a.editor:
        return _edit_in_editor(c, a)
    changes: dict[str, Any] = {}
    for key, value in (("prompt", a.prompt), ("rrule", a.rrule), ("name", a.name),
                       ("timezone", a.tz), ("model", a.model), ("reasoning_effort", a.effort),
                       ("target_thread_id", a.thread), ("missed_policy", a.missed)):
        if value is not None:  # "" clears model and effort (null)
            changes[key] = value or None if key in ("model", "reasoning_effort") else value
    if a.cwd:
        changes["cwds"] = [os.path.abspath(p) for p in a.cwd]
    if not changes:
        raise UsageError("nothing to change: give --prompt, --rrule, --name, --tz, --model, "
                         "--effort, --cwd, --thread, --missed or --editor")
    out = c.request(AUTOMATION_UPDATE, UpdateParams(automation_id=a.id, **changes))
    if a.json:
        return out
    print(f"{a.id} updated; next run {_when(out.next_run_at)}")
    return None


def _edit_in_editor(c: Client, a: argparse.Namespace) -> Any:
    """Like ``crontab -e``: edit a copy; a broken edit is never installed. It is offered for
    editing again (on a terminal), or dropped with the file left as it was."""
    from codexd.automations.definition import write_atomic

    info = c.request(AUTOMATION_GET, AutomationRef(automation_id=a.id))
    path = Path(info.file)
    original = path.read_bytes()
    editor = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
    with tempfile.TemporaryDirectory(prefix="codexctl-") as tmp:
        copy = Path(tmp) / path.parent.name / path.name  # the folder names the id
        copy.parent.mkdir()
        copy.write_bytes(original)
        while True:
            if subprocess.run([*editor, str(copy)], check=False).returncode != 0:
                raise CommandFailed(f"the editor ({editor[0]}) failed; {path} is unchanged")
            edited = copy.read_bytes()
            if edited == original:
                print(f"{path}: no changes", file=sys.stderr)
                return None
            problem = _problem(edited, copy, info.automation.timezone)
            if problem is None:
                write_atomic(path, edited)
                rescanned = c.request(AUTOMATION_RESCAN, NoParams())
                bad = [i for i in rescanned.invalid if i.path == str(path)]
                if not bad:
                    if a.json:
                        return rescanned
                    print(f"{a.id} updated from {path}")
                    return None
                problem = bad[0].message
                write_atomic(path, original)  # the daemon refused it: put the old one back
                c.request(AUTOMATION_RESCAN, NoParams())
            print(f"{path}: {problem}", file=sys.stderr)
            if not (sys.stdin.isatty() and _ask("edit it again? [Y/n] ", default=True)):
                raise CommandFailed(f"{path}: {problem}; the file is unchanged")


def _problem(data: bytes, where: Path, timezone: str) -> str | None:
    """What is wrong with an edited automation.toml (None: nothing this side can see)."""
    from codexd.automations import definition as defs

    now = int(time.time() * 1000)
    try:
        d = defs.from_toml(data, where, default_tz=timezone, now_ms=now)
        defs.check(d, now_ms=now, min_interval_seconds=0, cwds_must_exist=True)
    except defs.InvalidDefinition as exc:
        return str(exc)
    return None


def _ask(question: str, *, default: bool) -> bool:
    answer = input(question).strip().lower()
    return default if not answer else answer in ("y", "yes")


def _simple(spec: MethodSpec[AutomationRef, Any], verb: str) -> Any:
    def run(c: Client, a: argparse.Namespace) -> Any:
        out = c.request(spec, AutomationRef(automation_id=a.id))
        if a.json:
            return out
        next_run = getattr(out, "next_run_at", None)
        extra = f"; next run {_when(next_run)}" if next_run is not None else ""
        print(f"{a.id} {verb}{extra}")
        return None
    return run


_UNDERWAY = ("pending", "queued", "running")


def cmd_run(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(AUTOMATION_RUN_NOW, AutomationRef(automation_id=a.id))
    if not a.wait:
        if a.json:
            return out
        print(f"run {out.run.run_id} queued; `codexctl auto show {a.id}` shows how it went "
              "(--wait waits for it)")
        return None
    try:
        run = _wait_run(c, a.id, out.run, as_json=a.json)
    except KeyboardInterrupt:
        print(f"\n[run {out.run.run_id} goes on; `codexctl auto show {a.id}` shows how it "
              "went]", file=sys.stderr)
        return EXIT_INTERRUPTED
    if a.json:
        print_json(run)
    else:
        text = run.summary or run.error or run.decision or ""
        print(text.rstrip() if text else f"(no summary; thread {run.thread_id or '-'})")
        print(f"[run {run.run_id} {run.status}" + (f" in {span(run.duration_ms / 1000)}"
                                                  if run.duration_ms else "") + "]",
              file=sys.stderr)
    return EXIT_OK if run.status == "succeeded" else EXIT_ERROR


def _wait_run(c: Client, automation_id: str, run: RunRow, *, as_json: bool) -> RunRow:
    """Until the run ends: its automation/runCompleted, or (missed) what automation/runs says."""
    t0 = time.monotonic()
    with StatusLine(enabled=sys.stderr.isatty() and not as_json) as status:
        while run.status in _UNDERWAY:
            status.show(f"run {run.run_id} {run.status} · {span(time.monotonic() - t0)}")
            try:
                note = c.next_notification(timeout=2.0)
            except TimeoutError:
                listed = c.request(AUTOMATION_RUNS, RunsParams(automation_id=automation_id,
                                                               limit=50)).runs
                run = next((r for r in listed if r.run_id == run.run_id), run)
                continue
            if note.method in (AUTOMATION_RUN_COMPLETED.name, AUTOMATION_RUN_STARTED.name):
                got = msgspec.convert(note.params, RunEvent).run
                if got.run_id == run.run_id:
                    run = got
    return run


def cmd_preview(c: Client, a: argparse.Namespace) -> Any:
    from codexd.automations.schedule import cron_to_rrule

    rule = a.rule
    looks_like_rule = "=" in rule or cron_to_rrule(rule) is not None or " " in rule.strip()
    if looks_like_rule:
        params = PreviewParams(count=a.count, rrule=rule, timezone=a.tz or None)
    else:
        if a.tz:
            raise UsageError("--tz applies to an RRULE; an automation runs in its own zone "
                             f"(change it with `codexctl auto edit {rule} --tz ZONE`)")
        params = PreviewParams(count=a.count, automation_id=rule)
    try:
        out = c.request(AUTOMATION_PREVIEW, params)
    except RpcError as exc:
        if exc.code == ErrorCode.NOT_FOUND and not looks_like_rule:
            raise RpcError(exc.code, f"{rule!r} is neither an automation (`codexctl auto ls`) "
                           "nor an RRULE; an RRULE looks like "
                           "'FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9;BYMINUTE=0'", exc.data) from None
        raise
    if a.json:
        return out
    for o in out.occurrences:
        print(o.local)
    if not out.occurrences:
        print("the rule has no more occurrences", file=sys.stderr)
    return None


def cmd_inbox_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(INBOX_LIST, InboxListParams(unread_only=getattr(a, "unread", False),
                                                include_archived=getattr(a, "all", False)))
    if a.json:
        return out
    table(["", "ID>", "AGE", "TITLE", "SUMMARY"],
          [["" if i.read_at else "*", i.item_id, age(i.created_at), i.title,
            (i.body.strip().splitlines() or [""])[0][:100]] for i in out.items],
          empty="the inbox is empty")
    print(f"{out.unread} unread (* = unread)", file=sys.stderr)
    return None


def _mark(spec: MethodSpec[InboxMarkParams, Any], verb: str) -> Any:
    def run(c: Client, a: argparse.Namespace) -> Any:
        out = c.request(spec, InboxMarkParams(item_ids=a.ids))
        if a.json:
            return out
        print(f"{verb} {', '.join(map(str, out.item_ids))}")
        return None
    return run


def add_commands(add: Any, sub: Any) -> None:
    auto = sub.add_parser("auto", help="automations: scheduled Codex prompts").add_subparsers(
        dest="auto_command", required=True, metavar="AUTO_COMMAND")
    add("ls", cmd_ls, "list automations", auto)
    sp = add("show", cmd_show, "an automation and its recent runs", auto)
    sp.add_argument("id")
    sp.add_argument("--runs", type=int, default=10, metavar="N", help="runs to show (10)")

    sp = add("new", cmd_new, "create an automation; prints its id", auto)
    sp.add_argument("--rrule", required=True,
                    help="RFC 5545 rule, e.g. 'FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9;BYMINUTE=0'")
    sp.add_argument("--cwd", action="append", metavar="DIR",
                    help="working directory (repeatable; default: here, for cron automations)")
    sp.add_argument("--thread", metavar="THREAD_ID",
                    help="make it a heartbeat: continue this thread instead of starting one")
    sp.add_argument("--missed", choices=["runOnce", "skip"], default="runOnce",
                    help="after downtime: run once (default) or skip what was missed")
    sp.add_argument("--paused", action="store_true", help="create it paused")
    sp.add_argument("--id", help="the id (default: from the name)")
    _common_fields(sp)
    sp.add_argument("prompt_words", nargs="*", metavar="PROMPT",
                    help="the prompt (words; after -- if one starts with -), --prompt, or stdin")

    sp = add("edit", cmd_edit, "change an automation (or --editor its automation.toml)", auto)
    sp.add_argument("id")
    sp.add_argument("--rrule")
    sp.add_argument("--cwd", action="append", metavar="DIR", help="replace the cwds")
    sp.add_argument("--thread", metavar="THREAD_ID")
    sp.add_argument("--missed", choices=["runOnce", "skip"])
    sp.add_argument("--editor", action="store_true", help="open the file in $VISUAL/$EDITOR")
    _common_fields(sp)
    for name, fn, verb in (("pause", _simple(AUTOMATION_PAUSE, "paused"), "pause"),
                           ("resume", _simple(AUTOMATION_RESUME, "resumed"), "resume"),
                           ("rm", _simple(AUTOMATION_DELETE, "deleted"), "delete")):
        add(name, fn, f"{verb} an automation", auto).add_argument("id")
    sp = add("run", cmd_run, "run an automation now", auto)
    sp.add_argument("id")
    sp.add_argument("--wait", action="store_true",
                    help="wait for the run and print its summary (exit 1 unless it succeeded)")
    sp = add("preview", cmd_preview, "the next fire times of an rrule or an automation", auto)
    sp.add_argument("rule", metavar="RRULE|ID")
    sp.add_argument("--count", type=int, default=5)
    sp.add_argument("--tz", help="IANA zone for an rrule (default: the daemon's)")

    inbox = add("inbox", cmd_inbox_ls, "what automation runs reported (default: ls)")
    inbox.add_argument("--unread", action="store_true", help="only unread items")
    inbox.add_argument("--all", action="store_true", help="include archived items")
    isub = inbox.add_subparsers(dest="inbox_command", required=False, metavar="INBOX_COMMAND")
    sp = add("ls", cmd_inbox_ls, "list inbox items (* = unread)", isub)
    sp.add_argument("--unread", action="store_true", help="only unread items")
    sp.add_argument("--all", action="store_true", help="include archived items")
    add("read", _mark(INBOX_MARK_READ, "read:"), "mark items read", isub).add_argument(
        "ids", type=int, nargs="+")
    add("archive", _mark(INBOX_ARCHIVE, "archived:"), "archive items", isub).add_argument(
        "ids", type=int, nargs="+")


def _common_fields(sp: Any) -> None:
    sp.add_argument("--prompt", help="the prompt (instead of words after --)")
    sp.add_argument("--name")
    sp.add_argument("--tz", help="IANA time zone (default: the daemon's)")
    sp.add_argument("--model")
    sp.add_argument("--effort", help="reasoning effort: minimal, low, medium, high, xhigh")
