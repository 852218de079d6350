"""WebSocket transports: one JSON-RPC message per text frame (trio-websocket).

Two wires share this code:

- the official app-server wire on a Unix socket (``codex app-server --listen unix://``): an
  HTTP/1.1 upgrade, then messages *without* the ``"jsonrpc"`` member, which is what the stock
  ``codex --remote`` TUI and the desktop's remote mode speak (:class:`AppServerListener`);
- codexd's own protocol over WebSocket for frontends (messages as on the NDJSON socket, with
  ``"jsonrpc":"2.0"``).

Inside codexd every message is canonical NDJSON (see :mod:`codexd.transport.base`);
:meth:`WebSocketTransport.send` turns each line into a text frame, dropping the newline and, on
the app-server wire, the leading ``"jsonrpc":"2.0"`` member (every message codexd encodes
starts with it). Inbound, a frame is one message; one that holds a raw line break (pretty
printed JSON) is re-encoded compactly first, because its params travel on as raw bytes to the
app-server's newline-delimited stdin.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio
import trio_websocket

from codexd import faults
from codexd.config import WebSocketSection
from codexd.errors import CodexdError, ErrorCode
from codexd.tokens import AuthRefused
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
#: Close codes (RFC 6455): policy violation (refused), message too big, going away.
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001
#: How long a connection may take to complete the HTTP upgrade.
UPGRADE_SECONDS = 10.0


def _compact(message: bytes) -> bytes:
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
        return [rpc.decode_message(_compact(data))]

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


# ------------------------------------------------------------------- frontends over TCP


Authenticate = Callable[[str | None], Awaitable["Auth"]]
#: Ports tried after the configured one when it is taken (another user's daemon, a test).
PORT_TRIES = 20


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → (host, port). Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"websocket.listen must be host:port, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _header(request: trio_websocket.WebSocketRequest, name: bytes) -> str | None:
    for key, value in request.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class FrontendListener:
    """codexd's own protocol over WebSocket for browsers and remote frontends.

    Every connection is checked before the upgrade is accepted: the ``Host`` header against
    ``allowed_hosts`` (DNS rebinding), ``Origin`` when present against ``allowed_origins`` (a
    CSRF check, never authentication), then the token (``Authorization: Bearer``). A refusal is
    an HTTP 403 (host, origin) or 401 (token) with a one-line reason, and nothing runs.
    """

    def __init__(self, *, config: Callable[[], WebSocketSection], serve: Serve,
                 authenticate: Authenticate, redeem: Callable[[str], Auth],
                 max_message_bytes: int) -> None:
        self._config = config
        self._serve = serve
        self._authenticate = authenticate
        self._redeem = redeem
        self._max = max_message_bytes
        self._listeners: list[trio.SocketListener] = []
        self.host = ""
        self.port = 0
        self.tls = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}/"

    async def bind(self) -> None:
        """Bind ``websocket.listen`` (or the next free port). Raises CodexdError."""
        cfg = self._config()
        try:
            host, port = split_listen(cfg.listen)
        except ValueError as exc:
            raise CodexdError(str(exc)) from None
        self.tls = bool(cfg.tls_cert or cfg.tls_key)
        if not is_loopback(host) and not self.tls:
            if not cfg.allow_insecure_remote:
                raise CodexdError(
                    f"websocket.listen = {cfg.listen!r} is not a loopback address and there is "
                    "no TLS: set websocket.tls_cert and tls_key, or listen on 127.0.0.1 (set "
                    "websocket.allow_insecure_remote = true only on a network you trust)")
            log.warning("websocket_insecure_remote", listen=cfg.listen,
                        hint="tokens cross the network in clear; configure TLS")
        last: OSError | None = None
        for candidate in [port] if port == 0 else range(port, port + PORT_TRIES):
            try:
                self._listeners = await trio.open_tcp_listeners(candidate, host=host)
            except OSError as exc:
                last = exc
                continue
            self.host = host
            self.port = self._listeners[0].socket.getsockname()[1]
            if self.port != port and port != 0:
                log.warning("websocket_port_taken", wanted=port, port=self.port)
            return
        raise CodexdError(f"cannot listen on {host} ports {port}..{port + PORT_TRIES - 1}: "
                          f"{last}; set websocket.listen to a free host:port, or empty to turn "
                          "the WebSocket listener off")

    def _ssl(self) -> ssl.SSLContext:
        cfg = self._config()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(os.path.expanduser(cfg.tls_cert),
                                    os.path.expanduser(cfg.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise CodexdError(f"cannot load websocket.tls_cert/tls_key: {exc}") from None
        return context

    async def run(self, clients: trio.Nursery) -> None:
        context = self._ssl() if self.tls else None
        async with trio.open_nursery() as accepting:
            for listener in self._listeners:
                accepting.start_soon(self._accept, listener, context, clients)

    async def _accept(self, listener: trio.SocketListener, context: ssl.SSLContext | None,
                      clients: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    log.error("accept_failed", listener="websocket", error=str(exc))
                    await trio.sleep(0.1)
                    continue
                clients.start_soon(self._connection, stream, context)

    async def _connection(self, tcp: trio.SocketStream, context: ssl.SSLContext | None) -> None:
        """TLS (when configured) and the HTTP upgrade, both within UPGRADE_SECONDS: a client
        that speaks neither (plain text to a TLS port, a port scanner) is closed at once."""
        stream: trio.abc.Stream = tcp
        async with trio.open_nursery() as nursery:
            request = None
            with trio.move_on_after(UPGRADE_SECONDS):
                try:
                    if context is not None:
                        stream = trio.SSLStream(tcp, context, server_side=True,
                                                https_compatible=True)
                        await stream.do_handshake()
                    request = await trio_websocket.wrap_server_stream(
                        nursery, stream, max_message_size=self._max)
                except (trio.BrokenResourceError, trio.ClosedResourceError,
                        trio_websocket.ConnectionClosed) as exc:
                    log.info("websocket_upgrade_failed", listener="websocket", error=str(exc))
            try:
                if request is not None:
                    await self._handle(request, _address(tcp))
            finally:
                nursery.cancel_scope.cancel()
                await trio.aclose_forcefully(stream)

    def _allowed_hosts(self) -> set[str]:
        cfg = self._config()
        return set(cfg.allowed_hosts) or {"localhost", "127.0.0.1", "::1", self.host}

    def _allowed_origins(self) -> set[str]:
        cfg = self._config()
        if cfg.allowed_origins:
            return set(cfg.allowed_origins)
        scheme = "https" if self.tls else "http"
        return {f"{scheme}://{h if ':' not in h else f'[{h}]'}:{self.port}"
                for h in self._allowed_hosts()}

    async def _handle(self, request: trio_websocket.WebSocketRequest, remote: str) -> None:
        # wsproto keeps Host out of the extra headers: it is the request event's own field.
        host_header = str(getattr(getattr(request, "_event", None), "host", "") or
                          _header(request, b"host") or "")
        hostname = host_header.rsplit(":", 1)[0].strip("[]") if host_header.count(":") <= 1 \
            or host_header.startswith("[") else host_header
        if hostname not in self._allowed_hosts():
            await self._reject(request, 403, f"host {host_header!r} is not allowed "
                               "(websocket.allowed_hosts)", remote, "host")
            return
        origin = _header(request, b"origin")
        if origin is not None and origin not in self._allowed_origins():
            await self._reject(request, 403, f"origin {origin!r} is not allowed "
                               "(websocket.allowed_origins)", remote, "origin")
            return
        authorization = _header(request, b"authorization") or ""
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        ticket = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query).get("ticket")
        try:
            if token is None and ticket:
                auth = self._redeem(ticket[0])  # a browser: no header, a one-time ticket
            else:
                auth = await self._authenticate(token)
        except AuthRefused as exc:
            await self._reject(request, 401, str(exc), remote, "token")
            return
        ws = await request.accept()
        log.info("websocket_connected", remote=remote, token=auth.name, role=auth.role)
        await self._serve(WebSocketTransport(ws, None, kind="websocket", appserver_wire=False,
                                             max_message_bytes=self._max, auth=auth,
                                             remote=remote))

    async def _reject(self, request: trio_websocket.WebSocketRequest, status: int, reason: str,
                      remote: str, what: str) -> None:
        log.warning("websocket_refused", remote=remote, reason=what, detail=reason)
        with contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError):
            await request.reject(status, extra_headers=[(b"content-type", b"text/plain")],
                                 body=(reason + "\n").encode())
