"""``run/*``, ``queue/list``, ``conversation/*``, ``profile/*``, ``provider/*``, ``secret/*``:
provider runs (`codex exec --json`, `claude -p`), queued and executed by codexd."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from codexd.protocol.base import (
    NO_NUL,
    Count,
    EnvName,
    Int64,
    NoParams,
    OsArg,
    OsPath,
    OsShort,
    Params,
    Struct,
    method,
    notification,
)

ProviderName = Literal["codex", "claude"]
Sandbox = Literal["read-only", "workspace-write", "danger-full-access"]
RunMode = Literal["exec", "interactive"]
Executor = Literal["local", "temporal"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "interrupted"]
RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
Priority = Annotated[int, msgspec.Meta(ge=-10, le=10)]
Timeout = Annotated[int, msgspec.Meta(ge=5, le=10_800)]
Retries = Annotated[int, msgspec.Meta(ge=0, le=10)]
Backoff = Annotated[int, msgspec.Meta(ge=100, le=600_000)]
Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=1_000_000)]
Text = OsShort
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]


McpName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ConfigKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                        pattern=r"^[A-Za-z0-9_.-]+$")]
ConfigValue = str | Int64 | float | bool | list[str]


class McpServer(Params, frozen=True):
    """A stdio MCP server: the command and its arguments and environment."""

    command: OsPath
    args: Annotated[list[OsArg], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list)
    env: dict[EnvName, OsArg] = msgspec.field(default_factory=dict)


class Harness(Params, frozen=True):
    """Per-run execution limits and tool rules (seed 003 "harness")."""

    #: Overrides timeoutSeconds, in ms.
    timeout_ms: Annotated[int, msgspec.Meta(ge=5000, le=10_800_000)] | None = None
    #: A command's output kept in run.semantic at most (lines).
    max_tool_result_lines: Annotated[int, msgspec.Meta(ge=1, le=20_000)] | None = None
    allowed_tools: list[Text] | None = None
    disallowed_tools: list[Text] | None = None
    append_system_prompt: Annotated[str, msgspec.Meta(max_length=100_000,
                                                      pattern=NO_NUL)] | None = None
    #: Cancel the run once its usage reports more tokens than this (input + output, all turns).
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)] | None = None
    #: Stop the run once the agent starts more model responses than this (claude: its turns,
    #: counted from its stream; codex exec reports no steps: dropped with a warning).
    max_turns: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    #: Stop the run when it prints nothing for this long (ms); reason "idleTimeout".
    idle_timeout_ms: Annotated[int, msgspec.Meta(ge=1000, le=10_800_000)] | None = None
    #: MCP servers for this run only: codex gets them as -c mcp_servers.<name>.…, claude in
    #: its --mcp-config.
    mcp: Annotated[dict[McpName, McpServer], msgspec.Meta(max_length=50)] | None = None
    #: codex config overrides (-c key=value; values as TOML); claude: dropped with a warning.
    config: Annotated[dict[ConfigKey, ConfigValue], msgspec.Meta(max_length=200)] | None = None
    #: Images attached to the prompt (codex --image; absolute paths).
    images: Annotated[list[OsPath], msgspec.Meta(max_length=20)] | None = None
    #: More folders the agent may write in (--add-dir; absolute paths).
    add_dirs: Annotated[list[OsPath], msgspec.Meta(max_length=20)] | None = None
    #: A codex config profile (--profile).
    codex_profile: Text | None = None
    #: Continue this agent session (codex exec resume ID, claude --resume ID).
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                            pattern=r"^[A-Za-z0-9._:-]+$")] | None = None
    #: Continue the CLI's most recent session in this cwd (exec resume --last, --continue).
    continue_last: bool = False
    #: codex: a CODEX_HOME of this run's own (of its profile's, when it has one) under the
    #: state dir, instead of the shared one: its own config, sessions and logs.
    isolated_home: bool = False
    #: With isolatedHome: copy the login (auth.json only) from the shared CODEX_HOME.
    copy_login: bool = False


class Options(Params, frozen=True):
    """Everything about a run that a profile can default (null = inherit)."""

    provider: ProviderName | None = None
    cwd: OsPath | None = None
    model: Text | None = None
    priority: Priority | None = None
    timeout_seconds: Timeout | None = None
    max_retries: Retries | None = None
    retry_backoff_ms: Backoff | None = None
    sandbox: Sandbox | None = None
    auto_approve: bool | None = None
    #: A spending cap in US dollars: claude's --max-budget-usd; for codex, the cost its usage
    #: events report (none do today: a run.compatibility_warning says so).
    max_budget_usd: Annotated[float, msgspec.Meta(gt=0, le=100_000)] | None = None
    #: Where it runs: "local" (this machine) or "temporal" (a codexd worker on the fleet);
    #: null = runs.executor.kind.
    executor: Executor | None = None


class RunStartParams(Options, frozen=True, kw_only=True):
    prompt: Prompt
    profile: Name | None = None
    output_schema: dict[str, Any] | None = None
    env: dict[EnvName, OsArg] | None = None
    harness: Harness | None = None
    conversation_id: RunId | None = None


class RunRequest(Struct, frozen=True, omit_defaults=False):
    """A run's complete request once profile defaults are merged (stored with the run)."""

    provider: ProviderName
    prompt: str
    cwd: str
    priority: int
    timeout_seconds: int
    max_retries: int
    retry_backoff_ms: int
    auto_approve: bool
    model: str | None = None
    sandbox: Sandbox | None = None
    profile: str | None = None
    output_schema: dict[str, Any] | None = None
    #: Values are shown as "[REDACTED]" outside the daemon.
    env: dict[str, str] = msgspec.field(default_factory=dict)
    harness: Harness | None = None
    max_budget_usd: float | None = None
    #: An interactive codex session: its TUI runs on codexd's app-server (`codex --remote`).
    remote: bool | None = None
    #: "local" or "temporal" (null in runs stored before executors: local).
    executor: Executor | None = None


