"""``git/*``: what a review pane needs, through the git CLI, inside workspace grants.

``repo`` (or ``path``) may be any folder inside a work tree; codexd finds the top. Every call runs
git with ``GIT_OPTIONAL_LOCKS=0`` (reads never take the index lock), ``LC_ALL=C`` and
``GIT_TERMINAL_PROMPT=0``; index-changing calls are serialized per repository.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from codexd.protocol.base import (
    INT64_MAX,
    NoParams,
    OsPath,
    Params,
    Struct,
    method,
    notification,
)

#: A ref, a commit, a branch name: what may follow a git option (never one itself).
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=400, pattern=r"^[^\x00\s-][^\x00\s]*$")]
Paths = Annotated[list[OsPath], msgspec.Meta(min_length=1, max_length=10_000)]


class RepoParams(Params, frozen=True):
    repo: OsPath


class StatusParams(Params, frozen=True):
    repo: OsPath
    #: Also count the work tree's changed lines per file (``added``/``deleted``). It costs a
    #: second pass over every tracked file (about as long as the status itself on a large
    #: tree), so it is asked for; staged counts are cheap and always there.
    line_counts: bool = False


class FileStatus(Struct, frozen=True, omit_defaults=False):
    #: Relative to the repository's top.
    path: str
    #: ``changed``, ``renamed`` (or copied), ``unmerged``, ``untracked``, ``ignored``.
    kind: Literal["changed", "renamed", "unmerged", "untracked", "ignored"]
    #: Porcelain v2 ``XY``: index then worktree, each one of ``.MTADRCU`` (``.`` = unchanged).
    index: str
    worktree: str
    orig_path: str | None = None
    #: Line counts (``null`` for binary and untracked files; the work tree's only with
    #: ``lineCounts``).
    staged_added: int | None = None
    staged_deleted: int | None = None
    added: int | None = None
    deleted: int | None = None
    binary: bool = False


class Status(Struct, frozen=True, omit_defaults=False):
    is_repository: bool
    #: The work tree's top (the path asked for when it is not a repository).
    root: str
    branch: str | None = None
    #: The commit checked out (``null`` before the first commit).
    head: str | None = None
    detached: bool = False
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    files: list[FileStatus] = msgspec.field(default_factory=list)
    #: ``merge``, ``rebase``, ``cherry-pick``, ``revert``, ``bisect`` or ``null``.
    in_progress: str | None = None
    stashes: int = 0


class DiffParams(Params, frozen=True):
    repo: OsPath
    #: Only this file or folder (inside the repository).
    path: OsPath | None = None
    #: The index against HEAD (what a commit would contain); default the work tree against
    #: the index.
    staged: bool = False
    context: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3


class Hunk(Struct, frozen=True, omit_defaults=False):
    header: str
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    #: The hunk's lines, each with its first character (" ", "+", "-", "\\").
    lines: list[str]
    #: The file header and this hunk alone: what git/applyHunk takes back.
    patch: str


class FileDiff(Struct, frozen=True, omit_defaults=False):
    path: str
    old_path: str | None
    status: Literal["added", "deleted", "modified", "renamed", "copied", "typechange"]
    binary: bool
    hunks: list[Hunk]
    added: int
    deleted: int


class Diff(Struct, frozen=True, omit_defaults=False):
    root: str
    files: list[FileDiff]
    #: The whole unified diff, as git printed it.
    patch: str


class FileDiffParams(Params, frozen=True):
    repo: OsPath
    path: OsPath
    staged: bool = False


class FileVersions(Struct, frozen=True, omit_defaults=False):
    path: str
    #: Before: HEAD (staged) or the index (work tree); ``null`` when the file is new.
    before: str | None
    #: After: the index (staged) or the work tree; ``null`` when the file is deleted.
    after: str | None
    binary: bool
    #: "utf8", or "base64" for binary content.
    encoding: Literal["utf8", "base64"]


class RangeDiffParams(Params, frozen=True):
    repo: OsPath
    base: Ref
    head: Ref
    path: OsPath | None = None
    #: Diff from where ``head`` left ``base`` (``base...head``, what a pull request shows);
    #: false: ``base`` against ``head`` directly.
    merge_base: bool = True
    context: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3


class LogParams(Params, frozen=True):
    repo: OsPath
    max_count: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 50
    path: OsPath | None = None
    ref: Ref | None = None
    skip: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 0


class Commit(Struct, frozen=True, omit_defaults=False):
    commit: str
    short: str
    parents: list[str]
    author_name: str
    author_email: str
    #: Unix ms.
    authored_at: int
    committed_at: int
    subject: str
    body: str


class Log(Struct, frozen=True):
    commits: list[Commit]


class Branch(Struct, frozen=True, omit_defaults=False):
    name: str
    #: ``refs/heads/...`` or ``refs/remotes/...``.
    ref: str
    remote: bool
    current: bool
    commit: str
    upstream: str | None
    ahead: int
    behind: int
    subject: str


class Branches(Struct, frozen=True):
    branches: list[Branch]


class Worktree(Struct, frozen=True, omit_defaults=False):
    path: str
    head: str | None
    branch: str | None
    bare: bool
    detached: bool
    locked: bool
    prunable: bool


class Worktrees(Struct, frozen=True):
    worktrees: list[Worktree]


class ShowParams(Params, frozen=True):
    repo: OsPath
    commit: Ref
    context: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3


class Shown(Struct, frozen=True, omit_defaults=False):
    commit: Commit
    files: list[FileDiff]
    patch: str


# -------------------------------------------------------------------------------- writes


class PathsParams(Params, frozen=True):
    repo: OsPath
    paths: Paths
    #: Change a work tree where a Codex turn or a provider run is active.
    force: bool = False


class RevertParams(Params, frozen=True):
    repo: OsPath
    paths: Paths
    #: ``worktree``: drop unstaged changes; ``index``: unstage; ``both``: back to HEAD.
    scope: Literal["worktree", "index", "both"] = "worktree"
    force: bool = False


class ApplyHunkParams(Params, frozen=True):
    repo: OsPath
    path: OsPath
    #: A hunk's ``patch`` from git/diff (staged: from the staged diff).
    patch: Annotated[str, msgspec.Meta(min_length=1, max_length=16 * 1024 * 1024)]
    #: ``stage`` a work-tree hunk, ``unstage`` a staged one, ``discard`` a work-tree hunk.
    action: Literal["stage", "unstage", "discard"]
    force: bool = False


class CommitParams(Params, frozen=True):
    repo: OsPath
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=1_000_000,
                                         pattern=r"^[^\x00]*$")]
    amend: bool = False
    #: Commit only these paths (their work-tree state), not the whole index.
    paths: list[OsPath] | None = None
    #: Allow a commit with no changes.
    allow_empty: bool = False
    force: bool = False


class Committed(Struct, frozen=True, omit_defaults=False):
    commit: str
    branch: str | None
    summary: str


class BranchCreateParams(Params, frozen=True):
    repo: OsPath
    name: Ref
    #: Where it starts (default HEAD).
    start_point: Ref | None = None
    checkout: bool = False
    force: bool = False


class BranchDeleteParams(Params, frozen=True):
    repo: OsPath
    name: Ref
    #: Delete even when not merged (``git branch -D``).
    unmerged: bool = False
    force: bool = False


class BranchRenameParams(Params, frozen=True):
    repo: OsPath
    name: Ref
    to: Ref
    force: bool = False


class CheckoutParams(Params, frozen=True):
    repo: OsPath
    name: Ref
    #: Create the branch (from HEAD) first.
    create: bool = False
    force: bool = False


class StashPushParams(Params, frozen=True):
    repo: OsPath
    message: Annotated[str, msgspec.Meta(max_length=10_000, pattern=r"^[^\x00]*$")] | None = None
    include_untracked: bool = False
    paths: list[OsPath] | None = None
    force: bool = False


class StashRefParams(Params, frozen=True):
    repo: OsPath
    #: ``stash@{index}`` (default 0, the newest).
    index: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    force: bool = False


class Stash(Struct, frozen=True, omit_defaults=False):
    index: int
    ref: str
    commit: str
    message: str
    created_at: int


class Stashes(Struct, frozen=True):
    stashes: list[Stash]


class WorktreeAddParams(Params, frozen=True):
    repo: OsPath
    #: The new work tree's folder (inside a workspace grant; it must not exist).
    path: OsPath
    #: Check out this existing branch or commit...
    ref: Ref | None = None
    #: ...or create this branch there (from ``ref`` or HEAD).
    new_branch: Ref | None = None


class WorktreeRemoveParams(Params, frozen=True):
    repo: OsPath
    path: OsPath
    #: Remove even with local changes (``git worktree remove --force``).
    discard_changes: bool = False
    force: bool = False


class GitDone(Struct, frozen=True, omit_defaults=False):
    root: str
    ok: bool
    #: What git printed (its summary line), for people.
    output: str = ""


GIT_STATUS = method("git/status", StatusParams, Status,
                    "Branch, upstream, ahead/behind, per-file state and line counts.")
GIT_DIFF = method("git/diff", DiffParams, Diff,
                  "The work tree's (or the index's) diff, parsed into files and hunks.")
GIT_FILE_DIFF = method("git/fileDiff", FileDiffParams, FileVersions,
                       "One file's before and after contents (for a side-by-side view).")
GIT_RANGE_DIFF = method("git/rangeDiff", RangeDiffParams, Diff,
                        "The diff between two commits or branches.")
GIT_LOG = method("git/log", LogParams, Log, "Commits, newest first.")
GIT_BRANCHES = method("git/branches", RepoParams, Branches,
                      "Local and remote branches, with upstream and ahead/behind.")
GIT_WORKTREE_LIST = method("git/worktree/list", RepoParams, Worktrees,
                           "The repository's work trees.")
GIT_SHOW = method("git/show", ShowParams, Shown, "One commit and its diff.")
GIT_STAGE = method("git/stage", PathsParams, GitDone, "Stage files (git add).")
GIT_UNSTAGE = method("git/unstage", PathsParams, GitDone, "Unstage files (git restore --staged).")
GIT_REVERT = method("git/revert", RevertParams, GitDone,
                    "Drop changes to files: in the work tree, the index, or both.")
GIT_APPLY_HUNK = method("git/applyHunk", ApplyHunkParams, GitDone,
                        "Stage, unstage or discard one hunk (checked first: a stale one fails).")
GIT_COMMIT = method("git/commit", CommitParams, Committed, "Commit the index (or paths).")
GIT_BRANCH_CREATE = method("git/branch/create", BranchCreateParams, GitDone, "Create a branch.")
GIT_BRANCH_DELETE = method("git/branch/delete", BranchDeleteParams, GitDone, "Delete a branch.")
GIT_BRANCH_RENAME = method("git/branch/rename", BranchRenameParams, GitDone, "Rename a branch.")
GIT_BRANCH_CHECKOUT = method("git/branch/checkout", CheckoutParams, GitDone,
                             "Switch to a branch (git switch).")
GIT_STASH_PUSH = method("git/stash/push", StashPushParams, GitDone, "Stash changes.")
GIT_STASH_APPLY = method("git/stash/apply", StashRefParams, GitDone, "Apply a stash, keep it.")
GIT_STASH_POP = method("git/stash/pop", StashRefParams, GitDone, "Apply a stash and drop it.")
GIT_STASH_DROP = method("git/stash/drop", StashRefParams, GitDone, "Drop a stash.")
GIT_STASH_LIST = method("git/stash/list", RepoParams, Stashes, "The stashes, newest first.")
GIT_WORKTREE_ADD = method("git/worktree/add", WorktreeAddParams, GitDone, "Add a work tree.")
GIT_WORKTREE_REMOVE = method("git/worktree/remove", WorktreeRemoveParams, GitDone,
                             "Remove a work tree.")


# -------------------------------------------------------------------------- remote jobs


class FetchParams(Params, frozen=True):
    repo: OsPath
    #: Default: the branch's remote, else origin.
    remote: Ref | None = None
    #: Fetch every remote.
    all: bool = False
    prune: bool = False


class PullParams(Params, frozen=True):
    repo: OsPath
    remote: Ref | None = None
    branch: Ref | None = None
    #: Rebase instead of merge (default: git's own configuration decides).
    rebase: bool | None = None
    #: Refuse unless it fast-forwards.
    ff_only: bool = False
    force: bool = False


class PushParams(Params, frozen=True):
    repo: OsPath
    remote: Ref | None = None
    #: Default: the current branch.
    branch: Ref | None = None
    set_upstream: bool = False
    #: Overwrite the remote branch only if it is where we last saw it.
    force_with_lease: bool = False
    tags: bool = False


class JobStarted(Struct, frozen=True, omit_defaults=False):
    job_id: str
    root: str
    kind: Literal["fetch", "pull", "push"]


class JobRef(Params, frozen=True):
    job_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Job(Struct, frozen=True, omit_defaults=False):
    job_id: str
    root: str
    kind: Literal["fetch", "pull", "push"]
    state: Literal["running", "succeeded", "failed", "canceled"]
    started_at: int
    finished_at: int | None = None
    #: The last progress: phase and percent.
    phase: str | None = None
    percent: int | None = None
    output: str = ""
    error: str | None = None


class Jobs(Struct, frozen=True):
    jobs: list[Job]


class Progress(Struct, frozen=True, omit_defaults=False):
    job_id: str
    #: git's phase, e.g. "Receiving objects", "Resolving deltas", "Writing objects".
    phase: str
    percent: int | None = None
    done: int | None = None
    total: int | None = None
    #: Bytes transferred so far, when git says.
    bytes: int | None = None


class JobDone(Struct, frozen=True, omit_defaults=False):
    job: Job


class AskpassParams(Params, frozen=True):
    """What codexd's askpass helper sends for the git process of a job."""

    job_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    prompt: Annotated[str, msgspec.Meta(max_length=2000)]


