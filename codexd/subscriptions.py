"""Which sessions follow which threads or runs: feature state keyed by session, not on it.

An :class:`Interest` belongs to its feature (thread subscriptions to the :class:`EventHub`, run
subscriptions to the run event log); a session only has an ``id``. The owner calls
:meth:`Interest.forget` when a session closes, so nothing outlives the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar


class HasId(Protocol):
    @property
    def id(self) -> int: ...


W = TypeVar("W", bound=HasId)


class Interest(Generic[W]):
    """Per session: a set of keys it follows, or all of them.

    ``on_added(who)`` runs after a call that made ``who`` follow something new (thread
    subscriptions use it to deliver the approvals waiting on those threads).
    """

    __slots__ = ("_all", "_keys", "on_added")

    def __init__(self, on_added: Callable[[W], None] | None = None) -> None:
        self._keys: dict[int, set[str]] = {}
        self._all: set[int] = set()
        self.on_added = on_added

    def add(self, who: W, keys: Iterable[str]) -> None:
        mine = self._keys.get(who.id)
        new = False
        for key in keys:
            if mine is None:
                mine = self._keys[who.id] = set()
            if key not in mine:
                mine.add(key)
                new = True
        if new and self.on_added is not None:
            self.on_added(who)

    def follow_all(self, who: W) -> None:
        if who.id not in self._all:
            self._all.add(who.id)
            if self.on_added is not None:
                self.on_added(who)

    def discard(self, who: HasId, key: str) -> bool:
        """Stop following ``key``; False when it was not followed."""
        mine = self._keys.get(who.id)
        if mine is None or key not in mine:
            return False
        mine.discard(key)
        return True

    def stop_all(self, who: HasId) -> None:
        self._all.discard(who.id)

    def wants(self, session_id: int, key: str | None) -> bool:
        """Whether something about ``key`` is for the session (None: not scoped, always)."""
        if key is None or session_id in self._all:
            return True
        mine = self._keys.get(session_id)
        return mine is not None and key in mine

    def keys(self, who: HasId) -> list[str]:
        return sorted(self._keys.get(who.id, ()))

    def is_all(self, who: HasId) -> bool:
        return who.id in self._all

    def any(self, session_id: int) -> bool:
        """Whether the session follows anything at all."""
        return session_id in self._all or bool(self._keys.get(session_id))

    def forget(self, who: HasId) -> None:
        self._keys.pop(who.id, None)
        self._all.discard(who.id)
