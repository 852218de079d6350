"""The daemon's configuration: TOML read with tomlkit into frozen msgspec structs.

Precedence, highest first: command-line flags, environment (``CODEXD_SOCKET``,
``CODEXD_STATE_DIR``), the config file, the defaults below. Every key is documented in
docs/configuration.md (a test checks the two agree). Unknown keys and bad values are errors that
name the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import tomlkit
import tomlkit.exceptions

from codexd.errors import ConfigError

MiB = 1024 * 1024

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class DaemonSection(_Section, frozen=True):
    #: Socket path; empty = the default (see docs/configuration.md). Not reloadable.
    socket: str = ""
    #: State directory holding codexd.db; empty = the default. Not reloadable.
    state_dir: str = ""
    #: Seconds in-flight work gets to finish at shutdown before it is cancelled.
    shutdown_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0


class LogSection(_Section, frozen=True):
    #: "auto" = console on a terminal, JSON otherwise.
    format: LogFormat = "auto"
    level: LogLevel = "info"
    #: Log one line per RPC call (method, duration, outcome) at info level; otherwise at debug.
    rpc_calls: bool = True


class RpcSection(_Section, frozen=True):
    #: Longest inbound message (one line) in bytes; longer ones are refused and discarded.
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * MiB)] = 8 * MiB
    #: Bytes queued for one client before it is disconnected as too slow.
    client_queue_bytes: Annotated[int, msgspec.Meta(ge=64 * 1024, le=4096 * MiB)] = 32 * MiB
    #: Requests one client may have in progress; further input waits (backpressure).
    max_inflight_per_client: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    #: Connected clients at most; more are refused with a message.
    max_clients: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1024
    #: Notifications held for a client between initialize and initialized.
    pending_notifications: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 1000
    #: A connection that has not sent initialize by then is closed (0 = never).
    initialize_timeout_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0


class StoreSection(_Section, frozen=True):
    #: How long a write waits for a lock held by another process, in milliseconds.
    busy_timeout_ms: Annotated[int, msgspec.Meta(ge=5000, le=600_000)] = 5000


Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


class AppServerSection(_Section, frozen=True):
    #: Run and supervise `codex app-server`; false = codexd's own methods only.
    enabled: bool = True
    #: The codex executable; empty = `codex` on PATH, else the project-local install.
    command: str = ""
    #: Arguments after the executable.
    args: list[str] = msgspec.field(default_factory=lambda: ["app-server"])
    #: Extra `-c key=value` overrides passed to codex.
    config_overrides: list[str] = msgspec.field(default_factory=list)
    #: CODEX_HOME for the app-server; empty = inherited (codex's default ~/.codex).
    codex_home: str = ""
    #: How long a request waits for the app-server to become ready before failing.
    ready_wait_seconds: Seconds = 10.0
    #: Requests in flight to the app-server at most; the rest queue fairly inside codexd.
    max_inflight: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    #: How long an overloaded app-server's requests are retried before codexd gives up.
    overload_retry_seconds: Seconds = 60.0
    handshake_timeout_seconds: Seconds = 30.0
    backoff_initial_seconds: Seconds = 0.5
    backoff_max_seconds: Seconds = 30.0
    #: A run healthy this long resets the backoff ladder.
    backoff_reset_after_seconds: Seconds = 60.0
    #: This many failures within breaker_window_seconds → state failed until restarted by hand.
    breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    breaker_window_seconds: Seconds = 300.0
    #: How often a cheap request checks a ready app-server, and how long it may take.
    health_interval_seconds: Seconds = 30.0
    health_timeout_seconds: Seconds = 10.0
    #: After stdin closes and SIGTERM, how long before SIGKILL of the process group.
    stop_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    #: The app-server's working directory: where a thread starts when its client names no cwd
    #: (the stock TUI attached with --remote does not). Empty = the home directory.
    cwd: str = ""
    #: codexd's connection to the app-server declares `experimentalApi` (needed by clients that
    #: use experimental methods or fields, such as the stock TUI's turn/start).
    experimental_api: bool = True
    #: Also serve the app-server's own wire (WebSocket on a Unix socket, what
    #: `codex app-server --listen unix://` speaks) so `codex --remote unix://PATH` attaches here.
    serve_socket: bool = True
    #: That socket's path; empty = app-server.sock beside codexd's socket.
    socket: str = ""
    #: Also make this CODEX_HOME's default control socket
    #: ($CODEX_HOME/app-server-control/app-server-control.sock) lead to that socket, so that
    #: `codex --remote unix://` with no path attaches here. Never taken from a live app-server.
    control_socket: bool = False
    #: Longest line accepted from the app-server.
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=4096 * MiB)] = 256 * MiB
    #: stderr lines logged per second at most (all are kept in the status tail).
    stderr_log_per_second: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 20


class EventsSection(_Section, frozen=True):
    #: Notifications kept for replay after a reconnect.
    ring_size: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 10_000
    #: ...and at most this many bytes of them (the oldest go first).
    ring_bytes: Annotated[int, msgspec.Meta(ge=64 * 1024, le=4096 * MiB)] = 64 * MiB


class ApprovalsSection(_Section, frozen=True):
    #: Answer a server request nobody answered after this many seconds; 0 = wait forever.
    timeout_seconds: Annotated[float, msgspec.Meta(ge=0, le=30 * 86_400)] = 0.0
    #: Per-method answer used at the timeout, as a decision string (e.g. "decline"); methods
    #: without one get a JSON-RPC error upstream.
    defaults: dict[str, str] = msgspec.field(default_factory=dict)


class TerminalSection(_Section, frozen=True):
    #: Output kept per terminal and replayed in the attach snapshot.
    scrollback_bytes: Annotated[int, msgspec.Meta(ge=4096, le=256 * MiB)] = 1 * MiB
    #: Output a client may have queued before it is resynced with a snapshot instead.
    client_lag_bytes: Annotated[int, msgspec.Meta(ge=65536, le=256 * MiB)] = 1 * MiB
    max_terminals: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    #: After the first signal at close, how long before SIGKILL.
    close_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 2.0
    #: Close terminals nobody attached to for this long (exited ones right away); 0 = never.
    reap_detached_seconds: Annotated[float, msgspec.Meta(ge=0, le=365 * 86_400)] = 0.0
    #: The program for terminal/create without a command; empty = the user's login shell.
    default_shell: str = ""


class AutomationsSection(_Section, frozen=True):
    #: Run the scheduler; false = automations can be edited but never fire.
    enabled: bool = True
    #: Where automation.toml files live: `<codex_home>/automations/<id>/`; empty =
    #: appserver.codex_home, else $CODEX_HOME, else ~/.codex.
    codex_home: str = ""
    #: The zone of automations that name none (IANA); empty = the machine's zone.
    timezone: str = ""
    #: Automation runs in progress at once; due runs beyond it wait their turn.
    max_concurrent_runs: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    #: A run whose turn has not completed after this long is interrupted.
    run_timeout_seconds: Annotated[float, msgspec.Meta(ge=10, le=7 * 86_400)] = 3600.0
    #: A run this late (machine asleep, daemon down) counts as missed: the automation's
    #: missed_policy decides (runOnce or skip).
    missed_after_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 300.0
    #: Rules that fire more often than this are refused.
    min_interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 60.0
    #: How often automation.toml files are re-read for hand edits; 0 = only on SIGHUP and
    #: automation/rescan.
    rescan_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 60.0
    #: Longest sleep of the idle scheduler before it re-reads the wall clock (a suspended
    #: machine's monotonic clock stops; this bounds how late a run can be noticed after resume).
    clock_check_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 60.0


class ExecutorSection(_Section, frozen=True):
    #: Where queued runs execute: "local" (this machine) or "temporal" (``codexd worker``
    #: processes on any machine, through a Temporal cluster). Per run or profile: executor.
    kind: Literal["local", "temporal"] = "local"
    #: The Temporal frontend (host:port).
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    #: The task queue codexd's workers poll.
    task_queue: str = "codexd-runs"
    #: TLS to the Temporal frontend (implied by tls_ca, tls_cert or an API key).
    tls: bool = False
    #: PEM files: the server's root CA; a client certificate and key for mTLS.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    #: The name the server's certificate is checked against, when not the address's host.
    tls_server_name: str = ""
    #: The environment variable holding an API key (Temporal Cloud); empty = none.
    api_key_env: str = ""
    #: Connecting (and run/start's check) gives up after this long with a clear error.
    connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    #: A worker that has not heartbeated for this long is lost: its attempt is retried on
    #: another worker.
    heartbeat_timeout_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 10.0
    #: Attempts lost with their worker that are retried, beyond max_retries.
    max_worker_losses: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    #: PEM file: the CA workers' wss:// certificates are checked against (empty = the
    #: system's CAs).
    worker_tls_ca: str = ""
    #: A run.warning when no worker has taken a dispatched attempt for this long (0 = never).
    worker_wait_warning_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0


class WorkerSection(_Section, frozen=True):
    """``codexd worker`` (the runs of ``[runs.executor]``'s task queue, on this machine)."""

    #: Shown in run records and the Temporal UI; empty = host name and pid.
    name: str = ""
    #: Attempts this worker runs at once.
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    #: host:port the user's codexd reads a run's events from (port 0 = any free one).
    listen: str = "127.0.0.1:0"
    #: The URL daemons use for it (behind NAT or a proxy); empty = from listen.
    advertise: str = ""
    #: PEM certificate and key: serve wss:// (required for a non-loopback listen).
    tls_cert: str = ""
    tls_key: str = ""


class RunsSection(_Section, frozen=True):
    #: Provider runs in progress at once, and per provider.
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    max_per_provider: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    #: Queued runs at most; run/start beyond it is refused (-32060).
    queue_capacity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 512
    #: A queued run gains one priority step per this many seconds of waiting (0 = no aging).
    aging_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0
    #: timeoutSeconds of a run that names none (and no profile does).
    default_timeout_seconds: Annotated[int, msgspec.Meta(ge=5, le=10_800)] = 1800
    #: After SIGTERM to a canceled or timed-out run's process group, how long before SIGKILL.
    cancel_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 3.0
    #: Longer stdout/stderr lines are truncated (with a run.warning).
    max_line_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * MiB)] = 1 * MiB
    #: The CLIs; empty = on PATH, else the project-local npm install.
    codex_command: str = ""
    claude_command: str = ""
    #: CODEX_HOME for codex runs; empty = inherited.
    codex_home: str = ""
    #: Where secret/set keeps tokens: keyring, file (0600 in the state dir), or auto.
    secret_store: Literal["keyring", "file", "auto"] = "auto"
    #: After an unclean stop, lanes with queued runs stay paused until resumed (pueue's rule).
    pause_after_unclean: bool = True
    #: A run stopped at a usage limit: "resume" (re-queued, continued in its own session
    #: after the reset) or "fail".
    on_usage_limit: Literal["resume", "fail"] = "resume"
    #: A run is resumed after a usage limit at most this many times.
    max_limit_resumes: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5
    #: How long a lane pauses for a limit whose reset time the provider did not say.
    limit_pause_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 300.0
    #: claude's permission prompts: "codexd" (pending approvals in codexd's queue, answered
    #: like Codex's), "deny" (nobody answers: denied at once), "off" (claude's own -p rules).
    claude_approvals: Literal["codexd", "deny", "off"] = "codexd"
    #: Interactive codex sessions (session/start) run the TUI on codexd's app-server
    #: (`codex --remote`, when its wire socket is served): the thread is shared with every
    #: client and its approvals are codexd's. False: the TUI runs its own app-server.
    session_codex_remote: bool = True
    #: session/input: the pause between the text and its Enter (a TUI reads both arriving
    #: together as a paste).
    session_submit_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 400
    #: Where runs execute ([runs.executor]; docs/operations.md, "Running a fleet").
    executor: ExecutorSection = msgspec.field(default_factory=ExecutorSection)


