"""Notifications that reach a person: which events, when, through which channels, and when not.

Sources (the daemon calls these; none of them waits):

- ``on_appserver``: every app-server notification; a ``turn/completed`` becomes
  ``turn-complete`` (not for an automation's own turns: those notify as automations);
- ``on_approval_pending`` / ``on_approval_closed``: an approval notifies only if it is still
  pending after ``notify.approval_delay_seconds``; once it has, its answer (or its withdrawal)
  follows, and on the desktop replaces it;
- ``on_run_final``: a provider run that succeeded, failed or was interrupted (not one a person
  cancelled);
- ``on_published``: an automation run that completed;
- ``on_breaker_open``, ``lane_resumed``.

Quiet while a person is looking: a client that declared itself focused (``client/visibility``)
suppresses the events it shows: those of the threads it named (or, naming none, the threads it
follows), everything when it said ``all``. A suppressed notification is counted, not sent.

Each channel has its own bounded queue and one sender task, so notifications keep their order
per channel, a hung webhook never delays the desktop, and nothing here ever blocks the daemon: a
full queue drops (and counts) the notification, and every send is stopped after
``notify.timeout_seconds``. Failures are logged once each and counted in ``daemon/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

import codexd.notify.payloads as payloads
from codexd.notify.channels import (
    Channel,
    ChannelError,
    DesktopChannel,
    ProgramChannel,
    WebhookChannel,
    session_bus_present,
)
from codexd.notify.payloads import Payload, TurnNotes
from codexd.notify.visibility import Visibility

if TYPE_CHECKING:
    from codexd.config import NotifySection
    from codexd.metrics import Metrics
    from codexd.protocol.runs import Run
    from codexd.store.approvals import ApprovalRow

log = structlog.get_logger("codexd.notify")


@dataclass(slots=True)
class _Queue:
    channel: Channel
    send: trio.MemorySendChannel[tuple[Payload, str | None]]
    receive: trio.MemoryReceiveChannel[tuple[Payload, str | None]]


@dataclass(slots=True)
class SendResult:
    channel: str
    ok: bool
    error: str | None = None
    duration_ms: float = 0.0


@dataclass
class _Pending:
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    notified: bool = False


class Notifications:
    """Collaborators: ``config`` returns ``[notify]``; ``sessions`` the connected clients;
    ``follows(session, thread_id)`` whether a client follows a thread; ``automation_thread``
    whether a thread is an automation's run; ``spawn`` starts a daemon task."""

    def __init__(self, config: Callable[[], NotifySection], *, metrics: Metrics,
                 sessions: Callable[[], Iterable[Any]], follows: Callable[[Any, str], bool],
                 automation_thread: Callable[[str], bool]) -> None:
        self._config = config
        self._metrics = metrics
        self._sessions = sessions
        self._follows = follows
        self._automation_thread = automation_thread
        self.turns = TurnNotes()
        #: The notifyOnTurnComplete setting (the daemon keeps it current).
        self.turn_complete_setting = True
        self._desktop = DesktopChannel()
        self._queues: dict[str, _Queue] = {}
        self._pending: dict[int, _Pending] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def cfg(self) -> NotifySection:
        return self._config()

    # ------------------------------------------------------------------------ channels

    def channels(self) -> list[Channel]:
        """The channels the config turns on, in a fixed order."""
        cfg = self.cfg
        out: list[Channel] = []
        if cfg.program:
            program = self._queues.get("program")
            if program is not None and isinstance(program.channel, ProgramChannel):
                program.channel.argv = list(cfg.program)  # reloaded config
            out.append(program.channel if program else ProgramChannel(list(cfg.program)))
        if cfg.desktop == "on" or (cfg.desktop == "auto" and session_bus_present()):
            out.append(self._desktop)
        if cfg.webhook_url:
            hook = self._queues.get("webhook")
            if hook is not None and isinstance(hook.channel, WebhookChannel):
                hook.channel.url, hook.channel.secret = cfg.webhook_url, cfg.webhook_secret
                out.append(hook.channel)
            else:
                out.append(WebhookChannel(cfg.webhook_url, cfg.webhook_secret))
        return out

    # ------------------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def _queue(self, channel: Channel) -> _Queue | None:
        q = self._queues.get(channel.name)
        if q is None:
            if self._nursery is None:
                return None
            send, receive = trio.open_memory_channel[tuple[Payload, str | None]](
                self.cfg.max_queued)
            q = self._queues[channel.name] = _Queue(channel, send, receive)
            self._nursery.start_soon(self._sender, q)
        return q

    async def _sender(self, q: _Queue) -> None:
        async for payload, key in q.receive:
            await self._deliver(q.channel, payload, key)

    async def _deliver(self, channel: Channel, payload: Payload, key: str | None) -> SendResult:
        started = trio.current_time()
        error: str | None = None
        with trio.move_on_after(self.cfg.timeout_seconds) as scope:
            try:
                await channel.send(payload, key)
            except ChannelError as exc:
                error = str(exc)
            except Exception as exc:  # a bug in a channel ends that one notification
                error = f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"took longer than notify.timeout_seconds ({self.cfg.timeout_seconds:g} s)"
        ms = round((trio.current_time() - started) * 1000, 1)
        if error is None:
            self._metrics.count_notification(channel.name, "sent")
            log.debug("notification_sent", channel=channel.name, type=payload.get("type"),
                      duration_ms=ms)
        else:
            self._metrics.count_notification(channel.name, "failed")
            log.warning("notification_failed", channel=channel.name, type=payload.get("type"),
                        error=error, duration_ms=ms)
        return SendResult(channel.name, error is None, error, ms)

    # ------------------------------------------------------------------------ dispatch

    def _wanted(self, event: str) -> bool:
        return event in self.cfg.events

    def suppressed(self, thread_id: str | None) -> bool:
        """Whether a focused client shows what this is about."""
        for session in self._sessions():
            vis: Visibility | None = getattr(session, "visibility", None)
            if vis is None or not vis.focused:
                continue
            if vis.all:
                return True
            if thread_id is None:
                continue
            if vis.thread_ids is not None:
                if thread_id in vis.thread_ids:
                    return True
            elif self._follows(session, thread_id):
                return True
        return False

    def submit(self, payload: Payload, *, thread_id: str | None = None,
               key: str | None = None, force: bool = False) -> int:
        """Queue a notification on every channel; returns how many took it."""
        channels = self.channels()
        if not channels:
            return 0
        if not force and self.suppressed(thread_id):
            for ch in channels:
                self._metrics.count_notification(ch.name, "suppressed")
            log.debug("notification_suppressed", type=payload.get("type"), thread_id=thread_id)
            return 0
        taken = 0
        for ch in channels:
            q = self._queue(ch)
            if q is None:
                continue
            try:
                q.send.send_nowait((payload, key))
                taken += 1
            except trio.WouldBlock:
                self._metrics.count_notification(ch.name, "dropped")
                log.warning("notification_dropped", channel=ch.name, type=payload.get("type"),
                            reason=f"{self.cfg.max_queued} notifications already waiting "
                                   "(notify.max_queued)")
        return taken

    async def test(self, channel: str | None) -> list[SendResult]:
        """Send a test notification now through each channel (or the one named), waiting for
        each; the results say what failed and why."""
        chosen = [c for c in self.channels() if channel in (None, c.name)]
        payload = payloads.test_payload(channel)
        return [await self._deliver(c, payload, None) for c in chosen]

    # ------------------------------------------------------------------------- sources

    def on_appserver(self, method: str, params: msgspec.Raw | None) -> None:
        if method not in payloads.WATCHED:
            return
        payload = self.turns.on_notification(method, params)
        if payload is None or not self._wanted("turn-complete") or \
                not self.turn_complete_setting:
            return
        thread_id = payload["thread-id"]
        if self._automation_thread(thread_id):
            return  # the automation's own notification says it
        self.submit(payload, thread_id=thread_id)

    def on_approval_pending(self, row: ApprovalRow) -> None:
        if not self._wanted("approval") or self._nursery is None or not self.channels():
            return
        pending = self._pending[row.id] = _Pending()
        self._nursery.start_soon(self._approval_after_delay, row, pending)

    async def _approval_after_delay(self, row: ApprovalRow, pending: _Pending) -> None:
        delay = self.cfg.approval_delay_seconds
        with pending.scope:
            await trio.sleep(delay)
            if self._pending.get(row.id) is not pending:
                return
            pending.notified = self.submit(payloads.approval_requested(
                approval_id=row.id, method=row.method, params=row.params,
                thread_id=row.thread_id, cwd=self.turns.cwd_of(row.thread_id),
                waited_seconds=delay), thread_id=row.thread_id, key=f"approval:{row.id}") > 0

    def on_approval_closed(self, row: ApprovalRow, status: str, by: str | None,
                           reason: str | None) -> None:
        pending = self._pending.pop(row.id, None)
        if pending is None:
            return
        pending.scope.cancel()
        if pending.notified:  # force: the person was told it waits; tell them it does not
            self.submit(payloads.approval_resolved(
                approval_id=row.id, method=row.method, status=status, by=by, reason=reason,
                thread_id=row.thread_id), thread_id=row.thread_id, key=f"approval:{row.id}",
                force=True)

    def on_run_final(self, run: Run, _kind: str, _data: dict[str, Any]) -> None:
        if run.status == "canceled":
            return
        event = "run-finished" if run.status == "succeeded" else "run-failed"
        if not self._wanted(event):
            return
        self.submit(payloads.run_final(
            run_id=run.run_id, provider=run.request.provider, status=run.status,
            reason=run.reason, error=run.error, result_text=run.result_text,
            cwd=run.request.cwd, attempts=run.attempt))

    def on_automation_run(self, automation_id: str, name: str, run_id: int, status: str,
                          summary: str | None, error: str | None,
                          thread_id: str | None) -> None:
        if status == "skipped":
            return
        event = "automation-finished" if status == "succeeded" else "automation-failed"
        if self._wanted(event):
            self.submit(payloads.automation_final(
                automation_id=automation_id, name=name, run_id=run_id, status=status,
                summary=summary, error=error, thread_id=thread_id))

    def on_breaker_open(self, error: str | None, restarts: int) -> None:
        if self._wanted("breaker-open"):
            self.submit(payloads.breaker_open(error=error, restarts=restarts))

    def lane_resumed(self, provider: str, reason: str) -> None:
        if self._wanted("lane-resumed"):
            self.submit(payloads.lane_resumed(provider=provider, reason=reason))