class Run(Struct, frozen=True):
    run_id: str
    status: RunStatus
    request: RunRequest
    attempt: int
    created_at: int
    last_seq: int
    conversation_id: str | None = None
    session_id: str | None = None
    rerun_of: str | None = None
    exit_code: int | None = None
    #: Why it ended as it did: "timeout", "canceled", "cliMissing", "cwdMissing",
    #: "spawnFailed", "exitCode", "turnFailed", "daemonStopped", "resumeRejected".
    reason: str | None = None
    error: str | None = None
    result_text: str | None = None
    next_attempt_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    #: Times it stopped at a usage limit and was resumed after the reset (not retries).
    limit_resumes: int = 0
    #: "exec" (a queued ``codex exec`` / ``claude -p`` run) or "interactive" (``session/start``:
    #: the provider's own interactive CLI in a codexd terminal).
    mode: RunMode = "exec"
    #: interactive: the terminal it runs in (``terminal/attach`` it) while it is open.
    terminal_id: str | None = None
    #: The temporal executor: the worker that ran (or runs) its latest attempt.
    worker: str | None = None


class RunStarted(Struct, frozen=True, omit_defaults=False):
    run_id: str
    status: RunStatus


class RunRef(Params, frozen=True):
    run_id: RunId


class RunListParams(Params, frozen=True):
    status: RunStatus | None = None
    mode: RunMode | None = None
    provider: ProviderName | None = None
    conversation_id: RunId | None = None
    limit: Limit = 50
    #: The ``nextCursor`` of the previous page.
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class RunList(Struct, frozen=True):
    runs: list[Run]
    next_cursor: str | None = None


class RerunParams(Params, frozen=True):
    run_id: RunId
    overrides: Options | None = None


class RunEventsParams(Params, frozen=True):
    run_id: RunId
    after_seq: Count = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10_000


class RunEvent(Struct, frozen=True, omit_defaults=False):
    run_id: str
    seq: int
    type: str
    data: msgspec.Raw
    at: int
    #: The attempt it belongs to (null: between attempts, e.g. queued or canceled).
    attempt: int | None = None


class RunEvents(Struct, frozen=True, omit_defaults=False):
    events: list[RunEvent]
    #: True when the run has ended and every event was returned.
    complete: bool


class ExportParams(Params, frozen=True):
    run_id: RunId
    format: Literal["json", "markdown"] = "json"


class RunArtifact(Struct, frozen=True, omit_defaults=False):
    #: message (the final message), structuredOutput, files (the changed files), diff (their
    #: diff against HEAD, new files included), todos (the agent's last todo list).
    kind: str
    name: str
    media_type: str
    content: str
    created_at: int


class RunArtifacts(Struct, frozen=True):
    run_id: str
    artifacts: list[RunArtifact]


class Exported(Struct, frozen=True, omit_defaults=False):
    run_id: str
    format: str
    content: str


class RunSubscribeParams(Params, frozen=True):
    run_ids: list[RunId] | None = None
    #: Every run's events (a dashboard).
    all: bool = False


