"""``codexctl git status|diff|log``: a repository as codexd sees it (inside workspace grants)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from codexd.cli.exits import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from codexd.cli.output import StatusLine, age, print_json, table
from codexd.client import Client
from codexd.protocol.base import NoParams
from codexd.protocol.git import (
    GIT_CREDENTIAL_REQUESTED,
    GIT_CREDENTIALS_RESPOND,
    GIT_DIFF,
    GIT_FETCH,
    GIT_JOB_DONE,
    GIT_JOBS,
    GIT_LOG,
    GIT_PROGRESS,
    GIT_PULL,
    GIT_PUSH,
    GIT_STATUS,
    CredentialRespondParams,
    DiffParams,
    FetchParams,
    Job,
    LogParams,
    PullParams,
    PushParams,
    StatusParams,
)

_WORDS = {".": "", "M": "modified", "T": "type changed", "A": "added", "D": "deleted",
          "R": "renamed", "C": "copied", "U": "unmerged", "?": "untracked", "!": "ignored"}


def _repo(a: argparse.Namespace) -> str:
    return os.path.abspath(a.repo or os.getcwd())


def _counts(added: int | None, deleted: int | None) -> str:
    if added is None or (added == 0 and deleted == 0):
        return ""
    return f"+{added} -{deleted}"


def cmd_status(c: Client, a: argparse.Namespace) -> Any:
    st = c.request(GIT_STATUS, StatusParams(repo=_repo(a), line_counts=True))
    if a.json:
        return st
    if not st.is_repository:
        print(f"{st.root} is not in a git work tree", file=sys.stderr)
        return 1
    where = f"on {st.branch}" if st.branch else f"detached at {(st.head or '')[:12]}"
    track = f", {st.ahead} ahead / {st.behind} behind {st.upstream}" if st.upstream else ""
    print(f"{st.root}: {where}{track}" + (f"; {st.in_progress} in progress"
                                           if st.in_progress else "")
          + (f"; {st.stashes} stash(es)" if st.stashes else ""))
    rows = []
    for f in st.files:
        path = f"{f.orig_path} -> {f.path}" if f.orig_path else f.path
        rows.append([_WORDS.get(f.index, f.index) if f.kind != "untracked" else "",
                     _WORDS.get(f.worktree, f.worktree), path,
                     _counts(f.staged_added, f.staged_deleted), _counts(f.added, f.deleted)])
    table(["STAGED", "WORK TREE", "PATH", "STAGED +/-", "+/-"], rows,
          empty="nothing to commit, working tree clean")
    return None


def cmd_diff(c: Client, a: argparse.Namespace) -> Any:
    diff = c.request(GIT_DIFF, DiffParams(
        repo=_repo(a), path=os.path.abspath(a.path) if a.path else None, staged=a.staged,
        context=a.context))
    if a.json:
        return diff
    sys.stdout.write(diff.patch)
    if not diff.files:
        print("no changes" + (" staged" if a.staged else ""), file=sys.stderr)
    return None


def cmd_log(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(GIT_LOG, LogParams(repo=_repo(a), max_count=a.n, ref=a.ref,
                                       path=os.path.abspath(a.path) if a.path else None))
    if a.json:
        return out
    table(["COMMIT", "AGE", "AUTHOR", "SUBJECT"],
          [[x.short, age(x.committed_at), x.author_name, x.subject] for x in out.commits],
          empty="no commits yet")
    return None


def _remote(spec: Any, params: Callable[[argparse.Namespace], Any]) -> Any:
    def run(c: Client, a: argparse.Namespace) -> Any:
        started = c.request(spec, params(a))
        if a.no_wait:
            if a.json:
                return started
            print(started.job_id)
            return None
        try:
            job = _follow(c, started.job_id, as_json=a.json)
        except KeyboardInterrupt:
            print(f"\n[job {started.job_id} goes on; `codexctl call git/cancel "
                  f"'{{\"jobId\": \"{started.job_id}\"}}'` stops it]", file=sys.stderr)
            return EXIT_INTERRUPTED
        if a.json:
            print_json(job)
        else:
            if job.output:
                print(job.output)
            print(f"[{job.kind} {job.state}" + (f": {job.error}" if job.error else "") + "]",
                  file=sys.stderr)
        return EXIT_OK if job.state == "succeeded" else EXIT_ERROR
    return run


def _follow(c: Client, job_id: str, *, as_json: bool) -> Job:
    """Until the job ends; progress on a terminal, and credential prompts asked right here
    when this is one (otherwise any client may answer them)."""
    interactive = sys.stdin.isatty() and not as_json
    with StatusLine(enabled=sys.stderr.isatty() and not as_json) as status:
        status.show(f"git job {job_id} starting")
        while True:
            try:
                note = c.next_notification(timeout=2.0)
            except TimeoutError:
                job = next((j for j in c.request(GIT_JOBS, NoParams()).jobs
                            if j.job_id == job_id), None)
                if job is not None and job.state != "running":
                    return job
                continue
            p = note.params
            if not isinstance(p, dict):
                continue
            if note.method == GIT_PROGRESS.name and p.get("jobId") == job_id:
                status.show(f"{p['phase']}: {p.get('percent')}%")
            elif note.method == GIT_CREDENTIAL_REQUESTED.name and p.get("jobId") == job_id:
                status.clear()
                if interactive:
                    hidden = p["kind"] != "username"
                    value = getpass.getpass(p["prompt"]) if hidden else input(p["prompt"])
                    c.request(GIT_CREDENTIALS_RESPOND, CredentialRespondParams(
                        request_id=p["requestId"], value=value))
                else:
                    print(f"[git asks: {p['prompt'].strip()} — answer with `codexctl git answer "
                          f"{p['requestId']}`]", file=sys.stderr)
            elif note.method == GIT_JOB_DONE.name and p["job"]["jobId"] == job_id:
                return msgspec.convert(p["job"], Job)


def cmd_answer(c: Client, a: argparse.Namespace) -> Any:
    if a.decline:
        value = None
    elif sys.stdin.isatty():
        value = getpass.getpass(f"answer for request {a.id} (not echoed): ")
    else:
        value = sys.stdin.readline().rstrip("\n")
    out = c.request(GIT_CREDENTIALS_RESPOND, CredentialRespondParams(
        request_id=a.id, value=value, cancel=a.decline))
    if a.json:
        return out
    print(f"request {a.id}: {out.outcome}")
    return None


def add_commands(add: Any, sub: Any) -> None:
    git = sub.add_parser("git", help="a repository inside a workspace grant"
                         ).add_subparsers(dest="git_command", required=True,
                                          metavar="GIT_COMMAND")
    sp = add("status", cmd_status, "branch, upstream and changed files", git)
    sp.add_argument("repo", nargs="?", metavar="DIR", help="default: here")
    sp = add("diff", cmd_diff, "the unstaged (or --staged) diff", git)
    sp.add_argument("path", nargs="?", metavar="PATH", help="only this file or folder")
    sp.add_argument("--repo", metavar="DIR", help="default: here")
    sp.add_argument("--staged", action="store_true")
    sp.add_argument("-U", "--context", type=int, default=3, metavar="N")
    sp = add("log", cmd_log, "recent commits", git)
    sp.add_argument("path", nargs="?", metavar="PATH", help="only commits touching it")
    sp.add_argument("--repo", metavar="DIR", help="default: here")
    sp.add_argument("-n", type=int, default=20, metavar="N")
    sp.add_argument("--ref", help="default: HEAD")
    for name, spec, build, help_ in (
            ("fetch", GIT_FETCH, lambda a: FetchParams(repo=_repo(a), remote=a.remote,
                                                        prune=a.prune), "fetch (progress shown)"),
            ("pull", GIT_PULL, lambda a: PullParams(repo=_repo(a), remote=a.remote,
                                                     ff_only=a.ff_only), "pull"),
            ("push", GIT_PUSH, lambda a: PushParams(repo=_repo(a), remote=a.remote,
                                                     set_upstream=a.set_upstream), "push")):
        sp = add(name, _remote(spec, build), help_ + "; credential prompts asked here on a "
                 "terminal", git)
        sp.add_argument("remote", nargs="?")
        sp.add_argument("--repo", metavar="DIR", help="default: here")
        sp.add_argument("--no-wait", action="store_true", help="print the job id and return")
        if name == "fetch":
            sp.add_argument("--prune", action="store_true")
        if name == "pull":
            sp.add_argument("--ff-only", action="store_true")
        if name == "push":
            sp.add_argument("-u", "--set-upstream", action="store_true")
    sp = add("answer", cmd_answer, "answer a git credential prompt (read from a prompt or "
             "stdin, never argv)", git)
    sp.add_argument("id", type=int, metavar="REQUEST_ID")
    sp.add_argument("--decline", action="store_true", help="decline it: the job fails")
