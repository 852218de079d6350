"""``git/*`` on top of the git CLI: finding the repository, running git, serializing writes.

Every path a method takes is checked against the workspace grants first (the repository's
top included: a repository is only worked on when its work tree is granted). Reads run with
``GIT_OPTIONAL_LOCKS=0`` so they never take the index lock from the user's own git; calls that
change the index or the work tree take a per-repository lock, and are refused (-32010, unless
``force``) while a provider run or an automation's Codex turn is working in that work tree.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
import trio

from codexd.errors import ErrorCode, RpcError
from codexd.files import git_env, tool
from codexd.git import parse
from codexd.protocol.git import (
    Branches,
    Commit,
    Committed,
    Diff,
    FileStatus,
    FileVersions,
    GitDone,
    Log,
    Shown,
    Stashes,
    Status,
    Worktrees,
)
from codexd.workspaces import Resolved, Workspaces

log = structlog.get_logger("codexd.git")

_NOT_A_REPO = "not a git repository"
#: What git says when a ref or revision the client named does not exist (-32602, not -32010).
_BAD_REF = ("unknown revision", "bad revision", "invalid reference", "not a valid",
            "ambiguous argument", "did not match any")


@dataclass(frozen=True, slots=True)
class Repo:
    """A work tree inside a grant: its top (as the client would write it) and real top."""

    asked: str
    root: str
    git_dir: str
    common_dir: str


class GitError(RpcError):
    pass


class GitService:
    def __init__(self, workspaces: Workspaces, *,
                 busy: Callable[[], Iterable[tuple[str, str]]] = lambda: ()) -> None:
        self._ws = workspaces
        #: (what, cwd) of work in progress: provider runs, automation turns.
        self._busy = busy
        self._locks: dict[str, trio.Lock] = {}
        #: folder → the work tree it is in (a rev-parse saved per call; checked on use).
        self._repos: dict[str, Repo] = {}

    # ------------------------------------------------------------------------ running git

    async def run(self, cwd: str, *args: str, stdin: bytes | None = None,
                  ok: tuple[int, ...] = (0,)) -> bytes:
        git = tool("git")
        argv = [git, "-c", "core.quotepath=off", "-c", "color.ui=false", *args]
        done = await trio.run_process(argv, cwd=cwd, stdin=stdin or b"", capture_stdout=True,
                                      capture_stderr=True, check=False, env=git_env())
        if done.returncode not in ok:
            message = parse.text(done.stderr or done.stdout).strip() or f"exit {done.returncode}"
            bad_ref = any(s in message for s in _BAD_REF)
            code = ErrorCode.INVALID_PARAMS if bad_ref else ErrorCode.CONFLICT
            lines = [ln for ln in message.splitlines() if ln.strip()]
            shown = "; ".join(ln.removeprefix("fatal: ").removeprefix("error: ")
                              for ln in lines[-3:])
            raise GitError(code, f"git {args[0]}: {shown}",
                           {"git": message[:4000], "exitCode": done.returncode})
        return done.stdout

    async def repo(self, path: str) -> Repo | None:
        """The work tree containing ``path`` (checked against the grants); None: not one."""
        res = self._ws.resolve(path)
        folder = _folder_of(res.real)
        cached = self._repos.get(folder)
        if cached is not None and _still(cached, folder):
            self._ws.resolve(cached.root)
            return Repo(asked=_asked_top(res, cached.root), root=cached.root,
                        git_dir=cached.git_dir, common_dir=cached.common_dir)
        try:
            out = await self.run(folder, "rev-parse", "--show-toplevel", "--absolute-git-dir",
                                 "--git-common-dir")
        except GitError as exc:
            if _NOT_A_REPO in str(exc.data):
                return None
            raise
        top, git_dir, common = parse.text(out).splitlines()[:3]
        common = _absolute(folder, common)
        self._ws.resolve(top)  # the whole work tree must be granted, not just a folder in it
        asked = _asked_top(res, top)
        repo = Repo(asked=asked, root=top, git_dir=git_dir, common_dir=common)
        if len(self._repos) > 10_000:
            self._repos.clear()
        self._repos[folder] = repo
        return repo

    async def git_dir_of(self, real: str) -> tuple[str, str] | None:
        """(work tree top, git dir) of an already-checked folder; None outside a work tree."""
        try:
            out = await self.run(real, "rev-parse", "--show-toplevel", "--absolute-git-dir")
        except (GitError, RpcError):
            return None
        top, git_dir = parse.text(out).splitlines()[:2]
        return top, git_dir

    async def need_repo(self, path: str) -> Repo:
        repo = await self.repo(path)
        if repo is None:
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"invalid params: {path!r} is not inside a git work tree",
                           {"field": "repo"})
        return repo

    def rel(self, repo: Repo, path: str) -> str:
        """A path given by the client, checked, as git wants it (relative to the top)."""
        res = self._ws.resolve(path, follow=False)
        real = res.real
        if not (real == repo.root or real.startswith(repo.root.rstrip("/") + "/")):
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"invalid params: {path!r} is not in the repository at {repo.asked}",
                           {"field": "path"})
        return os.path.relpath(real, repo.root)

    def _writing(self, repo: Repo, force: bool) -> trio.Lock:
        self.busy_check(repo, force)
        return self.lock_for(repo)

    def lock_for(self, repo: Repo) -> trio.Lock:
        """The lock every index-changing call on this repository holds."""
        return self._locks.setdefault(repo.common_dir, trio.Lock())

    def busy_check(self, repo: Repo, force: bool) -> None:
        """-32010 while a run or an automation works in the work tree (unless ``force``)."""
        if not force:
            for what, cwd in self._busy():
                real = os.path.realpath(cwd)
                if real == repo.root or real.startswith(repo.root.rstrip("/") + "/"):
                    raise RpcError(ErrorCode.CONFLICT,
                                   f"{what} is working in {repo.asked}; wait for it, or pass "
                                   "force to change the work tree anyway",
                                   {"busy": what, "root": repo.asked})

    async def write(self, repo: Repo, force: bool, *args: str, stdin: bytes | None = None
                    ) -> GitDone:
        async with self._writing(repo, force):
            out = await self.run(repo.root, *args, stdin=stdin)
        log.info("git_changed", root=repo.root, command=args[0])
        return GitDone(root=repo.asked, ok=True, output=parse.text(out).strip()[-2000:])

    # ------------------------------------------------------------------------------ reads

    async def status(self, path: str, *, line_counts: bool = False) -> Status:
        repo = await self.repo(path)
        if repo is None:
            return Status(is_repository=False, root=self._ws.resolve(path).asked)
        # The work tree's line counts walk every tracked file again, so they are counted only
        # when asked for (at the same time as the status); the staged ones (HEAD against the
        # index) are cheap, and counted after it when something is staged.
        results: dict[str, bytes] = {"unstaged": b"", "staged": b""}

        async def one(key: str, *args: str) -> None:
            results[key] = await self.run(repo.root, *args)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "status", "status", "--porcelain=v2", "-z", "--branch",
                               "--show-stash", "--untracked-files=all", "--find-renames")
            if line_counts:
                nursery.start_soon(one, "unstaged", "diff", "--numstat", "-z",
                                   "--find-renames")
        st = parse.status_v2(results["status"])
        if any(f.index not in (".", "?", "!") for f in st.files):
            await one("staged", "diff", "--cached", "--numstat", "-z", "--find-renames")
        unstaged, staged = results["unstaged"], results["staged"]
        wt, ix = parse.numstat(unstaged), parse.numstat(staged)
        files = []
        for f in st.files:
            sa, sd = ix.get(f.path, (0, 0) if f.index == "." else (None, None))
            a, d = (wt.get(f.path, (0, 0) if f.worktree == "." else (None, None))
                    if line_counts else (None, None))
            binary = (f.path in wt and wt[f.path][0] is None) or \
                (f.path in ix and ix[f.path][0] is None)
            files.append(FileStatus(path=f.path, kind=f.kind, index=f.index,
                                    worktree=f.worktree, orig_path=f.orig_path,
                                    staged_added=sa, staged_deleted=sd, added=a, deleted=d,
                                    binary=binary))
        return Status(is_repository=True, root=repo.asked, branch=st.branch, head=st.head,
                      detached=st.detached, upstream=st.upstream, ahead=st.ahead,
                      behind=st.behind, files=files, in_progress=_in_progress(repo.git_dir),
                      stashes=st.stashes)

    async def diff(self, path: str, *, file: str | None, staged: bool, context: int) -> Diff:
        repo = await self.need_repo(path)
        args = ["diff", "--no-ext-diff", "--find-renames", f"-U{context}"]
        if staged:
            args.append("--cached")
        if file is not None:
            args += ["--", self.rel(repo, file)]
        out = await self.run(repo.root, *args)
        return Diff(root=repo.asked, files=parse.diff(out), patch=parse.text(out))

    async def range_diff(self, path: str, *, base: str, head: str, file: str | None,
                         merge_base: bool, context: int) -> Diff:
        repo = await self.need_repo(path)
        spec = f"{base}...{head}" if merge_base else f"{base}..{head}"
        args = ["diff", "--no-ext-diff", "--find-renames", f"-U{context}", spec]
        if file is not None:
            args += ["--", self.rel(repo, file)]
        else:
            args.append("--")
        out = await self.run(repo.root, *args)
        return Diff(root=repo.asked, files=parse.diff(out), patch=parse.text(out))

    async def file_versions(self, path: str, file: str, *, staged: bool) -> FileVersions:
        repo = await self.need_repo(path)
        rel = self.rel(repo, file)
        before_spec = f"HEAD:{rel}" if staged else f":{rel}"
        before = await self._blob(repo, before_spec)
        if staged:
            after = await self._blob(repo, f":{rel}")
        else:
            real = os.path.join(repo.root, rel)
            after = await trio.to_thread.run_sync(_read_or_none, real)
        binary = any(b is not None and b"\0" in b[:8000] for b in (before, after))
        if binary:
            return FileVersions(path=rel, before=_b64(before), after=_b64(after), binary=True,
                                encoding="base64")
        return FileVersions(path=rel, before=_utf8(before), after=_utf8(after), binary=False,
                            encoding="utf8")

    async def _blob(self, repo: Repo, spec: str) -> bytes | None:
        try:
            return await self.run(repo.root, "show", spec)
        except GitError:
            return None  # not in HEAD / the index: a new file (or no commit yet)

    async def log(self, path: str, *, max_count: int, file: str | None, ref: str | None,
                  skip: int) -> Log:
        repo = await self.need_repo(path)
        args = ["log", f"--format={parse.LOG_FORMAT}", f"--max-count={max_count}",
                f"--skip={skip}"]
        if ref:
            args.append(ref)
        if file is not None:
            args += ["--", self.rel(repo, file)]
        else:
            args.append("--")
        try:
            out = await self.run(repo.root, *args)
        except GitError as exc:
            if "does not have any commits" in str(exc.data):
                return Log(commits=[])
            raise
        return Log(commits=parse.log(out))

    async def branches(self, path: str) -> Branches:
        repo = await self.need_repo(path)
        out = await self.run(repo.root, "for-each-ref", f"--format={parse.REF_FORMAT}",
                             "refs/heads", "refs/remotes")
        return Branches(branches=parse.branches(out))

    async def worktrees(self, path: str) -> Worktrees:
        repo = await self.need_repo(path)
        out = await self.run(repo.root, "worktree", "list", "--porcelain", "-z")
        return Worktrees(worktrees=parse.worktrees(out))

    async def show(self, path: str, commit: str, context: int) -> Shown:
        repo = await self.need_repo(path)
        meta = await self.run(repo.root, "log", "-1", f"--format={parse.LOG_FORMAT}", commit,
                              "--")
        commits: list[Commit] = parse.log(meta)
        if not commits:
            raise RpcError(ErrorCode.NOT_FOUND, f"no commit {commit!r}", {"commit": commit})
        out = await self.run(repo.root, "show", "--format=", "--no-ext-diff",
                             "--find-renames", f"-U{context}", commit, "--")
        return Shown(commit=commits[0], files=parse.diff(out), patch=parse.text(out))

    async def stash_list(self, path: str) -> Stashes:
        repo = await self.need_repo(path)
        out = await self.run(repo.root, "stash", "list", f"--format={parse.STASH_FORMAT}")
        return Stashes(stashes=parse.stashes(out))

    # ----------------------------------------------------------------------------- writes

    async def stage(self, path: str, files: list[str], force: bool) -> GitDone:
        repo = await self.need_repo(path)
        return await self.write(repo, force, "add", "--", *self._rels(repo, files))

    async def unstage(self, path: str, files: list[str], force: bool) -> GitDone:
        repo = await self.need_repo(path)
        rels = self._rels(repo, files)
        if await self._has_head(repo):
            return await self.write(repo, force, "restore", "--staged", "--", *rels)
        return await self.write(repo, force, "rm", "--cached", "-r", "-q", "--", *rels)

    async def revert(self, path: str, files: list[str], scope: str, force: bool) -> GitDone:
        repo = await self.need_repo(path)
        rels = self._rels(repo, files)
        flags = {"worktree": ["--worktree"], "index": ["--staged"],
                 "both": ["--staged", "--worktree", "--source=HEAD"]}[scope]
        return await self.write(repo, force, "restore", *flags, "--", *rels)

    async def apply_hunk(self, path: str, file: str, patch: str, action: str,
                         force: bool) -> GitDone:
        repo = await self.need_repo(path)
        rel = self.rel(repo, file)
        data = patch.encode("utf-8", errors="surrogateescape")
        if not data.endswith(b"\n"):
            data += b"\n"
        touched = {f.path for f in parse.diff(data)} | {f.old_path for f in parse.diff(data)
                                                        if f.old_path}
        if touched != {rel} and not touched <= {rel}:
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"invalid params: the patch changes {sorted(touched)}, not {rel!r}",
                           {"field": "patch"})
        flags = {"stage": ["--cached"], "unstage": ["--cached", "--reverse"],
                 "discard": ["--reverse"]}[action]
        async with self._writing(repo, force):
            try:
                await self.run(repo.root, "apply", "--check", "--recount", *flags, "-",
                               stdin=data)
            except GitError as exc:
                raise RpcError(ErrorCode.CONFLICT,
                               f"the hunk no longer applies to {rel} (the file changed since "
                               "the diff was taken); take the diff again",
                               {"path": rel, "git": exc.data}) from None
            await self.run(repo.root, "apply", "--recount", *flags, "-", stdin=data)
        log.info("git_changed", root=repo.root, command=f"apply ({action})")
        return GitDone(root=repo.asked, ok=True, output="")

    async def commit(self, path: str, message: str, *, amend: bool, files: list[str] | None,
                     allow_empty: bool, force: bool) -> Committed:
        repo = await self.need_repo(path)
        args = ["commit", "--file=-", "--cleanup=strip"]
        if amend:
            args.append("--amend")
        if allow_empty:
            args.append("--allow-empty")
        if files:
            args += ["--", *self._rels(repo, files)]
        done = await self.write(repo, force, *args, stdin=message.encode())
        head = parse.text(await self.run(repo.root, "rev-parse", "HEAD")).strip()
        branch = parse.text(await self.run(repo.root, "branch", "--show-current")).strip()
        return Committed(commit=head, branch=branch or None,
                         summary=done.output.splitlines()[0] if done.output else "")

    async def _has_head(self, repo: Repo) -> bool:
        try:
            await self.run(repo.root, "rev-parse", "--verify", "-q", "HEAD")
        except GitError:
            return False
        return True

    def _rels(self, repo: Repo, files: list[str]) -> list[str]:
        return [self.rel(repo, f) for f in files]

    async def worktree_add(self, path: str, where: str, ref: str | None,
                           new_branch: str | None) -> GitDone:
        repo = await self.need_repo(path)
        target = self._ws.resolve(where, follow=False)
        args = ["worktree", "add"]
        if new_branch:
            args += ["-b", new_branch]
        args += ["--", target.real]
        if ref:
            args.append(ref)
        return await self.write(repo, True, *args)

    async def worktree_remove(self, path: str, where: str, discard: bool,
                              force: bool) -> GitDone:
        repo = await self.need_repo(path)
        target = self._ws.resolve(where)
        args = ["worktree", "remove", *(["--force"] if discard else []), "--", target.real]
        self.busy_check(Repo(asked=target.asked, root=target.real, git_dir="", common_dir=""),
                        force)  # refuse while something works in it
        return await self.write(repo, True, *args)


def _asked_top(res: Resolved, top: str) -> str:
    """The repository's top written the way the client wrote the path it gave."""
    if res.real == top:
        return res.asked
    if res.real.startswith(top.rstrip("/") + "/"):
        depth = res.real[len(top):].strip("/").count("/") + 1
        asked = res.asked
        for _ in range(depth):
            asked = os.path.dirname(asked)
        return asked
    return top


def _still(repo: Repo, folder: str) -> bool:
    """Whether a remembered answer for ``folder`` holds: the git dir is there and no
    repository was made between the folder and the top since."""
    if not os.path.exists(repo.git_dir):
        return False
    d = folder
    while d != repo.root and d.startswith(repo.root.rstrip("/") + "/"):
        if os.path.lexists(os.path.join(d, ".git")):
            return False
        d = os.path.dirname(d)
    return d == repo.root


def _folder_of(real: str) -> str:
    return real if os.path.isdir(real) else os.path.dirname(real)


def _absolute(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _in_progress(git_dir: str) -> str | None:
    for name, what in (("rebase-merge", "rebase"), ("rebase-apply", "rebase"),
                       ("MERGE_HEAD", "merge"), ("CHERRY_PICK_HEAD", "cherry-pick"),
                       ("REVERT_HEAD", "revert"), ("BISECT_LOG", "bisect")):
        if os.path.exists(os.path.join(git_dir, name)):
            return what
    return None


def _read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _utf8(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")
