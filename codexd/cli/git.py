"""``codexctl git status|diff|log``: a repository as codexd sees it (inside workspace grants)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from codexd.cli.output import age, table
from codexd.client import Client
from codexd.protocol.git import (
    GIT_DIFF,
    GIT_LOG,
    GIT_STATUS,
    DiffParams,
    LogParams,
    RepoParams,
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
    st = c.request(GIT_STATUS, RepoParams(repo=_repo(a)))
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
