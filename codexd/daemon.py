"""The daemon: owns the config, the store, the listener and every client session.

Start order (each step only once the one before is really ready): take the single-instance lock →
open and migrate the store → remove a stale socket and bind → accept clients → tell systemd
READY=1. Stop order is the reverse: STOPPING=1 → stop accepting → tell every client
``daemon/shuttingDown`` → give in-flight requests the grace period → close sessions → remove the
socket file → close the store → release the lock.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import structlog
import trio

from codexd import __version__, logs
from codexd import config as config_mod
from codexd.api import ROUTES, WIRE_ROUTES
from codexd.api.daemon import metrics_snapshot
from codexd.approvals import ApprovalBook, thread_refs
from codexd.appserver import control
from codexd.appserver.command import codex_home
from codexd.appserver.states import State
from codexd.appserver.supervisor import AppServer
from codexd.appserver.upstream import ServerRequestIn
from codexd.audit import AuditLog
from codexd.automations.runner import CodexRunner
from codexd.automations.service import AutomationService
from codexd.children import ChildRegistry
from codexd.config import Config
from codexd.context import Peer
from codexd.errors import CodexdError, ConfigError, ErrorCode
from codexd.events import EventHub
from codexd.faults import Faults
from codexd.git.jobs import GitJobs
from codexd.git.service import GitService
from codexd.metrics import Metrics, render_openmetrics
from codexd.notify.service import Notifications
from codexd.paths import DB_NAME, WIRE_SOCKET_NAME, default_socket, default_state_dir, lock_file_for
from codexd.protocol.appserver import APPSERVER_STATE_CHANGED, AppServerStateChanged
from codexd.protocol.automations import AUTOMATION_RUN_COMPLETED
from codexd.protocol.daemon import SHUTTING_DOWN, ShuttingDown
from codexd.protocol.runs import CONVERSATION_CHANGED, ConversationChanged
from codexd.protocol.workspace import WORKSPACE_CHANGED, Grant, WorkspaceChanged
from codexd.retention import Retention
from codexd.runs import limits
from codexd.runs.service import RunService
from codexd.runs.sessions import InteractiveSessions
from codexd.sdnotify import Notifier
from codexd.session import ClientSession
from codexd.stats import Stats
from codexd.store import Store, daemon_runs, now_iso
from codexd.store import approvals as approvals_repo
from codexd.store import settings as settings_repo
from codexd.store.approvals import ApprovalRow
from codexd.terminal.host import TerminalHost, Viewer
from codexd.tokens import TokenBook
from codexd.transport import activation
from codexd.transport.base import Transport
from codexd.transport.frontend import FrontendListener
from codexd.transport.http import PACKAGED_CONSOLE, HttpSite
from codexd.transport.unix import (
    InstanceLock,
    UnixListener,
    bind_listener,
    prepare_socket_dir,
    remove_stale_socket,
)
from codexd.transport.websocket import AppServerListener
from codexd.turns import ActiveTurns
from codexd.watches import Watches
from codexd.workspaces import Workspaces

log = structlog.get_logger("codexd.daemon")

#: Method prefixes codexd answers itself (read from the route table); everything else goes to
#: the app-server. ``thread/unsubscribe`` is codexd's too, by name (see ``Daemon.forwards``).
OWN_NAMESPACES = tuple(sorted({name.split("/", 1)[0] + "/" for name in ROUTES
                               if "/" in name and not name.startswith("thread/")}))


def raise_fd_limit() -> None:
    """Raise the soft fd limit to the hard one: every client, terminal and run costs fds, and
    the usual soft limit of 1024 is reached long before memory is (set LimitNOFILE= too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("fd_limit_unchanged", soft=soft, hard=hard, error=str(exc))
        return
    log.info("fd_limit_raised", old=soft, new=target)


def wire_socket(config: Config, socket_path: Path) -> Path | None:
    """Where the app-server wire listens: ``appserver.socket``, else beside codexd's socket."""
    cfg = config.appserver
    if not (cfg.enabled and cfg.serve_socket):
        return None
    return Path(cfg.socket).expanduser() if cfg.socket else socket_path.with_name(
        WIRE_SOCKET_NAME)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line values that win over the config file, kept for SIGHUP reloads."""

    socket: str | None = None
    state_dir: str | None = None
    log_format: str | None = None
    log_level: str | None = None



def process_age() -> float:
    """Seconds since this process was exec'd (Linux: its start time in /proc against the
    uptime, 10 ms resolution); 0 where that cannot be read (timing then counts from here)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return 0.0

