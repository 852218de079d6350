"""Handlers for ``atom/*``: a key/value store shared by frontends, with compare-and-set."""

from __future__ import annotations

import msgspec

from codexd.api.registry import handles
from codexd.errors import ErrorCode, RpcError
from codexd.protocol.atoms import (
    ATOM_CHANGED,
    ATOM_DELETE,
    ATOM_GET,
    ATOM_LIST,
    ATOM_SET,
    Atom,
    AtomChanged,
    AtomDeleted,
    AtomDeleteParams,
    AtomKeyParams,
    AtomList,
    AtomListParams,
    AtomRevision,
    AtomSetParams,
)
from codexd.rpc import NULL
from codexd.session import ClientSession
from codexd.store import atoms as repo
from codexd.store import now_iso


def _conflict(key: str, current: int, expected: int | None) -> RpcError:
    state = "does not exist" if current == 0 else f"is at revision {current}"
    return RpcError(
        ErrorCode.CONFLICT,
        f"atom {key!r} {state}, not at the expected revision {expected}; "
        "re-read it and retry",
        {"key": key, "currentRevision": current, "expectedRevision": expected},
    )


def _atom(row: repo.AtomRow, with_value: bool = True) -> Atom:
    return Atom(
        key=row.key,
        exists=True,
        value=msgspec.Raw(row.value.encode()) if with_value else NULL,
        revision=row.revision,
        updated_at=row.updated_at,
    )


@handles(ATOM_GET)
async def get(session: ClientSession, p: AtomKeyParams) -> Atom:
    row = await session.ctx.store.read(lambda c: repo.get(c, p.key))
    if row is None:
        return Atom(key=p.key, exists=False, value=NULL, revision=0)
    return _atom(row)


@handles(ATOM_SET)
async def set_(session: ClientSession, p: AtomSetParams) -> AtomRevision:
    value = bytes(p.value).decode()
    out = await session.ctx.store.write(
        lambda c: repo.set_(c, p.key, value, p.expected_revision)
    )
    if isinstance(out, repo.Conflict):
        raise _conflict(p.key, out.current, p.expected_revision)
    session.ctx.publish(
        ATOM_CHANGED.name,
        AtomChanged(key=p.key, deleted=False, revision=out.revision, value=p.value,
                    updated_at=out.updated_at),
        exclude=session,
    )
    return AtomRevision(key=p.key, revision=out.revision, updated_at=out.updated_at)


@handles(ATOM_DELETE)
async def delete(session: ClientSession, p: AtomDeleteParams) -> AtomDeleted:
    out = await session.ctx.store.write(lambda c: repo.delete(c, p.key, p.expected_revision))
    if isinstance(out, repo.Conflict):
        raise _conflict(p.key, out.current, p.expected_revision)
    if out is None:
        return AtomDeleted(key=p.key, deleted=False)
    session.ctx.publish(
        ATOM_CHANGED.name,
        AtomChanged(key=p.key, deleted=True, revision=out, value=NULL, updated_at=now_iso()),
        exclude=session,
    )
    return AtomDeleted(key=p.key, deleted=True)


@handles(ATOM_LIST)
async def list_(session: ClientSession, p: AtomListParams) -> AtomList:
    rows = await session.ctx.store.read(lambda c: repo.list_(c, p.prefix))
    return AtomList(atoms=[_atom(r, p.include_values) for r in rows])