class AskpassAnswer(Struct, frozen=True, omit_defaults=False):
    value: str


class CredentialRequest(Struct, frozen=True, omit_defaults=False):
    request_id: int
    job_id: str
    root: str
    #: What git (or ssh) asked, e.g. "Password for 'https://me@example.com': ".
    prompt: str
    #: "username", "password", "passphrase" or "other" (read from the prompt).
    kind: Literal["username", "password", "passphrase", "other"]
    created_at: int
    expires_at: int


class CredentialList(Struct, frozen=True):
    requests: list[CredentialRequest]


class CredentialRespondParams(Params, frozen=True):
    request_id: Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
    #: The answer; absent (or cancel) declines, and the job fails at once.
    value: Annotated[str, msgspec.Meta(max_length=10_000, pattern=r"^[^\x00\n]*$")] | None = None
    cancel: bool = False


class CredentialAnswered(Struct, frozen=True, omit_defaults=False):
    request_id: int
    job_id: str
    #: "answered", "declined" or "expired".
    outcome: Literal["answered", "declined", "expired"]


GIT_FETCH = method("git/fetch", FetchParams, JobStarted,
                   "Fetch in the background; git/progress, then git/jobDone.")
GIT_PULL = method("git/pull", PullParams, JobStarted,
                  "Pull in the background; git/progress, then git/jobDone.")
