"""What a notification says: one JSON payload per event, and its title and body. Pure.

Payloads use Codex's own ``notify`` format where Codex has one: a completed turn is
``{"type": "agent-turn-complete", "thread-id", "turn-id", "cwd", "input-messages",
"last-assistant-message"}``, so a script written for Codex's ``notify = [...]`` works unchanged.
The other events follow the same style (kebab-case keys, a ``type``); every payload also carries
``"source": "codexd"``, a ``title`` and a ``body`` (what a desktop notification shows).

:class:`TurnNotes` follows the app-server's notifications to know, when a turn completes, what
the user asked (``userMessage`` items) and the agent's last message (``agentMessage`` items).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import msgspec

#: The events a notification can be about (``notify.events``).
EVENTS = ("turn-complete", "approval", "run-finished", "run-failed", "automation-finished",
          "automation-failed", "breaker-open", "lane-resumed")
#: At most this much of a message goes into a payload.
MAX_TEXT = 2000

Payload = dict[str, Any]


def _cut(text: str | None, limit: int = MAX_TEXT) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(text: str | None, limit: int = 200) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _base(kind: str, event: str, title: str, body: str, **fields: Any) -> Payload:
    return {"type": kind, "source": "codexd", "event": event, "title": title, "body": body,
            **fields}


def turn_complete(*, thread_id: str, turn_id: str, cwd: str | None, inputs: list[str],
                  last_message: str | None, thread_name: str | None = None) -> Payload:
    where = thread_name or (cwd.rstrip("/").rsplit("/", 1)[-1] if cwd else "Codex")
    return _base("agent-turn-complete", "turn-complete", f"Codex finished: {where}",
                 _line(last_message) or "The turn completed.",
                 **{"thread-id": thread_id, "turn-id": turn_id, "cwd": cwd,
                    "input-messages": [_cut(m) for m in inputs],
                    "last-assistant-message": _cut(last_message)})


def approval_summary(method: str, params: str) -> tuple[str, str | None, str | None]:
    """(what is asked, the command or file, the reason) from an approval's params."""
    try:
        p = json.loads(params)
    except ValueError:
        p = None
    if not isinstance(p, dict):
        p = {}
    command = p.get("command")
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    reason = p.get("reason") if isinstance(p.get("reason"), str) else None
    if "commandExecution" in method or "execCommand" in method or command:
        return "run a command", command if isinstance(command, str) else None, reason
    if "fileChange" in method or "applyPatch" in method:
        return "change files", None, reason
    if "permissions" in method.lower():
        return "use a permission", None, reason
    return method, None, reason


def approval_requested(*, approval_id: int, method: str, params: str, thread_id: str | None,
                       cwd: str | None, waited_seconds: float) -> Payload:
    what, command, reason = approval_summary(method, params)
    body = command or reason or method
    return _base("approval-requested", "approval", f"Codex asks to {what}", _line(body, 300),
                 **{"approval-id": approval_id, "method": method, "thread-id": thread_id,
                    "cwd": cwd, "command": _cut(command), "reason": _cut(reason),
                    "waited-seconds": round(waited_seconds, 1),
                    "answer": f"codexctl approvals accept {approval_id}"})


def approval_resolved(*, approval_id: int, method: str, status: str, by: str | None,
                      reason: str | None, thread_id: str | None) -> Payload:
    if status == "resolved" and by and by != "app-server":
        body = f"answered by {by}"
    elif status == "resolved":
        body = "withdrawn: the app-server no longer needs an answer"
    elif status == "timedOut":
        body = "timed out" + (f": {reason}" if reason else "")
    else:
        body = status + (f": {reason}" if reason else "")
    return _base("approval-resolved", "approval", "Codex approval answered", body,
                 **{"approval-id": approval_id, "method": method, "status": status,
                    "resolved-by": by, "reason": _cut(reason), "thread-id": thread_id})


def run_final(*, run_id: str, provider: str, status: str, reason: str | None,
              error: str | None, result_text: str | None, cwd: str, attempts: int) -> Payload:
    ok = status == "succeeded"
    body = _line(result_text) if ok else (error or reason or status)
    return _base("run-finished" if ok else "run-failed", "run-finished" if ok else "run-failed",
                 f"{provider} run {'finished' if ok else status}: {run_id}", _line(body, 300),
                 **{"run-id": run_id, "provider": provider, "status": status, "reason": reason,
                    "error": _cut(error), "last-message": _cut(result_text), "cwd": cwd,
                    "attempts": attempts})


