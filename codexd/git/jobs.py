"""Remote git jobs (fetch, pull, push): started at once, reported as they go, never hanging on a
prompt.

git runs with ``--progress``; its stderr is split on ``\\r`` and ``\\n`` and parsed into
``git/progress`` notifications (throttled). A credential prompt goes through codexd's askpass
helper (``GIT_ASKPASS``, and ``SSH_ASKPASS`` with ``SSH_ASKPASS_REQUIRE=force`` for ssh), which
calls ``git/askpass`` on the daemon's socket with the job's id and a per-job secret; that becomes a
pending credential request any client may answer (``git/credentials/respond``, ``codexctl git
answer``). Unanswered within ``git.credential_timeout_seconds`` it is declined and the job fails
saying so. ``GIT_TERMINAL_PROMPT=0`` always: git never waits on a terminal nobody sees.
Answers are never logged, stored or sent to other clients.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
import trio

from codexd.errors import ErrorCode, RpcError
from codexd.files import git_env, tool
from codexd.git import parse
from codexd.git.service import GitService, Repo
from codexd.protocol.git import (
    GIT_CREDENTIAL_ANSWERED,
    GIT_CREDENTIAL_REQUESTED,
    GIT_JOB_DONE,
    GIT_PROGRESS,
    CredentialAnswered,
    CredentialRequest,
    Job,
    JobDone,
    JobStarted,
    Progress,
)

log = structlog.get_logger("codexd.git")

Kind = Literal["fetch", "pull", "push"]
_PROGRESS = re.compile(
    r"^(?:remote: )?(?P<phase>[A-Za-z][A-Za-z ]+?):\s+(?P<pct>\d+)% "
    r"\((?P<done>\d+)/(?P<total>\d+)\)(?:, (?P<amount>[\d.]+) (?P<unit>bytes|KiB|MiB|GiB))?")
_UNITS = {"bytes": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
#: Recent finished jobs kept for git/jobs.
_KEEP = 50
_THROTTLE_S = 0.1


@dataclass
class _Job:
    job_id: str
    repo: Repo
    kind: Kind
    secret: str
    started_at: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    state: Literal["running", "succeeded", "failed", "canceled"] = "running"
    finished_at: int | None = None
    phase: str | None = None
    percent: int | None = None
    output: str = ""
    error: str | None = None
    #: A credential prompt went unanswered (the error says so instead of git's words).
    declined: str | None = None

    def view(self) -> Job:
        return Job(job_id=self.job_id, root=self.repo.asked, kind=self.kind, state=self.state,
                   started_at=self.started_at, finished_at=self.finished_at, phase=self.phase,
                   percent=self.percent, output=self.output, error=self.error)


@dataclass
class _Pending:
    request: CredentialRequest
    answered: trio.Event = field(default_factory=trio.Event)
    value: str | None = None
    outcome: Literal["answered", "declined", "expired"] = "expired"


def prompt_kind(prompt: str) -> Literal["username", "password", "passphrase", "other"]:
    p = prompt.lower()
    if "username" in p:
        return "username"
    if "passphrase" in p:
        return "passphrase"
    if "password" in p:
        return "password"
    return "other"


class GitJobs:
    def __init__(self, git: GitService, *, publish: Callable[[str, Any], None],
                 spawn: Callable[[Any, str], None], socket_path: Callable[[], Path],
                 state_dir: Path, credential_timeout: Callable[[], float]) -> None:
        self._git = git
        self._publish = publish
        self._spawn = spawn
        self._socket_path = socket_path
        self._state_dir = state_dir
        self._timeout = credential_timeout
        self.jobs: dict[str, _Job] = {}
        self.pending: dict[int, _Pending] = {}
        self._next_request = 1

    # ------------------------------------------------------------------------------ jobs

    async def start(self, kind: Kind, path: str, args: list[str], *,
                    force: bool = False) -> JobStarted:
        repo = await self._git.need_repo(path)
        if kind == "pull":
            self._git.busy_check(repo, force)
        job = _Job(job_id=secrets.token_hex(6), repo=repo, kind=kind,
                   secret=secrets.token_urlsafe(24), started_at=_now())
        self.jobs[job.job_id] = job
        self._prune()
        log.info("git_job_started", job_id=job.job_id, kind=kind, root=repo.root)
        self._spawn(self._run(job, args), "git-job")
        return JobStarted(job_id=job.job_id, root=repo.asked, kind=kind)

    def cancel(self, job_id: str) -> Job:
        job = self._job(job_id)
        if job.state == "running":
            job.scope.cancel()
        return job.view()

    def _job(self, job_id: str) -> _Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no git job {job_id!r} (`codexctl call "
                           "git/jobs` lists them)", {"jobId": job_id})
        return job

    def _prune(self) -> None:
        done = [j for j in self.jobs.values() if j.state != "running"]
        for j in sorted(done, key=lambda j: j.started_at)[:-_KEEP or None]:
            del self.jobs[j.job_id]

    async def _run(self, job: _Job, args: list[str]) -> None:
        lock = self._git.lock_for(job.repo) if job.kind == "pull" else None
        try:
            with job.scope:
                if lock is not None:
                    async with lock:
                        await self._execute(job, args)
                else:
                    await self._execute(job, args)
            if job.scope.cancelled_caught:
                job.state, job.error = "canceled", "canceled"
        except Exception as exc:
            job.state, job.error = "failed", f"internal error: {exc}"
            raise
        finally:
            job.finished_at = _now()
            for pending in [p for p in self.pending.values() if p.request.job_id == job.job_id]:
                self._settle(pending, "expired")
            log.info("git_job_done", job_id=job.job_id, kind=job.kind, state=job.state,
                     error=job.error)
            self._publish(GIT_JOB_DONE.name, JobDone(job=job.view()))

    async def _execute(self, job: _Job, args: list[str]) -> None:
        git = tool("git")
        env = git_env()
        helper = self._askpass_helper()
        env.update(GIT_ASKPASS=helper, SSH_ASKPASS=helper, SSH_ASKPASS_REQUIRE="force",
                   CODEXD_SOCKET=str(self._socket_path()), CODEXD_GIT_JOB=job.job_id,
                   CODEXD_GIT_SECRET=job.secret)
        env.pop("DISPLAY", None)
        proc = await trio.lowlevel.open_process(
            [git, "-c", "core.quotepath=off", *args], cwd=job.repo.root,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True)
        out = bytearray()
        err = bytearray()
        try:
            async with trio.open_nursery() as nursery:
                assert proc.stdout is not None and proc.stderr is not None
                nursery.start_soon(_collect, proc.stdout, out)
                nursery.start_soon(self._progress, job, proc.stderr, err)
                code = await proc.wait()
        finally:
            with trio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        messages = [ln for ln in re.split(r"[\r\n]", parse.text(bytes(err)))
                    if ln.strip() and not _PROGRESS.match(ln)]
        job.output = "\n".join([*parse.text(bytes(out)).strip().splitlines(), *messages])[-4000:]
        if code == 0:
            job.state = "succeeded"
            return
        job.state = "failed"
        reason = next((m.removeprefix("fatal: ") for m in reversed(messages)
                       if m.startswith(("fatal:", "error:"))), messages[-1] if messages else "")
        job.error = job.declined or reason.removeprefix("error: ") or f"git exited {code}"

    async def _progress(self, job: _Job, stream: trio.abc.ReceiveStream, err: bytearray) -> None:
        last_sent = 0.0
        last_phase = ""
        buf = b""
        while chunk := await stream.receive_some(65536):
            err += chunk
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            for part in parts:
                m = _PROGRESS.match(parse.text(part))
                if m is None:
                    continue
                now = time.monotonic()
                pct = int(m["pct"])
                if m["phase"] == last_phase and pct < 100 and now - last_sent < _THROTTLE_S:
                    continue
                last_sent, last_phase = now, m["phase"]
                job.phase, job.percent = m["phase"], pct
                amount = int(float(m["amount"]) * _UNITS[m["unit"]]) if m["amount"] else None
                self._publish(GIT_PROGRESS.name, Progress(
                    job_id=job.job_id, phase=m["phase"], percent=pct, done=int(m["done"]),
                    total=int(m["total"]), bytes=amount))

    def _askpass_helper(self) -> str:
        """A tiny executable (GIT_ASKPASS takes a program, not a command line) that runs
        ``python -m codexd.git.askpass`` with this interpreter."""
        path = self._state_dir / "askpass.sh"
        body = (f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m codexd.git.askpass "
                '"$@"\n')
        if not path.exists() or path.read_text() != body:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(body)
            os.chmod(tmp, 0o700)
            os.replace(tmp, path)
        return str(path)

    # ----------------------------------------------------------------------- credentials

    async def askpass(self, job_id: str, secret: str, prompt: str) -> str:
        job = self.jobs.get(job_id)
        if job is None or not secrets.compare_digest(job.secret, secret) or \
                job.state != "running":
            raise RpcError(ErrorCode.POLICY_DENIED, "not a running git job of this daemon")
        timeout = self._timeout()
        request = CredentialRequest(
            request_id=self._next_request, job_id=job_id, root=job.repo.asked, prompt=prompt,
            kind=prompt_kind(prompt), created_at=_now(),
            expires_at=_now() + int(timeout * 1000))
        self._next_request += 1
        pending = _Pending(request)
        self.pending[request.request_id] = pending
        log.info("git_credential_requested", job_id=job_id, request_id=request.request_id,
                 kind=request.kind)
        self._publish(GIT_CREDENTIAL_REQUESTED.name, request)
        with trio.move_on_after(timeout):
            await pending.answered.wait()
        if not pending.answered.is_set():
            self._settle(pending, "expired")
        if pending.outcome != "answered" or pending.value is None:
            why = ("no answer within "
                   f"{timeout:g} s (git.credential_timeout_seconds)"
                   if pending.outcome == "expired" else "declined")
            job.declined = f"git asked for a {request.kind} ({prompt.strip()}): {why}"
            raise RpcError(ErrorCode.CONFLICT, job.declined)
        return pending.value

    def respond(self, request_id: int, value: str | None, cancel: bool) -> CredentialAnswered:
        pending = self.pending.get(request_id)
        if pending is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no credential request {request_id} waiting "
                           "(answered, declined or expired already)",
                           {"requestId": request_id})
        if cancel or value is None:
            self._settle(pending, "declined")
        else:
            pending.value = value
            self._settle(pending, "answered")
        return CredentialAnswered(request_id=request_id, job_id=pending.request.job_id,
                                  outcome=pending.outcome)

    def _settle(self, pending: _Pending,
                outcome: Literal["answered", "declined", "expired"]) -> None:
        if self.pending.pop(pending.request.request_id, None) is None:
            return
        pending.outcome = outcome
        pending.answered.set()
        log.info("git_credential_" + outcome, request_id=pending.request.request_id,
                 job_id=pending.request.job_id)
        self._publish(GIT_CREDENTIAL_ANSWERED.name, CredentialAnswered(
            request_id=pending.request.request_id, job_id=pending.request.job_id,
            outcome=outcome))

    def requests(self) -> list[CredentialRequest]:
        return [p.request for p in self.pending.values()]


async def _collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while chunk := await stream.receive_some(65536):
        into += chunk


def _now() -> int:
    return int(time.time() * 1000)