GIT_PUSH = method("git/push", PushParams, JobStarted,
                  "Push in the background; git/progress, then git/jobDone.")
GIT_JOBS = method("git/jobs", NoParams, Jobs, "Remote jobs, running and recent.")
GIT_CANCEL = method("git/cancel", JobRef, Job, "Cancel a running remote job.")
GIT_ASKPASS = method("git/askpass", AskpassParams, AskpassAnswer,
                     "codexd's askpass helper asking for a job's credential (waits).")
GIT_CREDENTIALS_LIST = method("git/credentials/list", NoParams, CredentialList,
                              "Credential prompts waiting for an answer.")
GIT_CREDENTIALS_RESPOND = method("git/credentials/respond", CredentialRespondParams,
                                 CredentialAnswered, "Answer (or decline) a credential prompt.")
GIT_PROGRESS = notification("git/progress", Progress, "A remote job's progress.")
GIT_JOB_DONE = notification("git/jobDone", JobDone, "A remote job ended.")
GIT_CREDENTIAL_REQUESTED = notification(
    "git/credentialRequested", CredentialRequest,
    "A remote job's git asks for a credential; answer with git/credentials/respond.")
GIT_CREDENTIAL_ANSWERED = notification(
    "git/credentialAnswered", CredentialAnswered,
    "A credential prompt was answered, declined or expired (no value is ever sent).")
