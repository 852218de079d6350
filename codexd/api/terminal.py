"""Handlers for ``terminal/*``."""

from __future__ import annotations

import base64
import binascii

from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol import NoParams
from codexd.protocol.terminal import (
    TERMINAL_ATTACH,
    TERMINAL_CLOSE,
    TERMINAL_CREATE,
    TERMINAL_DETACH,
    TERMINAL_LIST,
    TERMINAL_RESIZE,
    TERMINAL_WRITE,
    Attached,
    AttachParams,
    CloseParams,
    Created,
    CreateParams,
    Ok,
    ResizeParams,
    TerminalList,
    TerminalRef,
    WriteParams,
)
from codexd.session import ClientSession


@handles(TERMINAL_CREATE)
async def create(session: ClientSession, p: CreateParams) -> Created:
    term = await session.ctx.terminals.create(p)
    return Created(terminal_id=term.id, pid=term.pid)


@handles(TERMINAL_ATTACH)
def attach(session: ClientSession, p: AttachParams) -> Attached:
    if not p.read_only and session.role != "operator":
        raise RpcError(ErrorCode.ROLE_REQUIRED, f"typing into a terminal needs the operator role "
                       f"(this connection's token is {session.role}); attach with readOnly",
                       {"method": "terminal/attach", "needs": "operator", "role": session.role})
    return session.ctx.terminals.attach(session, p.terminal_id, p.read_only)


@handles(TERMINAL_WRITE)
async def write(session: ClientSession, p: WriteParams) -> Ok:
    if p.encoding == "utf8":
        data = p.data.encode()
    elif p.encoding == "base64":
        try:
            data = base64.b64decode(p.data, validate=True)
        except binascii.Error:
            raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: data is not valid base64",
                           {"field": "data"}) from None
    else:
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       f'invalid params: encoding must be "utf8" or "base64", not {p.encoding!r}',
                       {"field": "encoding"})
    terminal_id = session.ctx.terminals.get(p.terminal_id).id  # an id or a name
    await session.ctx.terminals.write(session, terminal_id, data)
    return Ok(terminal_id=terminal_id, ok=True)


@handles(TERMINAL_RESIZE)
def resize(session: ClientSession, p: ResizeParams) -> Ok:
    terminal_id = session.ctx.terminals.get(p.terminal_id).id
    session.ctx.terminals.resize(session, terminal_id, p.cols, p.rows)
    return Ok(terminal_id=terminal_id, ok=True)


@handles(TERMINAL_DETACH)
def detach(session: ClientSession, p: TerminalRef) -> Ok:
    terminal_id = session.ctx.terminals.get(p.terminal_id).id
    return Ok(terminal_id=terminal_id, ok=session.ctx.terminals.detach(session, terminal_id))


@handles(TERMINAL_CLOSE)
async def close(session: ClientSession, p: CloseParams) -> Ok:
    terminal_id = session.ctx.terminals.get(p.terminal_id).id
    await session.ctx.terminals.close(terminal_id, p.signal)
    return Ok(terminal_id=terminal_id, ok=True)


@handles(TERMINAL_LIST)
def list_(session: ClientSession, _p: NoParams) -> TerminalList:
    return TerminalList(terminals=[t.info() for t in session.ctx.terminals.terminals.values()])
