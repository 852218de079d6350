"""The app-server supervisor's states as one table (docs/appserver-states.md shows it).

Pure: no I/O, no clock. :func:`transition` applies an input and refuses edges not in the table.
"""

from __future__ import annotations

import enum

from codexd.statemachine import BadTransition, apply

__all__ = ["TABLE", "BadTransition", "Input", "State", "transition"]


class State(enum.Enum):
    STOPPED = "stopped"  # not running and not meant to be (before start, after stop)
    STARTING = "starting"  # process spawned, handshake in progress
    READY = "ready"  # handshake done; requests flow
    BACKOFF = "backoff"  # exited or failed; waiting before the next start
    FAILED = "failed"  # the crash-loop breaker tripped; needs a manual restart


class Input(enum.Enum):
    START = "start"  # begin (or retry) a start
    HANDSHAKE_OK = "handshake_ok"
    EXITED = "exited"  # the process ended, the handshake failed or a health probe failed
    BACKOFF_DONE = "backoff_done"
    BREAKER_TRIPPED = "breaker_tripped"
    RESTART = "restart"  # an operator asked (clears FAILED)
    STOP = "stop"


S, I = State, Input  # noqa: E741

TABLE: dict[tuple[State, Input], State] = {
    (S.STOPPED, I.START): S.STARTING,
    (S.STARTING, I.HANDSHAKE_OK): S.READY,
    (S.STARTING, I.EXITED): S.BACKOFF,
    (S.STARTING, I.BREAKER_TRIPPED): S.FAILED,
    (S.READY, I.EXITED): S.BACKOFF,
    (S.READY, I.BREAKER_TRIPPED): S.FAILED,
    (S.READY, I.RESTART): S.STARTING,
    (S.BACKOFF, I.BACKOFF_DONE): S.STARTING,
    (S.BACKOFF, I.RESTART): S.STARTING,
    (S.FAILED, I.RESTART): S.STARTING,
    (S.STARTING, I.RESTART): S.STARTING,
    (S.STOPPED, I.RESTART): S.STARTING,
    (S.STARTING, I.STOP): S.STOPPED,
    (S.READY, I.STOP): S.STOPPED,
    (S.BACKOFF, I.STOP): S.STOPPED,
    (S.FAILED, I.STOP): S.STOPPED,
    (S.STOPPED, I.STOP): S.STOPPED,
}


def transition(state: State, event: Input) -> State:
    return apply(TABLE, state, event)
