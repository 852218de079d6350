"""codexd's protocol over WebSocket for browsers and remote frontends (TCP, TLS optional).

The handshake and inbound frames are wsproto's (the sans-IO WebSocket library trio-websocket is
built on). The I/O around it is codexd's, for the same reason as on the NDJSON socket: a
message's round trip should cost no task switch. Inbound bytes are read straight from the
socket and parsed in the session's read loop; outbound messages are framed when they are
queued (:func:`text_frames`, a pure function, so the app-server's stdout pump thread may use it)
and written with the same non-blocking direct write as on ``codexd.sock`` when nothing is
queued. trio-websocket's connection object would add a reader task, a message channel and a
writer lock per message: measured 1.65x the Unix round trip at p50 (against a target of 1.3x),
1.21x this way (docs/performance.md).

Every connection is checked before the upgrade is accepted: the ``Host`` header against
``allowed_hosts`` (DNS rebinding), ``Origin`` when present against ``allowed_origins`` (a CSRF
check, never authentication), then the credential: ``Authorization: Bearer <token>``, or for a
browser, which cannot set headers on a WebSocket, a one-time ``?ticket=`` or the web console's
session cookie. A refusal is an HTTP 403 (host, origin) or 401 (credential) with a one-line
reason, and nothing runs. A request without ``Upgrade: websocket`` is plain HTTP, served by
:mod:`codexd.transport.http` (the web console).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import structlog
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from codexd.config import WebSocketSection, is_loopback
from codexd.errors import CodexdError, ErrorCode
from codexd.rpc import RpcConnection
from codexd.tokens import AuthRefused
from codexd.transport.http import MAX_HEAD_BYTES, HttpSite, is_upgrade, session_cookie
from codexd.transport.ndjson import still_open
from codexd.transport.websocket import UPGRADE_SECONDS, compact

if TYPE_CHECKING:
    from codexd.rpc import Event
    from codexd.tokens import Auth
    from codexd.transport.base import Transport

log = structlog.get_logger("codexd.transport")

_READ = 65536
_FIN_TEXT = 0x81
#: Ports tried after the configured one when it is taken (another user's daemon, a test).
PORT_TRIES = 20

Serve = Callable[["Transport"], Awaitable[None]]
Authenticate = Callable[[str | None], Awaitable["Auth"]]


def text_frames(data: bytes) -> bytes:
    """Canonical lines → unmasked final text frames (RFC 6455 §5.2), one per line.

    Stateless and thread-safe: what a server sends needs no mask and, whole, no fragment
    state, so this is the frame header and the payload, nothing else.
    """
    if data.count(b"\n") == 1:  # the common case: one message
        return _frame(data[:-1])
    return b"".join(_frame(line) for line in data.split(b"\n") if line)


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 65536:
        return bytes((_FIN_TEXT, 126)) + n.to_bytes(2, "big") + payload
    return bytes((_FIN_TEXT, 127)) + n.to_bytes(8, "big") + payload


class FrontendTransport:
    """One frontend connection after its upgrade was accepted."""

    kind = "websocket"
    peer = None

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, *, auth: Auth, remote: str,
                 max_message_bytes: int) -> None:
        self.stream = stream
        self.ws = ws
        self.auth = auth
        self.remote = remote
        self.frame = text_frames
        self._max = max_message_bytes
        # Direct reads and writes on a plain socket; TLS goes through the stream.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._text: list[str] = []
        self._size = 0
        self._oversized = False
        self._output: Callable[[bytes], None] | None = None
        self._closed = False

    @property
    def direct_fd(self) -> int:
        return self._fd

    def bind(self, output: Callable[[bytes], None]) -> None:
        """Where control frames (pong, close) go: the session's output, in order."""
        self._output = output

    def _control(self, data: bytes) -> None:
        if self._output is not None and data:
            self._output(data)

    async def _read(self) -> bytes:
        fd = self._fd
        if fd < 0:
            try:
                return bytes(await self.stream.receive_some(_READ))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        while True:
            if not still_open(self.stream, fd):
                return b""  # closed meanwhile: the number may be another fd's by now
            try:
                return os.read(fd, _READ)
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError:
                    return b""
            except OSError:
                return b""

    async def receive(self, rpc: RpcConnection) -> list[Event] | None:
        out: list[Event] = []
        while True:
            try:
                events = list(self.ws.events())
            except RemoteProtocolError as exc:
                log.info("websocket_protocol_error", remote=self.remote, error=str(exc))
                return None
            for ev in events:
                if isinstance(ev, TextMessage):
                    self._text_part(ev, rpc, out)
                elif isinstance(ev, BytesMessage):
                    if ev.message_finished:
                        out.append(rpc.decode_message(b"binary frame"))  # a parse error, said
                elif isinstance(ev, Ping):
                    self._control(self.ws.send(ev.response()))
                elif isinstance(ev, CloseConnection):
                    with contextlib.suppress(LocalProtocolError):
                        self._control(self.ws.send(ev.response()))
                    self._closed = True
                    return out or None
            if out:
                return out
            if self._closed:
                return None
            data = await self._read()
            if not data:
                return None
            self.ws.receive_data(data)

    def _text_part(self, ev: TextMessage, rpc: RpcConnection, out: list[Event]) -> None:
        if not self._oversized:
            self._size += len(ev.data)
            if self._size > self._max:
                self._oversized = True
                self._text.clear()
            else:
                self._text.append(ev.data)
        if not ev.message_finished:
            return
        if self._oversized:
            out.extend(rpc.receive_data(b"x" * (self._max + 1)))  # reported as too large
        else:
            out.append(rpc.decode_message(compact("".join(self._text).encode())))
        self._text.clear()
        self._size = 0
        self._oversized = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)  # already framed (self.frame) when it was queued

    async def refuse(self, code: ErrorCode, message: str) -> None:
        data = RpcConnection(max_message_bytes=1024).send_error(None, code, message)
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError,
                                                        trio.ClosedResourceError):
            await self.stream.send_all(text_frames(data) + self._close_frame(1008))
        await self.aclose()

    def _close_frame(self, code: int) -> bytes:
        with contextlib.suppress(LocalProtocolError):
            return self.ws.send(CloseConnection(code=code))
        return b""

    async def aclose(self) -> None:
        self._fd = -1
        with trio.CancelScope(shield=True):
            if not self._closed:
                with trio.move_on_after(0.5), contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                    await self.stream.send_all(self._close_frame(1001))
            await trio.aclose_forcefully(self.stream)


