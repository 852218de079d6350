"""A client session's lifecycle as a table (like the app-server's and the runs')."""

from __future__ import annotations

import enum

from codexd.statemachine import apply


class SessionState(enum.Enum):
    NEW = "new"  # connected, initialize not yet answered
    INITIALIZED = "initialized"  # initialize answered; notifications are held
    READY = "ready"  # the client sent `initialized`; notifications flow
    CLOSED = "closed"


class SessionInput(enum.Enum):
    INITIALIZE = "initialize"
    INITIALIZED = "initialized"
    CLOSE = "close"


S, I = SessionState, SessionInput  # noqa: E741
TRANSITIONS: dict[tuple[SessionState, SessionInput], SessionState] = {
    (S.NEW, I.INITIALIZE): S.INITIALIZED,
    (S.INITIALIZED, I.INITIALIZED): S.READY,
    (S.NEW, I.CLOSE): S.CLOSED,
    (S.INITIALIZED, I.CLOSE): S.CLOSED,
    (S.READY, I.CLOSE): S.CLOSED,
}


def next_state(state: SessionState, event: SessionInput) -> SessionState:
    """Apply the session table; edges not in it raise :class:`BadTransition`."""
    return apply(TRANSITIONS, state, event)
