"""The two provider CLIs: how a run's command line is built and how its output is read.

codex: ``codex exec --json [options] [resume SESSION] -`` (the prompt on stdin), one JSON event
per stdout line (``thread.started``, ``turn.started``, ``item.*``, ``turn.completed``,
``turn.failed``, ``error``). claude: ``claude -p --output-format stream-json --verbose
[--resume SESSION] [options]`` (the prompt on stdin), one JSON object per line (``system``/
``init``, ``assistant``, ``user``, ``result``). Each line becomes zero or more typed run events;
a line that is not JSON becomes ``run.chunk.stdout``.

Pure: no I/O, no trio.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

if TYPE_CHECKING:
    from codexd.protocol.runs import RunRequest

#: The source tree (its .tools/npm holds the pinned CLIs in a development checkout).
ROOT = Path(__file__).resolve().parent.parent.parent

Provider = Literal["codex", "claude"]
PROVIDERS: tuple[Provider, ...] = ("codex", "claude")
#: The environment variable each provider's token is given to the child in (only there).
TOKEN_ENV = {"codex": "CODEX_API_KEY", "claude": "ANTHROPIC_API_KEY"}

Event = tuple[str, dict[str, Any]]


def find_cli(provider: str, configured: str, project_root: Path) -> str | None:
    """The CLI to run: the configured command, else PATH, else the project-local npm install."""
    if configured:
        return shutil.which(os.path.expanduser(configured))
    found = shutil.which(provider)
    if found:
        return found
    local = project_root / ".tools" / "npm" / "node_modules" / ".bin" / provider
    return str(local) if os.access(local, os.X_OK) else None


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What a run asks for, after profile defaults were merged in."""

    provider: Provider
    prompt: str
    cwd: str
    model: str | None = None
    sandbox: str | None = None
    auto_approve: bool = False
    output_schema_file: str | None = None
    #: The schema itself (claude takes it inline).
    output_schema_json: str | None = None
    resume_session: str | None = None
    allowed_tools: list[str] = field(default_factory=list)
    disallowed_tools: list[str] = field(default_factory=list)
    append_system_prompt: str | None = None
    max_budget_usd: float | None = None
    #: claude: the --mcp-config file (harness.mcp and codexd's permission helper).
    mcp_config_file: str | None = None
    #: claude: the helper's tool for --permission-prompt-tool.
    permission_prompt_tool: str | None = None
    #: harness.mcp (codex takes them as config overrides).
    mcp: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    add_dirs: list[str] = field(default_factory=list)
    codex_profile: str | None = None
    continue_last: bool = False
    #: claude: nobody answers permission prompts (deny them at once).
    deny_prompts: bool = False
    #: harness.maxTurns (codexd counts claude's; codex exec reports no steps).
    max_turns: int | None = None


def spec_for(req: RunRequest, **extra: Any) -> RunSpec:
    """The request's options as a :class:`RunSpec` (its harness included), ``extra`` on top
    (what only the caller knows: the session to resume, files it wrote). One place for queued
    runs (``LocalExecutor``) and interactive sessions alike."""
    h = req.harness
    fields: dict[str, Any] = {
        "provider": req.provider, "prompt": req.prompt, "cwd": req.cwd, "model": req.model,
        "sandbox": req.sandbox, "auto_approve": req.auto_approve,
        "max_budget_usd": req.max_budget_usd,
        "allowed_tools": list(h.allowed_tools or []) if h else [],
        "disallowed_tools": list(h.disallowed_tools or []) if h else [],
        "append_system_prompt": h.append_system_prompt if h else None,
        # codex takes harness.mcp as config overrides; claude in its --mcp-config file.
        "mcp": {name: msgspec.to_builtins(server) for name, server in (h.mcp or {}).items()}
        if h and req.provider == "codex" else {},
        "config": dict(h.config or {}) if h else {},
        "images": list(h.images or []) if h else [],
        "add_dirs": list(h.add_dirs or []) if h else [],
        "codex_profile": h.codex_profile if h else None,
        "max_turns": h.max_turns if h else None,
    }
    fields.update(extra)
    return RunSpec(**fields)


def claude_mcp_servers(req: RunRequest) -> dict[str, Any]:
    """harness.mcp as claude's --mcp-config ``mcpServers`` entries."""
    h = req.harness
    return {name: {"type": "stdio", **msgspec.to_builtins(server)}
            for name, server in (h.mcp or {}).items()} if h else {}


class Flags(Protocol):
    """What a binary offers (a capability snapshot)."""

    def has(self, flag: str) -> bool: ...


class _All:
    def has(self, flag: str) -> bool:
        return True