class WebSocketSection(_Section, frozen=True):
    #: host:port for frontends (codexd's protocol over WebSocket, a token on every connection);
    #: a taken port moves to the next free one; port 0 = any; empty = off.
    listen: str = "127.0.0.1:4870"
    #: PEM certificate and key: serve wss:// (required for a non-loopback listen).
    tls_cert: str = ""
    tls_key: str = ""
    #: Origins a browser may connect from; empty = the listener's own origin only.
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    #: Host header values accepted (DNS rebinding); empty = localhost, 127.0.0.1, ::1 and the
    #: listen host.
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    #: Listen on a non-loopback address without TLS anyway (a warning at every start).
    allow_insecure_remote: bool = False
    #: Serve the web console (and its login) at / on this listener.
    console: bool = True
    #: Where the built console is; empty = the one packaged with codexd (`make web`).
    console_dir: str = ""


class WorkspacesSection(_Section, frozen=True):
    #: Confine local (Unix-socket) clients to workspace grants too: terminal, run and
    #: automation cwds, and the app-server's fs/* and command/exec. Token holders always are.
    confine_local: bool = False


class GitSection(_Section, frozen=True):
    #: How long a fetch/pull/push waits for someone to answer git's credential prompt.
    credential_timeout_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 120.0


class RetentionSection(_Section, frozen=True):
    #: Run the policies every interval_minutes (codexctl gc runs them whenever asked).
    enabled: bool = True
    interval_minutes: Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 60)] = 60.0
    #: Finished runs and their events older than this many days are deleted (0 = keep).
    runs_days: Annotated[int, msgspec.Meta(ge=0, le=36_500)] = 30
    #: Answered, expired and timed-out approvals older than this (0 = keep).
    approvals_days: Annotated[int, msgspec.Meta(ge=0, le=36_500)] = 90
    #: Finished runs kept per automation, newest first (0 = keep all).
    automation_runs_keep: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 200
    #: Audit log entries older than this (0 = keep).
    audit_days: Annotated[int, msgspec.Meta(ge=0, le=36_500)] = 180
    #: Rows deleted per write transaction (other writers wait at most one batch).
    batch_rows: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 500


