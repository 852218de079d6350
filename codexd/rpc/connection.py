"""A sans-IO JSON-RPC 2.0 peer: bytes in, events out; ``send_*`` return bytes.

One :class:`RpcConnection` serves both directions and both kinds of peer: codexd's clients (who
may or may not send ``"jsonrpc":"2.0"``) and ``codex app-server`` (which omits it). Params and
results stay :class:`msgspec.Raw` so a proxy can forward them without decoding them.

No I/O happens here and nothing here imports trio: the caller feeds received bytes to
:meth:`RpcConnection.receive_data` and writes the bytes the ``send_*`` methods return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

from codexd.errors import ErrorCode
from codexd.rpc.depth import MAX_DEPTH, too_deep
from codexd.rpc.framing import LineFramer, OversizedLine

RequestId = int | str

#: Params/result bytes for "nothing" (used when a response has no result value).
NULL = Raw(b"null")


class _Envelope(msgspec.Struct, omit_defaults=True):
    jsonrpc: str | UnsetType = UNSET
    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: Raw | UnsetType = UNSET
    result: Raw | UnsetType = UNSET
    error: Raw | UnsetType = UNSET
    # The app-server stamps its notifications; kept so a proxy can pass the stamp on.
    emittedAtMs: int | UnsetType = UNSET


class ErrorObject(msgspec.Struct, omit_defaults=True):
    """The ``error`` member of an error response."""

    code: int
    message: str
    data: Any = UNSET


class _OutRequest(msgspec.Struct, omit_defaults=True):
    jsonrpc: str | UnsetType
    id: int | str
    method: str
    params: Any = UNSET


class _OutNotification(msgspec.Struct, omit_defaults=True):
    jsonrpc: str | UnsetType
    method: str
    params: Any = UNSET


class _OutResult(msgspec.Struct):
    jsonrpc: str | UnsetType
    id: int | str | None
    result: Any


class _OutError(msgspec.Struct):
    jsonrpc: str | UnsetType
    id: int | str | None
    error: ErrorObject


# ---------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Request:
    """The peer asks us something and expects a response with the same ``id``."""

    id: RequestId
    method: str
    params: Raw | None


@dataclass(frozen=True, slots=True)
class Notification:
    """The peer tells us something; no response is expected."""

    method: str
    params: Raw | None
    #: The sender's top-level ``emittedAtMs`` stamp, when it sent one.
    emitted_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to one of our requests."""

    id: RequestId
    result: Raw
    method: str | None


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error answer to one of our requests (``id`` may be None for unattributable errors)."""

    id: RequestId | None
    error: ErrorObject
    method: str | None


@dataclass(frozen=True, slots=True)
class BadMessage:
    """The peer sent something that is not valid JSON-RPC.

    ``reply`` holds the error response to write back when one is due (never for a malformed
    response, which must not be answered).
    """

    code: ErrorCode
    message: str
    id: RequestId | None
    reply: bytes | None


Event = Request | Notification | Response | ErrorResponse | BadMessage

_decoder = msgspec.json.Decoder(_Envelope)
#: A UTF-8 byte order mark: tolerated (and dropped) at the start of a line.
_BOM = b"\xef\xbb\xbf"
#: A high surrogate escape not followed by a low one, or a low one on its own.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<![0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_error_decoder = msgspec.json.Decoder(ErrorObject)
_encoder = msgspec.json.Encoder()


class RpcConnection:
    """One side of a JSON-RPC conversation.

    Args:
        max_message_bytes: longest inbound line accepted; longer ones are answered with
            :attr:`ErrorCode.MESSAGE_TOO_LARGE` and discarded without being buffered whole.
        send_jsonrpc_member: whether outbound messages carry ``"jsonrpc":"2.0"`` (the app-server
            omits it; codexd's clients always get it).
    """

    __slots__ = ("_framer", "_jsonrpc", "_next_id", "_pending")

    def __init__(self, *, max_message_bytes: int, send_jsonrpc_member: bool = True) -> None:
        self._framer = LineFramer(max_message_bytes)
        self._jsonrpc: str | UnsetType = "2.0" if send_jsonrpc_member else UNSET
        self._next_id = 0
        self._pending: dict[RequestId, str] = {}

    # ------------------------------------------------------------------------------- inbound

    @property
    def max_message_bytes(self) -> int:
        return self._framer.max_line

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self._framer.max_line = value

    @property
    def pending_requests(self) -> int:
        """Our requests still waiting for a response."""
        return len(self._pending)

    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        """Feed bytes received from the peer; return the events they complete, in order."""
        events: list[Event] = []
        for line in self._framer.feed(data):
            if isinstance(line, OversizedLine):
                events.append(
                    self._bad(
                        ErrorCode.MESSAGE_TOO_LARGE,
                        f"message larger than the limit of {line.limit} bytes; it was discarded",
                        None,
                        data={"limit": line.limit},
                    )
                )
            else:
                events.append(self.decode_message(line))
        return events

    def decode_message(self, line: bytes) -> Event:
        """Classify one complete JSON text (never raises: bad input becomes a BadMessage)."""
        if line[:1] == b"\xef" and line.startswith(_BOM):
            line = line[len(_BOM):]
        # The count is the whole cost for ordinary lines; too_deep only runs past it.
        if line.count(b"[") + line.count(b"{") > MAX_DEPTH and too_deep(line):
            return self._too_deep()
        if not line.isascii():
            # msgspec skips unknown members without checking them; the whole line must be UTF-8.
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return self._bad(ErrorCode.PARSE_ERROR, f"invalid UTF-8: {exc}", None)
        try:
            env = _decoder.decode(line)
        except RecursionError:  # unbalanced and deep: the depth check leaves it to us
            return self._too_deep()
        except msgspec.ValidationError as exc:
            stripped = line.lstrip()
            if stripped.startswith(b"["):
                return self._bad(
                    ErrorCode.INVALID_REQUEST,
                    "batch requests are not supported; send one JSON object per line",
                    None,
                )
            if not stripped.startswith(b"{"):
                return self._bad(
                    ErrorCode.INVALID_REQUEST, "a message must be a JSON object", None
                )
            return self._bad(ErrorCode.INVALID_REQUEST, f"invalid message: {exc}", None)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            what = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else "invalid JSON"
            detail = str(exc)
            if _LONE_SURROGATE.search(line):
                detail = "a \\u escape holds a lone UTF-16 surrogate (not a character)"
            return self._bad(ErrorCode.PARSE_ERROR, f"{what}: {detail}", None)

        if env.jsonrpc is not UNSET and env.jsonrpc != "2.0":
            rid = env.id if isinstance(env.id, int | str) else None
            return self._bad(ErrorCode.INVALID_REQUEST, 'jsonrpc must be "2.0"', rid)
        params = None if env.params is UNSET else env.params
        if env.method is not UNSET:
            if env.result is not UNSET or env.error is not UNSET:
                rid = env.id if isinstance(env.id, int | str) else None
                return self._bad(
                    ErrorCode.INVALID_REQUEST,
                    "a message cannot have both method and result/error",
                    rid,
                )
            if env.id is UNSET:
                stamp = None if env.emittedAtMs is UNSET else env.emittedAtMs
                return Notification(env.method, params, stamp)
            if env.id is None:
                return self._bad(
                    ErrorCode.INVALID_REQUEST, "request id must be a string or an integer", None
                )
            return Request(env.id, env.method, params)

        # A response to one of our requests.
        if env.id is UNSET or (env.result is UNSET and env.error is UNSET):
            return self._bad(ErrorCode.INVALID_REQUEST, "message has no method", None)
        rid = env.id
        method = self._pending.pop(rid, None) if rid is not None else None
        if env.error is not UNSET:
            try:
                err = _error_decoder.decode(env.error)
            except msgspec.DecodeError:
                err = ErrorObject(code=ErrorCode.INTERNAL_ERROR, message="malformed error object")
            return ErrorResponse(rid, err, method)
        if rid is None or method is None:
            return BadMessage(
                ErrorCode.INVALID_REQUEST, f"response to unknown request id {rid!r}", rid, None
            )
        assert env.result is not UNSET
        return Response(rid, env.result, method)

    def _too_deep(self) -> BadMessage:
        return self._bad(ErrorCode.INVALID_REQUEST,
                         f"message nests deeper than {MAX_DEPTH} levels of arrays/objects; "
                         "it was discarded", None, data={"maxDepth": MAX_DEPTH})

    def _bad(
        self, code: ErrorCode, message: str, rid: RequestId | None, data: Any = UNSET
    ) -> BadMessage:
        return BadMessage(code, message, rid, self.send_error(rid, code, message, data))

    # ------------------------------------------------------------------------------ outbound

    def send_request(self, method: str, params: Any = UNSET) -> tuple[int, bytes]:
        """Encode a request; returns its id and the bytes to write."""
        self._next_id += 1
        rid = self._next_id
        self._pending[rid] = method
        msg = _OutRequest(jsonrpc=self._jsonrpc, id=rid, method=method, params=params)
        return rid, _encoder.encode(msg) + b"\n"

    def send_request_with_id(self, rid: RequestId, method: str, params: Any = UNSET) -> bytes:
        """Encode a request whose id the caller chose (it must not clash with ours)."""
        self._pending[rid] = method
        return _encoder.encode(
            _OutRequest(jsonrpc=self._jsonrpc, id=rid, method=method, params=params)
        ) + b"\n"

    def expect_response(self, rid: RequestId, method: str) -> None:
        """Wait for (another) response to a request we sent (its answer was refused)."""
        self._pending[rid] = method

    def forget_request(self, rid: RequestId) -> None:
        """Stop waiting for a response (it will be reported as unknown if it still comes)."""
        self._pending.pop(rid, None)

    def send_notification(self, method: str, params: Any = UNSET) -> bytes:
        return encode_notification(method, params, jsonrpc=self._jsonrpc is not UNSET)

    def send_response(self, rid: RequestId, result: Any) -> bytes:
        return _encoder.encode(_OutResult(jsonrpc=self._jsonrpc, id=rid, result=result)) + b"\n"

    def send_error(
        self, rid: RequestId | None, code: int, message: str, data: Any = UNSET
    ) -> bytes:
        if data is None:
            data = UNSET
        err = ErrorObject(code=int(code), message=message, data=data)
        return _encoder.encode(_OutError(jsonrpc=self._jsonrpc, id=rid, error=err)) + b"\n"


def encode_notification(method: str, params: Any = UNSET, *, jsonrpc: bool = True) -> bytes:
    """Encode a notification once, to queue the same bytes for many peers."""
    msg = _OutNotification(jsonrpc="2.0" if jsonrpc else UNSET, method=method, params=params)
    return _encoder.encode(msg) + b"\n"


def encode(obj: Any) -> bytes:
    """Encode any msgspec-supported value as compact JSON."""
    return _encoder.encode(obj)

