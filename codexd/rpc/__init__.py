"""The sans-IO JSON-RPC core: framing and the :class:`RpcConnection` state.

Nothing in this package imports trio, apsw or structlog (a test reads the imports to keep it so).
"""

from codexd.rpc.connection import (
    NULL,
    BadMessage,
    ErrorObject,
    ErrorResponse,
    Event,
    Notification,
    Request,
    RequestId,
    Response,
    RpcConnection,
    encode,
    encode_notification,
)
from codexd.rpc.framing import LineFramer, OversizedLine

__all__ = [
    "NULL",
    "BadMessage",
    "ErrorObject",
    "ErrorResponse",
    "Event",
    "LineFramer",
    "Notification",
    "OversizedLine",
    "Request",
    "RequestId",
    "Response",
    "RpcConnection",
    "encode",
    "encode_notification",
]
