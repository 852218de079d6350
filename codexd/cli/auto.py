"""``codexctl auto`` and ``codexctl inbox``: automations, their runs, and the inbox."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

from codexd.cli.agent import UsageError
from codexd.client import Client


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
    params: dict[str, Any] = {"kind": "heartbeat" if a.thread else "cron", "prompt": prompt,
                              "rrule": a.rrule, "missedPolicy": a.missed}
    if a.thread:
        params["targetThreadId"] = a.thread
    cwds = a.cwd or ([] if a.thread else [os.getcwd()])
    params["cwds"] = [os.path.abspath(p) for p in cwds]
    for key, value in (("name", a.name), ("timezone", a.tz), ("model", a.model),
                       ("reasoningEffort", a.effort), ("id", a.id)):
        if value:
            params[key] = value
    if a.paused:
        params["status"] = "PAUSED"
    out = c.call("automation/create", params)
    if a.json:
        return out
    print(out["automation"]["id"])
    print(f"next run: {_when(out.get('nextRunAt'))}", file=sys.stderr)
    return None


def cmd_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.call("automation/list")
    if a.json:
        return out
    for info in out["automations"]:
        d = info["automation"]
        when = _when(info.get("nextRunAt"))
        print(f"{d['id']:<32} {d['status']:<7} {d['kind']:<9} next {when:<22} {d['name']}")
    if not out["automations"]:
        print("no automations (create one with `codexctl auto new`)", file=sys.stderr)
    return None


def cmd_show(c: Client, a: argparse.Namespace) -> Any:
    info = c.call("automation/get", {"automationId": a.id})
    runs = c.call("automation/runs", {"automationId": a.id, "limit": a.runs})
    if a.json:
        return {**info, "runs": runs["runs"]}
    d = info["automation"]
    rows = [("id", d["id"]), ("name", d["name"]), ("kind", d["kind"]), ("status", d["status"]),
            ("rrule", d["rrule"]), ("timezone", d["timezone"]),
            ("next run", _when(info.get("nextRunAt"))), ("missed runs", d["missedPolicy"]),
            ("cwds", ", ".join(d["cwds"]) or "-"), ("thread", d.get("targetThreadId") or "-"),
            ("model", d.get("model") or "-"), ("effort", d.get("reasoningEffort") or "-"),
            ("file", info["file"])]
    for k, v in rows:
        print(f"{k:<12} {v}")
    print(f"prompt\n  {d['prompt'].replace(chr(10), chr(10) + '  ')}")
    if runs["runs"]:
        print("recent runs")
    for r in runs["runs"]:
        text = (r.get("summary") or r.get("error") or r.get("decision") or "").splitlines()
        print(f"  #{r['runId']:<5} {_when(r['scheduledAt'])}  {r['status']:<11} {r['trigger']:<8}"
              f" {text[0][:80] if text else ''}")
    return None


def cmd_edit(c: Client, a: argparse.Namespace) -> Any:
    if a.editor:
        info = c.call("automation/get", {"automationId": a.id})
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        subprocess.run([*editor.split(), info["file"]], check=False)
        out = c.call("automation/rescan")
        bad = [i for i in out["invalid"] if i["path"] == info["file"]]
        if bad:
            raise UsageError(f"{bad[0]['path']}: {bad[0]['message']} (fix it and run "
                             "`codexctl auto edit --editor` again)")
        return out if a.json else None
    changes: dict[str, Any] = {}
    for key, value in (("prompt", a.prompt), ("rrule", a.rrule), ("name", a.name),
                       ("timezone", a.tz), ("model", a.model), ("reasoningEffort", a.effort),
                       ("targetThreadId", a.thread), ("missedPolicy", a.missed)):
        if value is not None:
            changes[key] = value or None if key in ("model", "reasoningEffort") else value
    if a.cwd:
        changes["cwds"] = [os.path.abspath(p) for p in a.cwd]
    if not changes:
        raise UsageError("nothing to change: give --prompt, --rrule, --name, --tz, --model, "
                         "--effort, --cwd, --thread, --missed or --editor")
    out = c.call("automation/update", {"automationId": a.id, **changes})
    if a.json:
        return out
    print(f"{a.id} updated; next run {_when(out.get('nextRunAt'))}")
    return None


def _simple(method: str, verb: str) -> Any:
    def run(c: Client, a: argparse.Namespace) -> Any:
        out = c.call(method, {"automationId": a.id})
        if a.json:
            return out
        extra = f"; next run {_when(out.get('nextRunAt'))}" if "nextRunAt" in out else ""
        print(f"{a.id} {verb}{extra}")
        return None
    return run


def cmd_run(c: Client, a: argparse.Namespace) -> Any:
    out = c.call("automation/runNow", {"automationId": a.id})
    if a.json:
        return out
    print(f"run {out['run']['runId']} queued; `codexctl auto show {a.id}` shows how it went")
    return None


def cmd_preview(c: Client, a: argparse.Namespace) -> Any:
    params: dict[str, Any] = {"count": a.count}
    if "FREQ=" in a.rule.upper():
        params["rrule"] = a.rule
        if a.tz:
            params["timezone"] = a.tz
    else:
        params["automationId"] = a.rule
    out = c.call("automation/preview", params)
    if a.json:
        return out
    for o in out["occurrences"]:
        print(o["local"])
    if not out["occurrences"]:
        print("the rule has no more occurrences", file=sys.stderr)
    return None


def cmd_inbox_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.call("inbox/list", {"unreadOnly": getattr(a, "unread", False),
                                "includeArchived": getattr(a, "all", False)})
    if a.json:
        return out
    for i in out["items"]:
        mark = " " if i.get("readAt") else "*"
        body = i["body"].splitlines()
        print(f"{mark} {i['itemId']:<5} {_when(i['createdAt'])}  {i['title']}")
        for line in body[:3]:
            print(f"        {line[:100]}")
    print(f"{out['unread']} unread", file=sys.stderr)
    return None


def _mark(method: str, verb: str) -> Any:
    def run(c: Client, a: argparse.Namespace) -> Any:
        out = c.call(method, {"itemIds": a.ids})
        if a.json:
            return out
        print(f"{verb} {', '.join(map(str, out['itemIds']))}")
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
    sp.add_argument("prompt_words", nargs=argparse.REMAINDER, help="-- PROMPT...")

    sp = add("edit", cmd_edit, "change an automation (or --editor its automation.toml)", auto)
    sp.add_argument("id")
    sp.add_argument("--rrule")
    sp.add_argument("--cwd", action="append", metavar="DIR", help="replace the cwds")
    sp.add_argument("--thread", metavar="THREAD_ID")
    sp.add_argument("--missed", choices=["runOnce", "skip"])
    sp.add_argument("--editor", action="store_true", help="open the file in $VISUAL/$EDITOR")
    _common_fields(sp)
    for name, fn, verb in (("pause", _simple("automation/pause", "paused"), "pause"),
                           ("resume", _simple("automation/resume", "resumed"), "resume"),
                           ("rm", _simple("automation/delete", "deleted"), "delete")):
        add(name, fn, f"{verb} an automation", auto).add_argument("id")
    add("run", cmd_run, "run an automation now", auto).add_argument("id")
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
    add("read", _mark("inbox/markRead", "read:"), "mark items read", isub).add_argument(
        "ids", type=int, nargs="+")
    add("archive", _mark("inbox/archive", "archived:"), "archive items", isub).add_argument(
        "ids", type=int, nargs="+")


def _common_fields(sp: Any) -> None:
    sp.add_argument("--prompt", help="the prompt (instead of words after --)")
    sp.add_argument("--name")
    sp.add_argument("--tz", help="IANA time zone (default: the daemon's)")
    sp.add_argument("--model")
    sp.add_argument("--effort", help="reasoning effort: minimal, low, medium, high, xhigh")
