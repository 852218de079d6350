"""The official app-server wire on a Unix socket, on trio-websocket: one message per frame.

``codex app-server --listen unix://`` speaks an HTTP/1.1 upgrade, then messages *without* the
``"jsonrpc"`` member; that is what the stock ``codex --remote`` TUI and the desktop's remote mode
speak (:class:`AppServerListener`). Frontends over TCP have their own transport
(:mod:`codexd.transport.frontend`).

Inside codexd every message is canonical NDJSON (see :mod:`codexd.transport.base`);
:meth:`WebSocketTransport.send` turns each line into a text frame, dropping the newline and, on
the app-server wire, the leading ``"jsonrpc":"2.0"`` member (every message codexd encodes
starts with it). Inbound, a frame is one message; one that holds a raw line break (pretty
printed JSON) is re-encoded compactly first, because its params travel on as raw bytes to the
app-server's newline-delimited stdin.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio
import trio_websocket

from codexd import faults
from codexd.errors import ErrorCode
from codexd.transport.unix import check_peer

if TYPE_CHECKING:
    from codexd.rpc import Event, RpcConnection
    from codexd.tokens import Auth
    from codexd.transport.base import Transport
    from codexd.transport.peercred import PeerCred

log = structlog.get_logger("codexd.transport")

_JSONRPC = b'{"jsonrpc":"2.0",'
#: What `codex app-server --listen unix://` announces in its 101 response.
MAX_UNFRAGMENTED_HEADER = b"x-codex-websocket-max-unfragmented-message-bytes"
#: Close codes (RFC 6455): policy violation (refused), going away.
CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
#: How long a connection may take to complete the HTTP upgrade.
UPGRADE_SECONDS = 10.0


def compact(message: bytes) -> bytes:
    """One line: a frame with raw line breaks inside is re-encoded (raw params go upstream)."""
    if b"\n" not in message and b"\r" not in message:
        return message
    try:
        return msgspec.json.encode(msgspec.json.decode(message))
    except msgspec.DecodeError:
        return message.replace(b"\r", b" ").replace(b"\n", b" ")  # still invalid: say so later


class WebSocketTransport:
    """A client on a WebSocket. ``appserver_wire``: messages leave without ``"jsonrpc"``."""

    direct_fd = -1
    frame = None  # send() converts; trio-websocket frames

    def bind(self, output: object) -> None:
        """trio-websocket answers pings itself."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, peer: PeerCred | None, *,
                 kind: str, appserver_wire: bool, max_message_bytes: int,
                 auth: Auth | None = None, remote: str = "unix") -> None:
        self.ws = ws
        self.peer = peer
        self.kind = kind
        self.auth = auth
        self.remote = remote
        self._strip = appserver_wire
        self._max = max_message_bytes

    async def receive(self, rpc: RpcConnection) -> list[Event] | None:
        try:
            message = await self.ws.get_message()
        except trio_websocket.ConnectionClosed:
            return None
        data = message.encode() if isinstance(message, str) else message
        if len(data) > self._max:
            return rpc.receive_data(data[: self._max + 1])  # reported as too large, discarded
        return [rpc.decode_message(compact(data))]

    async def send(self, data: bytes) -> None:
        strip = self._strip
        try:
            for line in data.splitlines():
                if strip and line.startswith(_JSONRPC):
                    line = b"{" + line[len(_JSONRPC):]
                await self.ws.send_message(line.decode())
        except trio_websocket.ConnectionClosed:
            raise trio.BrokenResourceError("the WebSocket is closed") from None

    async def refuse(self, code: ErrorCode, message: str) -> None:
        from codexd.rpc import RpcConnection

        data = RpcConnection(max_message_bytes=1024,
                             send_jsonrpc_member=not self._strip).send_error(None, code, message)
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError):
            await self.send(data)
        with trio.move_on_after(1):
            await self.ws.aclose(CLOSE_POLICY, message[:120])

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.ws.aclose(CLOSE_GOING_AWAY)


Serve = Callable[["Transport"], Awaitable[None]]


class AppServerListener:
    """The app-server wire on a Unix socket: accept, check the peer's uid, complete the
    WebSocket upgrade the way ``codex app-server --listen unix://`` does, and hand the
    connection on as a :class:`WebSocketTransport` (``kind="appserver"``)."""

    def __init__(self, listener: trio.SocketListener, serve: Serve, *,
                 max_message_bytes: int) -> None:
        self._listener = listener
        self._serve = serve
        self._max = max_message_bytes

    async def run(self, clients: trio.Nursery) -> None:
        async with self._listener:
            while True:
                try:
                    stream = await self._listener.accept()
                except OSError as exc:  # EMFILE and friends: the NDJSON listener says why
                    log.error("accept_failed", listener="appserver", error=str(exc))
                    await trio.sleep(0.1)
                    continue
                faults.inject("daemon.accept")
                clients.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        ok, peer = check_peer(stream)
        if not ok:
            log.warning("peer_refused", listener="appserver",
                        peer_uid=peer.uid if peer else None, our_uid=os.getuid())
            await trio.aclose_forcefully(stream)
            return
        async with trio.open_nursery() as nursery:
            ws = None
            with trio.move_on_after(UPGRADE_SECONDS):
                try:
                    request = await trio_websocket.wrap_server_stream(
                        nursery, stream, max_message_size=self._max)
                    ws = await request.accept(extra_headers=[
                        (MAX_UNFRAGMENTED_HEADER, str(self._max).encode())])
                except (trio_websocket.ConnectionClosed, trio.BrokenResourceError,
                        trio.ClosedResourceError) as exc:
                    log.info("websocket_upgrade_failed", listener="appserver", error=str(exc))
            if ws is None:
                await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()
                return
            try:
                await self._serve(WebSocketTransport(ws, peer, kind="appserver",
                                                     appserver_wire=True,
                                                     max_message_bytes=self._max))
            finally:
                nursery.cancel_scope.cancel()