# ----------------------------------------------------------------------------- listening


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → (host, port). Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"websocket.listen must be host:port, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _read_head(stream: trio.abc.Stream) -> bytes:
    """The request line and headers (and whatever came with them); b"" if the peer went away
    or sent more than MAX_HEAD_BYTES without finishing them."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            return b""
        chunk = bytes(await stream.receive_some(_READ))
        if not chunk:
            return b""
        data += chunk
    return data


def _address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class FrontendListener:
    """Binds ``websocket.listen`` and serves each accepted, checked connection."""

    def __init__(self, *, config: Callable[[], WebSocketSection], serve: Serve,
                 authenticate: Authenticate, redeem: Callable[[str], Auth],
                 pair: Callable[[str], Auth], max_message_bytes: int,
                 site: HttpSite | None = None,
                 check_session: Callable[[str], Auth] | None = None) -> None:
        self._config = config
        self._site = site
        self._check_session = check_session
        self._serve = serve
        self._authenticate = authenticate
        self._redeem = redeem
        self._pair = pair
        self._max = max_message_bytes
        self._listeners: list[trio.SocketListener] = []
        self.host = ""
        self.port = 0
        self.tls = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}/"

    async def bind(self, passed: Sequence[socket.socket] = ()) -> None:
        """Bind ``websocket.listen`` (or the next free port), or serve the sockets a service
        manager ``passed`` (socket activation). Raises CodexdError."""
        cfg = self._config()
        self.tls = bool(cfg.tls_cert or cfg.tls_key)
        if passed:
            self._listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s))
                               for s in passed]
            self.host, self.port = passed[0].getsockname()[:2]
            self._check_exposure(self.host, f"{self.host}:{self.port} (passed by systemd)")
            return
        try:
            host, port = split_listen(cfg.listen)
        except ValueError as exc:
            raise CodexdError(str(exc)) from None
        self._check_exposure(host, cfg.listen)
        last: OSError | None = None
        for candidate in [port] if port == 0 else range(port, port + PORT_TRIES):
            try:
                self._listeners = await trio.open_tcp_listeners(candidate, host=host)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise CodexdError(f"cannot listen on {host}:{candidate}: {exc.strerror}; "
                                      "set websocket.listen to an address of this machine") \
                        from None
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

    def _check_exposure(self, host: str, listen: str) -> None:
        """A non-loopback address needs TLS (or an explicit, logged opt-out)."""
        if is_loopback(host) or self.tls:
            return
        if not self._config().allow_insecure_remote:
            raise CodexdError(
                f"websocket.listen = {listen!r} is not a loopback address and there is "
                "no TLS: set websocket.tls_cert and tls_key, or listen on 127.0.0.1 (set "
                "websocket.allow_insecure_remote = true only on a network you trust)")
        log.warning("websocket_insecure_remote", listen=listen,
                    hint="tokens cross the network in clear; configure TLS")

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

    async def _connection(self, tcp: trio.SocketStream, context: ssl.SSLContext | None) -> None:
        """TLS (when configured) and the request head within UPGRADE_SECONDS; plain HTTP goes
        to the site (the web console), an upgrade through the checks."""
        stream: trio.abc.Stream = tcp
        remote = _address(tcp)
        ws = WSConnection(ConnectionType.SERVER)
        request: Request | None = None
        try:
            head = b""
            with trio.move_on_after(UPGRADE_SECONDS):
                if context is not None:
                    stream = trio.SSLStream(tcp, context, server_side=True,
                                            https_compatible=True)
                    await stream.do_handshake()
                head = await _read_head(stream)
            if not head:
                return
            if not is_upgrade(head):
                if self._site is not None:
                    with trio.move_on_after(UPGRADE_SECONDS):
                        await self._site.serve(stream, head, remote=remote, tls=self.tls,
                                               host_allowed=self._allowed_hosts().__contains__)
                return
            ws.receive_data(head)
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
            if request is None:
                return
            auth = await self._check(stream, ws, request, remote)
            if auth is None:
                return
            await stream.send_all(ws.send(AcceptConnection()))
        except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError,
                LocalProtocolError) as exc:
            log.info("websocket_upgrade_failed", remote=remote, error=str(exc))
            return
        finally:
            if request is None or ws.state.name != "OPEN":
                await trio.aclose_forcefully(stream)
        log.info("websocket_connected", remote=remote, token=auth.name, role=auth.role)
        await self._serve(FrontendTransport(stream, ws, auth=auth, remote=remote,
                                            max_message_bytes=self._max))

    async def _check(self, stream: trio.abc.Stream, ws: WSConnection, request: Request,
                     remote: str) -> Auth | None:
        headers = {k.lower(): v.decode("latin-1") for k, v in request.extra_headers}
        host_header = request.host
        try:  # host, host:port, [v6]:port
            hostname = urllib.parse.urlsplit("//" + host_header).hostname or ""
        except ValueError:
            hostname = ""
        if hostname not in self._allowed_hosts():
            await self._reject(stream, ws, 403, f"host {host_header!r} is not allowed "
                               "(websocket.allowed_hosts)", remote, "host")
            return None
        origin = headers.get(b"origin")
        if origin is not None and origin not in self._allowed_origins():
            await self._reject(stream, ws, 403, f"origin {origin!r} is not allowed "
                               "(websocket.allowed_origins)", remote, "origin")
            return None
        authorization = headers.get(b"authorization", "")
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.target).query)
        try:
            if token is None and query.get("ticket"):
                return self._redeem(query["ticket"][0])  # a browser: a one-time ticket
            if token is None and query.get("pair"):
                return self._pair(query["pair"][0])  # a device claiming its own token
            cookie = session_cookie(headers.get(b"cookie", ""))
            if token is None and cookie and self._check_session is not None:
                return self._check_session(cookie)  # the web console, logged in by /login
            return await self._authenticate(token)
        except AuthRefused as exc:
            await self._reject(stream, ws, 401, str(exc), remote, "token")
            return None

    async def _reject(self, stream: trio.abc.Stream, ws: WSConnection, status: int, reason: str,
                      remote: str, what: str) -> None:
        log.warning("websocket_refused", remote=remote, reason=what, detail=reason)
        body = (reason + "\n").encode()
        data = ws.send(RejectConnection(status_code=status, has_body=True, headers=[
            (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]))
        data += ws.send(RejectData(data=body))
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError,
                                                        trio.ClosedResourceError):
            await stream.send_all(data)
