"""``codexctl run``, ``runs``, ``conv`` and ``secret``: provider runs from the command line."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from datetime import datetime
from typing import Any

import msgspec

from codexd.cli.exits import EXIT_INTERRUPTED
from codexd.cli.output import StatusLine, UsageError, age, span, status, table
from codexd.client import Client
from codexd.protocol import MethodSpec
from codexd.protocol.base import NoParams
from codexd.protocol.runs import (
    CONVERSATION_ARCHIVE,
    CONVERSATION_CREATE,
    CONVERSATION_GET,
    CONVERSATION_LIST,
    CONVERSATION_RENAME,
    CONVERSATION_SEND,
    QUEUE_LIST,
    QUEUE_PAUSE,
    QUEUE_RESUME,
    RUN_CANCEL,
    RUN_EVENT,
    RUN_EVENTS,
    RUN_EXPORT,
    RUN_GET,
    RUN_LIST,
    RUN_RERUN,
    RUN_START,
    RUN_SUBSCRIBE,
    SECRET_CLEAR,
    SECRET_HAS,
    SECRET_SET,
    ConversationCreateParams,
    ConversationListParams,
    ConversationRef,
    ConversationRenameParams,
    ConversationSendParams,
    ExportParams,
    Options,
    QueueList,
    QueuePauseParams,
    QueueResumeParams,
    RerunParams,
    RunEvent,
    RunEventsParams,
    RunListParams,
    RunRef,
    RunStartParams,
    RunSubscribeParams,
    SecretRef,
    SecretSetParams,
)

FINAL = ("run.completed", "run.failed", "run.canceled", "run.interrupted")


def _event(e: RunEvent) -> dict[str, Any]:
    """A stored event as the run/event notification carries it (data decoded)."""
    return {"runId": e.run_id, "seq": e.seq, "type": e.type,
            "data": msgspec.json.decode(e.data), "at": e.at}


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _words(words: list[str]) -> str:
    return " ".join(words[1:] if words[:1] == ["--"] else words).strip()


def _line(e: dict[str, Any]) -> str | None:
    """The human line for an event (None: shown only in the progress line)."""
    d, kind = e["data"], e["type"]
    if kind == "run.semantic":
        if d.get("kind") == "agentMessage":
            return str(d.get("text") or "")
        if d.get("kind") == "command":
            return f"$ {d.get('command') or d.get('input')}"
        return f"[{d.get('kind')}] {d.get('changes') or d.get('input') or ''}"
    if kind in ("run.chunk.stdout",):
        return str(d.get("text"))
    if kind in ("run.warning", "run.cli_missing", "run.cwd_missing",
                "run.structured_output_invalid"):
        return f"warning: {d.get('message')}"
    if kind == "run.failed":
        return f"failed ({d.get('reason')}): {d.get('message')}"
    if kind == "run.canceled":
        return f"canceled by {d.get('by')}"
    if kind == "run.interrupted":
        return f"interrupted: {d.get('message')}"
    return None


def waiting_reason(q: QueueList, run_id: str, now_ms: float) -> str | None:
    """Why a queued run has not started, in the words of the config (None: not queued)."""
    entry = next((e for e in q.queued if e.run_id == run_id), None)
    if entry is None:
        return None
    ahead = (entry.position or 1) - 1
    lane = [e for e in q.running if e.provider == entry.provider]
    if entry.provider in q.paused:
        why = (f"the {entry.provider} lane is paused ({q.paused[entry.provider]}); "
               f"`codexctl runs queue resume --provider {entry.provider}`")
    elif entry.next_attempt_at:
        why = f"retrying in {span(max(0.0, (entry.next_attempt_at - now_ms) / 1000))}"
    elif len(lane) >= q.max_per_provider:
        why = (f"max_per_provider = {q.max_per_provider}, {len(lane)} {entry.provider} "
               "run(s) running")
    elif len(q.running) >= q.max_concurrent:
        why = f"max_concurrent = {q.max_concurrent}, {len(q.running)} running"
    else:
        why = "starting"
    return f"queued #{entry.position}, {ahead} ahead: {why}"


def follow(c: Client, run_id: str, *, after: int, as_json: bool, show_stderr: bool) -> int:
    """Print a run's events until its final one; returns the exit code (0 = succeeded).

    On a terminal a status line says where the run is: its queue position and why it waits,
    then how long it has run. Ctrl-C stops following (exit 130); the run goes on."""
    try:
        with StatusLine(enabled=sys.stderr.isatty() and not as_json) as status:
            return _follow(c, run_id, after=after, as_json=as_json, show_stderr=show_stderr,
                           status=status)
    except KeyboardInterrupt:
        if not as_json:
            print(f"\n[{run_id} goes on; `codexctl runs logs -f {run_id}` follows it again, "
                  f"`codexctl runs cancel {run_id}` stops it]", file=sys.stderr)
        return EXIT_INTERRUPTED


def _follow(c: Client, run_id: str, *, after: int, as_json: bool, show_stderr: bool,
            status: StatusLine) -> int:
    t0 = time.monotonic()
    count, last_seq, state = 0, after, "queued"

    def progress() -> None:
        if not status.enabled:
            return
        if state == "queued":
            queue = c.request(QUEUE_LIST, NoParams())
            status.show(f"[{run_id}] " + (waiting_reason(queue, run_id, time.time() * 1000)
                                          or "queued"))
        else:
            status.show(f"[{run_id}] {state} · {count} events · "
                        f"{span(time.monotonic() - t0)}")

    def show(e: dict[str, Any]) -> None:
        nonlocal count, last_seq, state
        last_seq = e["seq"]
        count += 1
        if e["type"] == "run.started":
            state = "running"
        if as_json:
            print(json.dumps(e), flush=True)
            return
        text = _line(e) if e["type"] != "run.chunk.stderr" or not show_stderr else \
            f"stderr: {e['data'].get('text')}"
        if text is not None:
            status.clear()
            print(text, flush=True)
        progress()

    stored = c.request(RUN_EVENTS, RunEventsParams(run_id=run_id, after_seq=after))
    final = None
    for ev in stored.events:
        show(_event(ev))
        final = ev.type if ev.type in FINAL else final
    progress()
    while final is None and not stored.complete:
        try:
            note = c.next_notification(timeout=1.0)
        except TimeoutError:
            run = c.request(RUN_GET, RunRef(run_id=run_id))
            if run.status not in ("queued", "running") and run.last_seq <= last_seq:
                break
            state = run.status
            progress()
            continue
        if note.method != RUN_EVENT.name or note.params["runId"] != run_id:
            continue
        if note.params["seq"] <= last_seq:
            continue
        show(note.params)
        if note.params["type"] in FINAL:
            final = note.params["type"]
    status.clear()
    run = c.request(RUN_GET, RunRef(run_id=run_id))
    if not as_json:
        print(f"[{run_id}] {run.status}" + (f" ({run.reason})" if run.reason else "")
              + f" after {run.attempt} attempt(s)", file=sys.stderr)
    return 0 if run.status == "succeeded" else 1


def _env(pairs: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {pair!r}: give NAME=VALUE")
        env[name] = value
    return env


def _cwd(path: str | None) -> str:
    """A working folder given on the command line, checked here (the daemon may be elsewhere
    in the file system's view, but a typo should not cost a queue slot)."""
    cwd = os.path.abspath(path or os.getcwd())
    if not os.path.isdir(cwd):
        raise UsageError(f"--cwd {path}: no such folder")
    return cwd


def cmd_run(c: Client, a: argparse.Namespace) -> Any:
    prompt = _words(a.prompt_words) or (sys.stdin.read().strip() if not sys.stdin.isatty()
                                        else "")
    if not prompt:
        raise UsageError("give the prompt as words (or after --), or on stdin")
    provider = a.provider
    if provider is None and a.profile is None and a.conversation is None:
        provider = "codex"
    out = c.request(RUN_START, RunStartParams(
        prompt=prompt, cwd=_cwd(a.cwd), provider=provider,
        model=a.model, profile=a.profile, priority=a.priority, timeout_seconds=a.timeout_s,
        max_retries=a.retries, sandbox=a.sandbox, conversation_id=a.conversation,
        auto_approve=True if a.auto_approve else None, env=_env(a.env) or None,
        executor=a.executor))
    if not a.wait:
        if a.json:
            return out
        print(out.run_id)
        return None
    return follow(c, out.run_id, after=0, as_json=a.json, show_stderr=False)


def cmd_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(RUN_LIST, RunListParams(limit=a.limit, status=a.status or None,
                                            provider=a.provider or None,
                                            mode=a.mode or None))
    if a.json:
        return out
    rows = []
    for r in out.runs:
        prompt = r.request.prompt.splitlines()[0][:50] if r.request.prompt else ""
        took = None
        if r.started_at:
            took = ((r.finished_at or time.time() * 1000) - r.started_at) / 1000
        rows.append([r.run_id, r.request.provider, status(r.status), age(r.created_at), span(took),
                     r.attempt, r.reason or "", prompt])
    table(["ID", "PROVIDER", "STATUS", "AGE", "DURATION", "ATTEMPTS>", "REASON", "PROMPT"], rows,
          empty="no runs (start one with `codexctl run PROMPT`)")
    return None


def cmd_show(c: Client, a: argparse.Namespace) -> Any:
    r = c.request(RUN_GET, RunRef(run_id=a.id))
    if a.json:
        return r
    req = r.request
    for k, v in (("run", r.run_id), ("provider", req.provider), ("status", r.status),
                 ("reason", r.reason or "-"), ("cwd", req.cwd),
                 ("model", req.model or "-"), ("priority", req.priority),
                 ("attempts", r.attempt), ("session", r.session_id or "-"),
                 ("executor", (req.executor or "local") + (f" (worker {r.worker})"
                                                          if r.worker else "")),
                 ("mode", r.mode + (f" (terminal {r.terminal_id})" if r.terminal_id else "")),
                 ("created", _when(r.created_at)), ("finished", _when(r.finished_at)),
                 ("events", r.last_seq)):
        print(f"{k:<10} {v}")
    print(f"prompt\n  {req.prompt}")
    if r.result_text or r.error:
        print(f"result\n  {r.result_text or r.error}")
    return None


def cmd_logs(c: Client, a: argparse.Namespace) -> Any:
    if a.follow:
        c.request(RUN_SUBSCRIBE, RunSubscribeParams(run_ids=[a.id]))
        return follow(c, a.id, after=0, as_json=a.json, show_stderr=True)
    out = c.request(RUN_EVENTS, RunEventsParams(run_id=a.id))
    if a.json:
        return out
    for e in map(_event, out.events):
        text = _line(e) if e["type"] != "run.chunk.stderr" else f"stderr: {e['data']['text']}"
        if text is not None:
            print(text)
    return None


def cmd_cancel(c: Client, a: argparse.Namespace) -> Any:
    r = c.request(RUN_CANCEL, RunRef(run_id=a.id))
    if a.json:
        return r
    print(f"{a.id} {r.status}")
    return None


def cmd_rerun(c: Client, a: argparse.Namespace) -> Any:
    overrides = Options(model=a.model, priority=a.priority, provider=a.provider)
    out = c.request(RUN_RERUN, RerunParams(run_id=a.id, overrides=None if overrides == Options()
                                           else overrides))
    if a.wait:
        return follow(c, out.run_id, after=0, as_json=a.json, show_stderr=False)
    if a.json:
        return out
    print(out.run_id)
    return None


def export_format(a: argparse.Namespace) -> str:
    """--format wins; else the output file's extension; else --json; else Markdown."""
    if a.format:
        return str(a.format)
    if a.output:
        ext = os.path.splitext(a.output)[1].lower()
        if ext == ".json":
            return "json"
        if ext in (".md", ".markdown"):
            return "markdown"
    return "json" if a.json else "markdown"


def cmd_export(c: Client, a: argparse.Namespace) -> Any:
    fmt = export_format(a)
    out = c.request(RUN_EXPORT, ExportParams(run_id=a.id, format=fmt))  # type: ignore[arg-type]
    if a.output:
        with open(a.output, "w") as f:
            f.write(out.content if out.content.endswith("\n") else out.content + "\n")
        print(f"wrote {a.output} ({fmt})", file=sys.stderr)
        return None
    sys.stdout.write(out.content if out.content.endswith("\n") else out.content + "\n")
    return None


def cmd_queue(c: Client, a: argparse.Namespace) -> Any:
    if a.action in ("pause", "resume"):
        if a.action == "pause":
            lanes = c.request(QUEUE_PAUSE, QueuePauseParams(provider=a.provider or None,
                                                            reason=a.reason or None))
        else:
            lanes = c.request(QUEUE_RESUME, QueueResumeParams(provider=a.provider or None))
        if a.json:
            return lanes
        print("paused: " + (", ".join(f"{p} ({r})" for p, r in lanes.paused.items()) or "none"))
        return None
    out = c.request(QUEUE_LIST, NoParams())
    if a.json:
        return out
    for provider, reason in out.paused.items():
        if provider in out.paused_until:
            wait = max(0, out.paused_until[provider] / 1000 - time.time())
            print(f"PAUSED {provider}: {reason} (in {span(wait)}; `codexctl runs queue resume "
                  f"--provider {provider}` to try now)", file=sys.stderr)
        else:
            print(f"PAUSED {provider}: {reason} (`codexctl runs queue resume --provider "
                  f"{provider}`)", file=sys.stderr)
    def where(e: Any) -> str:
        if e.executor != "temporal":
            return "here"
        return e.worker or ("waiting for a worker" if e.status == "queued" else "fleet")

    rows = [["-", e.run_id, e.provider, "running", e.priority, "", span(e.waiting_ms / 1000),
             where(e)] for e in out.running]
    rows += [[e.position, e.run_id, e.provider, e.status, e.priority, e.effective_priority,
              span(e.waiting_ms / 1000), ""] for e in out.queued]
    table(["#", "RUN", "PROVIDER", "STATUS", "PRIORITY>", "EFFECTIVE>", "WAITING", "WHERE"],
          rows)
    print(f"{len(out.queued)}/{out.capacity} queued, {len(out.running)}/"
          f"{out.max_concurrent} running (max_per_provider = {out.max_per_provider})",
          file=sys.stderr)
    return None


def cmd_conv_new(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(CONVERSATION_CREATE, ConversationCreateParams(
        provider=a.provider, cwd=_cwd(a.cwd), title=a.title or None,
        model=a.model or None, profile=a.profile or None))
    if a.json:
        return out
    print(out.conversation_id)
    return None


def cmd_conv_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(CONVERSATION_LIST, ConversationListParams(include_archived=a.all))
    if a.json:
        return out
    table(["ID", "PROVIDER", "UPDATED", "TITLE", "ARCHIVED"],
          [[v.conversation_id, v.provider, age(v.updated_at), v.title,
            "yes" if v.archived else ""] for v in out.conversations],
          empty="no conversations (start one with `codexctl conv new`)")
    return None


def cmd_conv_send(c: Client, a: argparse.Namespace) -> Any:
    prompt = _words(a.prompt_words)
    if not prompt:
        raise UsageError("give the prompt")
    out = c.request(CONVERSATION_SEND, ConversationSendParams(conversation_id=a.id,
                                                              prompt=prompt))
    if a.wait:
        return follow(c, out.run_id, after=0, as_json=a.json, show_stderr=False)
    if a.json:
        return out
    print(out.run_id)
    return None


def _conv_simple(spec: MethodSpec[Any, Any]) -> Any:
    def run(c: Client, a: argparse.Namespace) -> Any:
        if spec is CONVERSATION_RENAME:
            out = c.request(spec, ConversationRenameParams(conversation_id=a.id, title=a.title))
        else:
            out = c.request(spec, ConversationRef(conversation_id=a.id))
        if a.json:
            return out
        print(f"{out.conversation_id}  {out.title}" + ("  (archived)" if out.archived else ""))
        return None
    return run


def cmd_secret_set(c: Client, a: argparse.Namespace) -> Any:
    if sys.stdin.isatty():
        token = getpass.getpass(f"{a.provider} token (not echoed): ")
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise UsageError("no token given (type it at the prompt, or pipe it on stdin)")
    out = c.request(SECRET_SET, SecretSetParams(provider=a.provider, token=token))
    if a.json:
        return out
    print(f"{a.provider} token stored ({out.store})")
    return None


def _secret(spec: MethodSpec[SecretRef, Any], verb: str) -> Any:
    def run(c: Client, a: argparse.Namespace) -> Any:
        out = c.request(spec, SecretRef(provider=a.provider))
        if a.json:
            return out
        print(f"{a.provider} token {verb if out.present else 'not stored'} ({out.store})")
        return None
    return run


def add_commands(add: Any, sub: Any) -> None:
    sp = add("run", cmd_run, "queue a codex exec / claude -p run; --wait streams it")
    sp.add_argument("--provider", choices=["codex", "claude"])
    sp.add_argument("--wait", action="store_true", help="stream the run and exit with its result")
    sp.add_argument("--cwd", metavar="DIR", help="working directory (default: here)")
    sp.add_argument("--model")
    sp.add_argument("--profile")
    sp.add_argument("--priority", type=int, help="-10..10 (default 0)")
    sp.add_argument("--time-limit", dest="timeout_s", type=int, metavar="SECONDS",
                    help="cancel the run after this long (default: runs.default_timeout_seconds)")
    sp.add_argument("--retries", type=int)
    sp.add_argument("--sandbox", choices=["read-only", "workspace-write", "danger-full-access"])
    sp.add_argument("--auto-approve", action="store_true")
    sp.add_argument("--conversation", metavar="ID", help="continue a conversation")
    sp.add_argument("--executor", choices=["local", "temporal"],
                    help="run here or on the fleet (default: runs.executor.kind)")
    sp.add_argument("--env", action="append", metavar="NAME=VALUE",
                    help="set a variable for the run (repeatable; shown redacted)")
    sp.add_argument("prompt_words", nargs="*", metavar="PROMPT",
                    help="the prompt (words; after -- if one starts with -), or on stdin")

    runs = sub.add_parser("runs", help="provider runs: ls, show, logs, cancel, rerun, export, "
                                       "queue").add_subparsers(dest="runs_command", required=True,
                                                               metavar="RUNS_COMMAND")
    sp = add("ls", cmd_ls, "list runs, newest first", runs)
    sp.add_argument("--status")
    sp.add_argument("--provider")
    sp.add_argument("--mode", choices=["exec", "interactive"],
                    help="queued runs or interactive sessions (default: both)")
    sp.add_argument("--limit", type=int, default=20)
    add("show", cmd_show, "one run", runs).add_argument("id")
    sp = add("logs", cmd_logs, "a run's events (-f: follow until it ends)", runs)
    sp.add_argument("id")
    sp.add_argument("-f", "--follow", action="store_true")
    add("cancel", cmd_cancel, "cancel a run (kills its process tree)", runs).add_argument("id")
    sp = add("rerun", cmd_rerun, "run a run's request again", runs)
    sp.add_argument("id")
    sp.add_argument("--model")
    sp.add_argument("--priority", type=int)
    sp.add_argument("--provider", choices=["codex", "claude"])
    sp.add_argument("--wait", action="store_true")
    sp = add("export", cmd_export, "a run as JSON or Markdown", runs)
    sp.add_argument("id")
    sp.add_argument("--format", choices=["json", "markdown"],
                    help="default: from -o's extension (.json, .md), else json with --json, "
                    "else markdown")
    sp.add_argument("-o", "--output", metavar="FILE")
    sp = add("queue", cmd_queue, "what runs and what waits, in order; pause|resume a lane",
             runs)
    sp.add_argument("action", nargs="?", choices=["list", "pause", "resume"], default="list")
    sp.add_argument("--provider", choices=["codex", "claude"], help="one lane (default: all)")
    sp.add_argument("--reason", help="why (pause; shown in the queue)")

    conv = sub.add_parser("conv", help="conversations: runs continuing one agent session"
                          ).add_subparsers(dest="conv_command", required=True,
                                           metavar="CONV_COMMAND")
    sp = add("new", cmd_conv_new, "start a conversation; prints its id", conv)
    sp.add_argument("--provider", choices=["codex", "claude"], default="codex")
    sp.add_argument("--cwd", metavar="DIR")
    sp.add_argument("--title")
    sp.add_argument("--model")
    sp.add_argument("--profile")
    add("ls", cmd_conv_ls, "list conversations", conv).add_argument(
        "--all", action="store_true", help="include archived ones")
    sp = add("send", cmd_conv_send, "the conversation's next prompt", conv)
    sp.add_argument("id")
    sp.add_argument("--wait", action="store_true", help="stream the run and exit with its result")
    sp.add_argument("prompt_words", nargs="*", metavar="PROMPT",
                    help="the prompt (words; after -- if one starts with -)")
    add("show", _conv_simple(CONVERSATION_GET), "one conversation", conv).add_argument("id")
    sp = add("rename", _conv_simple(CONVERSATION_RENAME), "retitle a conversation", conv)
    sp.add_argument("id")
    sp.add_argument("title")
    add("archive", _conv_simple(CONVERSATION_ARCHIVE), "archive a conversation",
        conv).add_argument("id")

    sec = sub.add_parser("secret", help="provider tokens (keyring or 0600 file)"
                         ).add_subparsers(dest="secret_command", required=True,
                                          metavar="SECRET_COMMAND")
    for name, fn, help_ in (("set", cmd_secret_set, "store a token (read from stdin or a "
                             "prompt, never from argv)"),
                            ("clear", _secret(SECRET_CLEAR, "cleared"), "forget a token"),
                            ("status", _secret(SECRET_HAS, "stored"), "is a token stored?")):
        add(name, fn, help_, sec).add_argument("provider", choices=["codex", "claude"])
