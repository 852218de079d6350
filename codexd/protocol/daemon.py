"""The session and ``daemon/*`` methods."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import Count, NoParams, Params, Struct, method, notification

PROTOCOL_VERSION = 1


class ClientInfo(Params, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    version: Annotated[str, msgspec.Meta(max_length=200)] = ""
    title: str | None = None


class ClientCapabilities(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Lenient: app-server frontends send their own capability flags; unknown ones are kept out."""

    #: The client answers server requests (approvals, questions) sent to it.
    server_requests: bool = False


class InitializeParams(Params, frozen=True):
    client_info: ClientInfo
    capabilities: ClientCapabilities | None = None
    #: Resume after a reconnect: the epoch and last seq the client saw...
    epoch: str | None = None
    after_seq: Count | None = None
    #: ...and the subscriptions it had, restored before the replay is filtered by them.
    thread_ids: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]],
                          msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)
    all_threads: bool = False
    run_ids: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
                       msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)
    all_runs: bool = False


class ReplayInfo(Struct, frozen=True, omit_defaults=False):
    gap: bool
    count: int
    #: More was missed than one page holds: continue with events/replay from nextAfterSeq
    #: (live notifications after it may arrive first; drop any seq already seen).
    more: bool = False
    next_after_seq: int | None = None


class InitializeResult(Struct, frozen=True):
    server: str
    version: str
    protocol_version: int
    pid: int
    started_at: str
    connection_id: int
    epoch: str
    last_seq: int
    app_server_state: str
    user_agent: str | None = None
    codex_home: str | None = None
    platform_os: str | None = None
    platform_family: str | None = None
    replay: ReplayInfo | None = None


class MethodCount(msgspec.Struct, kw_only=True, rename="camel"):
    """Mutable (not a frozen ``Struct``): the daemon's counters are these structs, encoded as
    they are, with no copy per ``daemon/status``."""

    calls: int
    errors: int


class FaultInfo(Struct, frozen=True, omit_defaults=False):
    kind: str
    unit: str
    message: str
    at: str


class StartupTiming(Struct, frozen=True, omit_defaults=False):
    """Milliseconds from the process's exec to each point of the start (null: not yet, or off)."""

    socket_bound_ms: float | None = None
    scheduler_loaded_ms: float | None = None
    app_server_ready_ms: float | None = None


class DaemonStatus(Struct, frozen=True, omit_defaults=False):
    version: str
    protocol_version: int
    pid: int
    started_at: str
    uptime_seconds: float
    socket: str
    #: The app-server wire's socket (`codex --remote unix://PATH`), null when it is off.
    app_server_socket: str | None
    #: CODEX_HOME's default control socket, when it leads to codexd (appserver.control_socket).
    control_socket: str | None
    #: The WebSocket listener for frontends (ws:// or wss://), null when it is off.
    websocket: str | None
    db_path: str
    state_dir: str
    config_file: str | None
    clients_connected: int
    clients_total: int
    methods: dict[str, MethodCount]
    #: Where provider tokens are kept, e.g. "keyring (SecretService)" or "file ... (no keyring
    #: backend; auto fell back to the file)".
    secret_store: str = ""
    #: Contained faults by unit kind (session, request, terminal, run, ...): each ended that
    #: unit only. See docs/design.md, "Containment".
    faults: dict[str, int] = msgspec.field(default_factory=dict)
    last_fault: FaultInfo | None = None
    #: The daemon life before this one did not stop cleanly (killed, crashed).
    previous_run_unclean: bool = False
    #: "active" (this daemon fires the schedules of its CODEX_HOME), "passive (...)" (another
    #: codexd does; this one takes over when it stops) or "disabled".
    automations: str = "active"
    #: How long the start took, from exec (the first app-server ready only).
    startup: StartupTiming = msgspec.field(default_factory=StartupTiming)
    #: Paused provider lanes: provider → why (queue/list has the details).
    lanes_paused: dict[str, str] = msgspec.field(default_factory=dict)
    #: Lanes a usage limit paused: provider → when they resume by themselves (Unix ms).
    lanes_paused_until: dict[str, int] = msgspec.field(default_factory=dict)


class CheckResult(Struct, frozen=True):
    ok: bool
    detail: str | None = None


class DaemonHealth(Struct, frozen=True):
    ok: bool
    checks: dict[str, CheckResult]


