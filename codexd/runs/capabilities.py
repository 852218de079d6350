"""What each provider CLI on this machine is: found or not, its version, what it offers, and
whether codexd can run it (``supported | degraded | blocked``; see codexd.runs.compat).

:class:`Catalog` keeps the snapshots: in memory, then the ``capability_snapshots`` table, then
a probe of the binary (in a worker thread) when neither knows this path, mtime and size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from codexd.protocol.runs import Capability
from codexd.runs import compat, providers
from codexd.store import capabilities as repo

if TYPE_CHECKING:
    from codexd.store import Store

def to_wire(snap: compat.Snapshot) -> Capability:
    return Capability(
        provider=snap.provider, status=snap.status, reason="; ".join(snap.reasons),
        path=snap.path, version=snap.version, checked_at=snap.checked_at,
        reasons=list(snap.reasons), missing_options=list(snap.missing),
        permission_modes=list(snap.permission_modes),
        tested_versions=list(compat.TESTED[snap.provider]))


def missing(provider: str) -> Capability:
    return Capability(provider=provider, status="blocked", path=None, version=None,
                      reason=f"{provider} is not installed (PATH, .tools/npm, "
                             f"runs.{provider}_command)",
                      checked_at=int(time.time() * 1000),
                      tested_versions=list(compat.TESTED[provider]))


def unrunnable(provider: str, path: str, exc: OSError) -> Capability:
    return Capability(provider=provider, status="blocked", path=path, version=None,
                      reason=str(exc), reasons=[str(exc)], checked_at=int(time.time() * 1000),
                      tested_versions=list(compat.TESTED[provider]))


def probe(provider: str, configured: str) -> Capability:
    """Blocking, uncached: for ``codexctl doctor`` (the daemon may be down)."""
    path = providers.find_cli(provider, configured, providers.ROOT)
    if path is None:
        return missing(provider)
    try:
        return to_wire(compat.probe(provider, path))
    except OSError as exc:
        return unrunnable(provider, path, exc)


class Catalog:
    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store
        self._mem: dict[tuple[str, str, int, int], compat.Snapshot] = {}

    async def snapshot(self, provider: str, exe: str, *,
                       fresh: bool = False) -> compat.Snapshot:
        """The snapshot of the binary ``exe`` (``fresh``: probe it again). Raises OSError when
        it is gone or cannot be executed."""
        real, mtime_ns, size = await trio.to_thread.run_sync(compat.identity, exe)
        key = (provider, real, mtime_ns, size)
        snap = None if fresh else self._mem.get(key)
        if snap is not None:
            return snap
        if not fresh:
            snap = await self._store().read(
                lambda c: repo.get(c, provider, real, mtime_ns, size))
        if snap is None:
            probed = await trio.to_thread.run_sync(compat.probe, provider, exe)
            await self._store().write(lambda c: repo.put(c, probed))
            snap = probed
        self._mem[key] = snap
        return snap

    async def capability(self, provider: str, configured: str, *,
                         refresh: bool = False) -> Capability:
        path = await trio.to_thread.run_sync(providers.find_cli, provider, configured,
                                           providers.ROOT)
        if path is None:
            return missing(provider)
        if refresh:
            self._mem = {k: v for k, v in self._mem.items() if k[0] != provider}
        try:
            snap = await self.snapshot(provider, path, fresh=refresh)
        except OSError as exc:
            return unrunnable(provider, path, exc)
        return to_wire(snap)
