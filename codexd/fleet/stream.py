"""A remote attempt's events and approvals, from the worker to the user's codexd.

The worker keeps each attempt's events (numbered from 1 within the attempt, redacted with the
worker's own secrets) in an :class:`AttemptStream` and serves them over WebSocket at
``/v1/runs/<run id>/attempts/<n>?after=<i>``; the daemon that dispatched the run connects with
the run's stream token (``Authorization: Bearer``; the worker knows only its SHA-256, from the
activity's input), reads every event after the last one it stored, and answers the attempt's
permission prompts on the same connection. A connection that drops loses nothing: the daemon
reconnects with ``after`` and the worker sends the rest (and any unanswered prompt again).

Frames are JSON text. Worker to daemon: ``{"events": [[i, type, data, at], ...]}``,
``{"approval": {"id", "toolName", "input", "toolUseId"}}``, ``{"artifacts": [[kind, name,
media type, content], ...]}``, ``{"end": {"events": n}}``. Daemon to worker: ``{"answer":
{"id", "behavior", "message", "approvalId"}}``, ``{"cancel": {"by": ...}}``, ``{"done": true}``
(everything is stored: the worker may forget the attempt).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import trio
import trio_websocket

from codexd.runs.redact import redact

log = structlog.get_logger("codexd.fleet")
_enc = msgspec.json.Encoder()
#: Events per frame at most.
BATCH = 256
#: An attempt's events are kept this long after it ends if its daemon never takes them.
RETAIN_SECONDS = 3600.0


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def attempt_path(run_id: str, attempt: int) -> str:
    return f"/v1/runs/{urllib.parse.quote(run_id, safe='')}/attempts/{attempt}"


@dataclass(eq=False)
class Prompt:
    id: int
    params: dict[str, Any]
    answered: trio.Event = field(default_factory=trio.Event)
    answer: dict[str, Any] | None = None


class AttemptStream:
    """One attempt's events (the run executor's event sink on a worker)."""

    def __init__(self, run_id: str, attempt: int, token_hash: str,
                 secrets: Callable[[], list[str]], env_values: list[str]) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.token_hash = token_hash
        self._secrets = secrets
        self._env = env_values
        self.events: list[tuple[int, str, str, int]] = []
        self.artifacts: list[tuple[str, str, str, str]] | None = None
        self.ended = False
        self.ended_at: float | None = None
        self.taken = False  # the daemon has stored everything
        self.prompts: dict[int, Prompt] = {}
        self._ids = itertools.count(1)
        self._changed = trio.Event()
        #: Set by the attempt's runner: stop the attempt now (the daemon's cancel).
        self.on_cancel: Callable[[str], None] = lambda _by: None

    # -- the run executor's sink (codexd.runs.executor.EventSink)
    def known(self) -> list[str]:
        return [*self._secrets(), *self._env]

    def redact(self, run_id: str, text: str) -> str:
        return redact(text, self.known())

    def emit(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        text = self.redact(run_id, _enc.encode(data).decode())
        self.events.append((len(self.events) + 1, kind, text, int(time.time() * 1000)))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def changed(self) -> trio.Event:
        """Set at the next change (take it before looking, then wait on it)."""
        return self._changed

    # -- approvals
    async def ask(self, params: dict[str, Any]) -> dict[str, Any]:
        """A permission prompt: waits for the daemon's answer (sent whenever it connects)."""
        prompt = Prompt(next(self._ids), params)
        self.prompts[prompt.id] = prompt
        self._wake()
        try:
            await prompt.answered.wait()
        finally:
            self.prompts.pop(prompt.id, None)
        assert prompt.answer is not None
        return prompt.answer

    def answer(self, data: dict[str, Any]) -> None:
        prompt = self.prompts.get(data.get("id"))  # type: ignore[arg-type]
        if prompt is not None and not prompt.answered.is_set():
            prompt.answer = data
            prompt.answered.set()

    def end(self, artifacts: list[tuple[str, str, str, str]]) -> None:
        self.artifacts = artifacts
        self.ended = True
        self.ended_at = time.monotonic()
        self._wake()


