"""A provider run's statuses as one table (docs/run-states.md shows it; a test keeps the two in
step). Pure. :func:`check` is applied by the store to every status change, in the transaction
that writes it, so no code path can move a run along an edge that is not here.
"""

from __future__ import annotations

import enum

from codexd.statemachine import BadTransition, apply

__all__ = ["INPUT_FOR", "TABLE", "BadTransition", "RunInput", "RunState", "check"]


class RunState(enum.Enum):
    QUEUED = "queued"  # waiting for a slot (or a retry's backoff, or a paused lane)
    RUNNING = "running"  # its CLI runs
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    INTERRUPTED = "interrupted"  # codexd stopped (or was killed) during the run


class RunInput(enum.Enum):
    START = "start"  # a slot was free
    REQUEUE = "requeue"  # a retry after a failure, or once more without a rejected session
    SUCCEED = "succeed"
    FAIL = "fail"  # the CLI failed, timed out, or the run could not even start
    CANCEL = "cancel"  # run/cancel
    INTERRUPT = "interrupt"  # codexd stopped; at the next start for runs a dead daemon left


R, I = RunState, RunInput  # noqa: E741

TABLE: dict[tuple[RunState, RunInput], RunState] = {
    (R.QUEUED, I.START): R.RUNNING,
    (R.QUEUED, I.CANCEL): R.CANCELED,
    (R.QUEUED, I.FAIL): R.FAILED,
    (R.QUEUED, I.INTERRUPT): R.INTERRUPTED,
    (R.RUNNING, I.REQUEUE): R.QUEUED,
    (R.RUNNING, I.SUCCEED): R.SUCCEEDED,
    (R.RUNNING, I.FAIL): R.FAILED,
    (R.RUNNING, I.CANCEL): R.CANCELED,
    (R.RUNNING, I.INTERRUPT): R.INTERRUPTED,
}

#: The input that leads to each status (every status is reached by exactly one input).
INPUT_FOR: dict[RunState, RunInput] = {
    R.RUNNING: I.START, R.QUEUED: I.REQUEUE, R.SUCCEEDED: I.SUCCEED, R.FAILED: I.FAIL,
    R.CANCELED: I.CANCEL, R.INTERRUPTED: I.INTERRUPT,
}


def check(current: str, new: str) -> None:
    """Raise :class:`BadTransition` unless ``current`` → ``new`` is an edge of the table."""
    target = RunState(new)
    if apply(TABLE, RunState(current), INPUT_FOR[target]) is not target:  # pragma: no cover
        raise BadTransition(f"{current} -> {new}")
