"""Persisted atoms: a host-synchronised key/value store for frontends (``atom/*``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import Params, Struct, method, notification

AtomKey = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Revision = Annotated[int, msgspec.Meta(ge=0)]


class AtomKeyParams(Params):
    key: AtomKey


class Atom(Struct):
    key: str
    exists: bool
    value: msgspec.Raw
    revision: int
    updated_at: str | None = None


class AtomSetParams(Params):
    key: AtomKey
    value: msgspec.Raw
    expected_revision: Revision | None = None


class AtomRevision(Struct):
    key: str
    revision: int
    updated_at: str


class AtomDeleteParams(Params):
    key: AtomKey
    expected_revision: Revision | None = None


class AtomDeleted(Struct):
    key: str
    deleted: bool


class AtomListParams(Params):
    prefix: Annotated[str, msgspec.Meta(max_length=512)] = ""
    include_values: bool = True


class AtomList(Struct):
    atoms: list[Atom]


class AtomChanged(Struct):
    key: str
    deleted: bool
    revision: int
    value: msgspec.Raw
    updated_at: str


ATOM_GET = method("atom/get", AtomKeyParams, Atom, "Read one atom (exists=false when absent).")
ATOM_SET = method(
    "atom/set",
    AtomSetParams,
    AtomRevision,
    "Write an atom; with expectedRevision it is a compare-and-set.",
)
ATOM_DELETE = method(
    "atom/delete", AtomDeleteParams, AtomDeleted, "Delete an atom (optionally compare-and-delete)."
)
ATOM_LIST = method("atom/list", AtomListParams, AtomList, "List atoms whose key starts with prefix.")

ATOM_CHANGED = notification(
    "atom/changed", AtomChanged, "An atom was set or deleted by another client."
)
