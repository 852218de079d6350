"""JSON-RPC peers for tests, one interface over every transport: a WebSocket (trio-websocket,
over a Unix socket or TCP, TLS or not) and newline-delimited JSON on codexd.sock. Protocol tests
take a peer and run unchanged on each."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio_websocket


class Peer:
    """Keeps what arrives; ``next`` takes the first message that matches."""

    def __init__(self) -> None:
        self.raw: list[str] = []  # every message received, as sent
        self._ids = itertools.count(1)
        self._inbox: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        raise NotImplementedError

    async def _receive(self) -> list[str]:
        raise NotImplementedError

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message))

    async def next(self, pred: Any = None, within: float = 30) -> dict[str, Any]:
        """The first message (kept or new) that satisfies ``pred``; it is taken out."""
        with trio.fail_after(within):
            while True:
                for i, msg in enumerate(self._inbox):
                    if pred is None or pred(msg):
                        return self._inbox.pop(i)
                for text in await self._receive():
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


class WsPeer(Peer):
    """One JSON-RPC message per WebSocket text frame."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        super().__init__()
        self.ws = ws

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode().lower(): v.decode() for k, v in self.ws.handshake_headers}

    async def send_text(self, text: str) -> None:
        await self.ws.send_message(text)

    async def _receive(self) -> list[str]:
        frame = await self.ws.get_message()
        return [frame if isinstance(frame, str) else frame.decode()]


class LinePeer(Peer):
    """Newline-delimited JSON on a stream (codexd.sock)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__()
        self.stream = stream
        self._buf = b""

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(text.encode() + b"\n")

    async def _receive(self) -> list[str]:
        while b"\n" not in self._buf:
            chunk = await self.stream.receive_some(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode() for line in lines if line]


@asynccontextmanager
async def line_unix(path: str) -> AsyncIterator[LinePeer]:
    stream = await trio.open_unix_socket(path)
    async with stream:
        yield LinePeer(stream)


@asynccontextmanager
async def ws_tcp(url: str, token: str | None, *, origin: str | None = None,
                 ssl_context: Any = None, resource: str = "/",
                 cookie: str | None = None) -> AsyncIterator[WsPeer]:
    """A WebSocket to codexd's frontend listener, with a bearer token (and an Origin, and the
    web console's session cookie).

    The TCP (or TLS) stream is ours and closed however the connection ends."""
    headers = [] if token is None else [(b"Authorization", f"Bearer {token}".encode())]
    if origin is not None:
        headers.append((b"Origin", origin.encode()))
    if cookie is not None:
        headers.append((b"Cookie", cookie.encode()))
    scheme, rest = url.split("://", 1)
    hostport = rest.split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    if scheme == "wss":
        stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
            host, int(port), ssl_context=ssl_context)
    else:
        stream = await trio.open_tcp_stream(host, int(port))
    async with _ws_over(stream, hostport, resource, headers) as peer:
        yield peer


@asynccontextmanager
async def ws_unix(path: str, *, resource: str = "/") -> AsyncIterator[WsPeer]:
    """A WebSocket over a Unix socket, the way `codex --remote unix://PATH` connects."""
    async with _ws_over(await trio.open_unix_socket(path), "localhost", resource, []) as peer:
        yield peer


@asynccontextmanager
async def _ws_over(stream: Any, host: str, resource: str,
                   headers: list[tuple[bytes, bytes]]) -> AsyncIterator[WsPeer]:
    """The upgrade over a stream of ours, closed however the connection ends (trio-websocket's
    client leaks its socket when the server closes or rejects)."""
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, host, resource, extra_headers=headers,
                max_message_size=64 * 1024 * 1024)
            try:
                yield WsPeer(ws)
            finally:
                with trio.move_on_after(2):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()