NotifyEvent = Literal["turn-complete", "approval", "run-finished", "run-failed",
                      "automation-finished", "automation-failed", "breaker-open", "lane-resumed"]


class NotifySection(_Section, frozen=True):
    #: Which events notify (every one by default; turn-complete also needs the
    #: notifyOnTurnComplete setting, true by default).
    events: list[NotifyEvent] = msgspec.field(default_factory=lambda: [
        "turn-complete", "approval", "run-finished", "run-failed", "automation-finished",
        "automation-failed", "breaker-open", "lane-resumed"])
    #: A program run per notification with the JSON payload as its last argument (the same as
    #: Codex's notify = [...]); empty = off.
    program: list[str] = msgspec.field(default_factory=list)
    #: Desktop notifications: "on" (the freedesktop service on the D-Bus session bus;
    #: osascript on macOS), "auto" (on when a session bus or macOS is there), "off".
    desktop: Literal["on", "auto", "off"] = "off"
    #: A webhook: POST the payload here (https, or http to a loopback address); empty = off.
    webhook_url: str = ""
    #: The HMAC-SHA256 key of the webhook's X-Codexd-Signature header (never logged).
    webhook_secret: str = ""
    #: An approval notifies only if it is still waiting after this long (0 = at once).
    approval_delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0
    #: A channel that takes longer is stopped (a program: its process group killed).
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    #: Notifications waiting to be sent at most; more are dropped (and counted).
    max_queued: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 200

    def __post_init__(self) -> None:
        if self.webhook_url:
            url = urllib.parse.urlsplit(self.webhook_url)
            host = url.hostname or ""
            if url.scheme not in ("http", "https") or not host:
                raise ValueError("webhook_url must be an http(s) URL")
            if url.scheme == "http" and not is_loopback(host):
                raise ValueError("webhook_url must use https unless it is on a loopback "
                                 "address (the payload holds your agent's messages)")


