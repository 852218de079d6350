"""``workspace/*`` and ``files/*``: the folders a client may work in, and files inside them.

Every ``files/*`` path must resolve inside a workspace grant (``workspace/grant``); a path that
does not is ``-32070`` naming the path and the nearest grant. Paths in results are the paths the
client asked for (joined with entry names), never their resolved real paths.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from codexd.protocol.base import NoParams, OsPath, Params, Struct, method, notification

Name = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00]*$")]


# ----------------------------------------------------------------------------- workspace


class GrantParams(Params, frozen=True):
    #: An existing folder (absolute); its real path is what is granted.
    path: OsPath
    #: A label for people (default: the folder's name).
    name: Name | None = None


class Grant(Struct, frozen=True, omit_defaults=False):
    path: str
    #: The folder with symlinks resolved: what paths are checked against.
    real_path: str
    name: str
    created_at: int


class GrantList(Struct, frozen=True):
    grants: list[Grant]


class PathRef(Params, frozen=True):
    path: OsPath


class Revoked(Struct, frozen=True, omit_defaults=False):
    path: str
    revoked: bool


class WorkspaceChanged(Struct, frozen=True, omit_defaults=False):
    change: Literal["granted", "revoked"]
    grant: Grant


WORKSPACE_GRANT = method("workspace/grant", GrantParams, Grant,
                         "Allow work in a folder and everything under it (idempotent).")
WORKSPACE_LIST = method("workspace/list", NoParams, GrantList, "The granted folders.")
WORKSPACE_REVOKE = method("workspace/revoke", PathRef, Revoked,
                          "Withdraw a grant (by the path given or its real path).")
WORKSPACE_CHANGED = notification("workspace/changed", WorkspaceChanged,
                                 "A folder was granted or a grant revoked.")


# --------------------------------------------------------------------------------- files

EntryType = Literal["file", "dir", "symlink", "other"]


class Entry(Struct, frozen=True, omit_defaults=False):
    name: str
    #: The client's path joined with the name.
    path: str
    type: EntryType
    size: int
    #: Modification time, Unix ms.
    mtime: int
    #: For a symlink: whether its target is inside a grant (and so readable).
    target_inside: bool | None = None


class ListParams(Params, frozen=True):
    path: OsPath
    #: Leave out what .gitignore (and .git/info/exclude, the global excludes) ignore.
    respect_gitignore: bool = True
    #: Include names starting with a dot (.git itself is never listed).
    show_hidden: bool = False


class Listing(Struct, frozen=True, omit_defaults=False):
    path: str
    entries: list[Entry]
    #: Entries left out by .gitignore.
    ignored: int


class Stat(Struct, frozen=True, omit_defaults=False):
    path: str
    type: EntryType
    size: int
    mtime: int
    mode: int
    #: sha256 of the content (files only): what files/write's expectedHash compares.
    hash: str | None = None


class ReadParams(Params, frozen=True):
    path: OsPath
    #: At most this many bytes (default 1 MiB, at most 16 MiB); ``truncated`` says if cut.
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=16 * 1024 * 1024)] = 1024 * 1024


class FileContent(Struct, frozen=True, omit_defaults=False):
    path: str
    #: "utf8" for text, "base64" for anything that is not valid UTF-8 (or holds NUL bytes).
    encoding: Literal["utf8", "base64"]
    content: str
    size: int
    truncated: bool
    #: sha256 of the whole file (pass it to files/write as expectedHash).
    hash: str
    mtime: int


class WriteParams(Params, frozen=True):
    path: OsPath
    content: Annotated[str, msgspec.Meta(max_length=64 * 1024 * 1024)]
    encoding: Literal["utf8", "base64"] = "utf8"
    #: The hash the client last read: a file changed since is a conflict (-32010), not
    #: overwritten. Absent: write whatever is there; "" : the file must not exist yet.
    expected_hash: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    #: Create missing parent folders (inside the grant).
    make_parents: bool = False


class Written(Struct, frozen=True, omit_defaults=False):
    path: str
    size: int
    hash: str
    created: bool


class MkdirParams(Params, frozen=True):
    path: OsPath
    parents: bool = False


class DeleteParams(Params, frozen=True):
    path: OsPath
    #: A folder with content needs this.
    recursive: bool = False


class RenameParams(Params, frozen=True):
    path: OsPath
    to: OsPath
    #: Replace an existing target (default: -32010 when it exists).
    overwrite: bool = False


class Done(Struct, frozen=True, omit_defaults=False):
    path: str
    ok: bool


class SearchParams(Params, frozen=True):
    root: OsPath
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=r"^[^\x00]*$")]
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class SearchHit(Struct, frozen=True, omit_defaults=False):
    path: str
    #: Relative to root.
    relative: str
    score: int
    #: Indexes of the matched characters in ``relative`` (for highlighting).
    positions: list[int]


class SearchResult(Struct, frozen=True, omit_defaults=False):
    root: str
    hits: list[SearchHit]
    #: Files looked at.
    scanned: int


class GrepParams(Params, frozen=True):
    root: OsPath
    #: A regular expression (ripgrep's syntax); ``fixed`` for a literal string.
    pattern: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]
    fixed: bool = False
    case_sensitive: bool | None = None
    #: Only files matching this glob (e.g. "*.py"; "!" excludes).
    glob: Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$")] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500


class Submatch(Struct, frozen=True, omit_defaults=False):
    start: int
    end: int
    text: str


class GrepMatch(Struct, frozen=True, omit_defaults=False):
    path: str
    relative: str
    line: int
    text: str
    submatches: list[Submatch]


class GrepResult(Struct, frozen=True, omit_defaults=False):
    root: str
    matches: list[GrepMatch]
    #: More matches existed than ``limit``.
    truncated: bool
    files_searched: int


FILES_LIST = method("files/list", ListParams, Listing,
                    "A folder's entries (sorted: folders first), .gitignore respected.")
FILES_STAT = method("files/stat", PathRef, Stat, "One entry's type, size, time and hash.")
FILES_READ = method("files/read", ReadParams, FileContent,
                    "A file's content: text, or base64 for binary, up to maxBytes.")
FILES_WRITE = method("files/write", WriteParams, Written,
                     "Write a file atomically; a stale expectedHash is a conflict.")
FILES_MKDIR = method("files/mkdir", MkdirParams, Done, "Create a folder.")
FILES_DELETE = method("files/delete", DeleteParams, Done,
                      "Delete a file, a symlink, or (recursive) a folder.")
FILES_RENAME = method("files/rename", RenameParams, Done,
                      "Rename or move an entry within one grant.")
FILES_SEARCH = method("files/search", SearchParams, SearchResult,
                      "Fuzzy file-name search under root (ripgrep's file list, ranked).")
FILES_GREP = method("files/grep", GrepParams, GrepResult,
                    "Search file contents under root with ripgrep.")


# --------------------------------------------------------------------------------- watch


class WatchParams(Params, frozen=True):
    #: A folder inside a grant (watched with everything under it).
    path: OsPath


class WatchInfo(Struct, frozen=True, omit_defaults=False):
    watch_id: str
    path: str
    #: The repository's top when the folder is in a work tree: its index, HEAD and refs are
    #: watched too (git/changed).
    git_root: str | None
    created_at: int


class WatchList(Struct, frozen=True):
    watches: list[WatchInfo]


class WatchRef(Params, frozen=True):
    watch_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Unwatched(Struct, frozen=True, omit_defaults=False):
    watch_id: str
    stopped: bool


class FileChange(Struct, frozen=True, omit_defaults=False):
    path: str
    kind: Literal["added", "modified", "deleted"]


class FilesChanged(Struct, frozen=True, omit_defaults=False):
    watch_id: str
    path: str
    changes: list[FileChange]


class GitChanged(Struct, frozen=True, omit_defaults=False):
    watch_id: str
    root: str
    #: What moved: "index", "head" (a checkout, a commit), "refs" (branches, tags, fetches),
    #: "state" (a merge or rebase began or ended).
    what: list[Literal["index", "head", "refs", "state"]]


FILES_WATCH = method("files/watch", WatchParams, WatchInfo,
                     "Watch a folder: files/changed (and git/changed) until files/unwatch.")
FILES_UNWATCH = method("files/unwatch", WatchRef, Unwatched, "Stop a watch.")
FILES_WATCHES = method("files/watches", NoParams, WatchList, "The folders being watched.")
FILES_CHANGED = notification("files/changed", FilesChanged,
                             "Files under a watched folder were added, modified or deleted.")
GIT_CHANGED = notification("git/changed", GitChanged,
                           "A watched repository's index, HEAD or refs changed.")
