"""``files/watch``: folders watched for changes, as daemon-wide subscriptions.

A watch belongs to the daemon, not to the connection that asked for it: its ``files/changed``
(and ``git/changed``) notifications are numbered events like a thread's, so a client that
reconnects replays what it missed (``events/replay``) instead of losing it. A watch ends with
``files/unwatch``, when its grant is revoked, when the folder is deleted, or with the daemon.

The watching itself is watchfiles (the OS's inotify/FSEvents through the Rust notify crate;
no polling). Changes are batched (``DEBOUNCE_MS``) and filtered like watchfiles' default filter
(``.git``, ``node_modules``, ``__pycache__``, editor swap files...). When the folder is inside a
work tree, its git dir is watched too and reported as ``git/changed``.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from codexd.errors import ErrorCode, RpcError
from codexd.protocol.workspace import (
    FILES_CHANGED,
    GIT_CHANGED,
    FileChange,
    FilesChanged,
    GitChanged,
    WatchInfo,
)
from codexd.workspaces import Workspaces

log = structlog.get_logger("codexd.watches")

MAX_WATCHES = 256
DEBOUNCE_MS = 100
#: Changes per notification at most (a checkout can touch thousands of files).
MAX_CHANGES = 1000
_KINDS = {1: "added", 2: "modified", 3: "deleted"}
_GIT_FILES = {"index": "index", "HEAD": "head", "ORIG_HEAD": "head", "packed-refs": "refs",
              "FETCH_HEAD": "refs", "MERGE_HEAD": "state", "CHERRY_PICK_HEAD": "state",
              "REVERT_HEAD": "state"}


@dataclass
class _Watch:
    info: WatchInfo
    real: str
    git_dir: str | None

    def paths(self) -> list[str]:
        # A git dir inside the folder is seen through the folder's own watch.
        if self.git_dir is None or _under(self.git_dir, self.real):
            return [self.real]
        return [self.real, self.git_dir]


class Watches:
    """Every watch shares one watcher thread (watchfiles over all watched folders), restarted
    when the set of folders changes: one thread however many watches, never a worker of the
    pool the store and file operations use."""

    def __init__(self, workspaces: Workspaces, *, publish: Callable[[str, Any], None],
                 git_dir_of: Callable[[str], Any]) -> None:
        self._ws = workspaces
        self._publish = publish
        self._git_dir_of = git_dir_of
        self.watches: dict[str, _Watch] = {}
        self._changed = trio.Event()
        self._stop_thread: threading.Event | None = None
        self._limiter = trio.CapacityLimiter(1)
        #: Bumped on every change of the set of folders; the watcher says which it covers.
        self._generation = 0
        self._ready_generation = 0
        self._ready = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """The watcher loop (a daemon service)."""
        task_status.started()
        failures, last_error = 0, ""
        while True:
            generation = self._generation
            paths = sorted({p for w in self.watches.values() for p in w.paths()})
            self._changed = trio.Event()
            if not paths:
                self._covered(generation)
                await self._changed.wait()
                continue
            stop = self._stop_thread = threading.Event()
            token = trio.lowlevel.current_trio_token()
            try:
                await trio.to_thread.run_sync(self._watch_thread, paths, stop, token,
                                              generation, limiter=self._limiter,
                                              abandon_on_cancel=True)
                failures = 0
            except (FileNotFoundError, RuntimeError, OSError) as exc:
                # A folder vanished, or the OS refused (inotify's max_user_watches): drop what
                # is gone and retry, backing off, logging each new reason once.
                if str(exc) != last_error:
                    log.warning("watcher_restarting", error=str(exc),
                                hint="a very large tree may need fs.inotify.max_user_watches "
                                     "raised")
                    last_error = str(exc)
                if self._drop_missing():
                    failures = 0  # a folder went away: the others are watched again at once
                    continue
                self._covered(generation)
                failures += 1
                with trio.move_on_after(min(30.0, 0.5 * 2 ** min(failures, 6))):
                    await self._changed.wait()
            finally:
                stop.set()

    def _covered(self, generation: int) -> None:
        """The watcher now covers every watch made up to ``generation``."""
        self._ready_generation = max(self._ready_generation, generation)
        self._ready.set()
        self._ready = trio.Event()

    async def _wait_covered(self, generation: int) -> None:
        with trio.move_on_after(5):
            while self._ready_generation < generation:
                await self._ready.wait()

    def _watch_thread(self, paths: list[str], stop: threading.Event,
                      token: trio.lowlevel.TrioToken, generation: int) -> None:
        from watchfiles import Change
        from watchfiles._rust_notify import RustNotify

        # debug off, no polling, poll delay unused, recursive, permission-denied folders skipped
        with RustNotify(paths, False, False, 300, True, True) as watcher:
            trio.from_thread.run_sync(self._covered, generation, trio_token=token)
            while not stop.is_set():
                raw = watcher.watch(DEBOUNCE_MS, 20, 1000, stop)
                if raw == "timeout":
                    continue
                if isinstance(raw, str):  # "stop", "signal"
                    return
                batch = {(Change(c), p) for c, p in raw}
                try:
                    trio.from_thread.run_sync(self._dispatch, batch, trio_token=token)
                except trio.RunFinishedError:
                    return

    def _restart(self) -> int:
        self._generation += 1
        if self._stop_thread is not None:
            self._stop_thread.set()
        self._changed.set()
        return self._generation

    def _drop_missing(self) -> bool:
        """End the watches whose folder is gone, each with a last files/changed saying so."""
        dropped = False
        for wid, w in list(self.watches.items()):
            if not os.path.isdir(w.real):
                log.info("watch_ended", watch_id=wid, path=w.info.path,
                         reason="the folder was deleted")
                del self.watches[wid]
                self._publish(FILES_CHANGED.name, FilesChanged(
                    watch_id=wid, path=w.info.path,
                    changes=[FileChange(path=w.info.path, kind="deleted")]))
                dropped = True
        return dropped

    async def watch(self, path: str) -> WatchInfo:
        res = self._ws.resolve(path)
        if not await trio.to_thread.run_sync(os.path.isdir, res.real):
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"invalid params: {path!r} is not a folder", {"field": "path"})
        for w in self.watches.values():
            if w.real == res.real:
                return w.info  # one watch per folder, shared
        if len(self.watches) >= MAX_WATCHES:
            raise RpcError(ErrorCode.POLICY_DENIED,
                           f"{MAX_WATCHES} folders are watched already; unwatch some "
                           "(files/watches lists them)")
        git = await self._git_dir_of(res.real)
        info = WatchInfo(watch_id=secrets.token_hex(6), path=res.asked,
                         git_root=git[0] if git else None, created_at=int(time.time() * 1000))
        w = _Watch(info=info, real=res.real, git_dir=git[1] if git else None)
        self.watches[info.watch_id] = w
        # Answered once the watcher covers it: a change right after the answer is reported.
        await self._wait_covered(self._restart())
        log.info("watch_started", watch_id=info.watch_id, path=res.asked,
                 git=info.git_root is not None)
        return info

    def unwatch(self, watch_id: str) -> bool:
        w = self.watches.pop(watch_id, None)
        if w is None:
            return False
        self._restart()
        log.info("watch_stopped", watch_id=watch_id, path=w.info.path)
        return True

    def revoked(self, real_root: str) -> None:
        """A grant went away: its watches stop."""
        for wid, w in list(self.watches.items()):
            if w.real == real_root or w.real.startswith(real_root.rstrip("/") + "/"):
                self.unwatch(wid)

    def _dispatch(self, batch: set[tuple[Any, str]]) -> None:
        for w in list(self.watches.values()):
            mine = {(c, p) for c, p in batch if _under(p, w.real) or
                    (w.git_dir is not None and _under(p, w.git_dir))}
            if mine:
                self._report(w, mine)

    def _report(self, w: _Watch, batch: set[tuple[Any, str]]) -> None:
        import watchfiles

        keep = _default_filter(watchfiles)
        changes: dict[str, str] = {}
        git_what: set[str] = set()
        git_prefix = (w.git_dir.rstrip("/") + "/") if w.git_dir else None
        for change, real in batch:
            if git_prefix and (real + "/").startswith(git_prefix):
                rel = real[len(git_prefix):]
                what = _GIT_FILES.get(rel) or ("refs" if rel.startswith("refs/") else None)
                if what is None and rel.startswith(("rebase-merge", "rebase-apply")):
                    what = "state"
                if what:
                    git_what.add(what)
                continue
            if not keep(change, real) or not _under(real, w.real):
                continue
            rel = os.path.relpath(real, w.real)
            path = w.info.path if rel == "." else os.path.join(w.info.path, rel)
            changes[path] = _KINDS.get(int(change), "modified")
        if changes:
            items = sorted(changes.items())[:MAX_CHANGES]
            self._publish(FILES_CHANGED.name, FilesChanged(
                watch_id=w.info.watch_id, path=w.info.path,
                changes=[FileChange(path=p, kind=k) for p, k in items]))  # type: ignore[arg-type]
            if changes.get(w.info.path) == "deleted" and not os.path.isdir(w.real):
                # The watched folder itself is gone: so is the watch (its last event says so).
                log.info("watch_ended", watch_id=w.info.watch_id, path=w.info.path,
                         reason="the folder was deleted")
                self.unwatch(w.info.watch_id)
        if git_what and w.info.git_root is not None:
            self._publish(GIT_CHANGED.name, GitChanged(
                watch_id=w.info.watch_id, root=w.info.git_root,
                what=sorted(git_what)))  # type: ignore[arg-type]


_FILTER: Any = None


def _default_filter(watchfiles: Any) -> Any:
    global _FILTER
    if _FILTER is None:
        _FILTER = watchfiles.DefaultFilter()
    return _FILTER


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