def is_loopback(host: str) -> bool:
    """A loopback name or address (the only hosts plain http or ws may use)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Config(_Section, frozen=True):
    daemon: DaemonSection = msgspec.field(default_factory=DaemonSection)
    log: LogSection = msgspec.field(default_factory=LogSection)
    rpc: RpcSection = msgspec.field(default_factory=RpcSection)
    store: StoreSection = msgspec.field(default_factory=StoreSection)
    appserver: AppServerSection = msgspec.field(default_factory=AppServerSection)
    events: EventsSection = msgspec.field(default_factory=EventsSection)
    approvals: ApprovalsSection = msgspec.field(default_factory=ApprovalsSection)
    terminal: TerminalSection = msgspec.field(default_factory=TerminalSection)
    automations: AutomationsSection = msgspec.field(default_factory=AutomationsSection)
    runs: RunsSection = msgspec.field(default_factory=RunsSection)
    websocket: WebSocketSection = msgspec.field(default_factory=WebSocketSection)
    git: GitSection = msgspec.field(default_factory=GitSection)
    workspaces: WorkspacesSection = msgspec.field(default_factory=WorkspacesSection)
    retention: RetentionSection = msgspec.field(default_factory=RetentionSection)
    notify: NotifySection = msgspec.field(default_factory=NotifySection)
    worker: WorkerSection = msgspec.field(default_factory=WorkerSection)


#: Keys whose change needs a restart; SIGHUP logs a warning and keeps the running value.
NOT_RELOADABLE = (
    "daemon.socket",
    "daemon.state_dir",
    "appserver.serve_socket",
    "appserver.socket",
    "appserver.control_socket",
    "websocket.listen",
    "websocket.tls_cert",
    "websocket.tls_key",
    "websocket.allow_insecure_remote",
    "store.busy_timeout_ms",
    "events.ring_size",
    "events.ring_bytes",
    "automations.enabled",
    "automations.codex_home",
    "automations.timezone",
    "automations.clock_check_seconds",
    "runs.secret_store",
)
#: Keys that take effect at the app-server's next (re)start.
APPLIED_ON_APPSERVER_RESTART = (
    "appserver.enabled",
    "appserver.command",
    "appserver.cwd",
    "appserver.args",
    "appserver.config_overrides",
    "appserver.codex_home",
    "appserver.experimental_api",
)

_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_FIELD = re.compile(r"field `([^`]+)`")


def _error_key(msg: str) -> tuple[str, str]:
    """Split a msgspec message into (dotted key, message without the path)."""
    path = ""
    if m := _AT.search(msg):
        path = m.group(1)
        msg = msg[: m.start()]
    if f := _FIELD.search(msg):
        path = f"{path}.{f.group(1)}" if path else f.group(1)
    return path, msg


def parse(text: str, *, source: str = "config.toml") -> Config:
    """Parse TOML text into a :class:`Config`.

    Raises:
        ConfigError: the TOML is malformed, or a key is unknown or has a bad value; the message
            names the file and the key.
    """
    try:
        doc = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.TOMLKitError as exc:  # ParseError, KeyAlreadyPresent, ...
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    _refuse_nul(doc, source)
    try:
        return msgspec.convert(doc, Config)
    except msgspec.ValidationError as exc:
        key, detail = _error_key(str(exc))
        where = f"key `{key}`" if key else "top level"
        raise ConfigError(f"{source}: {where}: {detail}") from None


def _refuse_nul(value: object, source: str, key: str = "") -> None:
    """No string in the config may hold a NUL: paths, commands and env values cannot."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError(f"{source}: key `{key}`: contains a NUL byte (\\u0000); paths, "
                              "commands and names cannot")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_nul(v, source, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_nul(v, source, f"{key}[{i}]")


def load(path: Path | None, *, required: bool = False) -> Config:
    """Read the config file; an absent file means defaults unless ``required``.

    Raises:
        ConfigError: unreadable, malformed or invalid.
    """
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse(text, source=str(path))


def with_overrides(
    cfg: Config,
    *,
    socket: str | None = None,
    state_dir: str | None = None,
    log_format: str | None = None,
    log_level: str | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Apply environment overrides, then command-line flags (validated like the file)."""
    env = os.environ if environ is None else environ
    daemon: dict[str, object] = {}
    log: dict[str, object] = {}
    if v := env.get("CODEXD_SOCKET"):
        daemon["socket"] = v
    if v := env.get("CODEXD_STATE_DIR"):
        daemon["state_dir"] = v
    if socket:
        daemon["socket"] = socket
    if state_dir:
        daemon["state_dir"] = state_dir
    if log_format:
        log["format"] = log_format
    if log_level:
        log["level"] = log_level.lower()
    merged = msgspec.to_builtins(cfg)
    merged["daemon"].update(daemon)
    merged["log"].update(log)
    _refuse_nul({"daemon": daemon, "log": log}, "command line/environment")
    try:
        return msgspec.convert(merged, Config)
    except msgspec.ValidationError as exc:
        key, detail = _error_key(str(exc))
        raise ConfigError(f"command line/environment: key `{key}`: {detail}") from None


def reload_changes(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """Compare two configs; returns (changed reloadable keys, changed keys needing a restart)."""
    a = _flatten(msgspec.to_builtins(old))
    b = _flatten(msgspec.to_builtins(new))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    restart = [k for k in changed if k in NOT_RELOADABLE]
    return [k for k in changed if k not in NOT_RELOADABLE], restart


#: Tables inside a section that are sections of their own (``[runs.executor]``).
NESTED = frozenset({"runs.executor"})


def _flatten(d: dict[str, dict[str, object]]) -> dict[str, object]:
    """``{section: {key: value}}`` → ``{"section.key": value}`` (values may be tables)."""
    out: dict[str, object] = {}
    for section, keys in d.items():
        for key, value in keys.items():
            name = f"{section}.{key}"
            if name in NESTED and isinstance(value, dict):
                out.update({f"{name}.{k}": v for k, v in value.items()})
            else:
                out[name] = value
    return out


#: Config keys whose value is a secret: shown as "[REDACTED]" wherever a config is printed.
SECRET_KEYS = frozenset({"notify.webhook_secret"})
REDACTED = "[REDACTED]"


def secret_values(cfg: Config) -> list[str]:
    """The secrets the config holds (to redact them from anything else shown)."""
    out = msgspec.to_builtins(cfg)
    values = [out.get(k.split(".")[0], {}).get(k.split(".")[1]) for k in SECRET_KEYS]
    return [v for v in values if isinstance(v, str) and v]


def redacted(cfg: Config) -> dict[str, Any]:
    """``cfg`` as builtins, with every secret value replaced (``codexd config``, bundles)."""
    out: dict[str, Any] = msgspec.to_builtins(cfg)
    for key in SECRET_KEYS:
        section, name = key.split(".")
        if out.get(section, {}).get(name):
            out[section][name] = REDACTED
    return out


def documented_keys() -> dict[str, object]:
    """Every ``section.key`` with its default (used by the docs test and ``codexd config``)."""
    return _flatten(msgspec.to_builtins(Config()))
