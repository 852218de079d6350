"""A provider run's event log: numbered, redacted, stored in batches, then sent, in order.

:meth:`RunEventLog.emit` never waits: it numbers the event (per run), redacts it and queues it.
One writer task (:meth:`RunEventLog.run`) stores everything queued in one transaction, then sends
``run/event`` to the subscribed clients. :meth:`RunEventLog.final` writes a run's last event
together with its final status, after every earlier event of the run.

Collaborators: the store (a getter: it opens after this is built), the fault boundary (a batch
that cannot be stored is still sent and counted as a fault), ``subscribers()`` (the connected
sessions), and ``secrets()`` (the stored tokens; each run's ``env`` values are added here).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec
import trio

from codexd.faults import Faults
from codexd.protocol.runs import RUN_EVENT, Run, RunEventNote
from codexd.runs.redact import redact
from codexd.store import Store
from codexd.store import runs as repo
from codexd.subscriptions import Interest

_enc = msgspec.json.Encoder()
#: Shorter env values ("1", "yes", a path segment) would redact ordinary words.
MIN_ENV_SECRET = 6

Row = repo.EventRow  # run id, seq, type, redacted JSON data, at (ms), attempt


class Subscriber(Protocol):
    @property
    def id(self) -> int: ...

    def notify(self, data: bytes) -> None: ...


class RunEventLog:
    def __init__(self, store: Callable[[], Store], faults: Faults, *,
                 subscribers: Callable[[], Iterable[Subscriber]],
                 secrets: Callable[[], list[str]], now_ms: Callable[[], int]) -> None:
        self._store = store
        self._faults = faults
        self._subscribers = subscribers
        #: Called with (run, kind, data) once a run's final event is stored.
        self.on_final: list[Callable[[Run, str, dict[str, Any]], None]] = []
        self._secrets = secrets
        self._now_ms = now_ms
        #: The runs each session follows (``run/subscribe``, ``initialize``'s runIds/allRuns).
        self.subscriptions: Interest[Subscriber] = Interest()
        self._seq: dict[str, int] = {}
        #: The attempt each run is in (its events carry it).
        self._attempt: dict[str, int] = {}
        #: Remote runs: how far their events were read, stored with the next batch.
        self._cursors: dict[str, tuple[int, int, int]] = {}
        self._env_secrets: dict[str, list[str]] = {}
        self._pending: list[Row] = []
        self._pending_wake = trio.Event()
        self._written = 0
        self._queued = 0
        self._drained = trio.Event()
        self._writer_alive = False
        #: Events stored (or, when storing failed, sent) since start.
        self.events_written = 0

    # ------------------------------------------------------------------------ per run

    def track(self, run: Run) -> None:
        """Number from the run's last stored seq; redact the env values it was given."""
        self._seq[run.run_id] = run.last_seq
        if run.attempt:
            self._attempt[run.run_id] = run.attempt
        values = [v for v in run.request.env.values() if len(v) >= MIN_ENV_SECRET]
        if values:
            self._env_secrets[run.run_id] = values

    def known(self, run_id: str) -> list[str]:
        """The verbatim secrets to redact from a run's output: every stored token, and the
        values the run was given in ``env`` (never shown to clients either)."""
        extra = self._env_secrets.get(run_id)
        known = list(self._secrets())
        return known + extra if extra else known

    def redact(self, run_id: str, text: str) -> str:
        return redact(text, self.known(run_id))

    def set_attempt(self, run_id: str, attempt: int | None) -> None:
        """The events emitted from now on belong to ``attempt`` (None: to none)."""
        if attempt:
            self._attempt[run_id] = attempt
        else:
            self._attempt.pop(run_id, None)

    def row(self, run_id: str, kind: str, data: dict[str, Any], *, at: int | None = None,
            attempt: int | None = None) -> Row:
        """The run's next event as a ``run_events`` row: numbered and redacted."""
        seq = self._seq.get(run_id, 0) + 1
        self._seq[run_id] = seq
        return (run_id, seq, kind, self.redact(run_id, _enc.encode(data).decode()),
                at if at is not None else self._now_ms(),
                attempt if attempt is not None else self._attempt.get(run_id))

    def cursor(self, run_id: str, attempt: int, received: int, notes: int) -> None:
        """A remote run's events were read this far: stored with the events emitted so far,
        in the same transaction (a restart reads on from exactly there)."""
        self._cursors[run_id] = (attempt, received, notes)
        self._pending_wake.set()

    def emit(self, run_id: str, kind: str, data: dict[str, Any], *, at: int | None = None,
             attempt: int | None = None) -> None:
        """Queue an event (never waits); ``at`` and ``attempt`` default to now and the run's
        current attempt (a worker's events bring their own)."""
        self._pending.append(self.row(run_id, kind, data, at=at, attempt=attempt))
        self._queued += 1
        self._pending_wake.set()

    async def final(self, run_id: str, kind: str, data: dict[str, Any],
                    **fields: Any) -> Run | None:
        """A run's last event and its final status in one transaction, after every earlier
        event: whoever sees the event finds the run ended."""
        await self.drain()
        row = self.row(run_id, kind, data)

        def write(c: Any) -> Run | None:
            repo.add_events(c, [row])
            return repo.update(c, run_id, **fields)

        run: Run | None = await self._store().write(write)
        self.events_written += 1
        self._publish([row])
        self._seq.pop(run_id, None)
        self._attempt.pop(run_id, None)
        self._env_secrets.pop(run_id, None)
        if run is not None:
            for hook in self.on_final:
                try:
                    hook(run, kind, data)
                except Exception as exc:  # a counter or a notification: the run is stored
                    self._faults.record("hook", run_id, exc)
        return run

    # ------------------------------------------------------------------------ the writer

    async def run(self) -> None:
        """The writer task: batches events into one transaction, then sends them, in order."""
        self._writer_alive = True
        try:
            while True:
                await self._pending_wake.wait()
                self._pending_wake = trio.Event()
                await self._write_pending()
        finally:
            self._writer_alive = False
            self._drained.set()

    async def drain(self) -> None:
        """Wait until every event emitted so far is stored and sent."""
        target = self._queued
        while self._written < target:
            if not self._writer_alive:
                # Stopping: the writer task is gone; store what is left here.
                await self._write_pending()
                return
            with trio.move_on_after(0.5):
                await self._drained.wait()

    async def _write_pending(self) -> None:
        batch, self._pending = self._pending, []
        cursors, self._cursors = self._cursors, {}
        if not batch and not cursors:
            return
        # A batch that cannot be stored (full disk) is still sent; the fault is counted.
        with self._faults.boundary("run", f"events write ({len(batch)} events)"):
            await self._store().write(functools.partial(_add_events, batch, cursors))
        self.events_written += len(batch)
        self._publish(batch)
        self._written += len(batch)
        self._drained.set()
        self._drained = trio.Event()

    def _publish(self, batch: list[Row]) -> None:
        subs = self.subscriptions
        sessions = [s for s in self._subscribers() if subs.any(s.id)]
        if not sessions:
            return
        for run_id, seq, kind, text, at, attempt in batch:
            data = None
            for s in sessions:
                if subs.wants(s.id, run_id):
                    if data is None:
                        data = _enc.encode({"jsonrpc": "2.0", "method": RUN_EVENT.name,
                                            "params": RunEventNote(
                                                run_id=run_id, seq=seq, type=kind,
                                                data=msgspec.Raw(text.encode()), at=at,
                                                attempt=attempt)}) + b"\n"
                    s.notify(data)


def _add_events(batch: list[Row], cursors: dict[str, tuple[int, int, int]], conn: Any) -> None:
    repo.add_events(conn, batch)
    for run_id, (attempt, received, notes) in cursors.items():
        repo.remote_cursor(conn, run_id, attempt, received, notes)
