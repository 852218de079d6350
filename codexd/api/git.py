"""Handlers for ``git/*`` (the work is in :mod:`codexd.git.service`)."""

from __future__ import annotations

from codexd.api.registry import handles
from codexd.git.jobs import GitJobs
from codexd.git.service import GitService
from codexd.protocol.base import NoParams
from codexd.protocol.git import (
    GIT_APPLY_HUNK,
    GIT_ASKPASS,
    GIT_BRANCH_CHECKOUT,
    GIT_BRANCH_CREATE,
    GIT_BRANCH_DELETE,
    GIT_BRANCH_RENAME,
    GIT_BRANCHES,
    GIT_CANCEL,
    GIT_COMMIT,
    GIT_CREDENTIALS_LIST,
    GIT_CREDENTIALS_RESPOND,
    GIT_DIFF,
    GIT_FETCH,
    GIT_FILE_DIFF,
    GIT_JOBS,
    GIT_LOG,
    GIT_PULL,
    GIT_PUSH,
    GIT_RANGE_DIFF,
    GIT_REVERT,
    GIT_SHOW,
    GIT_STAGE,
    GIT_STASH_APPLY,
    GIT_STASH_DROP,
    GIT_STASH_LIST,
    GIT_STASH_POP,
    GIT_STASH_PUSH,
    GIT_STATUS,
    GIT_UNSTAGE,
    GIT_WORKTREE_ADD,
    GIT_WORKTREE_LIST,
    GIT_WORKTREE_REMOVE,
    ApplyHunkParams,
    AskpassAnswer,
    AskpassParams,
    BranchCreateParams,
    BranchDeleteParams,
    Branches,
    BranchRenameParams,
    CheckoutParams,
    CommitParams,
    Committed,
    CredentialAnswered,
    CredentialList,
    CredentialRespondParams,
    Diff,
    DiffParams,
    FetchParams,
    FileDiffParams,
    FileVersions,
    GitDone,
    Job,
    JobRef,
    Jobs,
    JobStarted,
    Log,
    LogParams,
    PathsParams,
    PullParams,
    PushParams,
    RangeDiffParams,
    RepoParams,
    RevertParams,
    Shown,
    ShowParams,
    Stashes,
    StashPushParams,
    StashRefParams,
    Status,
    StatusParams,
    WorktreeAddParams,
    WorktreeRemoveParams,
    Worktrees,
)
from codexd.session import ClientSession


def _git(session: ClientSession) -> GitService:
    return session.ctx.git


@handles(GIT_STATUS)
async def status(session: ClientSession, p: StatusParams) -> Status:
    return await _git(session).status(p.repo, line_counts=p.line_counts)


@handles(GIT_DIFF)
async def diff(session: ClientSession, p: DiffParams) -> Diff:
    return await _git(session).diff(p.repo, file=p.path, staged=p.staged, context=p.context)


@handles(GIT_FILE_DIFF)
async def file_diff(session: ClientSession, p: FileDiffParams) -> FileVersions:
    return await _git(session).file_versions(p.repo, p.path, staged=p.staged)


@handles(GIT_RANGE_DIFF)
async def range_diff(session: ClientSession, p: RangeDiffParams) -> Diff:
    return await _git(session).range_diff(p.repo, base=p.base, head=p.head, file=p.path,
                                          merge_base=p.merge_base, context=p.context)


@handles(GIT_LOG)
async def log(session: ClientSession, p: LogParams) -> Log:
    return await _git(session).log(p.repo, max_count=p.max_count, file=p.path, ref=p.ref,
                                   skip=p.skip)


@handles(GIT_BRANCHES)
async def branches(session: ClientSession, p: RepoParams) -> Branches:
    return await _git(session).branches(p.repo)


@handles(GIT_WORKTREE_LIST)
async def worktree_list(session: ClientSession, p: RepoParams) -> Worktrees:
    return await _git(session).worktrees(p.repo)


@handles(GIT_SHOW)
async def show(session: ClientSession, p: ShowParams) -> Shown:
    return await _git(session).show(p.repo, p.commit, p.context)


@handles(GIT_STAGE)
async def stage(session: ClientSession, p: PathsParams) -> GitDone:
    return await _git(session).stage(p.repo, p.paths, p.force)


@handles(GIT_UNSTAGE)
async def unstage(session: ClientSession, p: PathsParams) -> GitDone:
    return await _git(session).unstage(p.repo, p.paths, p.force)


@handles(GIT_REVERT)
async def revert(session: ClientSession, p: RevertParams) -> GitDone:
    return await _git(session).revert(p.repo, p.paths, p.scope, p.force)


@handles(GIT_APPLY_HUNK)
async def apply_hunk(session: ClientSession, p: ApplyHunkParams) -> GitDone:
    return await _git(session).apply_hunk(p.repo, p.path, p.patch, p.action, p.force)


@handles(GIT_COMMIT)
async def commit(session: ClientSession, p: CommitParams) -> Committed:
    return await _git(session).commit(p.repo, p.message, amend=p.amend, files=p.paths,
                                      allow_empty=p.allow_empty, force=p.force)


async def _write(session: ClientSession, repo: str, force: bool, *args: str) -> GitDone:
    git = _git(session)
    return await git.write(await git.need_repo(repo), force, *args)