def automation_final(*, automation_id: str, name: str, run_id: int, status: str,
                     summary: str | None, error: str | None,
                     thread_id: str | None) -> Payload:
    ok = status == "succeeded"
    event = "automation-finished" if ok else "automation-failed"
    return _base(event, event, f"{name}: {status}",
                 _line(summary if ok else error or summary or status, 300),
                 **{"automation-id": automation_id, "automation-run-id": run_id,
                    "status": status, "summary": _cut(summary), "error": _cut(error),
                    "thread-id": thread_id})


def breaker_open(*, error: str | None, restarts: int) -> Payload:
    return _base("app-server-breaker-open", "breaker-open", "Codex app-server stopped restarting",
                 _line(error or "it failed too often", 300) +
                 " — fix the cause, then `codexctl appserver restart`",
                 **{"error": _cut(error), "restarts": restarts})


def lane_resumed(*, provider: str, reason: str) -> Payload:
    return _base("lane-resumed", "lane-resumed", f"{provider} runs resumed", reason,
                 provider=provider)


def test_payload(channel: str | None) -> Payload:
    return _base("test", "test", "codexd test notification",
                 f"sent by `codexctl notify test` through {channel or 'every channel'}")


# ------------------------------------------------------------------------------ turns


class _Content(msgspec.Struct):
    type: str = ""
    text: str | None = None


class _Item(msgspec.Struct):
    type: str = ""
    text: str | None = None
    content: list[_Content] | None = None


class _Turn(msgspec.Struct):
    id: str = ""


class _Thread(msgspec.Struct):
    id: str = ""
    cwd: str | None = None
    name: str | None = None


class _Note(msgspec.Struct):
    threadId: str | None = None
    turnId: str | None = None
    item: _Item | None = None
    turn: _Turn | None = None
    thread: _Thread | None = None


_decoder = msgspec.json.Decoder(_Note)
WATCHED = frozenset({"thread/started", "turn/started", "item/completed", "turn/completed"})


class _Open(msgspec.Struct):
    inputs: list[str] = msgspec.field(default_factory=list)
    last: str | None = None


class TurnNotes:
    """What each thread's current turn was asked and answered, from app-server notifications;
    bounded (the oldest threads are forgotten first)."""

    def __init__(self, remember: int = 2000) -> None:
        self._threads: OrderedDict[str, _Thread] = OrderedDict()
        self._open: dict[str, _Open] = {}
        self._remember = remember

    def on_notification(self, method: str, params: msgspec.Raw | None) -> Payload | None:
        """The turn-complete payload when ``method`` completes a turn; None otherwise."""
        if method not in WATCHED or params is None:
            return None
        try:
            n = _decoder.decode(params)
        except msgspec.DecodeError:
            return None
        if method == "thread/started" and n.thread is not None and n.thread.id:
            self.note_thread(n.thread.id, n.thread.cwd, n.thread.name)
            return None
        thread_id = n.threadId
        if not thread_id:
            return None
        if method == "turn/started":
            self._open[thread_id] = _Open()
            return None
        if method == "item/completed" and n.item is not None:
            turn = self._open.setdefault(thread_id, _Open())
            if n.item.type == "agentMessage" and n.item.text:
                turn.last = n.item.text
            elif n.item.type == "userMessage":
                text = "\n".join(c.text for c in n.item.content or [] if c.text)
                if text:
                    turn.inputs.append(text)
            return None
        if method == "turn/completed":
            turn = self._open.pop(thread_id) if thread_id in self._open else _Open()
            thread = self._threads.get(thread_id)
            return turn_complete(thread_id=thread_id, turn_id=(n.turn.id if n.turn else "")
                                 or (n.turnId or ""), cwd=thread.cwd if thread else None,
                                 inputs=turn.inputs, last_message=turn.last,
                                 thread_name=thread.name if thread else None)
        return None

    def note_thread(self, thread_id: str, cwd: str | None, name: str | None = None) -> None:
        self._threads[thread_id] = _Thread(id=thread_id, cwd=cwd, name=name)
        self._threads.move_to_end(thread_id)
        while len(self._threads) > self._remember:
            gone, _ = self._threads.popitem(last=False)
            self._open.pop(gone, None)

    def cwd_of(self, thread_id: str | None) -> str | None:
        thread = self._threads.get(thread_id or "")
        return thread.cwd if thread else None
