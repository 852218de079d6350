"""``terminal/*``: PTY sessions that outlive their clients."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import (
    EnvName,
    NoParams,
    OsArg,
    OsPath,
    Params,
    Struct,
    method,
    notification,
)

TerminalId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Size = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class CreateParams(Params, frozen=True):
    cwd: OsPath
    cols: Size
    rows: Size
    command: Annotated[list[OsArg],
                       msgspec.Meta(min_length=1, max_length=1000)] | None = None
    env: dict[EnvName, OsArg] | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class Created(Struct, frozen=True):
    terminal_id: str
    pid: int


class TerminalRef(Params, frozen=True):
    terminal_id: TerminalId


class AttachParams(Params, frozen=True):
    terminal_id: TerminalId
    read_only: bool = False


class ExitInfo(Struct, frozen=True, omit_defaults=False):
    exit_code: int | None
    signal: int | None


class Attached(Struct, frozen=True, omit_defaults=False):
    terminal_id: str
    #: The scrollback; on the wire standard base64 (msgspec encodes ``bytes`` that way).
    snapshot: bytes
    seq: int
    cols: int
    rows: int
    read_only: bool
    exited: ExitInfo | None


class WriteParams(Params, frozen=True):
    terminal_id: TerminalId
    data: Annotated[str, msgspec.Meta(max_length=4 * 1024 * 1024)]
    #: "utf8" (default: data is text) or "base64" (data is base64 of raw bytes).
    encoding: str = "utf8"


class ResizeParams(Params, frozen=True):
    terminal_id: TerminalId
    cols: Size
    rows: Size


class CloseParams(Params, frozen=True):
    terminal_id: TerminalId
    #: First signal to send, e.g. "SIGHUP" (default), "SIGTERM", "SIGINT", "SIGKILL".
    signal: str | None = None


class Ok(Struct, frozen=True, omit_defaults=False):
    terminal_id: str
    ok: bool


class TerminalInfo(Struct, frozen=True, omit_defaults=False):
    terminal_id: str
    name: str | None
    pid: int
    command: list[str]
    cwd: str
    cols: int
    rows: int
    created_at: str
    attached: int
    output_bytes: int
    exited: ExitInfo | None


class TerminalList(Struct, frozen=True):
    terminals: list[TerminalInfo]


class Output(Struct, frozen=True):
    terminal_id: str
    seq: int
    #: The raw output; on the wire standard base64.
    data: bytes


class Resync(Struct, frozen=True):
    terminal_id: str
    snapshot: bytes  # standard base64 on the wire
    seq: int


class Exited(Struct, frozen=True, omit_defaults=False):
    terminal_id: str
    exit_code: int | None
    signal: int | None
    #: Why codexd ended the terminal, when it was not the program's own exit (a fault).
    reason: str | None = None


TERMINAL_CREATE = method("terminal/create", CreateParams, Created,
                         "Start a program (default: the login shell) on a new PTY.")
TERMINAL_ATTACH = method("terminal/attach", AttachParams, Attached,
                         "Receive a terminal's output: a snapshot, then a live stream.")
TERMINAL_WRITE = method("terminal/write", WriteParams, Ok, "Type into a terminal.")
TERMINAL_RESIZE = method("terminal/resize", ResizeParams, Ok, "Change a terminal's size.")
TERMINAL_DETACH = method("terminal/detach", TerminalRef, Ok,
                         "Stop receiving a terminal's output; it keeps running.")
TERMINAL_CLOSE = method("terminal/close", CloseParams, Ok,
                        "Stop a terminal's processes (signal, grace, SIGKILL) and forget it.")
TERMINAL_LIST = method("terminal/list", NoParams, TerminalList, "The terminals codexd hosts.")
TERMINAL_OUTPUT = notification("terminal/output", Output,
                               "Output of an attached terminal (base64), at byte offset seq.")
TERMINAL_RESYNC = notification("terminal/resync", Resync,
                               "A client that fell behind gets a fresh snapshot instead.")
TERMINAL_EXITED = notification("terminal/exited", Exited,
                               "An attached terminal's program exited.")
