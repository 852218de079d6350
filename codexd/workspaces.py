"""Workspace grants: the folders clients may work in, and the check every path goes through.

A path is inside a grant when, absolute and free of ``..``, its real location (symlinks
resolved; for an entry acted on itself, such as a symlink being deleted, its folder's real
location) is the grant's real path or below it. What never passes: a relative path, ``..``, a NUL
byte, a path over ``PATH_MAX`` or a component over ``NAME_MAX``, a symlink that leaves the grant,
and ``/proc/self/root``-style detours (their real location is outside). A refusal is ``-32070``
naming the path and the nearest grant.

The check is made on the real path just before the operation; a same-user process swapping a
folder for a symlink between the check and the use is outside the threat model (it could write
the file itself). docs/security.md has the whole model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog

from codexd.errors import ErrorCode, RpcError
from codexd.protocol.workspace import Grant

Change = Literal["granted", "revoked"]

if TYPE_CHECKING:
    from codexd.store import Store

log = structlog.get_logger("codexd.workspaces")

PATH_MAX = 4096
NAME_MAX = 255
#: Never granted: the root, and the kernel's views (whose paths lead anywhere).
FORBIDDEN = ("/", "/proc", "/sys", "/dev")


@dataclass(frozen=True, slots=True)
class Resolved:
    """A checked path: what the client said (for results) and where it really is (for I/O)."""

    asked: str
    real: str
    grant: Grant


def outside(path: str, nearest: Grant | None, why: str = "") -> RpcError:
    where = (f"; the nearest grant is {nearest.path}" if nearest else
             "; no folder is granted yet (`codexctl workspace add DIR`)")
    return RpcError(ErrorCode.OUTSIDE_WORKSPACE,
                    f"{path!r} is outside every workspace grant{why}{where}",
                    {"path": path, "nearestGrant": nearest.path if nearest else None})


def lexical_check(path: str) -> None:
    """What a path must be before it is even looked up (raises -32602)."""
    if "\x00" in path:
        raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: a path cannot hold a NUL byte",
                       {"field": "path"})
    if not os.path.isabs(path):
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       f"invalid params: {path!r} is not an absolute path", {"field": "path"})
    if len(os.fsencode(path)) > PATH_MAX or any(
            len(os.fsencode(part)) > NAME_MAX for part in path.split("/")):
        raise RpcError(ErrorCode.INVALID_PARAMS,
                       "invalid params: the path is longer than the system allows",
                       {"field": "path"})


def _locate(path: str) -> tuple[str, str, bool]:
    """(normalized, real, is a folder) of a path that passed :func:`lexical_check`."""
    norm = os.path.normpath(path)
    real = os.path.realpath(norm)
    return norm, real, os.path.isdir(real)


def _within(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


class Workspaces:
    """The grants (kept in memory, stored in ``workspace_grants``) and the path check."""

    def __init__(self, store: Callable[[], Store], *,
                 on_change: Callable[[Change, Grant], None] = lambda _c, _g: None) -> None:
        self._store = store
        self._on_change = on_change
        self.grants: list[Grant] = []

    async def load(self) -> None:
        from codexd.store import workspaces as repo

        self.grants = await self._store().read(repo.list_)

    # ---------------------------------------------------------------------------- checking

    def nearest(self, real: str) -> Grant | None:
        best: tuple[int, Grant] | None = None
        for g in self.grants:
            common = len(os.path.commonpath([real, g.real_path])) if real.startswith("/") else 0
            if best is None or common > best[0]:
                best = (common, g)
        return best[1] if best else None

    def resolve(self, path: str, *, follow: bool = True) -> Resolved:
        """Check ``path`` (raises -32602 or -32070); ``follow=False`` checks the entry itself
        (its folder's real path and its name) so a symlink can be removed or renamed."""
        lexical_check(path)
        if ".." in path.split("/"):
            raise outside(path, self.nearest(os.path.normpath(path)), " (`..` is not allowed)")
        norm = os.path.normpath(path)
        if follow:
            real = os.path.realpath(norm)
        else:
            parent, name = os.path.split(norm)
            real = os.path.join(os.path.realpath(parent), name) if name else \
                os.path.realpath(norm)
        for g in sorted(self.grants, key=lambda g: -len(g.real_path)):
            if _within(real, g.real_path):
                return Resolved(asked=norm, real=real, grant=g)
        why = "" if real == norm else f" (it leads to {real})"
        raise outside(path, self.nearest(real), why)

    def same_grant(self, a: Resolved, b: Resolved) -> None:
        if a.grant.real_path != b.grant.real_path:
            raise RpcError(ErrorCode.OUTSIDE_WORKSPACE,
                           f"{a.asked!r} and {b.asked!r} are in different workspace grants; "
                           "a rename stays within one", {"path": b.asked,
                                                         "nearestGrant": a.grant.path})

    def covers(self, path: str) -> bool:
        try:
            self.resolve(path)
        except RpcError:
            return False
        return True

    # ---------------------------------------------------------------------------- changing

    async def grant(self, path: str, name: str | None = None, *, source: str = "client") -> Grant:
        from codexd.store import workspaces as repo

        lexical_check(path)
        if ".." in path.split("/"):
            raise RpcError(ErrorCode.INVALID_PARAMS, "invalid params: `..` is not allowed in a "
                           "grant; give the folder's own path", {"field": "path"})
        norm, real, is_dir = _locate(path)
        if not is_dir:
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"invalid params: {path!r} is not an existing folder",
                           {"field": "path"})
        if real in FORBIDDEN or any(_within(real, f) for f in FORBIDDEN[1:]):
            raise RpcError(ErrorCode.POLICY_DENIED,
                           f"{real} cannot be a workspace (the root, /proc, /sys and /dev "
                           "never are)", {"path": path})
        for g in self.grants:
            if g.real_path == real:
                return g
        g = Grant(path=norm, real_path=real, name=name or os.path.basename(real) or real,
                  created_at=int(time.time() * 1000))
        await self._store().write(lambda c: repo.insert(c, g))
        self.grants.append(g)
        log.info("workspace_granted", path=norm, real_path=real, source=source)
        self._on_change("granted", g)
        return g

    async def revoke(self, path: str) -> tuple[Grant | None, bool]:
        from codexd.store import workspaces as repo

        lexical_check(path)
        norm, real, _is_dir = _locate(path)
        found = next((g for g in self.grants if g.path == norm or g.real_path in (norm, real)),
                     None)
        if found is None:
            return None, False
        await self._store().write(lambda c: repo.delete(c, found.real_path))
        self.grants = [g for g in self.grants if g.real_path != found.real_path]
        log.info("workspace_revoked", path=found.path)
        self._on_change("revoked", found)
        return found, True

    async def ensure(self, paths: Iterable[str], *, why: str) -> list[Grant]:
        """Grant the folders among ``paths`` no grant covers yet (an upgrade keeping what
        already worked working); each is logged with ``why``."""
        made = []
        for p in dict.fromkeys(paths):
            if not p or not os.path.isabs(p) or not _locate(p)[2] or self.covers(p):
                continue
            try:
                made.append(await self.grant(p, source=why))
            except RpcError as exc:
                log.warning("workspace_grant_skipped", path=p, reason=why, error=exc.message)
        return made