class ShutdownParams(Params, frozen=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ShutdownResult(Struct, frozen=True):
    stopping: bool
    grace_seconds: float


class ShuttingDown(Struct, frozen=True):
    reason: str
    grace_seconds: float


class Initialized(NoParams, frozen=True):
    pass


INITIALIZE = method(
    "initialize",
    InitializeParams,
    InitializeResult,
    "Open the session; must be the first request on a connection.",
)
DAEMON_STATUS = method(
    "daemon/status", NoParams, DaemonStatus, "Version, paths, uptime, clients and call counts."
)
DAEMON_HEALTH = method(
    "daemon/health", NoParams, DaemonHealth, "Whether the daemon and its store are working."
)
class GcParams(Params, frozen=True):
    #: Only count what the policies would delete.
    dry_run: bool = False


class GcTable(Struct, frozen=True, omit_defaults=False):
    name: str
    #: The policy in words, with its configured figure.
    rule: str
    #: Rows the policy matched when the pass began.
    eligible: int
    deleted: int


class GcResult(Struct, frozen=True, omit_defaults=False):
    dry_run: bool
    tables: list[GcTable]
    #: The database file and its WAL, before and after the pass.
    bytes_before: int
    bytes_after: int
    duration_ms: float


DAEMON_GC = method(
    "daemon/gc", GcParams, GcResult,
    "Apply the retention policies now (dryRun: only count), then free the pages."
)

class WindowStats(Struct, frozen=True, omit_defaults=False):
    calls: int
    errors: int
    #: Latency in milliseconds: the mean, and quantiles estimated from the histogram buckets
    #: (null with no calls in the window).
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class MethodMetrics(Struct, frozen=True, omit_defaults=False):
    #: "codexd" (answered by codexd), "appserver" (forwarded), "unknown" (a name neither knows,
    #: all under "(unknown)") or "invalid" (not a request at all, under "(invalid)").
    owner: str
    #: Since the daemon started.
    calls: int
    errors: int
    sum_ms: float
    #: Calls per latency bucket (bucketBoundsMs, then one unbounded), not cumulative.
    buckets: list[int]
    #: Error answers by JSON-RPC code.
    error_codes: dict[str, int]
    #: "1m", "5m", "1h": sliding in 10-second (1m, 5m) and 1-minute (1h) steps.
    windows: dict[str, WindowStats]


class AppServerGauges(Struct, frozen=True, omit_defaults=False):
    state: str
    generation: int
    restarts: int
    breaker_open: bool
    recent_failures: int


class MetricsGauges(Struct, frozen=True, omit_defaults=False):
    clients_connected: int
    #: By transport: unix (NDJSON), appserver (the app-server wire), websocket.
    clients_by_transport: dict[str, int]
    pending_approvals: int
    runs_queued: dict[str, int]
    runs_running: dict[str, int]
    lanes_paused: list[str]
    terminals: int
    automations_scheduled: int
    #: How late the last automation fired after its due time (null: none fired yet).
    scheduler_lag_ms: float | None
    db_bytes: int
    wal_bytes: int
    event_seq: int


class DaemonMetrics(Struct, frozen=True, omit_defaults=False):
    version: str
    at: str
    uptime_seconds: float
    bucket_bounds_ms: list[float]
    methods: dict[str, MethodMetrics]
    gauges: MetricsGauges
    app_server: AppServerGauges
    #: Tokens reported by runs' usage events since start: provider → kind → count.
    tokens: dict[str, dict[str, int]]
    #: Runs finished since start: provider → status → count.
    runs_finished: dict[str, dict[str, int]]
    #: Notifications since start: channel → sent | failed | suppressed → count.
    notifications: dict[str, dict[str, int]]
    faults: dict[str, int]


DAEMON_METRICS = method(
    "daemon/metrics", NoParams, DaemonMetrics,
    "Per-method latency and errors (since start and over 1 min, 5 min, 1 h), gauges, counters."
)

class DiagnosticsParams(Params, frozen=True):
    log_lines: Annotated[int, msgspec.Meta(ge=0, le=2000)] = 500
    calls: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 200


class CallFingerprint(Struct, frozen=True):
    at: str
    method: str
    owner: str
    duration_ms: float
    #: The error code; null: answered with a result.
    code: int | None


class DiagnosticsResult(Struct, frozen=True):
    #: The daemon's last log events as JSON lines, redacted.
    log_tail: list[str]
    #: The app-server's last stderr lines, redacted.
    app_server_stderr: list[str]
    #: The last calls, oldest first: method, timing, outcome (never params or results).
    recent_calls: list[CallFingerprint]
    #: Rows per database table (no contents).
    tables: dict[str, int]
    #: Versions of codexd, Python, its libraries, SQLite, the app-server and the CLIs.
    versions: dict[str, str]


DAEMON_DIAGNOSTICS = method(
    "daemon/diagnostics", DiagnosticsParams, DiagnosticsResult,
    "What a diagnostics bundle needs from the daemon: log tail, app-server stderr, call "
    "fingerprints, table sizes, versions; all redacted.",
)

DAEMON_SHUTDOWN = method(
    "daemon/shutdown", ShutdownParams, ShutdownResult, "Answer, then stop the daemon gracefully."
)

INITIALIZED = notification(
    "initialized", Initialized, "Client → daemon: the client is ready for notifications."
)
SHUTTING_DOWN = notification(
    "daemon/shuttingDown", ShuttingDown, "The daemon is stopping; reconnect after it restarts."
)
