"""A per-client output queue bounded in bytes, drained by one writer task.

Producers never wait: :meth:`OutputQueue.put` appends or, past the bound, reports overflow so the
owner can disconnect the client. A slow reader therefore costs at most ``limit`` bytes of memory
and never delays anybody else.
"""

from __future__ import annotations

from collections import deque

import trio

#: Messages joined into one ``send_all`` at most (fewer syscalls under load).
_BATCH_BYTES = 256 * 1024


class OutputQueue:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._closed = False
        self._wakeup = trio.Event()
        self.overflowed = False

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, data: bytes) -> bool:
        """Queue ``data``; False (and nothing queued) when closed or past the limit."""
        if self._closed:
            return False
        if self._bytes + len(data) > self.limit:
            self.overflowed = True
            return False
        self._items.append(data)
        self._bytes += len(data)
        self._wakeup.set()
        return True

    def replace_with(self, data: bytes) -> None:
        """Drop everything queued, queue ``data`` as the last message, and close."""
        self._items.clear()
        self._items.append(data)
        self._bytes = len(data)
        self.close()

    def close(self) -> None:
        """No more puts; :meth:`get_batch` returns what is left, then ``b""``."""
        self._closed = True
        self._wakeup.set()

    def empty(self) -> bool:
        return not self._items

    async def get_batch(self) -> bytes:
        """Wait for data and return as much as is queued (up to a batch); ``b""`` once closed."""
        while not self._items:
            if self._closed:
                return b""
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        items = self._items
        if len(items) == 1:
            data = items.popleft()
        else:
            parts = []
            size = 0
            while items and size < _BATCH_BYTES:
                part = items.popleft()
                parts.append(part)
                size += len(part)
            data = b"".join(parts)
        self._bytes -= len(data)
        return data
