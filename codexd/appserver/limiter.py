"""A capacity limiter that is fair between owners (round robin), not just first-come.

One client pipelining 2000 requests must not starve another client's single request: waiters
queue per owner, and a freed slot goes to the next owner in turn.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable

import trio


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.granted = False


class FairLimiter:
    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._queues: OrderedDict[Hashable, deque[_Waiter]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody waits (no checkpoint)."""
        if self.in_use < self.total and not self._queues:
            self.in_use += 1
            return True
        return False

    async def acquire(self, owner: Hashable) -> None:
        if self.in_use < self.total and not self._queues:
            self.in_use += 1
            await trio.lowlevel.checkpoint()
            return
        waiter = _Waiter()
        self._queues.setdefault(owner, deque()).append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release()
            else:
                queue = self._queues.get(owner)
                if queue is not None:
                    queue.remove(waiter)
                    if not queue:
                        del self._queues[owner]
            raise

    def release(self) -> None:
        while self._queues:
            owner, queue = next(iter(self._queues.items()))
            waiter = queue.popleft()
            if queue:
                self._queues.move_to_end(owner)
            else:
                del self._queues[owner]
            waiter.granted = True
            waiter.event.set()
            return  # the slot passes straight to the waiter; in_use is unchanged
        self.in_use -= 1

    @contextlib.asynccontextmanager
    async def slot(self, owner: Hashable) -> AsyncIterator[None]:
        await self.acquire(owner)
        try:
            yield
        finally:
            self.release()
