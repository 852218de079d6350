"""Parsers for what git prints (pure functions; tested on git's own output).

The formats are the machine ones: ``status --porcelain=v2 -z --branch``, ``diff --numstat -z``,
unified diffs, ``log``/``for-each-ref`` with an explicit format, ``worktree list --porcelain``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from codexd.protocol.git import (
    Branch,
    Commit,
    FileDiff,
    FileStatus,
    Hunk,
    Stash,
    Worktree,
)

_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {b"a": 7, b"b": 8, b"t": 9, b"n": 10, b"v": 11, b"f": 12, b"r": 13, b'"': 34,
            b"\\": 92}


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def unquote(raw: bytes) -> bytes:
    """A path as git prints it in diff headers: C-quoted when it holds special characters."""
    if not (raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2):
        return raw
    body, out, i = raw[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i:i + 1]
        if c != b"\\":
            out += c
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif re.fullmatch(rb"[0-7]{3}", body[i + 1:i + 4]):
            out.append(int(body[i + 1:i + 4], 8))
            i += 4
        else:
            out += nxt
            i += 2
    return bytes(out)


# ------------------------------------------------------------------------------- status


@dataclass
class StatusHeader:
    head: str | None = None
    branch: str | None = None
    detached: bool = False
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    stashes: int = 0
    files: list[FileStatus] = field(default_factory=list)


def status_v2(out: bytes) -> StatusHeader:
    """``git status --porcelain=v2 -z --branch --show-stash --untracked-files=all``."""
    st = StatusHeader()
    records = iter(out.split(b"\0"))
    for rec in records:
        if not rec:
            continue
        if rec.startswith(b"# "):
            key, _, value = text(rec[2:]).partition(" ")
            if key == "branch.oid":
                st.head = None if value == "(initial)" else value
            elif key == "branch.head":
                st.detached = value == "(detached)"
                st.branch = None if st.detached else value
            elif key == "branch.upstream":
                st.upstream = value
            elif key == "branch.ab":
                a, b = value.split()
                st.ahead, st.behind = int(a), -int(b)
            elif key == "stash":
                st.stashes = int(value)
            continue
        kind = rec[:1]
        if kind == b"1":
            parts = rec.split(b" ", 8)
            xy = text(parts[1])
            st.files.append(FileStatus(path=text(parts[8]), kind="changed", index=xy[0],
                                       worktree=xy[1]))
        elif kind == b"2":
            parts = rec.split(b" ", 9)
            xy = text(parts[1])
            orig = next(records, b"")
            st.files.append(FileStatus(path=text(parts[9]), kind="renamed", index=xy[0],
                                       worktree=xy[1], orig_path=text(orig)))
        elif kind == b"u":
            parts = rec.split(b" ", 10)
            xy = text(parts[1])
            st.files.append(FileStatus(path=text(parts[10]), kind="unmerged", index=xy[0],
                                       worktree=xy[1]))
        elif kind == b"?":
            st.files.append(FileStatus(path=text(rec[2:]), kind="untracked", index="?",
                                       worktree="?"))
        elif kind == b"!":
            st.files.append(FileStatus(path=text(rec[2:]), kind="ignored", index="!",
                                       worktree="!"))
    return st


def numstat(out: bytes) -> dict[str, tuple[int | None, int | None]]:
    """``git diff --numstat -z``: path → (added, deleted), None for binary files."""
    stats: dict[str, tuple[int | None, int | None]] = {}
    records = iter(out.split(b"\0"))
    for rec in records:
        if not rec:
            continue
        added, deleted, path = rec.split(b"\t", 2)
        if not path:  # a rename: the old and the new path follow
            next(records, b"")
            path = next(records, b"")
        a = None if added == b"-" else int(added)
        d = None if deleted == b"-" else int(deleted)
        stats[text(path)] = (a, d)
    return stats


# --------------------------------------------------------------------------------- diff


def diff(out: bytes) -> list[FileDiff]:
    """A unified diff (``git diff --no-color --no-ext-diff``) as files with hunks."""
    files: list[FileDiff] = []
    chunks = re.split(rb"(?m)^(?=diff --git )", out)
    for chunk in chunks:
        if chunk.startswith(b"diff --git "):
            files.append(_file_diff(chunk))
    return files


def _file_diff(chunk: bytes) -> FileDiff:
    lines = chunk.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    header: list[bytes] = []
    i = 0
    while i < len(lines) and not lines[i].startswith(b"@@"):
        header.append(lines[i])
        i += 1
    old = new = None
    status = "modified"
    binary = False
    for h in header[1:]:
        if h.startswith(b"--- "):
            old = None if h[4:] == b"/dev/null" else unquote(h[4:])[2:]
        elif h.startswith(b"+++ "):
            new = None if h[4:] == b"/dev/null" else unquote(h[4:])[2:]
        elif h.startswith(b"new file mode"):
            status = "added"
        elif h.startswith(b"deleted file mode"):
            status = "deleted"
        elif h.startswith(b"rename from "):
            status, old = "renamed", unquote(h[12:])
        elif h.startswith(b"rename to "):
            new = unquote(h[10:])
        elif h.startswith(b"copy from "):
            status, old = "copied", unquote(h[10:])
        elif h.startswith(b"copy to "):
            new = unquote(h[8:])
        elif h.startswith(b"old mode") and status == "modified":
            status = "modified"
        elif h.startswith(b"Binary files ") or h == b"GIT binary patch":
            binary = True
    if old is None and new is None:  # no ---/+++ (binary, mode only): "diff --git a/X b/X"
        old, new = _header_paths(header[0][len(b"diff --git "):])
    path = new if new is not None else old
    head_text = b"\n".join(header) + b"\n"
    hunks: list[Hunk] = []
    added = deleted = 0
    while i < len(lines):
        start = i
        m = _HUNK.match(lines[i])
        i += 1
        while i < len(lines) and not lines[i].startswith(b"@@"):
            i += 1
        body = lines[start + 1:i]
        added += sum(1 for b in body if b.startswith(b"+"))
        deleted += sum(1 for b in body if b.startswith(b"-"))
        if m is None:
            continue
        old_lines = int(m.group(2)) if m.group(2) is not None else 1
        new_lines = int(m.group(4)) if m.group(4) is not None else 1
        hunk_bytes = b"\n".join(lines[start:i]) + b"\n"
        hunks.append(Hunk(header=text(lines[start]), old_start=int(m.group(1)),
                          old_lines=old_lines, new_start=int(m.group(3)), new_lines=new_lines,
                          lines=[text(b) for b in body], patch=text(head_text + hunk_bytes)))
    return FileDiff(path=text(path or b""), old_path=text(old) if old is not None and
                    old != new else None, status=status,  # type: ignore[arg-type]
                    binary=binary, hunks=hunks, added=added, deleted=deleted)


def _header_paths(rest: bytes) -> tuple[bytes, bytes]:
    """The two paths of ``diff --git a/X b/Y`` (quoted ones too; equal halves when X == Y)."""
    quoted = re.fullmatch(rb'("(?:[^"\\]|\\.)*") ("(?:[^"\\]|\\.)*")', rest)
    if quoted:
        return unquote(quoted.group(1))[2:], unquote(quoted.group(2))[2:]
    half = (len(rest) - 1) // 2
    if rest[half:half + 1] == b" " and rest[2:half] == rest[half + 3:]:
        return rest[2:half], rest[half + 3:]
    a, _, b = rest.partition(b" b/")
    return a[2:], b


# ---------------------------------------------------------------------------- log, refs

#: ``git log`` format: fields split by US (0x1f), records ended by RS (0x1e).
LOG_FORMAT = "%H%x1f%h%x1f%P%x1f%an%x1f%ae%x1f%at%x1f%ct%x1f%s%x1f%b%x1e"


def log(out: bytes) -> list[Commit]:
    commits = []
    for rec in out.split(b"\x1e"):
        rec = rec.strip(b"\n")
        if not rec:
            continue
        f = text(rec).split("\x1f")
        commits.append(Commit(commit=f[0], short=f[1], parents=f[2].split(),
                              author_name=f[3], author_email=f[4],
                              authored_at=int(f[5]) * 1000, committed_at=int(f[6]) * 1000,
                              subject=f[7], body=f[8].rstrip("\n")))
    return commits


REF_FORMAT = ("%(HEAD)%1f%(refname)%1f%(refname:short)%1f%(objectname)%1f"
              "%(upstream:short)%1f%(upstream:track,nobracket)%1f%(contents:subject)")


def branches(out: bytes) -> list[Branch]:
    found = []
    for line in text(out).splitlines():
        if not line:
            continue
        head, ref, short, commit, upstream, track, subject = line.split("\x1f", 6)
        if ref.endswith("/HEAD"):
            continue
        ahead = behind = 0
        for part in track.split(","):
            word, _, n = part.strip().partition(" ")
            if word == "ahead":
                ahead = int(n)
            elif word == "behind":
                behind = int(n)
        found.append(Branch(name=short, ref=ref, remote=ref.startswith("refs/remotes/"),
                            current=head == "*", commit=commit, upstream=upstream or None,
                            ahead=ahead, behind=behind, subject=subject))
    return found


def worktrees(out: bytes) -> list[Worktree]:
    """``git worktree list --porcelain -z``."""
    trees: list[Worktree] = []
    current: dict[str, str | bool] = {}

    def flush() -> None:
        if "worktree" in current:
            branch = current.get("branch")
            trees.append(Worktree(
                path=str(current["worktree"]), head=str(current["HEAD"]) if "HEAD" in current
                else None,
                branch=str(branch).removeprefix("refs/heads/") if isinstance(branch, str)
                else None,
                bare=bool(current.get("bare")), detached=bool(current.get("detached")),
                locked="locked" in current, prunable="prunable" in current))
        current.clear()

    for rec in out.split(b"\0"):
        if not rec:
            flush()
            continue
        key, _, value = text(rec).partition(" ")
        current[key] = value if value else True
    flush()
    return trees


STASH_FORMAT = "%gd%x1f%H%x1f%ct%x1f%gs"


def stashes(out: bytes) -> list[Stash]:
    found: list[Stash] = []
    for line in text(out).splitlines():
        if not line:
            continue
        ref, commit, when, message = line.split("\x1f", 3)
        m = re.search(r"\{(\d+)\}", ref)
        found.append(Stash(index=int(m.group(1)) if m else len(found), ref=ref, commit=commit,
                           message=message, created_at=int(when) * 1000))
    return found
