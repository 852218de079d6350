"""The Python client for codexd: the documented way for Python frontends to connect.

Two flavours over the same sans-IO core:

* :class:`Client` — blocking, for scripts and codexctl::

      with Client.connect() as c:
          status = c.request(DAEMON_STATUS)          # a typed DaemonStatus
          print(status.version, status.clients_connected)

* :func:`open_client` — trio, for async frontends; notifications arrive on an async iterator::

      async with open_client() as c:
          await c.request(ATOM_SET, AtomSetParams(key="ui.theme", value="dark"))
          async for note in c.notifications():
              ...

``request(SPEC, Params(...))`` calls one of codexd's own methods by its spec from
:mod:`codexd.protocol` and returns the spec's result struct; ``call(name, params)`` sends any
method (the app-server's too) and returns decoded JSON. Both perform
``initialize``/``initialized`` on connect. Errors the daemon answers raise
:class:`RpcError` (``.code``, ``.message``, ``.data``); a daemon that cannot be reached raises
:class:`DaemonUnreachable`; a connection that drops raises :class:`ConnectionClosed`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import trio

from codexd import __version__
from codexd.errors import CodexdError, RpcError
from codexd.paths import default_socket
from codexd.protocol import MethodSpec
from codexd.protocol.daemon import INITIALIZE, ClientCapabilities, ClientInfo, InitializeParams
from codexd.rpc import BadMessage, ErrorResponse, Notification, Request, Response, RpcConnection

__all__ = [
    "AsyncClient",
    "Client",
    "ConnectionClosed",
    "DaemonUnreachable",
    "ReceivedNotification",
    "ReceivedRequest",
    "RpcError",
    "open_client",
]

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R")
M = TypeVar("M", "ReceivedNotification", "ReceivedRequest")

#: Responses can be large (atom lists); the client trusts the daemon more than the reverse.
_MAX_INBOUND = 1024 * 1024 * 1024


class DaemonUnreachable(CodexdError):
    """Nothing listens on the socket (the message says how to start the daemon)."""


class ConnectionClosed(CodexdError):
    """The daemon closed the connection."""


@dataclass(frozen=True, slots=True)
class ReceivedNotification:
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A request from the daemon (a server request such as an approval); answer it by ``id``."""

    id: int | str
    method: str
    params: Any


