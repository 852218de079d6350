"""One attempt of a provider run as a local process: the executor behind the run queue.

:class:`LocalExecutor` finds the CLI, checks the cwd, builds argv and the child's environment
(the provider token in it and nowhere else), starts the CLI in its own session with the prompt on
stdin, turns its output lines into typed events (through the run's :class:`RunEventLog`, which
redacts and numbers them), and kills the whole process tree when the attempt ends, however it
ends. It knows nothing of the queue, retries or statuses: :class:`~codexd.runs.service.RunService`
decides what an :class:`Attempt` means for the run.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jsonschema
import trio

from codexd.appserver.process import group_alive, stop_process
from codexd.config import RunsSection
from codexd.protocol.runs import Run, RunRequest
from codexd.runs import compat, limits, permission_mcp, providers

if TYPE_CHECKING:
    from codexd.children import ChildRegistry
    from codexd.runs.secrets import SecretStore


class EventSink(Protocol):
    """Where an attempt's events go: the daemon's :class:`~codexd.runs.eventlog.RunEventLog`
    for a local run, a worker's :class:`~codexd.fleet.stream.AttemptStream` for a remote
    one. Both number and redact them."""

    def emit(self, run_id: str, kind: str, data: dict[str, Any]) -> None: ...

    def redact(self, run_id: str, text: str) -> str: ...

ROOT = providers.ROOT
#: What a run stopped at a usage limit is resumed with, in its own session, after the reset.
CONTINUE_AFTER_LIMIT = ("The usage limit that stopped you has reset. Continue the task from "
                        "where you stopped.")
NPM = {"codex": "@openai/codex", "claude": "@anthropic-ai/claude-code"}


def blocked_message(snap: compat.Snapshot) -> str:
    package = NPM[snap.provider]
    return (f"{snap.path} cannot be used: {'; '.join(snap.reasons)}. Install a supported one "
            f"(`npm install -g {package}@{compat.TESTED[snap.provider][0]}`) or point "
            f"runs.{snap.provider}_command at one")


@dataclass(slots=True)
class Attempt:
    """How one attempt ended."""

    status: str  # succeeded | failed | canceled | interrupted
    reason: str | None = None
    error: str | None = None
    exit_code: int | None = None
    retryable: bool = False
    resume_rejected: bool = False
    outcome: providers.Outcome = field(default_factory=providers.Outcome)
    #: A usage or rate limit stopped it (reason "usageLimit").
    limit: limits.Limit | None = None
    #: Collected where the run ran (a worker), redacted: stored as they are.
    artifacts: list[tuple[str, str, str, str]] | None = None


class LocalExecutor:
    """Collaborators: ``config`` returns the current ``[runs]`` section, ``log`` takes the
    run's events, ``secrets`` holds provider tokens, ``children`` records each CLI process."""

    def __init__(self, config: Callable[[], RunsSection], *, log: EventSink,
                 secrets: SecretStore, children: ChildRegistry,
                 snapshot: Callable[[str, str], Awaitable[compat.Snapshot]]) -> None:
        self._config = config
        self._snapshot = snapshot
        self._log = log
        self._secrets = secrets
        self._children = children
        #: Where isolated CODEX_HOMEs are made (harness.isolatedHome).
        self.homes_dir: Path | None = None
        #: The daemon's socket, for the permission helper claude runs (None: no helper).
        self.permission_socket: str | None = None
        #: Called with (provider, usage) for each usage report in a run's output.
        self.on_usage: Callable[[str, Any], None] = lambda _provider, _usage: None
        #: A worker: a provider's token variable in this process's environment reaches that
        #: provider's runs when no token is stored (a daemon passes only stored tokens).
        self.inherit_tokens = False

    @property
    def cfg(self) -> RunsSection:
        return self._config()

    def with_log(self, log: EventSink) -> LocalExecutor:
        """The same executor, its events going to ``log`` (a worker's attempt stream)."""
        other = copy.copy(self)
        other._log = log
        return other

    def shared_codex_home(self) -> str:
        return os.path.expanduser(self.cfg.codex_home or os.environ.get("CODEX_HOME", "")
                                  or "~/.codex")

    def env(self, req: RunRequest, token: str | None,
             home: str | None = None) -> dict[str, str]:
        drop = ("CODEXD_", "NOTIFY_SOCKET", "WATCHDOG_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        for var in providers.TOKEN_ENV.values():
            env.pop(var, None)  # a token reaches only its own provider
        if req.provider == "codex" and (home or self.cfg.codex_home):
            env["CODEX_HOME"] = home or os.path.expanduser(self.cfg.codex_home)
        env.update(req.env)
        if token:
            env[providers.TOKEN_ENV[req.provider]] = token
        return env

    async def attempt(self, run: Run) -> Attempt:
        """One attempt of ``run``: its events go to the log; the outcome is returned."""
        req, run_id = run.request, run.run_id
        configured = self.cfg.codex_command if req.provider == "codex" else self.cfg.claude_command
        exe = await trio.to_thread.run_sync(providers.find_cli, req.provider, configured, ROOT)
        if exe is None:
            msg = (f"the {req.provider} CLI was not found (runs.{req.provider}_command, PATH, "
                   f".tools/npm); install it, e.g. `npm install -g "
                   f"{NPM[req.provider]}`")
            self._log.emit(run_id, "run.cli_missing", {"provider": req.provider, "message": msg})
            return Attempt("failed", reason="cliMissing", error=msg)
        snap: compat.Snapshot | None
        try:
            snap = await self._snapshot(req.provider, exe)
        except OSError:
            snap = None  # gone between the lookup and now: spawning says so
        if snap is not None and snap.status == "blocked":
            msg = blocked_message(snap)
            self._log.emit(run_id, "run.cli_blocked", {
                "provider": req.provider, "path": snap.path, "version": snap.version,
                "reasons": list(snap.reasons), "message": msg})
            return Attempt("failed", reason="cliBlocked", error=msg)
        if not await trio.to_thread.run_sync(os.path.isdir, req.cwd):
            msg = f"cwd {req.cwd!r} does not exist"
            self._log.emit(run_id, "run.cwd_missing", {"cwd": req.cwd, "message": msg})
            return Attempt("failed", reason="cwdMissing", error=msg)
        token = await trio.to_thread.run_sync(self._secrets.get, req.provider)
        if token is None and self.inherit_tokens:
            token = os.environ.get(providers.TOKEN_ENV[req.provider]) or None
        with contextlib.ExitStack() as stack:
            schema_file = None
            if req.output_schema is not None and req.provider == "codex":
                f = stack.enter_context(tempfile.NamedTemporaryFile(
                    "w", suffix=".json", prefix="codexd-schema-"))
                json.dump(req.output_schema, f)
                f.flush()
                schema_file = f.name
            h = req.harness
            mcp_config = None
            mode = self.cfg.claude_approvals
            asks = req.provider == "claude" and mode == "codexd" and bool(self.permission_socket)
            servers = providers.claude_mcp_servers(req) if req.provider == "claude" else {}
            if asks:
                servers[permission_mcp.SERVER] = {
                    "type": "stdio", "command": sys.executable,
                    "args": ["-m", "codexd.runs.permission_mcp", "--socket",
                             str(self.permission_socket), "--run", run_id]}
            if servers:
                f = stack.enter_context(tempfile.NamedTemporaryFile(
                    "w", suffix=".json", prefix="codexd-mcp-"))
                json.dump({"mcpServers": servers}, f)
                f.flush()
                mcp_config = f.name
            spec = providers.spec_for(
                req, output_schema_file=schema_file,
                output_schema_json=json.dumps(req.output_schema) if req.output_schema
                is not None and req.provider == "claude" else None,
                resume_session=run.session_id or (h.session_id if h else None),
                mcp_config_file=mcp_config,
                permission_prompt_tool=permission_mcp.PROMPT_TOOL if asks else None,
                deny_prompts=req.provider == "claude" and mode == "deny",
                continue_last=bool(h and h.continue_last and not run.session_id))
            argv, drops = providers.argv(exe, spec, snap or providers.ALL)
            for option, why in drops:
                self._log.emit(run_id, "run.compatibility_warning", {
                    "option": option, "reason": why, "provider": req.provider,
                    "version": snap.version if snap else None})
            prompt = req.prompt
            if run.reason == "usageLimit" and run.session_id:
                prompt = CONTINUE_AFTER_LIMIT  # the session holds the request already
                self._log.emit(run_id, "run.progress", {
                    "phase": "resumeAfterLimit", "sessionId": run.session_id})
            home = None
            if h is not None and h.isolated_home:
                if req.provider != "codex":
                    self._log.emit(run_id, "run.compatibility_warning", {
                        "option": "harness.isolatedHome", "provider": req.provider,
                        "reason": "only codex runs get a CODEX_HOME of their own",
                        "version": snap.version if snap else None})
                elif self.homes_dir is not None:
                    home = str(self.homes_dir / (f"profile-{req.profile}" if req.profile
                                                else run_id))
                    copied = await trio.to_thread.run_sync(
                        isolated_home, home, self.shared_codex_home(), h.copy_login)
                    self._log.emit(run_id, "run.progress", {
                        "phase": "codexHome", "name": Path(home).name, "copied": copied})
            return await self._spawn(run, argv, self.env(req, token, home), prompt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _spawn(self, run: Run, argv: list[str], env: dict[str, str],
                     prompt: str) -> Attempt:
        req, run_id = run.request, run.run_id
        t0 = time.monotonic()
        try:
            proc = await trio.lowlevel.open_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=req.cwd, env=env, start_new_session=True)
        except OSError as exc:
            msg = f"cannot start {argv[0]}: {exc.strerror or exc}"
            self._log.emit(run_id, "run.warning", {"message": msg})
            return Attempt("failed", reason="spawnFailed", error=msg, retryable=True)
        self._log.emit(run_id, "run.started", {"attempt": run.attempt, "pid": proc.pid,
                                           "provider": req.provider, "argv": argv,
                                           "cwd": req.cwd, "resume": run.session_id})
        out = providers.Outcome()
        stats = {"stdoutLines": 0, "stderrLines": 0, "truncatedLines": 0}
        stderr_tail: list[str] = []
        max_lines = req.harness.max_tool_result_lines if req.harness else None
        cap = req.harness.max_tokens if req.harness else None
        idle_ms = req.harness.idle_timeout_ms if req.harness else None
        max_turns = req.harness.max_turns if req.harness and req.provider == "claude" else None
        used = [0]
        over: list[str] = []
        heard = [trio.current_time()]
        watching = trio.CancelScope()

        async def idle_watch() -> None:
            assert idle_ms is not None
            limit = idle_ms / 1000
            with watching:
                await _idle(limit)

        async def _idle(limit: float) -> None:
            while True:
                await trio.sleep_until(heard[0] + limit)
                if trio.current_time() - heard[0] >= limit:
                    over.append(f"the run printed nothing for {limit:g} s (harness."
                                "idleTimeoutMs); it was stopped")
                    self._log.emit(run_id, "run.limit_exceeded", {
                        "limit": "idleTimeoutMs", "max": idle_ms,
                        "used": int((trio.current_time() - heard[0]) * 1000)})
                    nursery.cancel_scope.cancel()
                    return

        async def feed() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await proc.stdin.send_all(prompt.encode())
                await proc.stdin.aclose()

        async def stdout() -> None:
            assert proc.stdout is not None
            async for line, cut in _lines(proc.stdout, self.cfg.max_line_bytes):
                heard[0] = trio.current_time()
                stats["stdoutLines"] += 1
                if cut:
                    stats["truncatedLines"] += 1
                    self._log.emit(run_id, "run.warning", {"message": f"a stdout line was longer "
                               f"than {self.cfg.max_line_bytes} bytes and was truncated"})
                usage = out.usage
                events = providers.parse_line(req.provider, line, out)
                if out.usage is not usage:
                    self.on_usage(req.provider, out.usage)
                    used[0] += usage_tokens(out.usage)
                    if cap is not None and used[0] > cap and not over:
                        over.append(f"the run used {used[0]} tokens, more than harness."
                                    f"maxTokens ({cap}); it was stopped")
                        self._log.emit(run_id, "run.limit_exceeded", {
                            "limit": "maxTokens", "max": cap, "used": used[0]})
                        nursery.cancel_scope.cancel()
                if max_turns is not None and out.turns > max_turns and not over:
                    over.append(f"the agent started turn {out.turns}, more than harness."
                                f"maxTurns ({max_turns}); it was stopped")
                    self._log.emit(run_id, "run.limit_exceeded", {
                        "limit": "maxTurns", "max": max_turns, "used": out.turns})
                    nursery.cancel_scope.cancel()
                for kind, data in events:
                    if max_lines and kind == "run.semantic" and isinstance(data.get("output"),
                                                                           str):
                        data["output"] = "\n".join(data["output"].splitlines()[:max_lines])
                    self._log.emit(run_id, kind, data)

        async def stderr() -> None:
            assert proc.stderr is not None
            async for line, _cut in _lines(proc.stderr, self.cfg.max_line_bytes):
                heard[0] = trio.current_time()
                stats["stderrLines"] += 1
                stderr_tail.append(line)
                del stderr_tail[:-50]
                self._log.emit(run_id, "run.chunk.stderr", {"text": line})

        try:
            await self._children.add("run", run_id, proc.pid)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(stdout)
                nursery.start_soon(stderr)
                if idle_ms is not None:
                    nursery.start_soon(idle_watch)
                await proc.wait()
                watching.cancel()  # the readers drain the pipes; the watch ends now
        finally:
            with trio.CancelScope(shield=True):
                code: int | None
                if proc.returncode is not None and not group_alive(proc.pid):
                    code = proc.returncode  # exited, nothing left in its group: no /proc walk
                else:
                    code = await stop_process(proc, grace=self.cfg.cancel_grace_seconds)
                # Close the pipes now (notify_closing first), not whenever the collector gets
                # to them: their numbers are reused at once by the next run or terminal.
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    if pipe is not None:
                        with contextlib.suppress(OSError, trio.BrokenResourceError,
                                                 trio.ClosedResourceError):
                            await pipe.aclose()
                await self._children.remove(proc.pid)
                self._log.emit(run_id, "run.runner_metrics", {
                    "durationMs": int((time.monotonic() - t0) * 1000), **stats})
                self._log.emit(run_id, "run.cli_exit", {
                    "exitCode": code if code is not None and code >= 0 else None,
                    "signal": -code if code is not None and code < 0 else None})
        res = Attempt("failed", exit_code=code, outcome=out)
        if out.max_turns_hit and not over:  # claude stopped itself at --max-turns
            over.append(f"the agent reached harness.maxTurns ({max_turns}); it was stopped")
            self._log.emit(run_id, "run.limit_exceeded", {
                "limit": "maxTurns", "max": max_turns, "used": out.turns})
        if over:
            res.reason = "idleTimeout" if "idleTimeoutMs" in over[0] else "limitExceeded"
            res.error = over[0]
            return res
        limit = await self._usage_limit(run, env, out, stderr_tail)
        if limit is not None:
            res.reason, res.limit = "usageLimit", limit
            res.error = self._log.redact(run_id, limit.message)
            return res
        if code == 0 and out.failure is None:
            res.status = "succeeded"
            self._check_output(run, out, res)
            return res
        res.reason = "turnFailed" if out.failure else "exitCode"
        res.error = out.failure or f"{argv[0].rsplit('/', 1)[-1]} exited with {code}" + (
            f": {stderr_tail[-1]}" if stderr_tail else "")
        res.error = self._log.redact(run_id, res.error)
        res.retryable = not out.saw_output
        res.resume_rejected = bool(run.session_id) and providers.resume_rejected(
            req.provider, stderr_tail, out)
        return res

    async def _usage_limit(self, run: Run, env: dict[str, str], out: providers.Outcome,
                           stderr_tail: list[str]) -> limits.Limit | None:
        """The usage or rate limit that stopped this attempt, with its reset time: claude's
        rate_limit_event; codex's rollout (exact), else its message (to the minute)."""
        now = dt.datetime.now().astimezone()
        if run.request.provider == "claude":
            if not out.limited:
                return None
            text = out.failure or out.result_text or "claude hit a usage limit"
            if out.limit_reset:
                return limits.Limit(text, out.limit_reset, "rateLimitEvent")
            if out.session_id:
                folder = env.get("CLAUDE_CONFIG_DIR") or str(
                    Path(env.get("HOME") or Path.home()) / ".claude")
                exact = await trio.to_thread.run_sync(_transcript_reset, folder, out.session_id)
                if exact is not None:
                    return limits.Limit(text, exact, "transcript")
            reset = limits.from_claude_message(text, now)
            return limits.Limit(text, reset, "message" if reset else "")
        text = out.failure or (stderr_tail[-1] if stderr_tail else "")
        found = limits.from_codex_message(text, now)
        if found is None:
            return None
        if out.session_id:
            home = env.get("CODEX_HOME") or str(Path.home() / ".codex")
            exact = await trio.to_thread.run_sync(_rollout_reset, home, out.session_id)
            if exact is not None:
                return limits.Limit(found.message, exact, "rolloutRateLimits")
        return found

    def _check_output(self, run: Run, out: providers.Outcome, res: Attempt) -> None:
        schema = run.request.output_schema
        if schema is None:
            return
        text = out.result_text if out.result_text is not None else out.last_message
        try:
            value = out.structured if out.has_structured else json.loads(text or "")
            jsonschema.validate(value, schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            message = exc.message if isinstance(exc, jsonschema.ValidationError) else \
                f"the final message is not JSON: {exc}"
            self._log.emit(run.run_id, "run.structured_output_invalid", {"message": message})
            res.status, res.reason = "failed", "structuredOutputInvalid"
            res.error = f"the output does not match outputSchema: {message}"
            return
        self._log.emit(run.run_id, "run.structured_output", {"value": value})
        out.structured, out.has_structured = value, True


#: What a login is made of in a CODEX_HOME (nothing else is copied: not config, not history).
LOGIN_FILES = ("auth.json",)


def isolated_home(home: str, shared: str, copy_login: bool) -> list[str]:
    """Make ``home`` (0700, whatever the umask); with ``copy_login``, copy the shared home's
    login files into it, 0600 or stricter. Returns the names copied."""
    path = Path(home)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    os.chmod(path.parent, 0o700)
    copied = []
    for name in LOGIN_FILES if copy_login else ():
        src = Path(shared) / name
        try:
            data = src.read_bytes()
            mode = src.stat().st_mode & 0o600
        except OSError:
            continue
        tmp = path / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, mode or 0o600)
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path / name)
        copied.append(name)
    return copied