#: Every option: for callers that know no snapshot (the tests of this module).
ALL = _All()
#: (the run/start option, why it was dropped)
Drop = tuple[str, str]


def codex_options(spec: RunSpec, opt: Callable[[str, str, list[str]], list[str]],
                  drops: list[Drop]) -> list[str]:
    """The options ``codex exec`` and the TUI share; ``opt(option, flag, values)`` gives the
    flag with its values if the binary has it, else records the drop and gives nothing."""
    args: list[str] = []
    if spec.model:
        args += opt("model", "--model", [spec.model])
    if spec.sandbox:
        args += opt("sandbox", "--sandbox", [spec.sandbox])
    if spec.auto_approve:
        args += opt("autoApprove", "--config", ['approval_policy="never"'])
    if spec.allowed_tools or spec.disallowed_tools:
        drops.append(("harness.allowedTools", "codex has no tool allow/deny lists"))
    if spec.append_system_prompt:
        args += opt("harness.appendSystemPrompt", "--config",
                    [f"developer_instructions={json.dumps(spec.append_system_prompt)}"])
    for name, server in spec.mcp.items():
        for key in ("command", "args", "env"):
            if server.get(key):
                args += opt("harness.mcp", "--config",
                            [f"mcp_servers.{name}.{key}={toml_value(server[key])}"])
    for key, value in spec.config.items():
        args += opt("harness.config", "--config", [f"{key}={toml_value(value)}"])
    for image in spec.images:
        args += opt("harness.images", "--image", [image])
    for folder in spec.add_dirs:
        args += opt("harness.addDirs", "--add-dir", [folder])
    if spec.codex_profile:
        args += opt("harness.codexProfile", "--profile", [spec.codex_profile])
    return args


def argv(exe: str, spec: RunSpec, flags: Flags = ALL) -> tuple[list[str], list[Drop]]:
    """(argv, the options this binary cannot honour, each with the reason). An option is
    passed only when the binary's help lists its flag."""
    drops: list[Drop] = []

    def opt(option: str, flag: str, values: list[str], why: str = "") -> list[str]:
        if flags.has(flag):
            return [flag, *values]
        drops.append((option, why or f"this {spec.provider} has no {flag}"))
        return []

    if spec.provider == "codex":
        args = [exe, "exec", "--json", "--skip-git-repo-check", "--cd", spec.cwd,
                *codex_options(spec, opt, drops)]
        if spec.output_schema_file:
            args += opt("outputSchema", "--output-schema", [spec.output_schema_file])
        if spec.max_budget_usd is not None:
            drops.append(("maxBudgetUsd", "codex reports tokens, not cost: use "
                          "harness.maxTokens to cap a codex run"))
        if spec.max_turns is not None:
            drops.append(("harness.maxTurns", "codex exec does not report its steps: use "
                          "harness.maxTokens or timeoutMs to cap a codex run"))
        if spec.resume_session or spec.continue_last:
            if flags.has("resume"):
                args += ["resume", spec.resume_session] if spec.resume_session else \
                    ["resume", "--last"]
            else:
                drops.append(("resume", "this codex exec has no resume: a new session starts"))
        return [*args, "-"], drops
    args = [exe, "--print", "--output-format", "stream-json", "--verbose"]
    if spec.model:
        args += opt("model", "--model", [spec.model])
    if spec.resume_session:
        args += opt("resume", "--resume", [spec.resume_session],
                    "this claude has no --resume: a new session starts")
    elif spec.continue_last:
        args += opt("harness.continueLast", "--continue", [],
                    "this claude has no --continue: a new session starts")
    for folder in spec.add_dirs:
        args += opt("harness.addDirs", "--add-dir", [folder])
    if spec.config:
        drops.append(("harness.config", "claude has no codex config; use its own settings"))
    if spec.images:
        drops.append(("harness.images", "claude -p takes no image files on its command line"))
    if spec.codex_profile:
        drops.append(("harness.codexProfile", "a codex profile means nothing to claude"))
    if spec.auto_approve:
        args += opt("autoApprove", "--permission-mode", ["acceptEdits"])
    if spec.sandbox:
        drops.append(("sandbox", f"claude has no sandbox modes; sandbox {spec.sandbox!r} "
                      "was not applied"))
    if spec.allowed_tools:
        args += opt("harness.allowedTools", "--allowedTools", [",".join(spec.allowed_tools)])
    if spec.disallowed_tools:
        args += opt("harness.disallowedTools", "--disallowedTools",
                    [",".join(spec.disallowed_tools)])
    if spec.append_system_prompt:
        args += opt("harness.appendSystemPrompt", "--append-system-prompt",
                    [spec.append_system_prompt])
    if spec.output_schema_json:
        args += opt("outputSchema", "--json-schema", [spec.output_schema_json],
                    "this claude has no --json-schema: the result is checked against "
                    "outputSchema after the run")
    if spec.max_budget_usd is not None:
        args += opt("maxBudgetUsd", "--max-budget-usd", [f"{spec.max_budget_usd:g}"])
    if spec.max_turns is not None:
        # Claude Code's CLI reference documents --max-turns for print mode; its --help does
        # not list it, so it is passed as is (codexd also counts the turns: see the executor).
        args += ["--max-turns", str(spec.max_turns)]
    if spec.mcp_config_file:
        if flags.has("--mcp-config"):
            args += ["--mcp-config", spec.mcp_config_file]
            if spec.permission_prompt_tool and flags.has("--permission-prompt-tool"):
                args += ["--permission-prompt-tool", spec.permission_prompt_tool]
        else:
            drops.append(("harness.mcp", "this claude has no --mcp-config: no MCP servers "
                          "(and its permission prompts are not sent to codexd)"))
    if spec.deny_prompts and flags.has("--permission-prompts"):
        args += ["--permission-prompts", "none"]
    return args, drops