class Streams:
    """The attempts a worker holds, and the WebSocket endpoint that serves them."""

    def __init__(self) -> None:
        self.attempts: dict[tuple[str, int], AttemptStream] = {}

    def add(self, stream: AttemptStream) -> None:
        self.attempts[(stream.run_id, stream.attempt)] = stream

    def for_run(self, run_id: str) -> AttemptStream | None:
        """The run's newest attempt here (the permission helper names only the run)."""
        found = [s for (r, _a), s in self.attempts.items() if r == run_id and not s.ended]
        return max(found, key=lambda s: s.attempt) if found else None

    def prune(self) -> None:
        now = time.monotonic()
        for key, s in list(self.attempts.items()):
            if s.ended and (s.taken or (s.ended_at or now) + RETAIN_SECONDS < now):
                del self.attempts[key]

    async def serve(self, request: trio_websocket.WebSocketRequest) -> None:
        path, _, query = request.path.partition("?")
        parts = path.split("/")
        stream = None
        if len(parts) == 6 and parts[:3] == ["", "v1", "runs"] and parts[4] == "attempts" \
                and parts[5].isdigit():
            stream = self.attempts.get((urllib.parse.unquote(parts[3]), int(parts[5])))
        auth = dict(request.headers).get(b"authorization", b"").decode("latin-1")
        given = auth.removeprefix("Bearer ").strip()
        if stream is None or not hmac.compare_digest(token_sha256(given), stream.token_hash):
            # One answer for both: a wrong token learns nothing about which attempts exist.
            await request.reject(404, body=b"no such attempt here, or not yours\n")
            return
        after = 0
        with_after = urllib.parse.parse_qs(query).get("after")
        if with_after and with_after[0].isdigit():
            after = int(with_after[0])
        ws = await request.accept()
        try:
            await _feed(ws, stream, after)
        finally:
            self.prune()


async def _feed(ws: trio_websocket.WebSocketConnection, stream: AttemptStream,
                after: int) -> None:
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                while True:
                    try:
                        msg = json.loads(await ws.get_message())
                    except ValueError:
                        continue
                    if not isinstance(msg, dict):
                        continue
                    if isinstance(msg.get("answer"), dict):
                        stream.answer(msg["answer"])
                    elif isinstance(msg.get("cancel"), dict):
                        stream.on_cancel(str(msg["cancel"].get("by") or "client"))
                    elif msg.get("done"):
                        stream.taken = True
                        break
            nursery.cancel_scope.cancel()  # done, or the daemon went: stop sending

        nursery.start_soon(receive)
        with contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError):
            await _send(ws, stream, after)
        nursery.cancel_scope.cancel()


async def _send(ws: trio_websocket.WebSocketConnection, stream: AttemptStream,
                after: int) -> None:
    sent = after
    asked: set[int] = set()
    finished = False
    while True:
        changed = stream.changed
        while sent < len(stream.events):
            batch = stream.events[sent:sent + BATCH]
            await ws.send_message(_enc.encode({"events": [
                [i, kind, msgspec.Raw(text.encode()), at] for i, kind, text, at in batch
            ]}).decode())
            sent += len(batch)
        for prompt in list(stream.prompts.values()):
            if prompt.id not in asked:
                asked.add(prompt.id)
                await ws.send_message(_enc.encode({"approval": {
                    "id": prompt.id, **prompt.params}}).decode())
        if stream.ended and sent >= len(stream.events) and not finished:
            finished = True
            await ws.send_message(_enc.encode({"artifacts": stream.artifacts or []}).decode())
            await ws.send_message(_enc.encode({"end": {"events": len(stream.events)}})
                                  .decode())
        await changed.wait()
