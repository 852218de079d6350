"""codexctl commands for the app-server: threads, ask, approvals, appserver."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from codexd.cli.exits import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from codexd.cli.output import StatusLine, UsageError, age, print_json, status, table
from codexd.client import Client, ReceivedNotification, ReceivedRequest
from codexd.errors import ErrorCode, RpcError
from codexd.protocol import upstream as up
from codexd.protocol.approvals import (
    APPROVAL_LIST,
    APPROVAL_RESPOND,
    SERVER_REQUEST_RESOLVED,
    ApprovalListParams,
    ApprovalRespondParams,
)
from codexd.protocol.appserver import (
    APPSERVER_RESTART,
    APPSERVER_STATE_CHANGED,
    APPSERVER_STATUS,
)
from codexd.protocol.base import NoParams

APPROVAL_DECISIONS = up.APPROVAL_DECISIONS


def _ts(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M")
    return str(value or "")


def describe(method: str, params: dict[str, Any]) -> str:
    """One line a person can decide on."""
    if "command" in params:
        cmd = params["command"]
        cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
        where = f" in {params['cwd']}" if params.get("cwd") else ""
        why = f" ({params['reason']})" if params.get("reason") else ""
        return f"run `{cmd}`{where}{why}"
    if method in (up.FILE_CHANGE_APPROVAL, "applyPatchApproval"):
        files = params.get("fileChanges") or params.get("changes") or {}
        names = ", ".join(list(files)[:5]) if isinstance(files, dict) else ""
        return f"change files {names}".strip() + (f" ({params['reason']})"
                                                  if params.get("reason") else "")
    if params.get("reason"):
        return str(params["reason"])
    return method


def cmd_threads(c: Client, a: argparse.Namespace) -> Any:
    out = c.call(up.THREAD_LIST, {})
    if a.json:
        return out
    rows = []
    for t in out.get("data", []):
        env = (t.get("environments") or [{}])[0]
        preview = (t.get("preview") or "").replace("\n", " ")[:60]
        updated = t.get("updatedAt")
        rows.append([t["id"], age(updated * 1000) if isinstance(updated, int | float) else
                     _ts(updated), env.get("cwd", "") or t.get("cwd", ""), preview])
    table(["ID", "UPDATED", "CWD", "PREVIEW"], rows,
          empty="no threads (start one with `codexctl ask PROMPT`)")
    return None


def cmd_appserver(c: Client, a: argparse.Namespace) -> Any:
    if a.action == "restart":
        out = c.request(APPSERVER_RESTART, NoParams())
        if a.json:
            return out
        print(f"restarting the app-server (generation {out.generation} stops)")
        return None
    st = c.request(APPSERVER_STATUS)
    if a.json:
        return st
    print(f"state     {st.state}" + (f" since {st.since}" if st.since else ""))
    print(f"command   {' '.join(st.command)}")
    print(f"pid       {st.pid or '-'}   version {st.version or '-'}   "
          f"generation {st.generation}   restarts {st.restarts}")
    if st.last_error:
        print(f"last      {st.last_error}")
    if st.next_start_at:
        print(f"next try  {st.next_start_at}")
    if st.codex_home:
        print(f"home      {st.codex_home}")
    for line in st.stderr_tail[-5:]:
        print(f"stderr    {line}")
    if st.state == "failed":
        print("hint      fix the cause above, then: codexctl appserver restart", file=sys.stderr)
    return None


def cmd_approvals(c: Client, a: argparse.Namespace) -> Any:
    if a.action in ("accept", "decline"):
        if a.id is None:
            raise UsageError(f"approvals {a.action} needs an ID (see codexctl approvals ls)")
        listed = c.request(APPROVAL_LIST, ApprovalListParams(limit=10000)).approvals
        match = next((x for x in listed if x.approval_id == a.id), None)
        method = match.method if match else ""
        if match and method not in APPROVAL_DECISIONS:
            raise RpcError(1, f"request {a.id} is a {method}, not a yes/no approval; answer it "
                              "with: codexctl call approval/respond "
                              f"'{{\"approvalId\": {a.id}, \"result\": {{...}}}}'")
        yes, no = APPROVAL_DECISIONS.get(method, ("accept", "decline"))
        decision = yes if a.action == "accept" else no
        answered = c.request(APPROVAL_RESPOND, _decision(a.id, decision))
        if a.json:
            return answered
        print(f"approval {a.id}: {decision} ({answered.status})")
        return None
    out = c.request(APPROVAL_LIST, ApprovalListParams(status=None if a.all else "pending"))
    if a.json:
        return out
    rows = []
    for x in out.approvals:
        params_ = msgspec.json.decode(x.params) or {}
        answer = msgspec.json.decode(x.result) if x.result is not msgspec.UNSET else None
        given = answer.get("decision") if isinstance(answer, dict) else None
        rows.append([x.approval_id, status(x.status),
                     given or ("-" if x.status != "pending" else ""),
                     age(_iso_ms(x.created_at)), x.resolved_by or "", x.thread_id or "-",
                     describe(x.method, params_ if isinstance(params_, dict) else {})])
    table(["ID>", "STATUS", "DECISION", "AGE", "BY", "THREAD", "REQUEST"], rows,
          empty="no pending approvals" if not a.all else "no approvals")
    return None


def _iso_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _decision(approval_id: int, decision: str) -> ApprovalRespondParams:
    return ApprovalRespondParams(approval_id=approval_id, result=msgspec.Raw(
        msgspec.json.encode({"decision": decision})))


class _Asker:
    """Streams one turn and answers its approvals per --approve.

    While nothing streams, a status line (terminal only) says what it waits on: the
    app-server starting, the model, an approval. Ctrl-C interrupts the turn it started
    (``turn/interrupt``) unless --detach, then exits 130."""

    def __init__(self, c: Client, a: argparse.Namespace) -> None:
        self.c = c
        self.a = a
        self.thread_id = ""
        self.turn_id = ""
        self.text: list[str] = []
        self.streamed: set[str] = set()
        self.tty = sys.stdin.isatty() and sys.stderr.isatty()
        self.status = StatusLine(enabled=sys.stderr.isatty() and not a.json)
        self.waiting_on: set[int | str] = set()

    def run(self) -> int:
        try:
            return self._run()
        except KeyboardInterrupt:
            self.status.clear()
            self._interrupted()
            return EXIT_INTERRUPTED
        finally:
            self.status.clear()

    def _interrupted(self) -> None:
        if not self.turn_id:
            return
        resume = f"`codexctl ask --thread {self.thread_id} PROMPT` continues the thread"
        if self.a.detach:
            print(f"\n[detached; the turn goes on; {resume}]", file=sys.stderr)
            return
        try:
            self.c.call(up.TURN_INTERRUPT, {"threadId": self.thread_id, "turnId": self.turn_id})
            print(f"\n[turn interrupted; {resume}]", file=sys.stderr)
        except (RpcError, OSError, TimeoutError) as exc:
            print(f"\n[could not interrupt the turn ({exc}); it may still be running]",
                  file=sys.stderr)

    def _run(self) -> int:
        a, c = self.a, self.c
        cwd = os.path.abspath(a.cwd or os.getcwd())
        if not a.thread and not os.path.isdir(cwd):
            raise UsageError(f"--cwd {a.cwd}: no such folder")
        self._wait_for_appserver()
        if a.thread:
            self.status.show(f"resuming thread {a.thread}")
            c.call(up.THREAD_RESUME, {"threadId": a.thread})
            self.thread_id = a.thread
        else:
            params: dict[str, Any] = {"cwd": cwd}
            if a.model:
                params["model"] = a.model
            self.status.show("starting a thread")
            self.thread_id = c.call(up.THREAD_START, params)["thread"]["id"]
        turn: dict[str, Any] = {"threadId": self.thread_id,
                                "input": [{"type": "text", "text": a.prompt}]}
        if a.model:
            turn["model"] = a.model
        self.turn_id = c.call(up.TURN_START, turn)["turn"]["id"]
        if not a.json:
            self.status.clear()
            print(f"thread {self.thread_id}", file=sys.stderr)
        self.status.show("waiting for the model")
        while True:
            msg = c.next_message(timeout=None)
            if isinstance(msg, ReceivedRequest):
                self._on_request(msg)
                continue
            status = self._on_notification(msg)
            if status is not None:
                return self._finish(status)

    def _wait_for_appserver(self) -> None:
        """Say so when the app-server is not ready (the first call would wait silently)."""
        try:
            st = self.c.request(APPSERVER_STATUS)
        except RpcError:
            return
        if not st.enabled:
            raise RpcError(ErrorCode.APPSERVER_NOT_READY, "the app-server is disabled "
                           "(appserver.enabled = false in config.toml); `codexctl ask` needs it")
        if st.state == "failed":
            raise RpcError(ErrorCode.APPSERVER_NOT_READY,
                           f"the app-server has failed ({st.last_error or 'see the log'}); fix "
                           "the cause, then `codexctl appserver restart`")
        if st.state != "ready":
            self.status.show(f"waiting for the app-server ({st.state})")

    def _mine(self, params: Any) -> bool:
        return isinstance(params, dict) and params.get("threadId") == self.thread_id

    def _on_notification(self, n: ReceivedNotification) -> dict[str, Any] | None:
        p = n.params
        if n.method == APPSERVER_STATE_CHANGED.name and isinstance(p, dict):
            if p.get("state") != "ready":
                self.status.show(f"the app-server is {p.get('state')}; waiting for it")
            return None
        if not self._mine(p):
            return None
        if n.method == up.ITEM_AGENT_MESSAGE_DELTA:
            self.streamed.add(p.get("itemId", ""))
            self._out(p.get("delta", ""))
        elif n.method == up.ITEM_COMPLETED and p["item"].get("type") == "agentMessage":
            item = p["item"]
            self.text.append(item.get("text", ""))
            if item.get("id") not in self.streamed:
                self._out(item.get("text", ""))
            self._out("\n")
            self.status.show("working")
        elif n.method == SERVER_REQUEST_RESOLVED.name:
            self.waiting_on.discard(p.get("approvalId", ""))
            if not self.a.json:
                self.status.clear()
                print(f"[approval {p['approvalId']} {p['status']}"
                      + (f" by {p['resolvedBy']}" if p.get("resolvedBy") else "") + "]",
                      file=sys.stderr)
            self.status.show("working")
        elif n.method == up.TURN_COMPLETED and p["turn"].get("id") == self.turn_id:
            return p["turn"]  # type: ignore[no-any-return]
        return None

    def _out(self, text: str) -> None:
        if not self.a.json:
            self.status.clear()
            sys.stdout.write(text)
            sys.stdout.flush()

    def _on_request(self, r: ReceivedRequest) -> None:
        params = r.params if isinstance(r.params, dict) else {}
        if params.get("threadId") not in (None, self.thread_id):
            return
        decisions = APPROVAL_DECISIONS.get(r.method)
        what = describe(r.method, params)
        self.status.clear()
        if decisions is None:
            print(f"[request {r.id}: {r.method} left pending; answer it with "
                  f"`codexctl approvals` or from another client]", file=sys.stderr)
            self._wait_approval(r.id)
            return
        mode = self.a.approve
        if mode == "ask" and not self.tty:
            print(f"[approval {r.id}: {what} — waiting; answer with "
                  f"codexctl approvals accept|decline {r.id}]", file=sys.stderr)
            self._wait_approval(r.id)
            return
        if mode == "ask":
            answer = input(f"\nallow: {what}? [y/N] ").strip().lower()
            yes = answer in ("y", "yes")
        else:
            yes = mode == "all"
        decision = decisions[0] if yes else decisions[1]
        try:
            self.c.request(APPROVAL_RESPOND, _decision(int(r.id), decision))
        except RpcError as exc:  # someone else answered first
            print(f"[approval {r.id}: {exc.message}]", file=sys.stderr)

    def _wait_approval(self, approval_id: int | str) -> None:
        self.waiting_on.add(approval_id)
        self.status.show("waiting for approval " + ", ".join(map(str, sorted(
            self.waiting_on, key=str))))

    def _finish(self, turn: dict[str, Any]) -> int:
        self.status.clear()
        status = turn.get("status", "")
        error = turn.get("error")
        if self.a.json:
            print_json({"threadId": self.thread_id, "turnId": self.turn_id, "status": status,
                         "text": "\n".join(self.text), "error": error})
        elif status != "completed":
            msg = (error or {}).get("message") if isinstance(error, dict) else error
            print(f"turn {status}" + (f": {msg}" if msg else ""), file=sys.stderr)
        return EXIT_OK if status == "completed" else EXIT_ERROR


def cmd_ask(c: Client, a: argparse.Namespace) -> Any:
    return _Asker(c, a).run()


def add_commands(add: Any, sub: Any) -> None:
    """Register these commands on codexctl's parser (``add`` is codexctl's helper)."""
    add("threads", cmd_threads, "list the app-server's threads")
    sp = add("ask", cmd_ask, "start or continue a thread with a prompt and stream the answer")
    sp.add_argument("prompt")
    sp.add_argument("--cwd", metavar="DIR", help="working folder for a new thread (default .)")
    sp.add_argument("--thread", metavar="ID", help="continue this thread")
    sp.add_argument("--model", metavar="M")
    sp.add_argument("--approve", choices=["ask", "all", "none"], default="ask",
                    help="approvals: ask on a terminal (default; left pending otherwise), "
                    "accept all, or decline all")
    sp.add_argument("--detach", action="store_true",
                    help="Ctrl-C leaves the turn running (default: Ctrl-C interrupts it)")
    sp.set_defaults(server_requests=True)
    sp = add("approvals", cmd_approvals, "list or answer pending approvals")
    sp.add_argument("action", nargs="?", choices=["ls", "accept", "decline"], default="ls")
    sp.add_argument("id", nargs="?", type=int)
    sp.add_argument("--all", action="store_true", help="ls: include closed ones")
    sp = add("appserver", cmd_appserver, "show or restart the supervised app-server")
    sp.add_argument("action", nargs="?", choices=["status", "restart"], default="status")