class RunSubscribed(Struct, frozen=True, omit_defaults=False):
    run_ids: list[str]
    all: bool


class QueueEntry(Struct, frozen=True, omit_defaults=False):
    run_id: str
    provider: str
    status: RunStatus
    priority: int
    #: Priority after aging (the order the queue uses).
    effective_priority: int
    position: int | None
    waiting_ms: int
    next_attempt_at: int | None = None
    #: Running entries of the temporal executor: the worker of the current attempt (none yet
    #: while the run's workflow waits for one: status "queued").
    executor: Executor | None = None
    worker: str | None = None


class QueueList(Struct, frozen=True, omit_defaults=False):
    running: list[QueueEntry]
    queued: list[QueueEntry]
    capacity: int
    max_concurrent: int
    max_per_provider: int
    #: Paused lanes: provider → why. Their queued runs wait; running ones go on.
    paused: dict[str, str] = msgspec.field(default_factory=dict)
    #: Lanes a usage limit paused: provider → when they resume by themselves (Unix ms).
    paused_until: dict[str, int] = msgspec.field(default_factory=dict)


class QueuePauseParams(Params, frozen=True):
    #: The lane to pause; absent = every provider.
    provider: ProviderName | None = None
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class QueueResumeParams(Params, frozen=True):
    provider: ProviderName | None = None


class QueueLanes(Struct, frozen=True, omit_defaults=False):
    paused: dict[str, str]
    paused_until: dict[str, int] = msgspec.field(default_factory=dict)


# ------------------------------------------------------------------------ conversations


class Conversation(Struct, frozen=True):
    conversation_id: str
    provider: ProviderName
    title: str
    archived: bool
    created_at: int
    updated_at: int
    session_id: str | None = None
    defaults: Options | None = None
    runs: list[str] | None = None


class ConversationCreateParams(Options, frozen=True):
    title: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    profile: Name | None = None


class ConversationRef(Params, frozen=True):
    conversation_id: RunId


class ConversationListParams(Params, frozen=True):
    include_archived: bool = False
    provider: ProviderName | None = None


class ConversationList(Struct, frozen=True):
    conversations: list[Conversation]


class ConversationRenameParams(Params, frozen=True):
    conversation_id: RunId
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ConversationSendParams(Params, frozen=True):
    conversation_id: RunId
    prompt: Prompt
    #: Refused when it differs from the conversation's provider.
    provider: ProviderName | None = None
    priority: Priority | None = None


# ------------------------------------------------------------------------------ profiles


class Profile(Struct, frozen=True):
    name: str
    defaults: Options
    updated_at: int


class ProfileSaveParams(Params, frozen=True):
    name: Name
    defaults: Options


class ProfileRef(Params, frozen=True):
    name: Name


class ProfileList(Struct, frozen=True):
    profiles: list[Profile]


class ProfileDeleted(Struct, frozen=True, omit_defaults=False):
    name: str
    deleted: bool


# ----------------------------------------------------------------- providers, secrets


class Capability(Struct, frozen=True, omit_defaults=False):
    provider: str
    status: Literal["supported", "degraded", "blocked"]
    #: The reasons, joined ("" when supported).
    reason: str
    path: str | None
    version: str | None
    checked_at: int
    #: Why it is degraded or blocked, one per line of the help it lacks.
    reasons: list[str] = msgspec.field(default_factory=list)
    #: The optional flags this binary lacks (a run asking for one gets a
    #: run.compatibility_warning).
    missing_options: list[str] = msgspec.field(default_factory=list)
    #: claude's --permission-mode choices, as its help lists them.
    permission_modes: list[str] = msgspec.field(default_factory=list)
    #: The versions codexd's test suite runs against, newest first.
    tested_versions: list[str] = msgspec.field(default_factory=list)


class CapabilitiesParams(Params, frozen=True):
    refresh: bool = False


class Capabilities(Struct, frozen=True):
    providers: list[Capability]


class SecretSetParams(Params, frozen=True):
    provider: ProviderName
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=16_384)]


class SecretRef(Params, frozen=True):
    provider: ProviderName


class SecretState(Struct, frozen=True, omit_defaults=False):
    provider: str
    present: bool
    #: "keyring" or "file".
    store: str


class RunEventNote(Struct, frozen=True, omit_defaults=False):
    run_id: str
    seq: int
    type: str
    data: Any
    at: int
    attempt: int | None = None


RUN_START = method("run/start", RunStartParams, RunStarted,
                   "Queue a provider run (codex exec or claude -p).")