@handles(GIT_BRANCH_CREATE)
async def branch_create(session: ClientSession, p: BranchCreateParams) -> GitDone:
    if p.checkout:
        return await _write(session, p.repo, p.force, "switch", "-c", p.name,
                            *([p.start_point] if p.start_point else []))
    return await _write(session, p.repo, p.force, "branch", "--", p.name,
                        *([p.start_point] if p.start_point else []))


@handles(GIT_BRANCH_DELETE)
async def branch_delete(session: ClientSession, p: BranchDeleteParams) -> GitDone:
    return await _write(session, p.repo, p.force, "branch", "-D" if p.unmerged else "-d",
                        "--", p.name)


@handles(GIT_BRANCH_RENAME)
async def branch_rename(session: ClientSession, p: BranchRenameParams) -> GitDone:
    return await _write(session, p.repo, p.force, "branch", "-m", "--", p.name, p.to)


@handles(GIT_BRANCH_CHECKOUT)
async def branch_checkout(session: ClientSession, p: CheckoutParams) -> GitDone:
    return await _write(session, p.repo, p.force, "switch", *(["-c"] if p.create else []),
                        p.name)


@handles(GIT_STASH_PUSH)
async def stash_push(session: ClientSession, p: StashPushParams) -> GitDone:
    git = _git(session)
    repo = await git.need_repo(p.repo)
    args = ["stash", "push"]
    if p.include_untracked:
        args.append("--include-untracked")
    if p.message:
        args += ["--message", p.message]
    if p.paths:
        args += ["--", *[git.rel(repo, f) for f in p.paths]]
    return await git.write(repo, p.force, *args)


def _stash(verb: str):  # type: ignore[no-untyped-def]
    async def run(session: ClientSession, p: StashRefParams) -> GitDone:
        return await _write(session, p.repo, p.force, "stash", verb, f"stash@{{{p.index}}}")
    return run


handles(GIT_STASH_APPLY)(_stash("apply"))
handles(GIT_STASH_POP)(_stash("pop"))
handles(GIT_STASH_DROP)(_stash("drop"))


@handles(GIT_STASH_LIST)
async def stash_list(session: ClientSession, p: RepoParams) -> Stashes:
    return await _git(session).stash_list(p.repo)


@handles(GIT_WORKTREE_ADD)
async def worktree_add(session: ClientSession, p: WorktreeAddParams) -> GitDone:
    return await _git(session).worktree_add(p.repo, p.path, p.ref, p.new_branch)


@handles(GIT_WORKTREE_REMOVE)
async def worktree_remove(session: ClientSession, p: WorktreeRemoveParams) -> GitDone:
    return await _git(session).worktree_remove(p.repo, p.path, p.discard_changes, p.force)


# ---------------------------------------------------------------------------- remote jobs


def _jobs(session: ClientSession) -> GitJobs:
    return session.ctx.git_jobs


@handles(GIT_FETCH)
async def fetch(session: ClientSession, p: FetchParams) -> JobStarted:
    args = ["fetch", "--progress", *(["--prune"] if p.prune else [])]
    args += ["--all"] if p.all else ([p.remote] if p.remote else [])
    return await _jobs(session).start("fetch", p.repo, args)


@handles(GIT_PULL)
async def pull(session: ClientSession, p: PullParams) -> JobStarted:
    args = ["pull", "--progress", "--no-edit"]
    if p.rebase is not None:
        args.append("--rebase" if p.rebase else "--no-rebase")
    if p.ff_only:
        args.append("--ff-only")
    if p.remote:
        args.append(p.remote)
        if p.branch:
            args.append(p.branch)
    return await _jobs(session).start("pull", p.repo, args, force=p.force)


@handles(GIT_PUSH)
async def push(session: ClientSession, p: PushParams) -> JobStarted:
    args = ["push", "--progress", "--porcelain"]
    if p.set_upstream:
        args.append("--set-upstream")
    if p.force_with_lease:
        args.append("--force-with-lease")
    if p.tags:
        args.append("--tags")
    if p.remote or p.branch:
        args.append(p.remote or "origin")
        if p.branch:
            args.append(p.branch)
    return await _jobs(session).start("push", p.repo, args)


@handles(GIT_JOBS)
def jobs(session: ClientSession, _p: NoParams) -> Jobs:
    return Jobs(jobs=[j.view() for j in _jobs(session).jobs.values()])


@handles(GIT_CANCEL)
def cancel(session: ClientSession, p: JobRef) -> Job:
    return _jobs(session).cancel(p.job_id)


@handles(GIT_ASKPASS)
async def askpass(session: ClientSession, p: AskpassParams) -> AskpassAnswer:
    return AskpassAnswer(value=await _jobs(session).askpass(p.job_id, p.secret, p.prompt))


@handles(GIT_CREDENTIALS_LIST)
def credentials_list(session: ClientSession, _p: NoParams) -> CredentialList:
    return CredentialList(requests=_jobs(session).requests())


@handles(GIT_CREDENTIALS_RESPOND)
def credentials_respond(session: ClientSession, p: CredentialRespondParams
                        ) -> CredentialAnswered:
    return _jobs(session).respond(p.request_id, p.value, p.cancel)
