"""A WebSocket JSON-RPC client for tests (trio-websocket), over a Unix socket or TCP."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio_websocket


class WsPeer:
    """Speaks JSON-RPC on a WebSocket: one message per text frame; keeps what arrives."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.raw: list[str] = []  # every frame received, as sent
        self._ids = itertools.count(1)
        self._inbox: list[dict[str, Any]] = []

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode().lower(): v.decode() for k, v in self.ws.handshake_headers}

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def next(self, pred: Any = None, within: float = 30) -> dict[str, Any]:
        """The first message (kept or new) that satisfies ``pred``; it is taken out."""
        with trio.fail_after(within):
            while True:
                for i, msg in enumerate(self._inbox):
                    if pred is None or pred(msg):
                        return self._inbox.pop(i)
                frame = await self.ws.get_message()
                text = frame if isinstance(frame, str) else frame.decode()
                self.raw.append(text)
                self._inbox.append(json.loads(text))

    async def call(self, method: str, params: Any = None, within: float = 30) -> Any:
        """Send a request; return its result (raise AssertionError on an error answer)."""
        rid = next(self._ids)
        msg: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        await self.send(msg)
        answer = await self.next(lambda m: m.get("id") == rid and "method" not in m, within)
        if "error" in answer:
            raise AssertionError(f"{method} failed: {answer['error']}")
        return answer["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request that must fail; return the error object."""
        rid = next(self._ids)
        await self.send({"id": rid, "method": method, **({"params": params} if params else {})})
        answer = await self.next(lambda m: m.get("id") == rid and "method" not in m)
        assert "error" in answer, answer
        return answer["error"]  # type: ignore[no-any-return]


@asynccontextmanager
async def ws_unix(path: str, *, resource: str = "/") -> AsyncIterator[WsPeer]:
    """A WebSocket over a Unix socket, the way `codex --remote unix://PATH` connects."""
    stream = await trio.open_unix_socket(path)
    async with trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, "localhost", resource,
                                                     max_message_size=64 * 1024 * 1024)
        try:
            yield WsPeer(ws)
        finally:
            await ws.aclose()
            nursery.cancel_scope.cancel()
