"""Interactive provider sessions: ``codex`` / ``claude`` themselves in a codexd terminal.

``session/start`` runs the provider's interactive CLI on a PTY of the terminal host and records it
as a run (``mode: "interactive"``): no queue slot (a person is waiting), its events
``session.opened``, ``session.input_accepted``, ``session.closed`` (redacted and numbered like a
run's), the terminal's output as a ``transcript`` artifact when it ends. Any client attaches to
the terminal (``terminal/attach``); ``session/input`` types into it; ``session/end`` (or
``run/cancel``) closes it with everything it started; ``session/resume`` continues its agent
session with the CLI's own resume as a new run.

The agent session: claude is given ``--session-id <new uuid>`` (resumed with ``--resume``).
codex runs on codexd's app-server (``codex --remote``) by default, so its thread is shared with
every client; the thread it starts or resumes is recognised by the connection's peer process (in
the session's process tree) and becomes the run's ``sessionId``. A codex TUI on its own
app-server leaves its session unknown; it is resumed with ``codex resume --last`` in its cwd.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

from codexd.appserver.process import descendants
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.runs import Options, Run
from codexd.protocol.sessions import (
    SessionInputParams,
    SessionResumeParams,
    SessionStarted,
    SessionStartParams,
)
from codexd.protocol.terminal import CreateParams
from codexd.runs import providers
from codexd.runs.executor import NPM, isolated_home
from codexd.store import runs as repo

if TYPE_CHECKING:
    from codexd.runs.eventlog import Subscriber
    from codexd.runs.service import RunService
    from codexd.terminal.host import Terminal, TerminalHost

log = structlog.get_logger("codexd.sessions")

#: CSI, OSC, and the other escape sequences of a terminal stream (for the transcript).
_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                      rb"|\x1bP[^\x1b]*\x1b\\|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def transcript(data: bytes) -> str:
    """A terminal stream as text: escape sequences and control characters removed, carriage
    returns as line ends, blank runs collapsed."""
    text = _ESCAPES.sub(b"", data).decode("utf-8", "replace").replace("\r\n", "\n")
    text = _CONTROL.sub("", text.replace("\r", "\n"))
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text).strip() + "\n"


@dataclass(slots=True)
class _Live:
    run: Run
    term: Terminal
    remote: bool
    started: float = field(default_factory=time.monotonic)
    #: Who ended it (session/end, run/cancel); None: the CLI exited by itself.
    ended_by: str | None = None
    canceled: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    temp_files: list[str] = field(default_factory=list)


class InteractiveSessions:
    """Collaborators: the run service (its store, event log, executor, merge rules) and the
    terminal host; ``wire()`` is codexd's app-server wire socket (None when it is not
    served); ``on_conversation`` as in the run service."""

    def __init__(self, runs: RunService, terminals: TerminalHost, *,
                 wire: Callable[[], Path | None]) -> None:
        self._runs = runs
        self._terminals = terminals
        self._wire = wire
        self.live: dict[str, _Live] = {}
        #: Threads the TUIs started as ephemeral (title generation): never a session's
        #: (forgotten when no session is open).
        self.ephemeral: set[str] = set()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # ------------------------------------------------------------------------- start

    async def start(self, p: SessionStartParams, *, session: Subscriber | None = None,
                    confine: Callable[[str], object] | None = None,
                    resume_of: Run | None = None) -> SessionStarted:
        runs = self._runs
        conv = None
        layers: tuple[Options, ...] = ()
        if p.conversation_id is not None:
            conv = await runs.conversation_for_send(p.conversation_id, p.provider)
            layers = (conv.defaults or Options(provider=conv.provider),)
        req = runs.merge(p, *layers, await runs.profile_defaults(p.profile), profile=p.profile)
        # A session's TUI runs in a codexd terminal here, whatever the profile's executor.
        req = msgspec.structs.replace(req, executor="local")
        if confine is not None:
            for path in [req.cwd, *(req.harness.add_dirs or []), *(req.harness.images or [])] \
                    if req.harness else [req.cwd]:
                confine(path)
        if conv is not None and req.provider != conv.provider:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"conversation {conv.conversation_id} is "
                           f"a {conv.provider} conversation", {"field": "provider"})
        exe, snap = await self._cli(req.provider)
        if not await trio.to_thread.run_sync(os.path.isdir, req.cwd):
            raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: cwd {req.cwd!r} is not "
                           "an existing folder", {"field": "cwd"})
        h = req.harness
        resume = (resume_of.session_id if resume_of else None) or \
            (conv.session_id if conv else None) or (h.session_id if h else None)
        continue_last = bool(not resume and ((h and h.continue_last) or resume_of))
        remote = None
        if req.provider == "codex":
            wanted = p.remote if p.remote is not None else runs.cfg.session_codex_remote
            wire = self._wire()
            if wanted and wire is not None:
                remote = str(wire)
            elif p.remote and wire is None:
                raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: remote needs codexd's "
                               "app-server wire socket (appserver.enabled and "
                               "appserver.serve_socket)", {"field": "remote"})
            if resume_of is not None and resume_of.mode == "interactive":
                # Resume where the session ran: on codexd's app-server or on its own.
                remote = str(wire) if resume_of.request.remote and wire is not None else None
        new_session = str(uuid.uuid4()) if req.provider == "claude" and not resume \
            and not continue_last else None
        mcp_file = None
        servers = providers.claude_mcp_servers(req) if req.provider == "claude" else {}
        if servers:
            fd, mcp_file = tempfile.mkstemp(suffix=".json", prefix="codexd-mcp-")
            with os.fdopen(fd, "w") as f:
                json.dump({"mcpServers": servers}, f)
        # The interactive CLI applies no turn cap: maxTurns is reported as unattended below.
        spec = providers.spec_for(req, resume_session=resume, mcp_config_file=mcp_file,
                                  continue_last=continue_last, max_turns=None)
        unattended = tuple(name for attr, name in providers.UNATTENDED
                           if h is not None and getattr(h, attr) is not None)
        argv, drops = providers.interactive_argv(exe, spec, snap, remote=remote,
                                                 new_session=new_session,
                                                 unattended=unattended)
        token = await trio.to_thread.run_sync(runs.secrets.get, req.provider)
        run_id = "run_" + secrets.token_hex(6)
        home = None
        copied: list[str] = []
        executor = runs.executor
        if h is not None and h.isolated_home and req.provider == "codex" and \
                executor.homes_dir is not None:
            home = str(executor.homes_dir / (f"profile-{req.profile}" if req.profile
                                             else run_id))
            copied = await trio.to_thread.run_sync(isolated_home, home,
                                                   executor.shared_codex_home(), h.copy_login)
        env = executor.env(req, token, home)
        if req.provider == "codex":
            req = msgspec.structs.replace(req, remote=remote is not None)
        session_id = resume or new_session
        run = await runs.store().write(lambda c: repo.insert(
            c, run_id, req, conversation_id=conv.conversation_id if conv else None,
            rerun_of=resume_of.run_id if resume_of else None, session_id=session_id,
            mode="interactive"))
        runs.log.track(run)
        if session is not None:
            runs.subscriptions.add(session, [run_id])
        for option, why in drops:
            runs.log.emit(run_id, "run.compatibility_warning", {
                "option": option, "reason": why, "provider": req.provider,
                "version": snap.version})
        try:
            term = await self._terminals.create(CreateParams(
                cwd=req.cwd, cols=p.cols, rows=p.rows, command=argv, env=env,
                name=p.name or f"session-{run_id}"))
        except BaseException as exc:
            if mcp_file:
                with contextlib.suppress(OSError):
                    os.unlink(mcp_file)
            message = exc.message if isinstance(exc, RpcError) else \
                f"cannot start {os.path.basename(exe)}: {exc}"
            with trio.CancelScope(shield=True):
                await runs.log.final(run_id, "run.failed", {
                    "reason": "spawnFailed", "message": message, "attempts": 1},
                    status="failed", reason="spawnFailed", error=message,
                    finished_at=now_ms())
            raise
        started = now_ms()
        updated: Run | None = await runs.store().write(lambda c: repo.update(
            c, run_id, status="running", attempt=1, started_at=started, terminal_id=term.id))
        run = updated or run
        live = _Live(run=run, term=term, remote=remote is not None)
        if mcp_file:
            live.temp_files.append(mcp_file)
        self.live[run_id] = live
        if home is not None:
            runs.log.emit(run_id, "run.progress", {"phase": "codexHome",
                                                   "name": Path(home).name, "copied": copied})
        runs.log.emit(run_id, "session.opened", {
            "terminalId": term.id, "pid": term.pid, "provider": req.provider, "argv": argv,
            "cwd": req.cwd, "resume": resume or ("--last" if continue_last else None),
            "sessionId": session_id, "remote": remote is not None,
            "version": snap.version})
        assert self._nursery is not None
        self._nursery.start_soon(self._watch, live)
        log.info("session_opened", run_id=run_id, provider=req.provider, terminal_id=term.id,
                 pid=term.pid, remote=remote is not None, resume=bool(resume or continue_last))
        if conv is not None:
            runs.on_conversation("messageSent", conv, run_id, session)
        await runs.log.drain()  # whoever has the answer can read session.opened
        return SessionStarted(run_id=run_id, status="running", terminal_id=term.id,
                              pid=term.pid, session_id=session_id)

    async def resume(self, p: SessionResumeParams, *, session: Subscriber | None = None,
                     confine: Callable[[str], object] | None = None) -> SessionStarted:
        """A new interactive run continuing ``p.run_id``'s agent session (an exec run's too)."""
        earlier = await self._runs.get(p.run_id)
        if p.run_id in self.live:
            raise RpcError(ErrorCode.CONFLICT, f"session {p.run_id} is still open (terminal "
                           f"{self.live[p.run_id].term.id}): attach to it, or end it first",
                           {"runId": p.run_id})
        r = earlier.request
        if not earlier.session_id and not (r.provider == "codex" or
                                           earlier.mode == "interactive"):
            raise RpcError(ErrorCode.CONFLICT, f"run {p.run_id} has no agent session to "
                           "resume", {"runId": p.run_id})
        harness = r.harness
        if harness is not None:
            harness = msgspec.structs.replace(harness, session_id=None, continue_last=False)
        params = SessionStartParams(
            provider=r.provider, cwd=r.cwd, model=r.model, sandbox=r.sandbox,
            auto_approve=r.auto_approve, prompt=p.prompt, env=r.env or None, harness=harness,
            cols=p.cols, rows=p.rows, name=p.name)
        return await self.start(params, session=session, confine=confine, resume_of=earlier)

    async def _cli(self, provider: str) -> tuple[str, Any]:
        exe, snap = await self._runs.installed_cli(provider)
        if exe is None:
            raise RpcError(ErrorCode.TOOL_MISSING, f"the {provider} CLI was not found "
                           f"(runs.{provider}_command, PATH, .tools/npm); install it, e.g. "
                           f"`npm install -g {NPM[provider]}`", {"provider": provider})
        if snap is None:
            raise RpcError(ErrorCode.SPAWN_FAILED, f"cannot run {exe} (it did not answer "
                           "--version); check it runs by hand", {"provider": provider})
        return exe, snap

    # ------------------------------------------------------------------ input and end

    def _open(self, run_id: str) -> _Live:
        live = self.live.get(run_id)
        if live is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no open interactive session {run_id!r} "
                           "(`codexctl runs ls --mode interactive` lists them; "
                           "`session/resume` continues an ended one)", {"runId": run_id})
        if live.term.exit is not None or live.ended_by is not None:
            raise RpcError(ErrorCode.TERMINAL_EXITED, f"session {run_id} is ending",
                           {"runId": run_id})
        return live

    async def input(self, p: SessionInputParams, *, viewer: Any, by: str) -> int:
        if (p.text is None) == (p.data is None):
            raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: give text or data "
                           "(base64), one of them", {"field": "text"})
        live = self._open(p.run_id)
        if p.data is not None:
            try:
                data = base64.b64decode(p.data, validate=True)
            except binascii.Error:
                raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: data is not valid "
                               "base64", {"field": "data"}) from None
            await self._terminals.write(viewer, live.term.id, data)
            sent = len(data)
        else:
            assert p.text is not None
            data = p.text.encode()
            await self._terminals.write(viewer, live.term.id, data)
            sent = len(data)
            if p.submit:
                await trio.sleep(self._runs.cfg.session_submit_delay_ms / 1000)
                await self._terminals.write(viewer, live.term.id, b"\r")
                sent += 1
        record: dict[str, Any] = {"bytes": sent, "by": by}
        if p.text is not None:
            record["text"], record["submit"] = p.text, p.submit
        self._runs.log.emit(p.run_id, "session.input_accepted", record)
        return sent

    async def end(self, run_id: str, by: str, *, sig: str | None = None,
                  cancel: bool = False) -> Run:
        live = self.live.get(run_id)
        if live is None:
            run = await self._runs.get(run_id)  # NOT_FOUND for an unknown run
            raise RpcError(ErrorCode.ALREADY_RESOLVED, f"session {run_id} has already ended "
                           f"({run.status})", {"status": run.status})
        if live.ended_by is None and live.term.exit is None:
            live.ended_by, live.canceled = by, cancel
        with contextlib.suppress(RpcError):  # closed already: the watcher settles it
            await self._terminals.close(live.term.id, sig)
        with trio.move_on_after(15):
            await live.done.wait()
        return await self._runs.get(run_id)

    # --------------------------------------------------------------------- thread ids

    def thread_opened(self, peer_pid: int, thread_id: str) -> None:
        """A wire client started or resumed ``thread_id``: the codex session it runs in, if
        the client is (under) one of ours, now has its agent session."""
        for run_id, live in list(self.live.items()):
            if not live.remote or live.run.session_id == thread_id:
                continue
            term_pid = live.term.pid
            if peer_pid != term_pid and peer_pid not in descendants(term_pid):
                continue
            live.run = msgspec.structs.replace(live.run, session_id=thread_id)
            self._runs.log.emit(run_id, "run.progress", {"phase": "session",
                                                         "sessionId": thread_id})
            assert self._nursery is not None
            self._nursery.start_soon(self._record_session, live.run, thread_id)
            return

    async def _record_session(self, run: Run, thread_id: str) -> None:
        runs = self._runs
        await runs.store().write(lambda c: repo.update(c, run.run_id, session_id=thread_id))
        if run.conversation_id:
            conv = await runs.store().write(lambda c: repo.conv_update(
                c, run.conversation_id or "", session_id=thread_id))
            if conv is not None:
                runs.on_conversation("sessionUpdated", conv, None, None)
        log.info("session_thread", run_id=run.run_id, thread_id=thread_id)

    # ------------------------------------------------------------------------- watch

    async def _watch(self, live: _Live) -> None:
        """Settle the run when its terminal's CLI exits or the terminal is closed (the daemon
        stopping too: then it is interrupted)."""
        term, run_id = live.term, live.run.run_id
        stopping = True
        try:
            while not term.exited.is_set() and term.id in self._terminals.terminals:
                with trio.move_on_after(1.0):
                    await term.exited.wait()
            stopping = False
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._settle(live, stopping)
                finally:
                    self.live.pop(run_id, None)
                    if not self.live:
                        self.ephemeral.clear()
                    for path in live.temp_files:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    live.done.set()

    async def _settle(self, live: _Live, stopping: bool) -> None:
        runs, term, run_id = self._runs, live.term, live.run.run_id
        snapshot, _seq = term.scrollback.snapshot()
        if term.id in self._terminals.terminals and not stopping:
            with contextlib.suppress(RpcError):
                await self._terminals.close(term.id, None)  # its leftovers, and the entry
        code = term.exit.exit_code if term.exit else None
        sig = term.exit.signal if term.exit else None
        if stopping:
            status, reason = "interrupted", "daemonStopped"
        elif live.canceled:
            status, reason = "canceled", "canceled"
        elif live.ended_by is not None:
            status, reason = "succeeded", "ended"
        elif term.fault is not None:
            status, reason = "failed", "internal"
        else:
            status, reason = ("succeeded", "exited") if code == 0 else ("failed", "exitCode")
        error = None
        if status == "failed":
            error = term.fault or f"{live.run.request.provider} exited with " + (
                f"{code}" if code is not None else f"signal {sig}")
        elif status == "interrupted":
            error = "codexd stopped during this session"
        duration = int((time.monotonic() - live.started) * 1000)
        runs.log.emit(run_id, "session.closed", {
            "by": live.ended_by, "reason": reason, "exitCode": code, "signal": sig,
            "durationMs": duration, "outputBytes": term.scrollback.end})
        text = runs.log.redact(run_id, transcript(snapshot)) if snapshot else ""
        if text.strip():
            await runs.store().write(lambda c: repo.put_artifacts(c, run_id, [(
                "transcript", "terminal.txt", "text/plain", text)]))
        kind = {"succeeded": "run.completed", "failed": "run.failed",
                "canceled": "run.canceled", "interrupted": "run.interrupted"}[status]
        data: dict[str, Any]
        if status == "succeeded":
            data = {"resultText": None, "sessionId": live.run.session_id}
        elif status == "failed":
            data = {"reason": reason, "message": error, "exitCode": code, "attempts": 1}
        elif status == "canceled":
            data = {"by": live.ended_by, "while": "running"}
        else:
            data = {"message": error}
        await runs.log.final(run_id, kind, data, status=status, reason=reason, error=error,
                             exit_code=code, finished_at=now_ms(), terminal_id=None)
        log.info("session_closed", run_id=run_id, status=status, reason=reason, exit_code=code,
                 duration_ms=duration, by=live.ended_by)


def now_ms() -> int:
    return int(time.time() * 1000)