#: Harness options an interactive CLI has no use for (they limit an unattended run).
UNATTENDED = (("timeout_ms", "harness.timeoutMs"), ("max_tokens", "harness.maxTokens"),
               ("idle_timeout_ms", "harness.idleTimeoutMs"), ("max_turns", "harness.maxTurns"),
               ("max_tool_result_lines", "harness.maxToolResultLines"))


def interactive_argv(exe: str, spec: RunSpec, flags: Flags = ALL, *, remote: str | None = None,
                     new_session: str | None = None,
                     unattended: tuple[str, ...] = ()) -> tuple[list[str], list[Drop]]:
    """The provider's interactive CLI for ``session/start``: (argv, dropped options).

    codex: ``codex [resume ID|--last] [--remote unix://WIRE] -C CWD [options] [PROMPT]``
    (``flags`` names its top-level options ``tui:--flag``). claude: ``claude [--resume ID |
    --continue | --session-id NEW] [options] [PROMPT]``. ``unattended`` names the harness
    limits the request set, which an interactive session does not apply.
    """
    drops: list[Drop] = [(name, "an interactive session has no such limit: end it with "
                          "session/end") for name in unattended]
    if spec.max_budget_usd is not None:
        drops.append(("maxBudgetUsd", "only a print-mode run takes a budget"))
    if spec.provider == "codex":
        def opt(option: str, flag: str, values: list[str]) -> list[str]:
            if flags.has("tui:" + flag):
                return [flag, *values]
            drops.append((option, f"this codex has no {flag}"))
            return []

        args = [exe]
        resume: list[str] = []
        if spec.resume_session or spec.continue_last:
            if flags.has("tui:resume"):
                args.append("resume")
                resume = [spec.resume_session] if spec.resume_session else ["--last"]
            else:
                drops.append(("resume", "this codex has no resume: a new session starts"))
        if remote:
            args += opt("remote", "--remote", [f"unix://{remote}"])
        args += opt("cwd", "--cd", [spec.cwd])
        args += codex_options(spec, opt, drops)
        args += resume
        if spec.prompt:
            if resume == ["--last"]:
                drops.append(("prompt", "`codex resume --last` takes no prompt on its command "
                              "line: type it with session/input"))
            else:
                args.append(spec.prompt)
        return args, drops

    def copt(option: str, flag: str, values: list[str], why: str = "") -> list[str]:
        if flags.has(flag):
            return [flag, *values]
        drops.append((option, why or f"this claude has no {flag}"))
        return []

    args = [exe]
    if spec.resume_session:
        args += copt("resume", "--resume", [spec.resume_session],
                     "this claude has no --resume: a new session starts")
    elif spec.continue_last:
        args += copt("harness.continueLast", "--continue", [],
                     "this claude has no --continue: a new session starts")
    elif new_session:
        args += copt("sessionId", "--session-id", [new_session],
                     "this claude has no --session-id: the session is found only by "
                     "--continue later")
    if spec.model:
        args += copt("model", "--model", [spec.model])
    for folder in spec.add_dirs:
        args += copt("harness.addDirs", "--add-dir", [folder])
    if spec.auto_approve:
        args += copt("autoApprove", "--permission-mode", ["acceptEdits"])
    if spec.allowed_tools:
        args += copt("harness.allowedTools", "--allowedTools", [",".join(spec.allowed_tools)])
    if spec.disallowed_tools:
        args += copt("harness.disallowedTools", "--disallowedTools",
                     [",".join(spec.disallowed_tools)])
    if spec.append_system_prompt:
        args += copt("harness.appendSystemPrompt", "--append-system-prompt",
                     [spec.append_system_prompt])
    if spec.mcp_config_file:
        args += copt("harness.mcp", "--mcp-config", [spec.mcp_config_file])
    for option, present, why in (
            ("sandbox", spec.sandbox, "claude has no sandbox modes"),
            ("harness.images", spec.images, "claude takes no image files on its command line"),
            ("harness.config", spec.config, "claude has no codex config; use its own settings"),
            ("harness.codexProfile", spec.codex_profile, "a codex profile means nothing to "
             "claude")):
        if present:
            drops.append((option, why))
    if spec.prompt:
        args.append(spec.prompt)
    return args, drops