RUN_GET = method("run/get", RunRef, Run, "One run.")
RUN_LIST = method("run/list", RunListParams, RunList, "Runs, newest first, filtered, paged.")
RUN_CANCEL = method("run/cancel", RunRef, Run,
                    "Cancel a queued or running run (its whole process tree).")
RUN_RERUN = method("run/rerun", RerunParams, RunStarted,
                   "Queue a new run with an earlier run's request (and overrides).")
RUN_EVENTS = method("run/events", RunEventsParams, RunEvents,
                    "A run's stored events after a seq.")
class PermissionParams(Params, frozen=True):
    run_id: RunId
    #: The tool the agent wants to use (claude's names: Bash, Edit, Write, mcp__…).
    tool_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    #: Its input, as the agent gave it.
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    tool_use_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class PermissionAnswer(Struct, frozen=True, omit_defaults=False):
    #: What goes back to the CLI: allow (with the input unchanged) or deny.
    behavior: Literal["allow", "deny"]
    approval_id: int
    #: deny: why (said to the agent).
    message: str | None = None


RUN_PERMISSION = method(
    "run/permission", PermissionParams, PermissionAnswer,
    "A provider run's permission prompt (claude's --permission-prompt-tool, through codexd's "
    "MCP helper): a pending approval like the app-server's; answers when someone does.",
)
RUN_ARTIFACTS = method("run/artifacts", RunRef, RunArtifacts,
                       "What a finished run produced: final message, structured output, "
                       "changed files and their diff, todo list.")
RUN_EXPORT = method("run/export", ExportParams, Exported,
                    "A run and its events as JSON or Markdown.")
RUN_SUBSCRIBE = method("run/subscribe", RunSubscribeParams, RunSubscribed,
                       "Receive run/event notifications for some runs or all.")
QUEUE_LIST = method("queue/list", NoParams, QueueList,
                    "Running and queued runs, in the order the queue will start them.")
QUEUE_PAUSE = method("queue/pause", QueuePauseParams, QueueLanes,
                     "Hold a provider's queued runs (or every provider's); running ones go on.")
QUEUE_RESUME = method("queue/resume", QueueResumeParams, QueueLanes,
                      "Let a paused lane (or every lane) start its queued runs again.")
CONVERSATION_CREATE = method("conversation/create", ConversationCreateParams, Conversation,
                             "Start a conversation: runs of one provider, one agent session.")
CONVERSATION_LIST = method("conversation/list", ConversationListParams, ConversationList,
                           "Conversations, most recently updated first.")
CONVERSATION_GET = method("conversation/get", ConversationRef, Conversation,
                          "One conversation with its run ids.")
CONVERSATION_RENAME = method("conversation/rename", ConversationRenameParams, Conversation,
                             "Change a conversation's title.")
CONVERSATION_ARCHIVE = method("conversation/archive", ConversationRef, Conversation,
                              "Archive a conversation (no more sends).")
CONVERSATION_SEND = method("conversation/send", ConversationSendParams, RunStarted,
                           "Queue the next run of a conversation, resuming its session.")
PROFILE_LIST = method("profile/list", NoParams, ProfileList, "Saved run profiles.")
PROFILE_SAVE = method("profile/save", ProfileSaveParams, Profile,
                      "Create or replace a named profile of run defaults.")
PROFILE_DELETE = method("profile/delete", ProfileRef, ProfileDeleted, "Delete a profile.")
PROVIDER_CAPABILITIES = method("provider/capabilities", CapabilitiesParams, Capabilities,
                               "Which provider CLIs are installed and usable.")
SECRET_SET = method("secret/set", SecretSetParams, SecretState,
                    "Store a provider token (OS keyring, or a 0600 file).")
SECRET_CLEAR = method("secret/clear", SecretRef, SecretState, "Forget a provider token.")
SECRET_HAS = method("secret/has", SecretRef, SecretState,
                    "Whether a provider token is stored (never the token).")

ConversationEvent = Literal["created", "renamed", "archived", "sessionUpdated", "messageSent"]


class ConversationChanged(Struct, frozen=True):
    event: ConversationEvent
    conversation: Conversation
    #: messageSent: the run that carries the message.
    run_id: str | None = None


CONVERSATION_CHANGED = notification(
    "conversation/changed", ConversationChanged,
    "A conversation was created, renamed or archived, got a message (a run) or its agent "
    "session; to every client but the one that did it.")
RUN_EVENT = notification("run/event", RunEventNote,
                         "One event of a run, to clients subscribed to it (redacted).")
