"""What a session needs from its transport: decoded messages in, encoded messages out.

A :class:`Transport` is one client connection's wire: the NDJSON Unix socket today
(:class:`codexd.transport.ndjson.NdjsonTransport`), WebSocket transports next. Everything above
it (the session state table, request ordering, the bounded output queue and its overflow rule,
notifications held until ``initialized``, replay, the forwarding fast path) lives once in
:class:`codexd.session.ClientSession`, which never sees the wire.

Messages inside codexd are always encoded the canonical way: one compact JSON object with
``"jsonrpc":"2.0"`` and a trailing newline (what :class:`codexd.rpc.RpcConnection` and
:class:`codexd.events.EventHub` produce, encoded once and shared by every client). A transport
whose wire differs converts in :meth:`Transport.send` (a WebSocket transport sends each line
as a text frame without the newline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from codexd.errors import ErrorCode
    from codexd.rpc import Event, RpcConnection
    from codexd.tokens import Auth
    from codexd.transport.peercred import PeerCred


class Transport(Protocol):
    #: Which listener it came from ("unix"), for logs and ``daemon/status``.
    @property
    def kind(self) -> str: ...

    #: Who connected, when the transport knows (SO_PEERCRED on a Unix socket).
    @property
    def peer(self) -> PeerCred | None: ...

    #: Where the client is, for the audit trail ("unix", or host:port).
    @property
    def remote(self) -> str: ...

    #: The token the client authenticated with; None on a local socket (an operator).
    @property
    def auth(self) -> Auth | None: ...

    #: Turns canonical messages into the wire's bytes as they are queued (a pure function, safe
    #: on any thread), or None when the wire carries them as they are (or ``send`` converts).
    @property
    def frame(self) -> Callable[[bytes], bytes] | None: ...

    def bind(self, output: Callable[[bytes], None]) -> None:
        """Where the transport's own frames (WebSocket pongs, close) go: the session's output,
        in order with everything else."""
        ...

    #: A non-blocking fd the session may write the wire's bytes to directly, with no task
    #: switch (the hot path), or -1 when every message must go through :meth:`send`.
    @property
    def direct_fd(self) -> int: ...

    async def receive(self, rpc: RpcConnection) -> list[Event] | None:
        """The next messages from the client, decoded with ``rpc``; None once its input ends.

        Framing errors (an oversized or malformed message) come back as ``BadMessage`` events;
        the transport never raises for what a client sent.
        """
        ...

    async def send(self, data: bytes) -> None:
        """Write one or more whole canonical messages, in order.

        Raises ``trio.BrokenResourceError`` or ``trio.ClosedResourceError`` once the client is
        gone (the session then stops).
        """
        ...

    async def refuse(self, code: ErrorCode, message: str) -> None:
        """Tell a client it is not served (limits, wrong user) and close, within a second."""
        ...

    async def aclose(self) -> None:
        """Close at once (never waits on the peer)."""
        ...
