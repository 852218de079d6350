"""Handlers for ``workspace/*`` (grants) and ``files/*`` (files inside them)."""

from __future__ import annotations

import trio

from codexd import files
from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.base import NoParams
from codexd.protocol.workspace import (
    FILES_DELETE,
    FILES_GREP,
    FILES_LIST,
    FILES_MKDIR,
    FILES_READ,
    FILES_RENAME,
    FILES_SEARCH,
    FILES_STAT,
    FILES_UNWATCH,
    FILES_WATCH,
    FILES_WATCHES,
    FILES_WRITE,
    WORKSPACE_GRANT,
    WORKSPACE_LIST,
    WORKSPACE_REVOKE,
    DeleteParams,
    Done,
    FileContent,
    Grant,
    GrantList,
    GrantParams,
    GrepParams,
    GrepResult,
    Listing,
    ListParams,
    MkdirParams,
    PathRef,
    ReadParams,
    RenameParams,
    Revoked,
    SearchParams,
    SearchResult,
    Stat,
    Unwatched,
    WatchInfo,
    WatchList,
    WatchParams,
    WatchRef,
    WriteParams,
    Written,
)
from codexd.session import ClientSession

#: One write at a time per file: the expectedHash check and the rename are one step.
_write_locks: dict[str, trio.Lock] = {}


@handles(WORKSPACE_GRANT)
async def grant(session: ClientSession, p: GrantParams) -> Grant:
    return await session.ctx.workspaces.grant(p.path, p.name)


@handles(WORKSPACE_LIST)
def list_grants(session: ClientSession, _p: NoParams) -> GrantList:
    return GrantList(grants=list(session.ctx.workspaces.grants))


@handles(WORKSPACE_REVOKE)
async def revoke(session: ClientSession, p: PathRef) -> Revoked:
    found, revoked = await session.ctx.workspaces.revoke(p.path)
    return Revoked(path=found.path if found else p.path, revoked=revoked)


@handles(FILES_LIST)
async def list_(session: ClientSession, p: ListParams) -> Listing:
    ws = session.ctx.workspaces
    return await files.list_dir(ws.resolve(p.path), respect_gitignore=p.respect_gitignore,
                                show_hidden=p.show_hidden, inside=ws.covers)


@handles(FILES_STAT)
async def stat(session: ClientSession, p: PathRef) -> Stat:
    return await files.stat(session.ctx.workspaces.resolve(p.path))


@handles(FILES_READ)
async def read(session: ClientSession, p: ReadParams) -> FileContent:
    return await files.read(session.ctx.workspaces.resolve(p.path), p.max_bytes)


@handles(FILES_WRITE)
async def write(session: ClientSession, p: WriteParams) -> Written:
    res = session.ctx.workspaces.resolve(p.path)
    data = files.decode_content(p.content, p.encoding)
    lock = _write_locks.setdefault(res.real, trio.Lock())
    try:
        async with lock:
            return await files.in_thread(
                lambda: files.write_sync(res, data, p.expected_hash, p.make_parents), res.asked)
    finally:
        if not lock.locked() and lock.statistics().tasks_waiting == 0:
            _write_locks.pop(res.real, None)


@handles(FILES_MKDIR)
async def mkdir(session: ClientSession, p: MkdirParams) -> Done:
    res = session.ctx.workspaces.resolve(p.path)
    await files.in_thread(lambda: files.mkdir_sync(res, p.parents), res.asked)
    return Done(path=res.asked, ok=True)


@handles(FILES_DELETE)
async def delete(session: ClientSession, p: DeleteParams) -> Done:
    ws = session.ctx.workspaces
    res = ws.resolve(p.path, follow=False)
    if res.real == res.grant.real_path:
        raise RpcError(ErrorCode.POLICY_DENIED, f"{p.path!r} is a workspace grant itself; revoke "
                       "it (`codexctl workspace rm`) instead of deleting it", {"path": p.path})
    await files.in_thread(lambda: files.delete_sync(res, p.recursive), res.asked)
    return Done(path=res.asked, ok=True)


@handles(FILES_RENAME)
async def rename(session: ClientSession, p: RenameParams) -> Done:
    ws = session.ctx.workspaces
    src, dst = ws.resolve(p.path, follow=False), ws.resolve(p.to, follow=False)
    ws.same_grant(src, dst)
    await files.in_thread(lambda: files.rename_sync(src, dst, p.overwrite), src.asked)
    return Done(path=dst.asked, ok=True)


@handles(FILES_SEARCH)
async def search(session: ClientSession, p: SearchParams) -> SearchResult:
    return await files.search(session.ctx.workspaces.resolve(p.root), p.query, p.limit)


@handles(FILES_GREP)
async def grep(session: ClientSession, p: GrepParams) -> GrepResult:
    return await files.grep(session.ctx.workspaces.resolve(p.root), p.pattern, fixed=p.fixed,
                            case_sensitive=p.case_sensitive, glob=p.glob, limit=p.limit)


@handles(FILES_WATCH)
async def watch(session: ClientSession, p: WatchParams) -> WatchInfo:
    return await session.ctx.watches.watch(p.path)


@handles(FILES_UNWATCH)
def unwatch(session: ClientSession, p: WatchRef) -> Unwatched:
    return Unwatched(watch_id=p.watch_id, stopped=session.ctx.watches.unwatch(p.watch_id))


@handles(FILES_WATCHES)
def watches(session: ClientSession, _p: NoParams) -> WatchList:
    return WatchList(watches=[w.info for w in session.ctx.watches.watches.values()])