class Daemon:
    """Everything one running codexd owns. Run it with ``await daemon.run()``."""

    def __init__(
        self,
        config: Config,
        *,
        config_file: Path | None = None,
        overrides: Overrides | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.config_file = config_file
        #: The file the running config came from; None when it was absent (defaults).
        self.config_source = config_file if config_file and config_file.exists() else None
        self.overrides = overrides or Overrides()
        self.state_dir = Path(config.daemon.state_dir or default_state_dir()).expanduser()
        self.socket_path = Path(config.daemon.socket or default_socket(self.state_dir)).expanduser()
        self.db_path = self.state_dir / DB_NAME
        #: The app-server wire's socket (``codex --remote unix://PATH``); None when off.
        self.wire_socket_path = wire_socket(config, self.socket_path)
        #: CODEX_HOME's default control socket, when codexd leads it to the wire socket.
        self.control_socket_path: Path | None = None
        self.notifier = notifier or Notifier()
        self.routes = ROUTES
        self.stats = Stats()
        self.metrics = Metrics()
        self.faults = Faults()
        self.sessions: set[ClientSession] = set()
        self.started_monotonic = time.monotonic()
        #: When the process was exec'd, on the monotonic clock (start-up timing counts from it).
        self.exec_monotonic = self.started_monotonic - process_age()
        self.startup: dict[str, float] = {}
        self.started_at_iso = now_iso()
        self.shutting_down = False
        self.shutdown_reason = ""
        #: The daemon life before this one ended without a clean stop (kill -9, crash).
        self.previous_run_unclean = False
        self._stop = trio.Event()
        self._force = trio.Event()
        self._store: Store | None = None
        self._run_id: int | None = None
        self._services: trio.Nursery | None = None
        #: The processes spawned and not yet reaped (recording once the store is open).
        self.children = ChildRegistry()
        self.turns = ActiveTurns()
        self.events = EventHub(config.events.ring_size, config.events.ring_bytes)
        self.approvals = ApprovalBook(
            lambda: self.config.approvals, store=lambda: self.store, events=self.events,
            sessions=lambda: self.sessions,
            respond=lambda *args: self.appserver.respond(*args), faults=self.faults,
            spawn=self.spawn, on_pending=self._approval_pending)
        # A client that starts following a thread gets the approvals already waiting on it.
        self.events.threads.on_added = self.approvals.deliver_pending
        self.terminals = TerminalHost(lambda: self.config.terminal, faults=self.faults,
                                      children=self.children)
        self.appserver = AppServer(
            config.appserver,
            on_state=self._on_appserver_state,
            on_notification=self._on_appserver_notification,
            on_server_request=self._on_server_request,
            on_generation_end=self._generation_ended,
            next_generation=self._next_generation,
            faults=self.faults,
            on_spawned=lambda pid: self.children.add("appserver", "", pid),
            on_reaped=self.children.remove,
        )

        self._codex_runner = CodexRunner(
            self.appserver, enabled=lambda: self.config.appserver.enabled,
            pending_for_thread=self.approvals.pending_for_thread)
        self.automations = AutomationService(
            lambda: self.config, store=lambda: self.store, faults=self.faults,
            publish=self.publish, runner=self._codex_runner,
            daemon_run=lambda: self._run_id, stopping=lambda: self.shutting_down)
        self.tokens = TokenBook(lambda: self.store, on_revoked=self._close_token)
        self.workspaces = Workspaces(lambda: self.store, on_change=self._workspace_changed)
        self.git = GitService(self.workspaces, busy=self._busy_worktrees)
        self.git_jobs = GitJobs(self.git, publish=self.publish, spawn=self.spawn,
                                socket_path=lambda: self.socket_path, state_dir=self.state_dir,
                                credential_timeout=lambda:
                                self.config.git.credential_timeout_seconds)
        self.watches = Watches(self.workspaces, publish=self.publish,
                               git_dir_of=self.git.git_dir_of)
        self.audit = AuditLog(lambda: self.store, lambda coro: self.spawn(coro, "audit"))
        self.retention = Retention(lambda: self.store, lambda: self.config.retention,
                                   self._inbox_retention_days,
                                   lambda: self.runs.executor.homes_dir)
        #: The WebSocket listener for frontends (None when websocket.listen is empty).
        self.frontends: FrontendListener | None = None
        #: Sockets passed by a service manager (socket activation); taken when run starts.
        self.passed = activation.Passed()
        self.runs = RunService(lambda: self.config.runs, store=lambda: self.store,
                               faults=self.faults, children=self.children,
                               subscribers=lambda: self.sessions, state_dir=self.state_dir)
        self.runs.executor.on_usage = self.metrics.count_usage
        self.runs.executor.permission_socket = str(self.socket_path)
        self.runs.remote.ask_permission = self._remote_permission
        self.interactive = InteractiveSessions(
            self.runs, self.terminals,
            wire=lambda: self.wire_socket_path if self.config.appserver.enabled else None)
        self.runs.interactive = self.interactive
        self.notify = Notifications(
            lambda: self.config.notify, metrics=self.metrics, sessions=lambda: self.sessions,
            follows=lambda session, thread_id: self.events.threads.wants(session.id, thread_id),
            automation_thread=lambda thread_id: thread_id in self._codex_runner.watches)
        self.runs.log.on_final.append(self.notify.on_run_final)
        self.runs.on_lane_resumed = self._lane_resumed
        self.runs.on_conversation = lambda event, conv, run_id, by: self.publish(
            CONVERSATION_CHANGED.name, ConversationChanged(
                event=event, conversation=conv, run_id=run_id),  # type: ignore[arg-type]
            exclude=by)
        self.automations.scheduler.hold = self._automations_hold
        self.runs.on_lanes_changed = self.automations.scheduler.wake
        self.approvals.on_closed = self.notify.on_approval_closed
        self.runs.log.on_final.append(
            lambda run, _kind, _data: self.metrics.count_run(run.request.provider, run.status))
    @property
    def run_id(self) -> int | None:
        """This daemon life's row in daemon_runs (None before the store is open)."""
        return self._run_id

    @property
    def store(self) -> Store:
        assert self._store is not None, "store used before the daemon started"
        return self._store

    # --------------------------------------------------------------------------- control

    def request_shutdown(self, reason: str) -> None:
        """Begin a graceful stop (idempotent); a second request while stopping forces it."""
        if self._stop.is_set():
            log.warning("shutdown_forced", reason=reason)
            self._force.set()
            return
        self.shutdown_reason = reason
        self._stop.set()

    def publish(
        self, method: str, params: Any, *, thread_id: str | None = None,
        exclude: Peer | None = None, emitted_at_ms: int | None = None,
    ) -> None:
        """Number and send a notification to every client that wants it (never waits)."""
        if method == AUTOMATION_RUN_COMPLETED.name:
            self._automation_run_completed(params)
        self.events.publish(method, params, self.sessions, thread_id=thread_id, exclude=exclude,
                            emitted_at_ms=emitted_at_ms)

    def forwards(self, method: str) -> bool:
        """Whether ``method`` goes to the app-server (outside codexd's namespaces, and enabled)."""
        return (self.config.appserver.enabled and not method.startswith(OWN_NAMESPACES)
                and method not in self.routes and method != "initialized")

    def spawn(self, coro: Any, kind: str = "task") -> None:
        """Run a coroutine as a daemon service task: a unit of its own (see codexd.faults)."""
        assert self._services is not None, "spawn() before the daemon started"

        async def unit() -> None:
            await coro

        self._services.start_soon(functools.partial(self.faults.run, kind, "", unit))

    def _shares_codex_account(self) -> bool:
        """Whether codex runs use the app-server's CODEX_HOME (and so its account)."""
        runs_home = self.config.runs.codex_home or os.environ.get("CODEX_HOME", "")
        mine = os.path.expanduser(runs_home) if runs_home else str(Path.home() / ".codex")
        return mine == str(codex_home(self.config.appserver))

    def _automations_hold(self) -> int | None:
        """Automations are codex turns: while a usage limit pauses codex on their account,
        they wait, and what came due meanwhile follows its missed_policy at the reset."""
        until = self.runs.paused_until.get("codex")
        return until if until is not None and self._shares_codex_account() else None

    async def _remote_permission(self, run_id: str, tool_name: str, tool_input: dict[str, Any],
                                 tool_use_id: str | None) -> dict[str, Any]:
        """A remote claude run's prompt (from its worker): a pending approval like a local
        one's; the answer goes back to the worker."""
        from codexd.api.runs import ask_permission

        answer = await ask_permission(self, run_id, tool_name, tool_input, tool_use_id)
        return {"behavior": answer.behavior, "message": answer.message,
                "approvalId": answer.approval_id}

    def _lane_resumed(self, provider: str, why: str) -> None:
        self.notify.lane_resumed(provider, why)

    def _account_limits(self, params: msgspec.Raw) -> None:
        """The app-server says the account's usage limit is reached: codex runs share that
        account when they share its CODEX_HOME, so their lane pauses until the reset."""
        try:
            snapshot = msgspec.json.decode(params).get("rateLimits")
        except (msgspec.DecodeError, AttributeError):
            return
        reset = limits.exhausted_reset(snapshot) if isinstance(snapshot, dict) else None
        if reset is None or reset <= time.time() * 1000:
            return
        if not self._shares_codex_account():
            return
        self.spawn(self.runs.limit_reached("codex", limits.Limit(
            "the app-server reports this account's usage limit reached", reset, "appServer")))

    def _approval_pending(self, row: ApprovalRow) -> None:
        self.automations.on_approval(row)
        self.notify.on_approval_pending(row)

    def _automation_run_completed(self, event: Any) -> None:
        run = event.run
        self.notify.on_automation_run(run.automation_id, event.automation_name or
                                      run.automation_id, run.run_id, run.status, run.summary,
                                      run.error, run.thread_id)

    # --------------------------------------------------------------------- app-server hooks

    def _on_appserver_state(self, state: State, previous: State, reason: str) -> None:
        log.info("appserver_state", state=state.value, previous=previous.value, reason=reason,
                 generation=self.appserver.generation)
        self.notifier.status(f"serving on {self.socket_path}; app-server {state.value}")
        self.publish(APPSERVER_STATE_CHANGED.name, AppServerStateChanged(
            state=state.value, previous=previous.value, reason=reason,
            generation=self.appserver.generation, pid=self.appserver.pid))
        if state is State.READY:
            self._startup_mark("app_server_ready_ms")
        if previous is State.READY and state is not State.READY:
            self.automations.on_appserver_lost(f"the app-server left ready ({reason})")
        if state is State.FAILED:
            self.notify.on_breaker_open(self.appserver.last_error, self.appserver.restarts)

    def _on_appserver_notification(
        self, method: str, params: msgspec.Raw | None, emitted_at_ms: int | None
    ) -> None:
        if method == "serverRequest/resolved":
            # codexd announces resolutions itself, with the ids its clients know.
            self.approvals.on_upstream_resolved(params, self.appserver.generation)
            return
        if method == "account/rateLimits/updated" and params is not None:
            self._account_limits(params)
        thread_id = None if method == "thread/started" else thread_refs(params)[0]
        self.turns.on_notification(method, params)
        self.notify.on_appserver(method, params)
        self.automations.on_notification(method, params, thread_id)
        self.publish(method, params if params is not None else msgspec.UNSET, thread_id=thread_id,
                     emitted_at_ms=emitted_at_ms)

    def _on_server_request(self, req: ServerRequestIn) -> None:
        self.spawn(self.approvals.on_request(req))

    async def _next_generation(self) -> int:
        return await self.store.write(approvals_repo.next_generation)

    def reload(self) -> None:
        """SIGHUP: re-read the config file and apply what can change while running."""
        try:
            new = config_mod.with_overrides(
                config_mod.load(self.config_file),
                socket=self.overrides.socket,
                state_dir=self.overrides.state_dir,
                log_format=self.overrides.log_format,
                log_level=self.overrides.log_level,
            )
        except ConfigError as exc:
            log.error("config_reload_failed", error=str(exc), kept="previous config")
            return
        changed, restart = config_mod.reload_changes(self.config, new)
        if restart:
            log.warning("config_needs_restart", keys=restart)
            # Keep the running values of what cannot change live.
            new = msgspec.structs.replace(
                new,
                daemon=msgspec.structs.replace(
                    new.daemon, socket=self.config.daemon.socket,
                    state_dir=self.config.daemon.state_dir,
                ),
                store=self.config.store,
                automations=msgspec.structs.replace(
                    new.automations, enabled=self.config.automations.enabled,
                    codex_home=self.config.automations.codex_home,
                    timezone=self.config.automations.timezone,
                    clock_check_seconds=self.config.automations.clock_check_seconds),
                runs=msgspec.structs.replace(new.runs,
                                             secret_store=self.config.runs.secret_store),
                websocket=msgspec.structs.replace(
                    new.websocket, listen=self.config.websocket.listen,
                    tls_cert=self.config.websocket.tls_cert,
                    tls_key=self.config.websocket.tls_key,
                    allow_insecure_remote=self.config.websocket.allow_insecure_remote),
            )
        self.config = new
        self.appserver.reconfigure(new.appserver)
        self.config_source = (
            self.config_file if self.config_file and self.config_file.exists() else None
        )
        logs.configure(new.log.format, new.log.level)
        for session in list(self.sessions):
            session.reconfigure()
        if new.workspaces.confine_local:
            self.spawn(self._grant_existing_cwds(), "grant-existing-cwds")
        self.automations.reconfigure()
        log.info("config_reloaded", changed=changed, needs_restart=restart)

    # ------------------------------------------------------------------------------ run

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until a shutdown is requested; ``task_status.started`` once clients can connect.

        Raises:
            AlreadyRunning: another daemon holds this socket's lock.
            SchemaTooNew, StoreError: the database cannot be used.
            CodexdError: the socket cannot be created.
        """
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            raise_fd_limit()
            self._adopt_passed_sockets()
            prepare_socket_dir(self.socket_path)
            lock = InstanceLock(lock_file_for(self.socket_path))
            lock.acquire(self.socket_path)
            try:
                await self._run_locked(signals, task_status)
            finally:
                lock.release()
                self.notifier.close()

    async def _run_locked(self, signals: Any, task_status: trio.TaskStatus[Daemon]) -> None:
        self.notifier.status("opening the database")
        self._store = await trio.to_thread.run_sync(
            lambda: Store.open(self.db_path, busy_timeout_ms=self.config.store.busy_timeout_ms)
        )
        try:
            await self._record_start()
            self.children.open(self.store, self._run_id)
            # Before anything new is spawned: a killed daemon's children are still running.
            survivors = await self.children.kill_survivors()
            # Every start-up write happens before the socket exists: a client that can connect
            # finds a daemon whose start-up cannot fail any more.
            await self.approvals.expire_leftovers()
            await self.workspaces.load()
            settings, _ = await self.store.read(settings_repo.load)
            self.notify.turn_complete_setting = settings.notify_on_turn_complete
            await self.automations.startup()
            await self.runs.startup(unclean=self.previous_run_unclean, survivors=survivors)
            await self._grant_existing_cwds()
            passed = self.passed
            # Socket files we bound are ours to remove at the end; passed ones are the service
            # manager's (it keeps listening while codexd is stopped).
            bound: list[Path] = []
            wire = None
            try:
                listener = await self._listen_unix(self.socket_path, passed.ndjson, bound)
                self._startup_mark("socket_bound_ms")
                if self.wire_socket_path is not None:
                    prepare_socket_dir(self.wire_socket_path)
                    wire = await self._listen_unix(self.wire_socket_path, passed.appserver, bound)
                    self._claim_control_socket(self.wire_socket_path)
                if self.config.websocket.listen or passed.websocket:
                    self.frontends = FrontendListener(
                        config=lambda: self.config.websocket, serve=self.serve_client,
                        authenticate=self.tokens.authenticate,
                        redeem=self.tokens.redeem_ticket, pair=self.tokens.open_pairing,
                        max_message_bytes=self.config.rpc.max_message_bytes,
                        site=self._console_site(), check_session=self.tokens.check_session)
                    await self.frontends.bind(passed.websocket)
                await self._serve(listener, wire, signals, task_status)
            finally:
                if self.control_socket_path is not None and self.wire_socket_path is not None:
                    control.release(self.control_socket_path, self.wire_socket_path)
                for path in bound:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        finally:
            # A stop nobody asked for (a fault in a core loop) stays unrecorded, so the next
            # start reports previous_run_unclean.
            clean = bool(self.shutdown_reason)
            with trio.CancelScope(shield=True):
                if clean:
                    await self._record_stop()
                await trio.to_thread.run_sync(self.store.close)
            (log.info if clean else log.error)(
                "daemon_stopped", clean=clean, reason=self.shutdown_reason or "a core task failed")

    async def _grant_existing_cwds(self) -> None:
        """With ``workspaces.confine_local``, what already worked keeps working: the folders of
        existing automations (the desktop's too), conversations and profiles are granted."""
        if not self.config.workspaces.confine_local:
            return
        from codexd.store import runs as runs_repo

        cwds = [cwd for known in self.automations.defs.values() for cwd in known.definition.cwds]
        convs = await self.store.read(lambda c: runs_repo.conv_list(
            c, include_archived=True, provider=None))
        profiles = await self.store.read(runs_repo.profile_list)
        defaults = [c.defaults for c in convs if c.defaults] + [p.defaults for p in profiles]
        cwds += [d.cwd for d in defaults if d.cwd]
        made = await self.workspaces.ensure(cwds, why="confine_local")
        if made:
            log.info("workspaces_granted_for_existing_work", count=len(made),
                     paths=[g.path for g in made])

    def _workspace_changed(self, change: Literal["granted", "revoked"], grant: Grant) -> None:
        if change == "revoked":
            self.watches.revoked(grant.real_path)
        self.publish(WORKSPACE_CHANGED.name, WorkspaceChanged(change=change, grant=grant))

    async def _generation_ended(self, generation: int, reason: str) -> None:
        self.turns.reset()  # no turn survives its app-server
        await self.approvals.expire_generation(generation, reason)

    def _busy_worktrees(self) -> list[tuple[str, str]]:
        """(what, cwd) of work in progress that a git mutation must not pull the rug from."""
        busy = self.turns.busy()
        busy += [(f"run {run_id}", cwd) for run_id, cwd in self.runs.active_cwds()]
        busy += [(f"automation {aid}", cwd) for aid, cwd in self.automations.active_cwds()]
        return busy

    def _adopt_passed_sockets(self) -> None:
        """Take the sockets a service manager passed (socket activation), once per process."""
        self.passed = activation.take(os.environ, ndjson_path=self.socket_path,
                                      appserver_path=self.wire_socket_path)
        if self.passed.ndjson is not None:
            path = Path(self.passed.ndjson.getsockname())
            if path != self.socket_path:
                # `systemd-socket-activate -l PATH codexd run`: serve where we were activated.
                log.info("socket_path_from_activation", socket=str(path),
                         configured=str(self.socket_path))
                self.socket_path = path
                if self.passed.appserver is None:
                    self.wire_socket_path = wire_socket(self.config, path)
        if self.passed.appserver is not None:
            self.wire_socket_path = Path(self.passed.appserver.getsockname())
        if self.passed.any:
            log.info("socket_activated", sockets=self.passed.describe())

    async def _listen_unix(self, path: Path, passed: socket.socket | None,
                           bound: list[Path]) -> trio.SocketListener:
        if passed is not None:
            with contextlib.suppress(OSError):  # private whatever SocketMode= said
                os.chmod(passed.getsockname(), 0o600)
            return trio.SocketListener(trio.socket.from_stdlib_socket(passed))
        remove_stale_socket(path)
        listener = await bind_listener(path)
        bound.append(path)
        return listener

    async def _serve(
        self, listener: trio.SocketListener, wire: trio.SocketListener | None, signals: Any,
        task_status: trio.TaskStatus[Daemon],
    ) -> None:
        async with trio.open_nursery() as services:
            self._services = services
            services.start_soon(self._signal_loop, signals)
            if self.notifier.watchdog_seconds:
                services.start_soon(self._watchdog_loop, self.notifier.watchdog_seconds)
            await services.start(self.terminals.run)
            await services.start(self.notify.run)
            services.start_soon(self.approvals.run_timeouts)
            if self.config.appserver.enabled:
                await services.start(self.appserver.run)
            await services.start(self.automations.run)
            self._startup_mark("scheduler_loaded_ms")
            await services.start(self.runs.run)
            await services.start(self.interactive.run)
            await services.start(self.watches.run)
            services.start_soon(self.faults.run, "retention", "", self.retention.run)
            async with trio.open_nursery() as clients:
                accept_scope = trio.CancelScope()
                unix = UnixListener(listener, self.serve_client)
                wire_listener = None if wire is None else AppServerListener(
                    wire, functools.partial(self.serve_client, wire=True),
                    max_message_bytes=self.config.rpc.max_message_bytes)

                async def accept() -> None:
                    with accept_scope:
                        async with trio.open_nursery() as listeners:
                            listeners.start_soon(unix.run, clients)
                            if wire_listener is not None:
                                listeners.start_soon(wire_listener.run, clients)
                            if self.frontends is not None:
                                listeners.start_soon(self.frontends.run, clients)

                clients.start_soon(accept)
                log.info(
                    "daemon_started", version=__version__, pid=os.getpid(),
                    socket=str(self.socket_path), db=str(self.db_path),
                    schema_migrated_from=self.store.migrated_from,
                )
                self.notifier.ready(f"serving on {self.socket_path}")
                task_status.started(self)
                await self._stop.wait()

                # Graceful stop: no new clients, tell the current ones, let work finish.
                grace = self.config.daemon.shutdown_grace_seconds
                self.shutting_down = True
                self.notifier.stopping(f"stopping: {self.shutdown_reason}")
                log.info("daemon_stopping", reason=self.shutdown_reason, grace_seconds=grace)
                accept_scope.cancel()
                self.publish(
                    SHUTTING_DOWN.name,
                    ShuttingDown(reason=self.shutdown_reason, grace_seconds=grace),
                )
                with trio.move_on_after(grace):
                    await self._wait_sessions_idle()
                clients.cancel_scope.cancel()
            services.cancel_scope.cancel()

    async def _wait_sessions_idle(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._wait_forced, nursery.cancel_scope)
            # Shutdown-only: a short poll is simpler than wiring an event through every queue.
            while any(not s.idle for s in self.sessions):  # noqa: ASYNC110
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    async def _wait_forced(self, scope: trio.CancelScope) -> None:
        await self._force.wait()
        scope.cancel()

    def _claim_control_socket(self, target: Path) -> None:
        """``appserver.control_socket``: lead CODEX_HOME's default socket to ours (never taken
        from a live app-server: that is logged, and codexd serves on without it)."""
        if not self.config.appserver.control_socket:
            return
        try:
            self.control_socket_path = control.claim(codex_home(self.config.appserver), target)
        except (CodexdError, OSError) as exc:
            log.error("control_socket_refused", error=str(exc))
            return
        log.info("control_socket_claimed", path=str(self.control_socket_path), target=str(target))

    async def serve_client(self, transport: Transport, *, wire: bool = False) -> None:
        """Serve one client of any transport (each listener checks its own peers first).

        ``wire``: the client speaks the app-server wire (it sees an app-server: the
        app-server's ``initialize``, notifications without codexd's stamps unless asked)."""
        if len(self.sessions) >= self.config.rpc.max_clients:
            log.warning("client_refused", reason="max_clients", limit=self.config.rpc.max_clients)
            await transport.refuse(ErrorCode.TOO_MANY_CLIENTS,
                                   f"too many clients (limit {self.config.rpc.max_clients})")
            return
        session = ClientSession(self, transport, routes=WIRE_ROUTES if wire else None)
        self.sessions.add(session)
        self.stats.clients_total += 1
        try:
            # A bug in one session ends that connection (closed in session.run's finally).
            with self.faults.boundary("session", f"conn {session.id}"):
                await session.run()
        finally:
            self.sessions.discard(session)
            self.session_closed(session)

    def _startup_mark(self, point: str) -> None:
        """The first time the start reaches ``point``: ms since exec, logged once."""
        if point in self.startup:
            return
        self.startup[point] = round((time.monotonic() - self.exec_monotonic) * 1000, 1)
        log.info("startup_timing", point=point, ms=self.startup[point])

    async def _inbox_retention_days(self) -> int:
        settings, _ = await self.store.read(settings_repo.load)
        return int(settings.inbox_retention_days)

    def _console_site(self) -> HttpSite:
        """Plain HTTP on the WebSocket port: the web console and its login (when
        websocket.console), /whoami and /metrics."""

        def console_dir() -> Path:
            given = self.config.websocket.console_dir
            return Path(given).expanduser() if given else PACKAGED_CONSOLE

        return HttpSite(authenticate=self.tokens.authenticate, redeem=self.tokens.redeem_ticket,
                        open_session=self.tokens.open_session,
                        check_session=self.tokens.check_session,
                        close_session=self.tokens.close_session, console_dir=console_dir,
                        console=lambda: self.config.websocket.console,
                        metrics=lambda: render_openmetrics(metrics_snapshot(self)))

    def _close_token(self, token_id: str) -> int:
        """A token was revoked: its live connections end now."""
        gone = [s for s in self.sessions if s.auth is not None and s.auth.token_id == token_id]
        for session in gone:
            session.disconnect("token_revoked")
        return len(gone)

    def session_closed(self, session: ClientSession) -> None:
        """Every feature forgets what the session followed or held."""
        self.events.threads.forget(session)
        self.runs.subscriptions.forget(session)
        self.terminals.session_closed(session)

    def session_drained(self, session: Viewer) -> None:
        """The session's output queue emptied (terminal attachments that lagged catch up)."""
        self.terminals.on_drained(session)

    async def _signal_loop(self, signals: Any) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("signal_received", signal="SIGHUP")
                self.reload()
            else:
                name = signal.Signals(signum).name
                log.info("signal_received", signal=name)
                self.request_shutdown(f"signal {name}")

    async def _watchdog_loop(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await trio.sleep(interval)

    # ------------------------------------------------------------------------ bookkeeping

    async def _record_start(self) -> None:
        self._run_id, prev = await self.store.write(functools.partial(
            daemon_runs.record_start, pid=os.getpid(), version=__version__,
            started_at=self.started_at_iso))
        if prev is not None:
            self.previous_run_unclean = True
            log.warning("previous_run_unclean", pid=prev.pid, started_at=prev.started_at,
                        hint="the last codexd was killed or crashed; see its log")

    async def _record_stop(self) -> None:
        if self._run_id is None:
            return
        with contextlib.suppress(Exception):
            await self.store.write(functools.partial(daemon_runs.record_stop,
                                                     run_id=self._run_id, at=now_iso()))
