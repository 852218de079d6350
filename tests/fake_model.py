"""A fake OpenAI Responses API server on 127.0.0.1 for running real Codex turns offline.

Each POST to ``/v1/responses`` takes the next scripted reply (a list of output items) from a
queue; when the queue is empty it answers with one assistant message ``"done"``. Replies are
streamed as Server-Sent Events the way Codex reads them (see ../shared/CODEX-NOTES.md).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_ids = itertools.count(1)


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "id": f"msg_{next(_ids)}",
            "content": [{"type": "output_text", "text": text}]}


def streamed(*pieces: str) -> dict[str, Any]:
    """An assistant message streamed in ``pieces`` (Codex emits one delta per piece)."""
    item = message("".join(pieces))
    item["_stream"] = list(pieces)
    return item


def shell_call(cmd: str, justification: str = "run a command") -> dict[str, Any]:
    """A function call that makes Codex ask for approval (it wants escalated permissions)."""
    args = {"cmd": cmd, "sandbox_permissions": "require_escalated",
            "justification": justification}
    return {"type": "function_call", "name": "exec_command", "call_id": f"call_{next(_ids)}",
            "arguments": json.dumps(args)}


def tool_use(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    """Claude's Messages API: the model calls a tool (Bash, StructuredOutput, an MCP tool)."""
    return {"type": "tool_use", "id": f"toolu_{next(_ids)}", "name": name, "input": tool_input}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-reply (a run cancelled while streaming) is not an error.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class FakeModel:
    """Start with :meth:`start`; ``base_url`` goes into the Codex config. Thread-safe."""

    def __init__(self) -> None:
        self.replies: deque[list[dict[str, Any]]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.delay_event: threading.Event | None = None
        #: Until this Unix time every request is refused with a usage-limit error.
        self.limited_until: float = 0.0
        #: How many requests the limit refused.
        self.refused = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def script(self, *replies: list[dict[str, Any]]) -> None:
        with self._lock:
            self.replies.extend(replies)

    def limit(self, seconds: float) -> float:
        """Refuse every request for ``seconds`` with each API's usage-limit answer (HTTP 429):
        the Responses API's ``usage_limit_reached`` with Codex's ``x-codex-primary-*`` rate
        limit headers, the Messages API's ``rate_limit_error`` with the subscription
        (``anthropic-ratelimit-unified-*``) headers. Returns the reset (Unix seconds)."""
        self.limited_until = float(int(time.time() + seconds))  # what the headers say, exactly
        return self.limited_until

    def hold(self) -> threading.Event:
        """Make the next requests wait until the returned event is set (a turn in progress)."""
        self.delay_event = threading.Event()
        return self.delay_event

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeModel:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                anthropic = self.path.split("?")[0].endswith("/messages")
                if time.time() < model.limited_until:
                    with model._lock:
                        model.refused += 1
                    self._limited(anthropic, int(model.limited_until))
                    return
                if anthropic and not body.get("tools"):
                    # Claude's side requests (a session title, with no tools offered) do not
                    # take the scripted replies: those are for the agent's turns.
                    self._anthropic([message("Session title")])
                    return
                with model._lock:
                    model.requests.append(body)
                    items = model.replies.popleft() if model.replies else [message("done")]
                if model.delay_event is not None:
                    model.delay_event.wait(60)
                if anthropic:
                    self._anthropic(items)
                    return
                rid = f"resp_{next(_ids)}"
                events = [("response.created", {"type": "response.created",
                                                 "response": {"id": rid}})]
                for index, item in enumerate(items):
                    pieces = item.get("_stream")
                    if pieces:
                        item = {k: v for k, v in item.items() if k != "_stream"}
                        events.append(("response.output_item.added", {
                            "type": "response.output_item.added", "output_index": index,
                            "item": {**item, "content": []}}))
                        events.extend(("response.output_text.delta", {
                            "type": "response.output_text.delta", "item_id": item["id"],
                            "output_index": index, "content_index": 0, "delta": piece})
                            for piece in pieces)
                    events.append(("response.output_item.done",
                                   {"type": "response.output_item.done", "item": item}))
                events.append(("response.completed", {"type": "response.completed", "response": {
                    "id": rid, "usage": {"input_tokens": 10, "output_tokens": 5,
                                         "total_tokens": 15, "input_tokens_details": None,
                                         "output_tokens_details": None}}}))
                self._sse(events)

            def _limited(self, anthropic: bool, reset: int) -> None:
                if anthropic:
                    body = {"type": "error", "error": {
                        "type": "rate_limit_error",
                        "message": "This request would exceed your account's rate limit."}}
                    headers = {"anthropic-ratelimit-unified-status": "rejected",
                               "anthropic-ratelimit-unified-reset": str(reset),
                               "anthropic-ratelimit-unified-5h-status": "rejected",
                               "anthropic-ratelimit-unified-5h-reset": str(reset),
                               "anthropic-ratelimit-unified-representative-claim": "five_hour",
                               "x-should-retry": "false"}
                else:
                    body = {"error": {"type": "usage_limit_reached",
                                      "message": "The usage limit has been reached",
                                      "plan_type": "plus", "resets_at": reset,
                                      "resets_in_seconds": max(0, reset - int(time.time()))}}
                    headers = {"x-codex-primary-used-percent": "100",
                               "x-codex-primary-window-minutes": "300",
                               "x-codex-primary-reset-at": str(reset)}
                payload = json.dumps(body).encode()
                self.send_response(429)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("retry-after", str(max(1, reset - int(time.time()))))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _sse(self, events: list[tuple[str, dict[str, Any]]]) -> None:
                payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n"
                                  for name, data in events).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _anthropic(self, items: list[dict[str, Any]]) -> None:
                """Claude Code's Messages API: the scripted message items as one text block,
                then each tool_use item as a tool_use block (stop_reason tool_use)."""
                text = " ".join(c["text"] for item in items if item.get("type") == "message"
                                for c in item["content"])
                tools = [item for item in items if item.get("type") == "tool_use"]
                if not text and not tools:
                    text = "done"
                mid = f"msg_{next(_ids)}"
                usage = {"input_tokens": 10, "output_tokens": 5}
                events = [
                    ("message_start", {"type": "message_start", "message": {
                        "id": mid, "type": "message", "role": "assistant", "model": "fake",
                        "content": [], "stop_reason": None, "stop_sequence": None,
                        "usage": usage}})]
                blocks: list[tuple[dict[str, Any], dict[str, Any]]] = []
                if text:
                    blocks.append(({"type": "text", "text": ""},
                                   {"type": "text_delta", "text": text}))
                for t in tools:
                    blocks.append(({"type": "tool_use", "id": t["id"], "name": t["name"],
                                    "input": {}},
                                   {"type": "input_json_delta",
                                    "partial_json": json.dumps(t["input"])}))
                for index, (start, delta) in enumerate(blocks):
                    events += [
                        ("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": start}),
                        ("content_block_delta", {"type": "content_block_delta", "index": index,
                                                 "delta": delta}),
                        ("content_block_stop", {"type": "content_block_stop", "index": index})]
                events += [
                    ("message_delta", {"type": "message_delta", "delta": {
                        "stop_reason": "tool_use" if tools else "end_turn",
                        "stop_sequence": None}, "usage": {"output_tokens": 5}}),
                    ("message_stop", {"type": "message_stop"}),
                ]
                self._sse(events)

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.delay_event is not None:
            self.delay_event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def write_codex_home(home: Path, base_url: str) -> Path:
    """A CODEX_HOME whose config sends every turn to the fake model."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        'model = "mock-model"\n'
        'model_provider = "mock"\n'
        'approval_policy = "on-request"\n'
        'sandbox_mode = "read-only"\n'
        "[model_providers.mock]\n"
        'name = "mock"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        "supports_websockets = false\n"
    )
    return home