def toml_value(value: Any) -> str:
    """A value as TOML, for -c key=value (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


@dataclass(slots=True)
class Outcome:
    """What the parser learned from a run's stdout."""

    session_id: str | None = None
    last_message: str | None = None
    result_text: str | None = None
    failure: str | None = None
    usage: dict[str, Any] | None = None
    saw_output: bool = False
    #: claude --json-schema: the value its StructuredOutput tool returned (absent: MISSING).
    structured: Any = None
    has_structured: bool = False
    #: The provider said a usage or rate limit stopped the run (claude: its 429 result).
    limited: bool = False
    #: When that limit resets, if the output said (claude's rate_limit_event; Unix ms).
    limit_reset: int | None = None
    #: Files the run changed (codex file_change items, claude's edit tools).
    changed: set[str] = field(default_factory=set)
    #: The agent's latest todo list.
    todos: list[dict[str, Any]] | None = None
    #: Model responses so far (claude: assistant messages, by id).
    turns: int = 0
    last_message_id: str | None = None
    #: claude stopped at its --max-turns (result subtype error_max_turns).
    max_turns_hit: bool = False


def parse_line(provider: str, line: str, out: Outcome) -> list[Event]:
    """Events for one stdout line (already decoded, no newline)."""
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return [("run.chunk.stdout", {"text": line})] if line.strip() else []
    out.saw_output = True
    return _codex(obj, out) if provider == "codex" else _claude(obj, out)


def _codex(obj: dict[str, Any], out: Outcome) -> list[Event]:
    kind = obj.get("type")
    if kind == "thread.started":
        out.session_id = obj.get("thread_id")
        return [("run.progress", {"phase": "session", "sessionId": out.session_id})]
    if kind == "turn.started":
        return [("run.progress", {"phase": "turn"})]
    if kind == "turn.completed":
        out.usage = obj.get("usage")
        return [("run.progress", {"phase": "turnCompleted", "usage": out.usage})]
    if kind == "turn.failed":
        out.failure = (obj.get("error") or {}).get("message") or "the turn failed"
        return [("run.warning", {"message": out.failure})]
    if kind == "error":
        return [("run.warning", {"message": obj.get("message") or "error"})]
    if kind in ("item.started", "item.updated", "item.completed"):
        item = obj.get("item") or {}
        itype = item.get("type")
        if itype == "todo_list":  # updated as the agent ticks items off: every state counts
            out.todos = [{"text": t.get("text"), "completed": bool(t.get("completed"))}
                         for t in item.get("items") or [] if isinstance(t, dict)]
            return [("run.semantic", {"kind": "todoList", "items": out.todos,
                                      "status": kind.split(".")[1]})]
        if kind != "item.completed":
            return [("run.progress", {"phase": "item", "itemType": itype,
                                      "status": kind.split(".")[1]})]
        if itype == "reasoning":
            return [("run.semantic", {"kind": "reasoning", "text": item.get("text")})]
        if itype == "mcp_tool_call":
            return [("run.semantic", {"kind": "mcpToolCall", "server": item.get("server"),
                                      "tool": item.get("tool"),
                                      "arguments": item.get("arguments"),
                                      "result": item.get("result"), "error": item.get("error"),
                                      "status": item.get("status")})]
        if itype == "web_search":
            return [("run.semantic", {"kind": "webSearch", "query": item.get("query")})]
        if itype == "agent_message":
            out.last_message = item.get("text")
            return [("run.semantic", {"kind": "agentMessage", "text": out.last_message})]
        if itype == "command_execution":
            return [("run.semantic", {"kind": "command", "command": item.get("command"),
                                      "exitCode": item.get("exit_code"),
                                      "output": item.get("aggregated_output")})]
        if itype == "file_change":
            changes = item.get("changes") or []
            out.changed.update(str(c.get("path")) for c in changes
                               if isinstance(c, dict) and c.get("path"))
            return [("run.semantic", {"kind": "fileChange", "changes": changes})]
        if itype == "error":
            return [("run.warning", {"message": item.get("message")})]
        return [("run.progress", {"phase": "item", "itemType": itype, "status": "completed"})]
    return [("run.progress", {"phase": str(kind)})]