def _unreachable(path: Path, exc: OSError) -> DaemonUnreachable:
    why = {
        errno.ENOENT: "no socket there",
        errno.ECONNREFUSED: "nothing is listening",
        errno.EACCES: "permission denied",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return DaemonUnreachable(
        f"cannot connect to codexd at {path} ({why}); start it with `codexd run` "
        "or `systemctl --user start codexd`"
    )


def _params(params: Any) -> Any:
    return msgspec.UNSET if params is None else params


def _init_params(name: str, version: str, server_requests: bool = False) -> InitializeParams:
    return InitializeParams(client_info=ClientInfo(name=name, version=version),
                            capabilities=ClientCapabilities(server_requests=True)
                            if server_requests else None)


def _decode(raw: msgspec.Raw, result_type: Any) -> Any:
    return msgspec.json.decode(raw, type=result_type) if result_type else msgspec.json.decode(raw)


def _raise(err: ErrorResponse) -> RpcError:
    data = err.error.data if err.error.data is not msgspec.UNSET else None
    return RpcError(err.error.code, err.error.message, data)


class Client:
    """A blocking client. Not thread-safe: use one per thread."""

    def __init__(self, sock: socket.socket, *, timeout: float | None = 30.0) -> None:
        self._sock = sock
        self._sock.settimeout(timeout)
        self._rpc = RpcConnection(max_message_bytes=_MAX_INBOUND)
        self._results: dict[int | str, Response | ErrorResponse] = {}
        self._inbox: deque[ReceivedNotification | ReceivedRequest] = deque()
        self.server_info: dict[str, Any] = {}

    @classmethod
    def connect(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        client_name: str = "codexd-python",
        client_version: str = __version__,
        timeout: float | None = 30.0,
        initialize: bool = True,
        server_requests: bool = False,
    ) -> Client:
        """Connect (and by default initialize). Raises :class:`DaemonUnreachable`.

        ``server_requests=True`` declares that this client answers approvals and other server
        requests (they then arrive through :meth:`next_request` / :meth:`next_message`).
        """
        sock_path = Path(path) if path else default_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(sock_path))
        except OSError as exc:
            sock.close()
            raise _unreachable(sock_path, exc) from None
        client = cls(sock, timeout=timeout)
        if initialize:
            try:
                client.server_info = client.call(
                    INITIALIZE.name, _init_params(client_name, client_version, server_requests))
                client.notify("initialized")
            except BaseException:
                client.close()
                raise
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for tests and tools that speak the wire by hand)."""
        self._sock.sendall(data)

    def call(self, method: str, params: Any = None, *, result_type: Any = None) -> Any:
        """Send a request and wait for its response; notifications that arrive meanwhile are
        kept for :meth:`next_notification`."""
        rid, data = self._rpc.send_request(method, _params(params))
        self._sock.sendall(data)
        while rid not in self._results:
            self._pump()
        resp = self._results.pop(rid)
        if isinstance(resp, ErrorResponse):
            raise _raise(resp)
        return _decode(resp.result, result_type)

    def request(self, spec: MethodSpec[P, R], params: P | None = None) -> R:
        """Call one of codexd's own methods: typed params in, the spec's result type out."""
        result: R = self.call(spec.name, params, result_type=spec.result)
        return result

    def notify(self, method: str, params: Any = None) -> None:
        self._sock.sendall(self._rpc.send_notification(method, _params(params)))

    def next_message(self, timeout: float | None = None) -> ReceivedNotification | ReceivedRequest:
        """The next notification or server request, in arrival order."""
        self._wait_for(lambda: bool(self._inbox), timeout)
        return self._inbox.popleft()

    def next_notification(self, timeout: float | None = None) -> ReceivedNotification:
        """The next notification (requests stay queued); ``TimeoutError`` after ``timeout``."""
        return self._take(ReceivedNotification, timeout)

    def next_request(self, timeout: float | None = None) -> ReceivedRequest:
        """The next request from the daemon (approvals need ``server_requests=True``)."""
        return self._take(ReceivedRequest, timeout)

    def _take(self, kind: type[M], timeout: float | None) -> M:
        def find() -> bool:
            return any(isinstance(m, kind) for m in self._inbox)

        self._wait_for(find, timeout)
        for i, m in enumerate(self._inbox):
            if isinstance(m, kind):
                del self._inbox[i]
                return m
        raise AssertionError("unreachable")

    def respond(self, rid: int | str, result: Any) -> None:
        """Answer a request from :meth:`next_request`."""
        self._sock.sendall(self._rpc.send_response(rid, result))

    def _wait_for(self, ready: Any, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        old = self._sock.gettimeout()
        if deadline is None:
            self._sock.settimeout(None)  # wait as long as it takes
        try:
            while not ready():
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("nothing arrived in time")
                    self._sock.settimeout(left)
                self._pump()
        finally:
            self._sock.settimeout(old)

    def _pump(self) -> None:
        try:
            data = self._sock.recv(262144)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectionClosed(f"connection to codexd lost: {exc}") from None
        if not data:
            raise ConnectionClosed("codexd closed the connection")
        for ev in self._rpc.receive_data(data):
            if isinstance(ev, Response | ErrorResponse) and ev.id is not None:
                self._results[ev.id] = ev
            elif isinstance(ev, ErrorResponse):
                raise _raise(ev)  # an error the daemon could not attribute to a request
            elif isinstance(ev, Notification):
                params = msgspec.json.decode(ev.params) if ev.params is not None else None
                self._inbox.append(ReceivedNotification(ev.method, params))
            elif isinstance(ev, Request):
                params = msgspec.json.decode(ev.params) if ev.params is not None else None
                self._inbox.append(ReceivedRequest(ev.id, ev.method, params))
            elif isinstance(ev, BadMessage):
                pass


class AsyncClient:
    """A trio client; create it with :func:`open_client`. Calls may be made concurrently."""

    def __init__(self, stream: trio.SocketStream, *, notification_buffer: int) -> None:
        self._stream = stream
        self._rpc = RpcConnection(max_message_bytes=_MAX_INBOUND)
        self._send_lock = trio.StrictFIFOLock()
        self._waiting: dict[int | str, trio.Event] = {}
        self._results: dict[int | str, Response | ErrorResponse] = {}
        self._note_send, self._note_recv = trio.open_memory_channel[ReceivedNotification](
            notification_buffer
        )
        self._closed: BaseException | None = None
        self.dropped_notifications = 0
        self.server_info: dict[str, Any] = {}

    async def call(self, method: str, params: Any = None, *, result_type: Any = None) -> Any:
        rid, data = self._rpc.send_request(method, _params(params))
        done = self._waiting[rid] = trio.Event()
        try:
            await self._send(data)
            await done.wait()
        finally:
            self._waiting.pop(rid, None)
        if rid not in self._results:
            raise ConnectionClosed(str(self._closed or "connection closed"))
        resp = self._results.pop(rid)
        if isinstance(resp, ErrorResponse):
            raise _raise(resp)
        return _decode(resp.result, result_type)

    async def request(self, spec: MethodSpec[P, R], params: P | None = None) -> R:
        """Call one of codexd's own methods: typed params in, the spec's result type out."""
        result: R = await self.call(spec.name, params, result_type=spec.result)
        return result

    async def notify(self, method: str, params: Any = None) -> None:
        await self._send(self._rpc.send_notification(method, _params(params)))

    def notifications(self) -> trio.MemoryReceiveChannel[ReceivedNotification]:
        """Notifications in arrival order (``async for``), ending when the connection closes.

        A plain channel rather than an async generator, so breaking out of the loop is safe.
        """
        return self._note_recv

    async def _send(self, data: bytes) -> None:
        if self._closed is not None:
            raise ConnectionClosed(str(self._closed))
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionClosed(f"connection to codexd lost: {exc}") from None

    async def _reader(self) -> None:
        try:
            while data := await self._stream.receive_some(262144):
                for ev in self._rpc.receive_data(data):
                    if isinstance(ev, Response | ErrorResponse) and ev.id is not None:
                        self._results[ev.id] = ev
                        if (waiter := self._waiting.get(ev.id)) is not None:
                            waiter.set()
                    elif isinstance(ev, Notification):
                        params = msgspec.json.decode(ev.params) if ev.params is not None else None
                        try:
                            self._note_send.send_nowait(ReceivedNotification(ev.method, params))
                        except trio.WouldBlock:
                            self.dropped_notifications += 1
            self._closed = ConnectionClosed("codexd closed the connection")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._closed = exc
        finally:
            self._note_send.close()
            for waiter in self._waiting.values():
                waiter.set()


@contextlib.asynccontextmanager
async def open_client(
    path: str | os.PathLike[str] | None = None,
    *,
    client_name: str = "codexd-python",
    client_version: str = __version__,
    initialize: bool = True,
    notification_buffer: int = 10_000,
) -> AsyncIterator[AsyncClient]:
    """Connect, initialize, and yield an :class:`AsyncClient`; closes it on exit."""
    sock_path = Path(path) if path else default_socket()
    try:
        stream = await trio.open_unix_socket(str(sock_path))
    except OSError as exc:
        raise _unreachable(sock_path, exc) from None
    client = AsyncClient(stream, notification_buffer=notification_buffer)
    try:
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(client._reader)
            if initialize:
                client.server_info = await client.call(
                    INITIALIZE.name, _init_params(client_name, client_version))
                await client.notify("initialized")
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader task never fails, so a group holds the caller's own exception: give it back
        # as it was raised rather than wrapped.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