def _rollout_reset(codex_home: str, session_id: str) -> int | None:
    """The exhausted window's reset from the session's rollout (its last 400 lines)."""
    if not session_id.replace("-", "").isalnum():
        return None
    for path in sorted(Path(codex_home, "sessions").glob(f"*/*/*/rollout-*-{session_id}.jsonl"),
                       reverse=True):
        try:
            with path.open(errors="replace") as f:
                tail = f.readlines()[-400:]
        except OSError:
            continue
        return limits.from_rollout(tail)
    return None


def _transcript_reset(config_dir: str, session_id: str) -> int | None:
    """The usage limit's reset from a claude session transcript (projects/*/<session>.jsonl)."""
    if not session_id.replace("-", "").isalnum():
        return None
    for path in Path(config_dir, "projects").glob(f"*/{session_id}.jsonl"):
        try:
            with path.open(errors="replace") as f:
                return limits.from_transcript(f.readlines()[-200:])
        except OSError:
            continue
    return None


def usage_tokens(usage: Any) -> int:
    """Input plus output tokens of one usage report (codex's turn, claude's message)."""
    if not isinstance(usage, dict):
        return 0
    total = 0
    for key in ("input_tokens", "output_tokens"):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    return total


async def _lines(stream: trio.abc.ReceiveStream,
                 limit: int) -> AsyncIterator[tuple[str, bool]]:
    """Lines of a byte stream (decoded, without newline) and whether each was truncated."""
    buf = bytearray()
    skipping = False
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > limit:
                    if not skipping:
                        yield buf[:limit].decode("utf-8", "replace"), True
                    skipping = True
                    buf.clear()
                break
            line = bytes(buf[:nl])
            del buf[:nl + 1]
            if skipping:
                skipping = False
                continue
            if len(line) > limit:
                yield line[:limit].decode("utf-8", "replace"), True
                continue
            yield line.decode("utf-8", "replace").rstrip("\r"), False
    if buf and not skipping:
        yield buf.decode("utf-8", "replace"), False
