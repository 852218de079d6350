"""Handlers for ``session/*``: interactive provider sessions (:mod:`codexd.runs.sessions`)."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.api.runs import _confine, _who, public
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.runs import Run
from codexd.protocol.sessions import (
    SESSION_END,
    SESSION_INPUT,
    SESSION_RESUME,
    SESSION_START,
    SessionEndParams,
    SessionInputAccepted,
    SessionInputParams,
    SessionResumeParams,
    SessionStarted,
    SessionStartParams,
)
from codexd.runs.sessions import InteractiveSessions
from codexd.session import ClientSession


def _svc(session: ClientSession) -> InteractiveSessions:
    svc = session.ctx.runs.interactive
    if not isinstance(svc, InteractiveSessions):  # pragma: no cover - wired by the daemon
        raise RpcError(ErrorCode.INTERNAL_ERROR, "interactive sessions are not available")
    return svc


@handles(SESSION_START)
async def start(session: ClientSession, p: SessionStartParams) -> SessionStarted:
    return await _svc(session).start(p, session=session, confine=_confine(session))


@handles(SESSION_RESUME)
async def resume(session: ClientSession, p: SessionResumeParams) -> SessionStarted:
    return await _svc(session).resume(p, session=session, confine=_confine(session))


@handles(SESSION_INPUT)
async def input_(session: ClientSession, p: SessionInputParams) -> SessionInputAccepted:
    sent = await _svc(session).input(p, viewer=session, by=_who(session))
    return SessionInputAccepted(run_id=p.run_id, bytes=sent)


@handles(SESSION_END, ordered=False)
async def end(session: ClientSession, p: SessionEndParams) -> Run:
    return public(await _svc(session).end(p.run_id, _who(session), sig=p.signal))
