"""Which Codex threads have a turn in progress, and in which folder, read from the app-server's
own notifications (thread/started carries the cwd; turn/started and turn/completed bracket a
turn). git/* uses it to refuse changing a work tree under a running turn."""

from __future__ import annotations

from collections import OrderedDict

import msgspec


class _Thread(msgspec.Struct):
    id: str
    cwd: str | None = None


class _Params(msgspec.Struct):
    thread: _Thread | None = None
    threadId: str | None = None


_decoder = msgspec.json.Decoder(_Params)
_WATCHED = frozenset({"thread/started", "turn/started", "turn/completed"})


class ActiveTurns:
    def __init__(self, remember: int = 10_000) -> None:
        self._cwds: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        self.active: set[str] = set()

    def on_notification(self, method: str, params: msgspec.Raw | None) -> None:
        if method not in _WATCHED or params is None:
            return
        try:
            p = _decoder.decode(params)
        except msgspec.DecodeError:
            return
        if method == "thread/started" and p.thread is not None and p.thread.cwd:
            self._cwds[p.thread.id] = p.thread.cwd
            self._cwds.move_to_end(p.thread.id)
            while len(self._cwds) > self._remember:
                self._cwds.popitem(last=False)
        elif method == "turn/started" and p.threadId:
            self.active.add(p.threadId)
        elif method == "turn/completed" and p.threadId:
            self.active.discard(p.threadId)

    def note_cwd(self, thread_id: str, cwd: str) -> None:
        """A thread's folder learnt another way (a thread/start or thread/resume result)."""
        self._cwds[thread_id] = cwd

    def reset(self) -> None:
        """The app-server went away: no turn runs any more."""
        self.active.clear()

    def busy(self) -> list[tuple[str, str]]:
        return [(f"a Codex turn on thread {t}", self._cwds[t]) for t in sorted(self.active)
                if t in self._cwds]