def _claude(obj: dict[str, Any], out: Outcome) -> list[Event]:
    kind = obj.get("type")
    if obj.get("session_id"):
        out.session_id = obj["session_id"]
    if kind == "system":
        return [("run.progress", {"phase": obj.get("subtype") or "system",
                                  "sessionId": out.session_id, "model": obj.get("model")})]
    if kind == "assistant":
        message_id = (obj.get("message") or {}).get("id")
        if message_id is None or message_id != out.last_message_id:
            out.turns += 1  # a message's blocks come as lines of their own, one id
            out.last_message_id = message_id
        events: list[Event] = []
        for block in (obj.get("message") or {}).get("content") or []:
            if block.get("type") == "text":
                out.last_message = block.get("text")
                events.append(("run.semantic", {"kind": "agentMessage", "text": block["text"]}))
            elif block.get("type") == "thinking":
                events.append(("run.semantic", {"kind": "reasoning",
                                                "text": block.get("thinking")}))
            elif block.get("type") == "tool_use":
                events.append(_claude_tool(block, out))
        return events or [("run.progress", {"phase": "assistant"})]
    if kind == "rate_limit_event":
        info = obj.get("rate_limit_info") or {}
        reset = info.get("resetsAt")
        if info.get("status") == "rejected" and isinstance(reset, (int, float)):
            out.limit_reset = int(reset * 1000)
        return [("run.progress", {"phase": "rateLimit", "status": info.get("status"),
                                  "resetsAt": reset, "limit": info.get("rateLimitType")})]
    if kind == "result":
        if obj.get("api_error_status") == 429:
            out.limited = True
        out.result_text = obj.get("result")
        out.usage = obj.get("usage")
        if "structured_output" in obj:
            out.structured, out.has_structured = obj["structured_output"], True
        if obj.get("subtype") == "error_max_turns":
            out.max_turns_hit = True
            if isinstance(obj.get("num_turns"), int):
                out.turns = obj["num_turns"]
        if obj.get("is_error") or obj.get("subtype") != "success":
            out.failure = obj.get("result") or f"claude reported {obj.get('subtype')}"
        return [("run.progress", {"phase": "result", "durationMs": obj.get("duration_ms"),
                                  "costUsd": obj.get("total_cost_usd")})]
    return [("run.progress", {"phase": str(kind)})]


_EDITS = ("Edit", "Write", "MultiEdit", "NotebookEdit")


def _claude_tool(block: dict[str, Any], out: Outcome) -> Event:
    name = str(block.get("name") or "")
    raw = block.get("input")
    tool_input: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if name in _EDITS:
        path = tool_input.get("file_path") or tool_input.get("notebook_path")
        if path:
            out.changed.add(str(path))
        return ("run.semantic", {"kind": "fileChange", "tool": name, "input": tool_input})
    if name == "Bash":
        return ("run.semantic", {"kind": "command", "tool": name, "input": tool_input,
                                 "command": tool_input.get("command")})
    if name == "TodoWrite":
        out.todos = [{"text": t.get("content"), "completed": t.get("status") == "completed"}
                     for t in tool_input.get("todos") or [] if isinstance(t, dict)]
        return ("run.semantic", {"kind": "todoList", "items": out.todos})
    if name in ("WebSearch", "WebFetch"):
        return ("run.semantic", {"kind": "webSearch", "tool": name,
                                 "query": tool_input.get("query") or tool_input.get("url")})
    if name.startswith("mcp__"):
        _, server, tool = [*name.split("__", 2), "", ""][:3]
        return ("run.semantic", {"kind": "mcpToolCall", "server": server, "tool": tool,
                                 "arguments": tool_input})
    return ("run.semantic", {"kind": "toolUse", "tool": name, "input": tool_input})


def resume_rejected(provider: str, stderr_tail: list[str], out: Outcome) -> bool:
    """Whether a failed run failed because the CLI did not accept the session to resume."""
    text = " ".join(stderr_tail[-20:]).lower() + " " + (out.failure or "").lower()
    return any(s in text for s in ("no conversation found", "session not found",
                                   "could not find session", "no session", "invalid session",
                                   "no rollout found", "thread not found"))
