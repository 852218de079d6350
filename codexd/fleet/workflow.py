"""The run workflow: one Temporal workflow per dispatch of a provider run.

It holds the run's lifecycle once the user's codexd has picked it from its queue (priorities
and per-provider limits stay the daemon's): waiting for a worker, running an attempt (the
``codexd.attempt`` activity, on any worker of the task queue), retrying with the run's backoff,
retrying at once on another worker when the attempt's worker is lost (no heartbeat within the
heartbeat timeout: kill -9, a dead machine; or handed back on SIGTERM), and cancel.

The daemon follows it through the ``wait_change`` update (it returns when the state moves past
the version the daemon has seen); the activity tells it where an attempt runs with the
``attempt_started`` signal. A run's events never pass through here (history stays small): the
daemon reads them from the worker (see docs/design.md, "Running on a fleet").
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
    TimeoutType,
)

with workflow.unsafe.imports_passed_through():
    from codexd.fleet.types import (
        ACTIVITY,
        QUERY_STATE,
        SIGNAL_STARTED,
        UPDATE_WAIT,
        WORKFLOW,
        AttemptInput,
        AttemptResult,
        AttemptStarted,
        Note,
        RunInput,
        RunState,
    )

#: How the worker reports an attempt it handed back on SIGTERM.
HANDED_BACK = "WorkerShutdown"


@workflow.defn(name=WORKFLOW)
class RunWorkflow:
    def __init__(self) -> None:
        self.state = RunState()

    def _change(self, **fields: object) -> None:
        for name, value in fields.items():
            setattr(self.state, name, value)
        self.state.version += 1

    def _note(self, at_attempt: int, kind: str, **data: object) -> None:
        self.state.notes.append(Note(attempt=at_attempt, kind=kind, data=dict(data)))

    @workflow.run
    async def run(self, inp: RunInput) -> AttemptResult:
        attempt = int(inp.run.get("attempt", 0))
        session = inp.run.get("session_id")
        retries = losses = 0
        try:
            while True:
                attempt += 1
                self._change(phase="queued", attempt=attempt, worker=None, endpoint=None)
                try:
                    res: AttemptResult = await workflow.execute_activity(
                        ACTIVITY, AttemptInput(
                            run_id=inp.run_id, run=inp.run, attempt=attempt,
                            token_sha256=inp.token_sha256, timeout_seconds=inp.timeout_seconds,
                            session_id=session),
                        result_type=AttemptResult,
                        task_queue=inp.task_queue,
                        # The worker stops the attempt at timeout_seconds; this is the backstop.
                        start_to_close_timeout=timedelta(seconds=inp.timeout_seconds + 60),
                        heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_seconds),
                        retry_policy=RetryPolicy(maximum_attempts=1),
                        cancellation_type=workflow.ActivityCancellationType
                        .WAIT_CANCELLATION_COMPLETED)
                except ActivityError as err:
                    lost = _lost(err)
                    if lost is None:
                        if isinstance(err.cause, CancelledError):
                            raise asyncio.CancelledError() from err
                        return self._finish(_failed(err, attempt, self.state.worker))
                    losses += 1
                    again = losses <= inp.max_worker_losses
                    self._note(attempt, "run.attempt_lost", worker=self.state.worker,
                               message=lost, retrying=again)
                    if not again:
                        return self._finish(AttemptResult(
                            status="failed", attempt=attempt, worker=self.state.worker or "",
                            reason="workerLost", error=f"{lost}; {losses} attempts were lost "
                            f"with their workers (runs.executor.max_worker_losses = "
                            f"{inp.max_worker_losses})"))
                    continue
                if res.session_id:
                    session = res.session_id
                if res.status == "failed" and res.resume_rejected and session:
                    session = None
                    self._note(attempt, "run.warning", message=f"the CLI rejected session "
                               f"{inp.run.get('session_id')}; retrying once without resume")
                    continue
                if res.status == "failed" and res.retryable and retries < inp.max_retries:
                    retries += 1
                    delay = min(inp.retry_backoff_ms * 2 ** (retries - 1), 600_000)
                    self._note(attempt, "run.warning", attempt=attempt, retryInMs=delay,
                               message=f"attempt {attempt} failed ({res.error}); retrying in "
                                       f"{delay} ms")
                    self._change(phase="retrying")
                    await workflow.sleep(timedelta(milliseconds=delay))
                    continue
                return self._finish(res)
        except asyncio.CancelledError:
            self._change(phase="done", canceled=True)
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise

    def _finish(self, res: AttemptResult) -> AttemptResult:
        self._change(phase="done", result=res)
        return res

    @workflow.signal(name=SIGNAL_STARTED)
    def attempt_started(self, info: AttemptStarted) -> None:
        if info.attempt == self.state.attempt and self.state.phase == "queued":
            self._change(phase="running", worker=info.worker, endpoint=info.endpoint)

    @workflow.update(name=UPDATE_WAIT)
    async def wait_change(self, seen: int) -> RunState:
        await workflow.wait_condition(lambda: self.state.version > seen)
        return self.state

    @workflow.query(name=QUERY_STATE)
    def query_state(self) -> RunState:
        return self.state


def _lost(err: ActivityError) -> str | None:
    """Why the attempt's worker is gone, or None when the attempt failed otherwise."""
    cause = err.cause
    if isinstance(cause, TimeoutError) and cause.type == TimeoutType.HEARTBEAT:
        return "the worker stopped heartbeating (it died or lost its connection)"
    if isinstance(cause, ApplicationError) and cause.type == HANDED_BACK:
        return f"the worker handed the attempt back ({cause.message})"
    return None


def _failed(err: ActivityError, attempt: int, worker: str | None) -> AttemptResult:
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return AttemptResult(status="failed", attempt=attempt, worker=worker or "",
                             reason="timeout", error=f"the attempt timed out in Temporal "
                             f"({cause.type.name if cause.type else 'timeout'})")
    message = str(cause or err)
    return AttemptResult(status="failed", attempt=attempt, worker=worker or "",
                         reason="workerError", error=f"the worker failed the attempt: {message}")
