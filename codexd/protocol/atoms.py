"""Persisted atoms: a host-synchronised key/value store for frontends (``atom/*``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from codexd.protocol.base import Count, Params, Struct, method, notification

AtomKey = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Revision = Count


class AtomKeyParams(Params, frozen=True):
    key: AtomKey


class Atom(Struct, frozen=True):
    key: str
    exists: bool
    value: msgspec.Raw
    revision: int
    updated_at: str | None = None


class AtomSetParams(Params, frozen=True):
    key: AtomKey
    value: msgspec.Raw
    expected_revision: Revision | None = None


class AtomRevision(Struct, frozen=True):
    key: str
    revision: int
    updated_at: str


class AtomDeleteParams(Params, frozen=True):
    key: AtomKey
    expected_revision: Revision | None = None


class AtomDeleted(Struct, frozen=True):
    key: str
    deleted: bool


class AtomListParams(Params, frozen=True):
    prefix: Annotated[str, msgspec.Meta(max_length=512)] = ""
    include_values: bool = True


class AtomList(Struct, frozen=True):
    atoms: list[Atom]


class AtomChanged(Struct, frozen=True):
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
ATOM_LIST = method(
    "atom/list", AtomListParams, AtomList, "List atoms whose key starts with prefix."
)

ATOM_CHANGED = notification(
    "atom/changed", AtomChanged, "An atom was set or deleted by another client."
)
