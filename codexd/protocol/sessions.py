"""``session/*``: a provider's own interactive CLI (``codex``, ``claude``) in a codexd terminal,
recorded as a run (``mode: "interactive"``) that any client can attach to and resume."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import NO_NUL, EnvName, OsArg, Params, Struct, method
from codexd.protocol.runs import Harness, Name, Options, Prompt, Run, RunId, RunStatus
from codexd.protocol.terminal import Size

#: What session/input types in (text; its end of line is sent apart, see ``submit``).
InputText = Annotated[str, msgspec.Meta(min_length=1, max_length=1_000_000, pattern=NO_NUL)]
#: Raw bytes for the terminal, base64 (keys, control characters).
InputData = Annotated[str, msgspec.Meta(min_length=1, max_length=1_400_000)]


class SessionStartParams(Options, frozen=True, kw_only=True):
    #: The first message (given on the CLI's command line); none: the CLI waits for input.
    prompt: Prompt | None = None
    profile: Name | None = None
    env: dict[EnvName, OsArg] | None = None
    #: The options an interactive CLI takes: addDirs, images, config, codexProfile, mcp,
    #: appendSystemPrompt, allowedTools, disallowedTools, sessionId, continueLast,
    #: isolatedHome, copyLogin. The others are dropped with a run.compatibility_warning.
    harness: Harness | None = None
    #: Continue this conversation's agent session (and record the session in it).
    conversation_id: RunId | None = None
    cols: Size = 120
    rows: Size = 40
    #: The terminal's name (unique among open terminals).
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    #: codex: run the TUI on codexd's app-server (`codex --remote`), so its thread is shared
    #: with every client; default runs.session_codex_remote. claude: ignored.
    remote: bool | None = None


class SessionResumeParams(Params, frozen=True):
    #: An earlier interactive session (or exec run) whose agent session to continue.
    run_id: RunId
    prompt: Prompt | None = None
    cols: Size = 120
    rows: Size = 40
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class SessionStarted(Struct, frozen=True, omit_defaults=False):
    run_id: str
    status: RunStatus
    terminal_id: str
    pid: int
    #: The agent session when known at the start (claude: always; codex: once its thread
    #: starts, in a run.progress event and run/get).
    session_id: str | None = None


class SessionInputParams(Params, frozen=True):
    run_id: RunId
    #: Text to type; with ``submit``, Enter follows after runs.session_submit_delay_ms (a
    #: TUI takes text and Enter arriving together as a paste, not a submit).
    text: InputText | None = None
    #: Or raw bytes, base64 (sent as they are; ``submit`` does not apply).
    data: InputData | None = None
    submit: bool = True


class SessionInputAccepted(Struct, frozen=True, omit_defaults=False):
    run_id: str
    bytes: int


class SessionEndParams(Params, frozen=True):
    run_id: RunId
    #: The first signal to the CLI's process group (default SIGHUP, then SIGKILL after
    #: terminal.close_grace_seconds).
    signal: Annotated[str, msgspec.Meta(max_length=20)] | None = None


SESSION_START = method("session/start", SessionStartParams, SessionStarted,
                       "Start a provider's interactive CLI in a codexd terminal, recorded as "
                       "a run.")
SESSION_RESUME = method("session/resume", SessionResumeParams, SessionStarted,
                        "Continue an earlier session's agent session interactively (the "
                        "CLI's own resume), as a new run.")
SESSION_INPUT = method("session/input", SessionInputParams, SessionInputAccepted,
                       "Type into an interactive session (text, then Enter) or send raw "
                       "bytes.")
SESSION_END = method("session/end", SessionEndParams, Run,
                     "End an interactive session: its CLI and everything it started.")
