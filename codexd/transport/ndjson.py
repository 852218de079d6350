"""Newline-delimited JSON-RPC over a stream socket: the transport of ``codexd.sock``.

The wire is the canonical form itself (one JSON object per line), so :meth:`NdjsonTransport.send`
writes the session's bytes unchanged and :attr:`NdjsonTransport.direct_fd` lets the session
write them straight to the socket when nothing is queued. Input is read from the socket's fd
directly too, without trio's stream and socket layers: less Python between the wake-up and the
request, which runs from cold caches after the client was quiet.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import trio

from codexd.rpc import RpcConnection

if TYPE_CHECKING:
    from codexd.errors import ErrorCode
    from codexd.rpc import Event
    from codexd.transport.peercred import PeerCred

_READ = 65536


class NdjsonTransport:
    """One client on a stream socket (a Unix socket in practice; see :mod:`codexd.transport`)."""

    kind = "unix"
    auth = None  # a local client of the same user: an operator
    remote = "unix"
    frame = None  # the wire is the canonical form

    def bind(self, output: object) -> None:
        """Nothing of its own to send."""

    def __init__(self, stream: trio.abc.Stream, peer: PeerCred | None) -> None:
        self.stream = stream
        self.peer = peer
        self._fd = (stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1)
        self._waited = True

    @property
    def direct_fd(self) -> int:
        return self._fd

    async def receive(self, rpc: RpcConnection) -> list[Event] | None:
        fd = self._fd
        data: bytes | bytearray
        while True:
            if fd < 0:
                try:
                    data = await self.stream.receive_some(_READ)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
                break
            if not self._waited:  # a client that keeps us busy still lets others run
                await trio.lowlevel.checkpoint()
            if not still_open(self.stream, fd):
                # Closed by another task meanwhile: its number may already be a new pipe's
                # or PTY's, which must never be read (or waited on) from here.
                return None
            try:
                data = os.read(fd, _READ)  # the socket is non-blocking
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError:
                    return None
                self._waited = True
                continue
            except OSError:
                return None
            self._waited = False
            break
        if not data:
            return None
        return rpc.receive_data(data)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def refuse(self, code: ErrorCode, message: str) -> None:
        data = RpcConnection(max_message_bytes=1024).send_error(None, code, message)
        with trio.move_on_after(1):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.send_all(data)
        await self.aclose()

    async def aclose(self) -> None:
        self._fd = -1
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


def still_open(stream: trio.abc.Stream, fd: int) -> bool:
    """The stream's socket is still ``fd`` (a closed trio socket's fileno is -1)."""
    return isinstance(stream, trio.SocketStream) and stream.socket.fileno() == fd

