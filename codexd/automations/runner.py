"""Running one automation through the app-server bridge.

cron: ``thread/start {cwd}`` then ``turn/start``; heartbeat: ``thread/resume`` of the target thread
(skipped when it is busy or waits on an approval) then ``turn/start``. Either way the run then
waits for that turn's ``turn/completed``, keeping the last agent message as its summary. The
watches are fed from the daemon's app-server notification hook; a restart of the app-server ends
every watch at once (its turns are gone).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

from codexd.automations.definition import Definition
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.automations import RunRow

if TYPE_CHECKING:
    from codexd.appserver.supervisor import AppServer

OWNER = "automations"
log = structlog.get_logger("codexd.automations")
_decode = msgspec.json.decode


@dataclass(slots=True)
class Outcome:
    status: str  # succeeded | failed | skipped | interrupted
    thread_id: str | None = None
    turn_id: str | None = None
    summary: str | None = None
    error: str | None = None
    decision: str | None = None


class _TurnDone(msgspec.Struct):
    class _Turn(msgspec.Struct):
        class _Err(msgspec.Struct):
            message: str = ""

        id: str
        status: str = "completed"
        error: _Err | None = None

    turn: _Turn


class _ItemDone(msgspec.Struct):
    class _Item(msgspec.Struct):
        type: str = ""
        text: str | None = None

    item: _Item
    turnId: str | None = None


_turn_done = msgspec.json.Decoder(_TurnDone)
_item_done = msgspec.json.Decoder(_ItemDone)


@dataclass(slots=True)
class Watch:
    """What one run needs to know about its thread."""

    thread_id: str
    run_id: int
    automation_name: str
    done: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    lost: str | None = None
    changed: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class CodexRunner:
    """Runs an automation's prompt through the app-server.

    Collaborators: the app-server handle (``call``, ``state``), whether it is ``enabled()`` in
    the config, and ``pending_for_thread`` (the approvals a thread waits on).
    """

    def __init__(self, appserver: AppServer, *, enabled: Callable[[], bool],
                 pending_for_thread: Callable[[str], list[int]]) -> None:
        self._appserver = appserver
        self._enabled = enabled
        self._pending_for_thread = pending_for_thread
        self.watches: dict[str, Watch] = {}

    # ------------------------------------------------------------------- daemon hooks

    def on_notification(self, method: str, params: msgspec.Raw | None,
                        thread_id: str | None) -> None:
        watch = self.watches.get(thread_id or "")
        if watch is None or params is None:
            return
        try:
            if method == "item/completed":
                item = _item_done.decode(params)
                if item.item.type == "agentMessage" and item.item.text and item.turnId:
                    watch.messages[item.turnId] = item.item.text
            elif method == "turn/completed":
                done = _turn_done.decode(params)
                err = done.turn.error.message if done.turn.error else None
                watch.done[done.turn.id] = (done.turn.status, err)
                watch.poke()
        except msgspec.DecodeError:
            return

    def on_appserver_lost(self, reason: str) -> None:
        for watch in self.watches.values():
            watch.lost = reason
            watch.poke()

    # ---------------------------------------------------------------------- running

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        """A request to the app-server; waits (bounded by the run's timeout) while it starts."""
        if not self._enabled():
            raise RpcError(ErrorCode.APPSERVER_NOT_READY,
                           "the app-server is disabled (appserver.enabled = false)")
        raw = msgspec.Raw(msgspec.json.encode(params))
        while True:
            try:
                return _decode(await self._appserver.call(method, raw, OWNER))
            except RpcError as exc:
                if exc.code != ErrorCode.APPSERVER_NOT_READY or \
                        self._appserver.state.value == "failed":
                    raise
            await trio.sleep(1.0)

    async def execute(self, d: Definition, run: RunRow, on_ids: Any) -> Outcome:
        """Run ``d`` once; ``on_ids(thread_id, turn_id)`` records ids as soon as they are known."""
        out = Outcome(status="failed")
        try:
            if d.kind == "cron":
                cwd = d.cwds[0]
                if not await trio.to_thread.run_sync(os.path.isdir, cwd):
                    out.error = f"cwd {cwd!r} does not exist; fix the automation's cwds"
                    return out
                params: dict[str, Any] = {"cwd": cwd}
                if d.model:
                    params["model"] = d.model
                res = await self._call("thread/start", params)
                out.thread_id = res["thread"]["id"]
            else:
                out.thread_id = d.target_thread_id
                busy = self._busy_reason(out.thread_id or "")
                if busy is None:
                    res = await self._call("thread/resume", {"threadId": out.thread_id})
                    busy = _status_busy(res.get("thread", {}).get("status"))
                if busy is not None:
                    out.status, out.decision = "skipped", busy
                    return out
            await on_ids(out.thread_id, None)
            return await self._turn(d, run, out, on_ids)
        except RpcError as exc:
            out.error = f"{exc.message} (code {exc.code})"
            return out

    def _busy_reason(self, thread_id: str) -> str | None:
        if thread_id in self.watches:
            return "skipped: another automation run is using the thread"
        pending = self._pending_for_thread(thread_id)
        if pending:
            return f"skipped: the thread waits on approval {pending[0]}"
        return None

    async def _turn(self, d: Definition, run: RunRow, out: Outcome, on_ids: Any) -> Outcome:
        assert out.thread_id is not None
        watch = Watch(out.thread_id, run.run_id, d.name)
        self.watches[out.thread_id] = watch
        try:
            params: dict[str, Any] = {"threadId": out.thread_id,
                                      "input": [{"type": "text", "text": d.prompt}]}
            if d.model:
                params["model"] = d.model
            if d.reasoning_effort:
                params["effort"] = d.reasoning_effort
            log.info("automation_turn_starting", run_id=run.run_id, thread_id=out.thread_id,
                     due_delay_ms=int(time.time() * 1000) - run.scheduled_at)
            res = await self._call("turn/start", params)
            out.turn_id = turn_id = res["turn"]["id"]
            await on_ids(out.thread_id, turn_id)
            while turn_id not in watch.done and watch.lost is None:
                await watch.changed.wait()
            if turn_id not in watch.done:
                out.status, out.error = "interrupted", f"{watch.lost}; the turn was lost"
                return out
            status, err = watch.done[turn_id]
            out.summary = watch.messages.get(turn_id)
            out.status = {"completed": "succeeded", "interrupted": "interrupted"}.get(
                status, "failed")
            if out.status == "failed":
                out.error = err or f"the turn ended with status {status}"
            return out
        finally:
            if self.watches.get(out.thread_id) is watch:
                del self.watches[out.thread_id]

    async def interrupt(self, thread_id: str, turn_id: str) -> None:
        """Best effort: ask the app-server to stop a turn that ran out of time."""
        with trio.move_on_after(10), contextlib.suppress(RpcError):
            await self._call("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})


def _status_busy(status: Any) -> str | None:
    if not isinstance(status, dict) or status.get("type") != "active":
        return None
    flags = status.get("activeFlags") or []
    if "waitingOnApproval" in flags:
        return "skipped: the thread waits on an approval"
    return "skipped: the thread is busy with another turn"
