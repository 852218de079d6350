"""The terminal host: PTY sessions that outlive their clients.

Each :class:`Terminal` owns a child on a PTY (spawned by ptyprocess in a worker thread: fork and
exec block), a non-blocking reader of the PTY's master fd, a scrollback ring, and the clients
attached to it. Output is sent to every attached client that keeps up; a client whose queued
output passes ``terminal.client_lag_bytes`` stops getting the stream and, once its queue has
drained, gets one ``terminal/resync`` snapshot (the tail of the scrollback, at most half that
bound) instead, so a slow client never makes the daemon
hold more than its bound and never slows another attacher. Nobody attached = only scrollback.

Closing sends a signal (SIGHUP by default) to the terminal's process group, its descendants and
every process of its session (background jobs included), waits ``terminal.close_grace_seconds``,
then SIGKILLs whatever is left. Daemon shutdown closes every terminal the same way.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import msgspec
import ptyprocess
import structlog
import trio

from codexd import faults
from codexd.appserver.process import close_fd, descendants, kill_tree, session_members
from codexd.config import TerminalSection
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.terminal import (
    TERMINAL_EXITED,
    TERMINAL_OUTPUT,
    TERMINAL_RESYNC,
    Attached,
    CreateParams,
    Exited,
    ExitInfo,
    Output,
    Resync,
    TerminalInfo,
)
from codexd.rpc import encode_notification
from codexd.store import now_iso
from codexd.terminal.scrollback import Scrollback

if TYPE_CHECKING:
    from codexd.children import ChildRegistry
    from codexd.faults import Faults
    from codexd.subscriptions import HasId

log = structlog.get_logger("codexd.terminal")

_READ_CHUNK = 65536
#: Output read back to back is sent as one notification up to this size: fewer, larger
#: messages, still small against terminal.client_lag_bytes (>= 64 KiB).
_COALESCE = 64 * 1024


class _Queue(Protocol):
    @property
    def queued_bytes(self) -> int: ...


class Viewer(Protocol):
    """What the host uses of an attached client (a session satisfies it)."""

    @property
    def id(self) -> int: ...
    @property
    def out(self) -> _Queue: ...

    def send(self, data: bytes) -> None: ...


@dataclass
class Attachment:
    session: Viewer
    read_only: bool
    lagging: bool = False


@dataclass
class Terminal:
    id: str
    name: str | None
    argv: list[str]
    cwd: str
    cols: int
    rows: int
    proc: ptyprocess.PtyProcess
    scrollback: Scrollback
    created_at: str = field(default_factory=now_iso)
    attachments: dict[int, Attachment] = field(default_factory=dict)
    exit: ExitInfo | None = None
    idle_since: float = field(default_factory=time.monotonic)
    write_lock: trio.Lock = field(default_factory=trio.Lock)
    eof: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    closing: bool = False
    #: Set when a bug in this terminal's tasks ended it ("internal error: ...").
    fault: str | None = None
    exited_sent: bool = False

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    @property
    def fd(self) -> int:
        return int(self.proc.fd)

    def info(self) -> TerminalInfo:
        return TerminalInfo(
            terminal_id=self.id, name=self.name, pid=self.pid, command=self.argv, cwd=self.cwd,
            cols=self.cols, rows=self.rows, created_at=self.created_at,
            attached=len(self.attachments), output_bytes=self.scrollback.end, exited=self.exit,
        )


def default_shell(configured: str) -> list[str]:
    shell = configured or os.environ.get("SHELL") or ""
    if not shell:
        with contextlib.suppress(KeyError):
            shell = pwd.getpwuid(os.getuid()).pw_shell
    return [shell or "/bin/sh", "-l"]


def _spawn(params: CreateParams, argv: list[str], env: dict[str, str]) -> ptyprocess.PtyProcess:
    """Validate and spawn (blocking: stat, fork, exec). Runs in a worker thread."""
    if not os.path.isdir(params.cwd):
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       f"invalid params: cwd {params.cwd!r} is not an existing folder",
                       {"field": "cwd"})
    exe = argv[0]
    if os.sep not in exe:
        found = shutil.which(exe, path=env.get("PATH"))
        if found is None:
            raise RpcError(ErrorCode.SPAWN_FAILED, f"command not found: {exe!r} (not on PATH)",
                           {"command": argv})
    elif not os.access(exe, os.X_OK):
        raise RpcError(ErrorCode.SPAWN_FAILED, f"{exe!r} is not an executable file",
                       {"command": argv})
    parent = os.getpid()
    try:
        try:
            return ptyprocess.PtyProcess.spawn(argv, cwd=params.cwd, env=env,
                                               dimensions=(params.rows, params.cols))
        except BaseException:
            if os.getpid() != parent:
                # In the forked child, before exec: it must never return into a copy of the
                # daemon (the boundary validates, this is the last line of defence).
                os._exit(127)
            raise
    except OSError as exc:
        raise RpcError(ErrorCode.SPAWN_FAILED, f"cannot start {exe!r}: {exc}",
                       {"command": argv}) from None


class TerminalHost:
    """Start with ``await nursery.start(host.run)``.

    Collaborators: ``config`` returns the current ``[terminal]`` section (it changes on SIGHUP),
    ``faults`` is the containment boundary for each terminal's tasks, ``children`` records each
    shell so a killed daemon's leftovers are found at the next start.
    """

    def __init__(self, config: Callable[[], TerminalSection], *, faults: Faults,
                 children: ChildRegistry) -> None:
        self._config = config
        self._faults = faults
        self._children = children
        self.terminals: dict[str, Terminal] = {}
        #: Per session id: the terminals it is attached to (the reverse of ``attachments``).
        self._attached: dict[int, set[str]] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def cfg(self) -> TerminalSection:
        return self._config()

    # --------------------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reaper)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.close_all()

    async def close_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for term in list(self.terminals.values()):
                nursery.start_soon(self._close, term, signal.SIGHUP)

    def get(self, terminal_id: str) -> Terminal:
        """A terminal by its id, or by its name (names are unique among open terminals)."""
        term = self.terminals.get(terminal_id)
        if term is None:
            term = next((t for t in self.terminals.values() if t.name == terminal_id), None)
        if term is None:
            raise RpcError(ErrorCode.NOT_FOUND,
                           f"no terminal {terminal_id!r} (`codexctl term ls` lists them)",
                           {"terminalId": terminal_id})
        return term

    # ---------------------------------------------------------------------------- methods

    async def create(self, params: CreateParams) -> Terminal:
        if len(self.terminals) >= self.cfg.max_terminals:
            raise RpcError(ErrorCode.TOO_MANY_TERMINALS,
                           f"{len(self.terminals)} terminals are open (terminal.max_terminals); "
                           "close one first")
        if params.name is not None:
            taken = next((t for t in self.terminals.values()
                          if params.name in (t.name, t.id)), None)
            if taken is not None:
                raise RpcError(ErrorCode.CONFLICT,
                               f"a terminal named {params.name!r} is open already ({taken.id}); "
                               "choose another name, or close that one first",
                               {"field": "name", "terminalId": taken.id})
        argv = list(params.command) if params.command else default_shell(self.cfg.default_shell)
        env = dict(os.environ)
        env.setdefault("TERM", "xterm-256color")
        env.update(params.env or {})
        proc = await trio.to_thread.run_sync(_spawn, params, argv, env)
        os.set_blocking(proc.fd, False)
        term = Terminal(id=secrets.token_hex(6), name=params.name, argv=argv, cwd=params.cwd,
                        cols=params.cols, rows=params.rows, proc=proc,
                        scrollback=Scrollback(self.cfg.scrollback_bytes))
        self.terminals[term.id] = term
        await self._children.add("terminal", term.id, term.pid)
        assert self._nursery is not None
        book = self._faults
        on_fault = functools.partial(self._on_fault, term)
        self._nursery.start_soon(functools.partial(book.run, "terminal", term.id, self._pump,
                                                   term, on_fault=on_fault))
        self._nursery.start_soon(functools.partial(book.run, "terminal", term.id,
                                                   self._wait_exit, term, on_fault=on_fault))
        # The program, not its arguments: a command line may carry a token.
        log.info("terminal_created", terminal_id=term.id, pid=term.pid,
                 program=os.path.basename(argv[0]), args=len(argv) - 1, cwd=params.cwd)
        return term

    def attach(self, session: Viewer, terminal_id: str, read_only: bool) -> Attached:
        term = self.get(terminal_id)
        # Registered and snapshotted in one step on the event loop: the next output chunk the
        # pump reads is the first live one this client gets, so nothing is lost or doubled.
        term.attachments[session.id] = Attachment(session, read_only)
        self._attached.setdefault(session.id, set()).add(term.id)
        term.idle_since = time.monotonic()
        snapshot, seq = term.scrollback.snapshot()
        return Attached(terminal_id=term.id, snapshot=snapshot, seq=seq, cols=term.cols,
                        rows=term.rows, read_only=read_only, exited=term.exit)

    def _writable(self, session: Viewer, term: Terminal) -> None:
        att = term.attachments.get(session.id)
        if att is not None and att.read_only:
            raise RpcError(ErrorCode.READ_ONLY,
                           f"attached read-only to terminal {term.id}; attach again without "
                           "readOnly to type or resize")

    async def write(self, session: Viewer, terminal_id: str, data: bytes) -> None:
        term = self.get(terminal_id)
        self._writable(session, term)
        if term.exit is not None or term.eof.is_set():
            raise RpcError(ErrorCode.TERMINAL_EXITED, f"terminal {term.id} has exited",
                           {"exited": msgspec.to_builtins(term.exit)})
        async with term.write_lock:
            view = memoryview(data)
            while view:
                if term.closing:
                    raise RpcError(ErrorCode.TERMINAL_EXITED, f"terminal {term.id} is closing")
                try:
                    n = os.write(term.fd, view)
                except BlockingIOError:
                    try:
                        await trio.lowlevel.wait_writable(term.fd)
                    except trio.ClosedResourceError:
                        raise RpcError(ErrorCode.TERMINAL_EXITED,
                                       f"terminal {term.id} was closed") from None
                    continue
                except OSError as exc:
                    raise RpcError(ErrorCode.TERMINAL_EXITED,
                                   f"terminal {term.id} is gone: {exc.strerror}") from None
                view = view[n:]
        await trio.lowlevel.checkpoint()

    def resize(self, session: Viewer, terminal_id: str, cols: int, rows: int) -> None:
        term = self.get(terminal_id)
        self._writable(session, term)
        if term.eof.is_set():
            raise RpcError(ErrorCode.TERMINAL_EXITED, f"terminal {term.id} has exited")
        term.proc.setwinsize(rows, cols)
        term.cols, term.rows = cols, rows

    def detach(self, session: Viewer, terminal_id: str) -> bool:
        term = self.get(terminal_id)
        self._attached.get(session.id, set()).discard(term.id)
        if term.attachments.pop(session.id, None) is None:
            return False
        term.idle_since = time.monotonic()
        return True

    async def close(self, terminal_id: str, sig_name: str | None) -> None:
        term = self.get(terminal_id)
        sig = signal.SIGHUP
        if sig_name:
            try:
                sig = signal.Signals[sig_name.upper() if sig_name.upper().startswith("SIG")
                                     else "SIG" + sig_name.upper()]
            except KeyError:
                raise RpcError(ErrorCode.INVALID_PARAMS,
                               f"invalid params: unknown signal {sig_name!r}",
                               {"field": "signal"}) from None
        await self._close(term, sig)

    def session_closed(self, session: HasId) -> None:
        for terminal_id in self._attached.pop(session.id, ()):
            term = self.terminals.get(terminal_id)
            if term is not None and term.attachments.pop(session.id, None) is not None:
                term.idle_since = time.monotonic()

    def on_drained(self, session: Viewer) -> None:
        """The session's queue emptied: lagging attachments get a fresh snapshot."""
        attached = self._attached.get(session.id)
        if not attached:
            return
        for terminal_id in list(attached):
            term = self.terminals.get(terminal_id)
            att = term.attachments.get(session.id) if term else None
            if term is None or att is None or not att.lagging:
                continue
            att.lagging = False
            snapshot, seq = term.scrollback.snapshot()
            # At most half the lag bound, so the resync itself cannot put the client straight
            # back over it (under a flood, whole-scrollback resyncs would only feed the flood).
            snapshot = snapshot[-(self.cfg.client_lag_bytes // 2):]
            session.send(encode_notification(TERMINAL_RESYNC.name, Resync(
                terminal_id=term.id, snapshot=snapshot, seq=seq)))
            log.info("terminal_resync", terminal_id=term.id, conn=session.id, seq=seq)

    # ---------------------------------------------------------------------------- internals

    def _on_fault(self, term: Terminal, message: str) -> None:
        """A bug in one terminal's tasks ends that terminal only; its watchers learn why."""
        if term.fault is None:
            term.fault = f"internal error: {message}"
            assert self._nursery is not None
            self._nursery.start_soon(self._close, term, signal.SIGHUP)

    async def _pump(self, term: Terminal) -> None:
        """Read the PTY until EOF; keep scrollback; stream to attachers that keep up.

        Cancellation and closing: :meth:`_close` calls ``notify_closing`` on the fd before it
        closes it, which wakes this task with ``ClosedResourceError`` (its end, like EOF).
        """
        fd = term.fd
        lag = self.cfg.client_lag_bytes
        try:
            while True:
                faults.inject("terminal.pump")
                try:
                    data = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    try:
                        await trio.lowlevel.wait_readable(fd)
                    except trio.ClosedResourceError:
                        break
                    continue
                except OSError:  # EIO: every process holding the PTY is gone
                    break
                if not data:
                    break
                # A PTY hands out a few kB per read; take what else is ready right now, so a
                # fast producer costs one notification per ~64 kB, not per 4 kB.
                more = [data]
                size = len(data)
                while size < _COALESCE:
                    try:
                        extra = os.read(fd, _READ_CHUNK)
                    except OSError:  # EAGAIN (nothing more yet) or EIO (next read says so)
                        break
                    if not extra:
                        break
                    more.append(extra)
                    size += len(extra)
                if len(more) > 1:
                    data = b"".join(more)
                seq = term.scrollback.end
                term.scrollback.append(data)
                message = b""
                for att in term.attachments.values():
                    if att.lagging:
                        continue
                    if att.session.out.queued_bytes > lag:
                        att.lagging = True  # resynced by on_drained once it catches up
                        continue
                    if not message:
                        message = encode_notification(TERMINAL_OUTPUT.name, Output(
                            terminal_id=term.id, seq=seq, data=data))
                    att.session.send(message)
                await trio.lowlevel.checkpoint()
        finally:
            term.eof.set()

    @staticmethod
    def _try_reap(term: Terminal) -> bool:
        """Collect the child's exit status if it has exited (never blocks)."""
        if term.exit is not None:
            return True
        try:
            pid, status = os.waitpid(term.pid, os.WNOHANG)
        except ChildProcessError:  # already reaped elsewhere: nothing more to learn
            term.exit = ExitInfo(exit_code=None, signal=None)
            return True
        if pid == 0:
            return False
        code = os.waitstatus_to_exitcode(status)
        term.exit = ExitInfo(exit_code=code if code >= 0 else None,
                             signal=-code if code < 0 else None)
        return True

    async def _wait_exit(self, term: Terminal) -> None:
        pid = term.pid
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            # No pidfd (macOS, old kernels): nothing to wait on but the clock.
            while not self._try_reap(term):  # noqa: ASYNC110
                await trio.sleep(0.1)
        else:
            try:
                await trio.lowlevel.wait_readable(pidfd)
                self._try_reap(term)  # readable = exited, so this returns at once
            finally:
                close_fd(pidfd)
        assert term.exit is not None
        term.idle_since = time.monotonic()
        # Let the last output arrive before telling attachers it exited.
        with trio.move_on_after(0.5):
            await term.eof.wait()
        term.exited.set()
        log.info("terminal_exited", terminal_id=term.id, pid=pid, exit_code=term.exit.exit_code,
                 signal=term.exit.signal)
        self._send_exited(term)

    def _send_exited(self, term: Terminal) -> None:
        if term.exited_sent:
            return
        term.exited_sent = True
        exit_info = term.exit or ExitInfo(exit_code=None, signal=None)
        message = encode_notification(TERMINAL_EXITED.name, Exited(
            terminal_id=term.id, exit_code=exit_info.exit_code, signal=exit_info.signal,
            reason=term.fault))
        for att in list(term.attachments.values()):
            att.session.send(message)

    async def _close(self, term: Terminal, sig: int) -> None:
        if term.closing:
            await term.exited.wait()
            return
        term.closing = True
        pid = term.pid
        family = descendants(pid) | session_members(pid)
        if not self._try_reap(term):
            kill_tree(pid, pid, sig, family)
            with trio.move_on_after(self.cfg.close_grace_seconds):
                await self._reaped(term)
        # Background jobs that ignored the first signal, and anything started since.
        family |= descendants(pid) | session_members(pid)
        kill_tree(pid, pid, signal.SIGKILL, family)
        with trio.move_on_after(5.0):
            await self._reaped(term)
        self.terminals.pop(term.id, None)
        if term.fault is not None:
            self._send_exited(term)  # the exit task may be the one that failed
        for session_id in term.attachments:
            self._attached.get(session_id, set()).discard(term.id)
        term.attachments.clear()
        # Wake the pump and any writer waiting on the fd before it is closed: the number is
        # reused by the next PTY or pipe, and trio must not think a task still waits on it.
        with contextlib.suppress(OSError):
            trio.lowlevel.notify_closing(term.fd)
            term.proc.fileobj.close()
        term.proc.closed = True  # ptyprocess must not try to reap what we reaped
        await self._children.remove(pid)
        log.info("terminal_closed", terminal_id=term.id, pid=pid, signal=signal.Signals(sig).name)

    async def _reaped(self, term: Terminal) -> None:
        """Wait for the child's exit (callers bound it). Polls rather than waiting on the exit
        task: daemon shutdown cancels that task before the terminals are closed."""
        while not self._try_reap(term):  # noqa: ASYNC110
            await trio.sleep(0.02)

    async def _reaper(self) -> None:
        while True:
            reap = self.cfg.reap_detached_seconds
            await trio.sleep(max(1.0, min(60.0, reap / 4)) if reap else 60.0)
            if not reap:
                continue
            now = time.monotonic()
            for term in list(self.terminals.values()):
                if not term.attachments and now - term.idle_since >= reap:
                    log.info("terminal_reaped", terminal_id=term.id, idle_seconds=reap)
                    assert self._nursery is not None
                    self._nursery.start_soon(self._close, term, signal.SIGHUP)
