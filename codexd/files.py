"""``files/*``: sandboxed file operations on paths :mod:`codexd.workspaces` has checked.

The blocking work (stat, read, hash, write) runs in a worker thread; listing, search and grep
use the tools that already know the rules: git (``check-ignore``: .gitignore, .git/info/exclude,
the global excludes) and ripgrep (``rg --files``, ``rg --json``). Results carry the paths the
client asked for, joined with entry names.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import heapq
import os
import shutil
import stat as stat_mod
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import trio

from codexd.errors import ErrorCode, RpcError
from codexd.fsutil import write_atomic
from codexd.protocol.workspace import (
    Entry,
    EntryType,
    FileContent,
    GrepMatch,
    GrepResult,
    Listing,
    SearchHit,
    SearchResult,
    Stat,
    Submatch,
    Written,
)
from codexd.workspaces import Resolved

T = TypeVar("T")

#: Files larger than this get no hash in files/stat (reading them would take too long).
HASH_LIMIT = 256 * 1024 * 1024
_CHUNK = 1024 * 1024
PACKAGES = {"rg": "ripgrep", "git": "git"}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = PACKAGES.get(name, name)
        raise RpcError(ErrorCode.TOOL_MISSING,
                       f"{name} is not installed; install the {package} package (Debian: apt "
                       f"install {package}; macOS: brew install {package})", {"tool": name})
    return found


def _os_error(exc: OSError, path: str) -> RpcError:
    """An OS error on a checked path, as the client should see it."""
    if exc.errno == errno.ENOENT:
        return RpcError(ErrorCode.NOT_FOUND, f"{path!r} does not exist", {"path": path})
    if exc.errno == errno.EEXIST:
        return RpcError(ErrorCode.CONFLICT, f"{path!r} exists already", {"path": path})
    if exc.errno == errno.ENOTEMPTY:
        return RpcError(ErrorCode.CONFLICT, f"{path!r} is a folder with content; pass "
                        "recursive to delete it", {"path": path})
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: {path!r}: {exc.strerror}",
                        {"field": "path"})
    return RpcError(ErrorCode.POLICY_DENIED if exc.errno in (errno.EACCES, errno.EPERM)
                    else ErrorCode.INTERNAL_ERROR, f"{path!r}: {exc.strerror}", {"path": path})


async def in_thread(fn: Callable[[], T], path: str) -> T:
    try:
        return await trio.to_thread.run_sync(fn)
    except OSError as exc:
        raise _os_error(exc, path) from None


def _type(mode: int) -> EntryType:
    if stat_mod.S_ISLNK(mode):
        return "symlink"
    if stat_mod.S_ISDIR(mode):
        return "dir"
    if stat_mod.S_ISREG(mode):
        return "file"
    return "other"


def file_hash(real: str) -> str:
    h = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _current_hash(real: str) -> str | None:
    try:
        return file_hash(real)
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------------ listing


async def list_dir(res: Resolved, *, respect_gitignore: bool, show_hidden: bool,
                   inside: Callable[[str], bool]) -> Listing:
    def scan() -> list[tuple[str, os.stat_result, bool | None]]:
        out = []
        with os.scandir(res.real) as it:
            for e in it:
                if e.name == ".git" or (not show_hidden and e.name.startswith(".")):
                    continue
                st = e.stat(follow_symlinks=False)
                target = None
                if stat_mod.S_ISLNK(st.st_mode):
                    target = inside(os.path.join(res.asked, e.name))
                out.append((e.name, st, target))
        return out

    entries = await in_thread(scan, res.asked)
    ignored: set[str] = set()
    if respect_gitignore and entries:
        ignored = await _git_ignored(res.real, [(n, stat_mod.S_ISDIR(st.st_mode))
                                                for n, st, _t in entries])
    listed = [Entry(name=n, path=os.path.join(res.asked, n), type=_type(st.st_mode),
                    size=st.st_size, mtime=int(st.st_mtime * 1000), target_inside=t)
              for n, st, t in entries if n not in ignored]
    listed.sort(key=lambda e: (e.type != "dir", e.name.lower(), e.name))
    return Listing(path=res.asked, entries=listed, ignored=len(entries) - len(listed))


async def _git_ignored(folder: str, names: list[tuple[str, bool]]) -> set[str]:
    """The names git ignores in ``folder`` (none when it is not in a work tree, or no git)."""
    git = shutil.which("git")
    if git is None:
        return set()
    data = b"".join(os.fsencode(n + ("/" if is_dir else "")) + b"\0" for n, is_dir in names)
    done = await trio.run_process([git, "-C", folder, "check-ignore", "-z", "--stdin"],
                                  stdin=data, capture_stdout=True, capture_stderr=True,
                                  check=False, env=git_env())
    if done.returncode not in (0, 1):  # 128: not a repository
        return set()
    return {os.fsdecode(p).rstrip("/") for p in done.stdout.split(b"\0") if p}


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_OPTIONAL_LOCKS="0", LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    return env


async def stat(res: Resolved) -> Stat:
    def run() -> Stat:
        st = os.stat(res.real)  # resolved already: what the path leads to
        kind = _type(st.st_mode)
        digest = file_hash(res.real) if kind == "file" and st.st_size <= HASH_LIMIT else None
        return Stat(path=res.asked, type=kind, size=st.st_size, mtime=int(st.st_mtime * 1000),
                    mode=stat_mod.S_IMODE(st.st_mode), hash=digest)
    return await in_thread(run, res.asked)


# ------------------------------------------------------------------------- read & write


async def read(res: Resolved, max_bytes: int) -> FileContent:
    def run() -> FileContent:
        with open(res.real, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat_mod.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            head = f.read(max_bytes)
            h = hashlib.sha256(head)
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        truncated = st.st_size > len(head)
        text = None
        if b"\0" not in head:
            try:
                text = head.decode("utf-8")
            except UnicodeDecodeError as exc:
                # A cut in the middle of a character at the end is still text.
                if truncated and exc.start >= len(head) - 3:
                    text = head[:exc.start].decode("utf-8", errors="strict")
        if text is not None:
            return FileContent(path=res.asked, encoding="utf8", content=text, size=st.st_size,
                               truncated=truncated, hash=h.hexdigest(),
                               mtime=int(st.st_mtime * 1000))
        return FileContent(path=res.asked, encoding="base64",
                           content=base64.b64encode(head).decode(), size=st.st_size,
                           truncated=truncated, hash=h.hexdigest(),
                           mtime=int(st.st_mtime * 1000))
    return await in_thread(run, res.asked)


def write_sync(res: Resolved, data: bytes, expected_hash: str | None,
               make_parents: bool) -> Written:
    folder = os.path.dirname(res.real)
    if make_parents:
        os.makedirs(folder, mode=0o777, exist_ok=True)
    current = _current_hash(res.real)
    if expected_hash is not None and current != (expected_hash or None):
        raise RpcError(ErrorCode.CONFLICT,
                       f"{res.asked!r} changed since it was read (its hash is "
                       f"{current or 'none: it does not exist'}); read it again, merge, and "
                       "write with the new hash" if expected_hash else
                       f"{res.asked!r} exists already (expectedHash \"\" means create only)",
                       {"path": res.asked, "currentHash": current})
    mode = 0o666 & ~_umask()
    with contextlib.suppress(FileNotFoundError):
        mode = stat_mod.S_IMODE(os.stat(res.real).st_mode)
    write_atomic(res.real, data, mode=mode)
    return Written(path=res.asked, size=len(data), hash=hashlib.sha256(data).hexdigest(),
                   created=current is None)


def _umask() -> int:
    # Read without changing it for other threads for long: set and restore at once.
    old = os.umask(0o022)
    os.umask(old)
    return old


def decode_content(content: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except ValueError:
            raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: content is not valid "
                           "base64", {"field": "content"}) from None
    return content.encode("utf-8", errors="surrogatepass")


def mkdir_sync(res: Resolved, parents: bool) -> None:
    if parents:
        os.makedirs(res.real, exist_ok=True)
    else:
        os.mkdir(res.real)


def delete_sync(res: Resolved, recursive: bool) -> None:
    st = os.lstat(res.real)
    if stat_mod.S_ISDIR(st.st_mode):
        if recursive:
            shutil.rmtree(res.real)  # never follows symlinks inside
        else:
            os.rmdir(res.real)
    else:
        os.unlink(res.real)


def rename_sync(src: Resolved, dst: Resolved, overwrite: bool) -> None:
    os.lstat(src.real)  # ENOENT names the source
    if overwrite:
        os.replace(src.real, dst.real)
        return
    # link-then-unlink would not work for folders; renameat2(RENAME_NOREPLACE) is not in
    # Python: check, then rename (a same-user race only).
    if os.path.lexists(dst.real):
        raise RpcError(ErrorCode.CONFLICT, f"{dst.asked!r} exists already; pass overwrite to "
                       "replace it", {"path": dst.asked})
    os.rename(src.real, dst.real)


# ------------------------------------------------------------------------ search & grep


_RUST_META = set("\\.+*?()|[]{}^$#&~")


def _prefilter(query: str) -> str:
    """A ripgrep (Rust regex: linear time) pattern for the lines holding the query's characters
    in order, anywhere; with ``-i``, case-insensitive."""
    return ".*".join("\\" + c if c in _RUST_META else c for c in query.replace(" ", ""))


def score(query: str, candidate: str) -> tuple[int, list[int]] | None:
    """fzf-like: every query character in order; consecutive runs, matches at the start of a
    name or word, and a match in the file name (not the folders) score higher; long paths a
    little lower. None: not a match."""
    q = query.replace(" ", "").lower()
    c = candidate.lower()
    base = candidate.rfind("/") + 1
    positions: list[int] = []
    start = 0
    # Prefer the match that ends in the file name: search the last occurrence of the first
    # character that still allows a full match, within the name first.
    for anchor in (base, 0):
        positions = []
        i = anchor
        for ch in q:
            j = c.find(ch, i)
            if j < 0:
                positions = []
                break
            positions.append(j)
            i = j + 1
        if positions:
            start = anchor
            break
    if not positions:
        return None
    points = 0
    prev = -2
    for p in positions:
        points += 16
        if p == prev + 1:
            points += 24
        if p == 0 or candidate[p - 1] in "/_-. ":
            points += 20
        elif candidate[p].isupper() and candidate[p - 1].islower():
            points += 12
        if p >= base:
            points += 8
        prev = p
    if start == base and positions[0] == base:
        points += 30
    points -= (positions[-1] - positions[0]) - (len(positions) - 1)  # gaps
    points -= len(candidate) // 8
    if c[base:] == q or c[base:].startswith(q + "."):
        points += 100
    return points, positions


async def search(root: Resolved, query: str, limit: int) -> SearchResult:
    """``rg --files`` piped (through here, counting lines) into a second ``rg`` that keeps the
    candidate lines (the query's characters in order), which alone are scored in Python: the
    per-file work stays in Rust."""
    rg = tool("rg")
    best: list[tuple[int, str, list[int]]] = []
    scanned = 0
    lister = _rg(rg, ["--files"], root.real)
    keeper = _rg(rg, ["--ignore-case", "--no-line-number", "--no-filename", "--regexp",
                      _prefilter(query), "-"], root.real, stdin=True)
    async with lister, keeper:
        async def relay() -> None:
            nonlocal scanned
            try:
                async for chunk in lister.chunks():
                    scanned += chunk.count(b"\n")
                    await keeper.feed(chunk)
            finally:
                await keeper.end_input()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay)
            async for line in keeper:
                found = score(query, line)
                if found is None:
                    continue
                item = (found[0], line, found[1])
                if len(best) < limit:
                    heapq.heappush(best, item)
                elif item > best[0]:
                    heapq.heapreplace(best, item)
    hits = [SearchHit(path=os.path.join(root.asked, rel), relative=rel, score=s, positions=pos)
            for s, rel, pos in sorted(best, key=lambda t: (-t[0], len(t[1]), t[1]))]
    return SearchResult(root=root.asked, hits=hits, scanned=scanned)


class _Lines:
    """The lines a child process prints, as an async iterator; the child is killed when the
    caller stops early (a limit reached) or is cancelled."""

    def __init__(self, argv: list[str], cwd: str, *, stdin: bool = False) -> None:
        self._argv = argv
        self._cwd = cwd
        self._stdin = stdin
        self._proc: trio.Process | None = None
        self.returncode: int | None = None
        self.stderr = b""

    async def __aenter__(self) -> _Lines:
        import subprocess

        self._proc = await trio.lowlevel.open_process(
            self._argv, cwd=self._cwd, stdin=subprocess.PIPE if self._stdin else
            subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=git_env())
        return self

    async def feed(self, data: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        # It may have stopped reading (an error, or killed): its exit status tells.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._proc.stdin.send_all(data)

    async def end_input(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            await self._proc.stdin.aclose()

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        assert proc is not None
        with trio.CancelScope(shield=True):
            if proc.stdin is not None:
                await proc.stdin.aclose()
            if proc.returncode is None:
                with trio.move_on_after(0 if self._stdin is False else 5):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
            self.returncode = await proc.wait()
            assert proc.stdout is not None and proc.stderr is not None
            await proc.stdout.aclose()
            with trio.move_on_after(1):
                self.stderr = bytes(await proc.stderr.receive_some(4096))
            await proc.stderr.aclose()

    def __aiter__(self) -> Any:
        return self._iterate()

    async def chunks(self) -> Any:
        """The output in whole lines, a large chunk at a time (each ends with a newline)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        rest = b""
        while True:
            chunk = await proc.stdout.receive_some(1024 * 1024)
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield data[:cut]
        if rest:
            yield rest + b"\n"

    async def _iterate(self) -> Any:
        async for chunk in self.chunks():
            for line in chunk[:-1].split(b"\n"):
                yield line.decode("utf-8", errors="surrogateescape")


def _rg(rg: str, args: list[str], cwd: str, *, stdin: bool = False) -> _Lines:
    return _Lines([rg, *args, "--no-messages", "--color", "never"], cwd, stdin=stdin)


class _RgEvent(msgspec.Struct):
    type: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


def _text(obj: dict[str, Any] | None) -> str:
    if not obj:
        return ""
    if "text" in obj:
        return str(obj["text"])
    return base64.b64decode(obj.get("bytes", "")).decode("utf-8", errors="replace")


async def grep(root: Resolved, pattern: str, *, fixed: bool, case_sensitive: bool | None,
               glob: str | None, limit: int) -> GrepResult:
    rg = tool("rg")
    args = ["--json"]
    if fixed:
        args.append("--fixed-strings")
    args.append("--case-sensitive" if case_sensitive else "--ignore-case"
                if case_sensitive is False else "--smart-case")
    if glob:
        args += ["--glob", glob]
    args += ["--regexp", pattern]
    matches: list[GrepMatch] = []
    files = 0
    truncated = False
    decoder = msgspec.json.Decoder(_RgEvent)
    lines = _rg(rg, args, root.real)
    async with lines:
        async for line in lines:
            try:
                event = decoder.decode(line)
            except msgspec.DecodeError:
                continue
            if event.type == "begin":
                files += 1
            if event.type != "match":
                continue
            if len(matches) >= limit:
                truncated = True
                break
            d = event.data
            rel = _text(d.get("path"))
            if rel.startswith("./"):
                rel = rel[2:]
            matches.append(GrepMatch(
                path=os.path.join(root.asked, rel), relative=rel,
                line=int(d.get("line_number") or 0), text=_text(d.get("lines")).rstrip("\n"),
                submatches=[Submatch(start=int(s["start"]), end=int(s["end"]),
                                     text=_text(s.get("match"))) for s in d.get("submatches",
                                                                                 [])]))
    if not truncated and lines.returncode == 2 and not matches:
        message = lines.stderr.decode(errors="replace").strip()
        raise RpcError(ErrorCode.INVALID_PARAMS, f"invalid params: ripgrep refused the pattern: "
                       f"{message}", {"field": "pattern"})
    return GrepResult(root=root.asked, matches=matches, truncated=truncated,
                      files_searched=files)
