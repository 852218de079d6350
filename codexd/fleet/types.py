"""What crosses Temporal between the user's codexd, the run workflow and the workers.

Plain dataclasses (the SDK's JSON converter): the workflow sandbox imports this module, so it
imports nothing but the standard library. Nothing secret is in these: the run's stream token
is here only as its SHA-256 (the daemon keeps the token; a worker checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKFLOW = "codexd.run"
ACTIVITY = "codexd.attempt"
SIGNAL_STARTED = "attempt_started"
UPDATE_WAIT = "wait_change"
QUERY_STATE = "state"


def workflow_id(run_id: str) -> str:
    return f"codexd-{run_id}"


@dataclass
class RunInput:
    """The workflow's input: one dispatch of a run by the user's codexd."""

    run_id: str
    #: The run as the daemon has it (``msgspec.to_builtins(Run)``); its ``attempt`` is the
    #: count before this dispatch.
    run: dict[str, Any]
    task_queue: str
    #: SHA-256 (hex) of the token the daemon shows a worker to read this run's events.
    token_sha256: str
    #: Per attempt: the run's timeout (the worker enforces it; Temporal backs it up).
    timeout_seconds: float
    heartbeat_timeout_seconds: float
    max_retries: int
    retry_backoff_ms: int
    #: Attempts lost with their worker (kill -9, a dead machine, SIGTERM) that are retried on
    #: another worker, on top of max_retries.
    max_worker_losses: int
    #: Who started it (the daemon's host and state dir), for the Temporal UI.
    origin: str = ""


@dataclass
class AttemptInput:
    run_id: str
    run: dict[str, Any]
    attempt: int
    token_sha256: str
    timeout_seconds: float
    #: The session to resume (None: start afresh).
    session_id: str | None = None


@dataclass
class AttemptResult:
    """How an attempt ended (the executor's Attempt and the parts of its Outcome the daemon
    stores); its events went by the stream."""

    status: str
    attempt: int
    worker: str
    reason: str | None = None
    error: str | None = None
    exit_code: int | None = None
    retryable: bool = False
    resume_rejected: bool = False
    session_id: str | None = None
    result_text: str | None = None
    last_message: str | None = None
    usage: dict[str, Any] | None = None
    structured: Any = None
    has_structured: bool = False
    changed: list[str] = field(default_factory=list)
    todos: list[dict[str, Any]] | None = None
    failure: str | None = None
    saw_output: bool = False
    limit_message: str | None = None
    limit_reset_at: int | None = None
    limit_source: str = ""
    #: Events the attempt emitted (the daemon checks it has them all).
    events: int = 0


@dataclass
class AttemptStarted:
    """Signalled by the activity as it starts: where the daemon reads its events."""

    attempt: int
    worker: str
    endpoint: str


@dataclass
class Note:
    """Something the daemon records as one of the run's events (lost attempts, retries)."""

    attempt: int
    kind: str
    data: dict[str, Any]


@dataclass
class RunState:
    """The workflow's view, returned by the ``wait_change`` update."""

    version: int = 0
    #: queued (waiting for a worker) | running | retrying | done
    phase: str = "queued"
    attempt: int = 0
    worker: str | None = None
    endpoint: str | None = None
    notes: list[Note] = field(default_factory=list)
    result: AttemptResult | None = None
    #: canceled: the workflow was canceled (the result, if any, is the attempt's).
    canceled: bool = False
