"""Base struct types and the registry of codexd's own methods and notifications.

Every method codexd owns is declared once with :func:`method` (name, params type, result type,
one-line summary) and every notification with :func:`notification`. The daemon's dispatch table,
codexctl, the Python client and the docs test all read these registries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import msgspec

from codexd.errors import ErrorCode, RpcError

#: Integers a client may send: SQLite (and every id and time codexd stores) is 64-bit signed, so
#: a larger number is -32602 at the boundary, not an overflow deep inside.
INT64_MAX = 2**63 - 1
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=INT64_MAX)]
#: An id, revision, seq or count: 0 .. 2^63 - 1.
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


#: The regex of a string that may reach exec, a path or the environment: the OS cannot carry a
#: NUL byte there, so one is -32602 at the boundary (never a ValueError after fork).
NO_NUL = r"^[^\x00]*$"
#: An environment variable's name: not empty, no NUL, no "=".
EnvName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00=]+$")]


#: A path (a cwd, a root): absolute or not is the method's rule.
OsPath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=NO_NUL)]
#: An argv item or an environment value.
OsArg = Annotated[str, msgspec.Meta(max_length=65_536, pattern=NO_NUL)]
#: A short string that reaches argv (a model name, a tool name).
OsShort = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]


class Struct(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A wire type codexd sends (results and notification params)."""


class Params(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    forbid_unknown_fields=True,
    omit_defaults=True,
):
    """Params codexd accepts: strict, so a typo in a field name is an error, not a no-op."""


class NoParams(Params, frozen=True):
    """For methods that take no params (absent, ``null``, ``{}`` and ``[]`` are accepted)."""


P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class MethodSpec(Generic[P, R]):
    name: str
    params: type[P]
    result: type[R]
    summary: str

    def decode_params(self, raw: msgspec.Raw | None) -> P:
        """Decode and validate params; raise -32602 naming the field and the expected type."""
        return decode_params(self.params, raw)


@dataclass(frozen=True, slots=True)
class NotificationSpec(Generic[P]):
    name: str
    params: type[P]
    summary: str


METHODS: dict[str, MethodSpec[Any, Any]] = {}
NOTIFICATIONS: dict[str, NotificationSpec[Any]] = {}

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_EMPTY = (b"", b"null", b"{}", b"[]")
_AT = re.compile(r" - at `\$((?:\.[^`]*|\[[^`]*)*)`$")
_NAMED = re.compile(r"field `([^`]+)`")
_KEY_AT = re.compile(r" - at `key` in `\$((?:\.[^`]*|\[[^`]*)*)`$")
_NUL_RULE = re.compile(r"matching regex '\^\[\^\\+x00\]\*\$'")
_ENV_RULE = re.compile(r"matching regex '\^\[\^\\+x00=\]\+\$'")


def method(name: str, params: type[P], result: type[R], summary: str) -> MethodSpec[P, R]:
    if name in METHODS:
        raise ValueError(f"method {name} declared twice")
    spec: MethodSpec[P, R] = MethodSpec(name, params, result, summary)
    METHODS[name] = spec
    return spec


def notification(name: str, params: type[P], summary: str) -> NotificationSpec[P]:
    if name in NOTIFICATIONS:
        raise ValueError(f"notification {name} declared twice")
    spec = NotificationSpec(name, params, summary)
    NOTIFICATIONS[name] = spec
    return spec


def decode_params(params_type: type[P], raw: msgspec.Raw | None) -> P:
    dec = _decoders.get(params_type)
    if dec is None:
        dec = _decoders[params_type] = msgspec.json.Decoder(params_type)
    data = b"{}" if raw is None else bytes(raw)
    if params_type is NoParams or issubclass(params_type, NoParams):
        if data.strip() in _EMPTY:
            data = b"{}"
    elif data.strip() == b"null":
        data = b"{}"
    try:
        params: P = dec.decode(data)
    except msgspec.ValidationError as exc:
        raise invalid_params(str(exc)) from None
    except msgspec.DecodeError as exc:  # pragma: no cover - the envelope was valid JSON
        raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {exc}") from None
    return params


def invalid_params(detail: str) -> RpcError:
    """Build a -32602 error from a msgspec message, naming the field path in ``data.field``."""
    m = _AT.search(detail)
    field = None
    if m:
        field = m.group(1).lstrip(".")
        detail = detail[: m.start()] + (f" - at params.{field}" if field else " - at params")
    detail = _NUL_RULE.sub("without NUL bytes (\\\\u0000)", detail)
    detail = _ENV_RULE.sub("without NUL bytes or '=' (an environment variable name)", detail)
    key = _KEY_AT.search(detail)
    if key:  # "- at `key` in `$.env`": the field is the mapping itself
        detail = detail[: key.start()] + f" - in a key of params.{key.group(1).lstrip('.')}"
        return RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {detail}",
                        {"field": key.group(1).lstrip(".")})
    if detail.startswith("Expected `object`"):
        detail += " (params must be a JSON object)"
    named = _NAMED.search(detail)
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    data = {"field": field} if field else None
    return RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {detail}", data)
