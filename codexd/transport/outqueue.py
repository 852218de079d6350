"""A per-client output queue bounded in bytes, drained by one writer task.

Producers never wait: :meth:`OutputQueue.put` appends or, past the bound, reports overflow so the
owner can disconnect the client. A slow reader therefore costs at most ``limit`` bytes of memory
and never delays anybody else.

When nothing is queued or being written, :meth:`write_now` writes straight to the socket (no task
switch on the hot path). It is the one method that may be called from another thread (the
app-server's stdout pump answers forwarded requests with it); a lock keeps the check "nothing
queued, nothing being written" and the write together, so bytes never overtake each other.
"""

from __future__ import annotations

import os
import threading
from collections import deque

import trio

#: Messages joined into one ``send_all`` at most (fewer syscalls under load).
_BATCH_BYTES = 256 * 1024

#: :meth:`OutputQueue.write_now` could not write (something is queued or being written).
BUSY = -1


class OutputQueue:
    def __init__(self, limit: int, fd: int = -1) -> None:
        self.limit = limit
        #: The socket for direct writes (-1: always queue; set to -1 before the socket closes).
        self.fd = fd
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._closed = False
        self._writing = False  # the writer task holds a batch it has not finished writing
        self._head_partial = False  # the first queued item continues a started message
        self._wakeup = trio.Event()
        self._lock = threading.Lock()
        self.overflowed = False

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, data: bytes) -> bool:
        """Queue ``data``; False (and nothing queued) when closed or past the limit."""
        with self._lock:
            if self._closed:
                return False
            if self._bytes + len(data) > self.limit:
                self.overflowed = True
                return False
            self._items.append(data)
            self._bytes += len(data)
        self._wakeup.set()
        return True

    def write_now(self, data: bytes) -> int:
        """Write ``data`` to the socket if nothing is queued or being written.

        Returns :data:`BUSY` (nothing written: queue it instead), 0 (all written, or the peer is
        gone), or the number of bytes the socket did not take, which are now queued first:
        the caller must then call :meth:`wake` from the event loop's thread.
        """
        with self._lock:
            if self.fd < 0 or self._items or self._writing or self._closed:
                return BUSY
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return 0  # the peer is gone; the read side will notice
            if sent == len(data):
                return 0
            rest = data[sent:]
            self._items.append(rest)
            self._bytes += len(rest)
            # The head is the tail of a message the peer has started reading: it must be
            # finished before anything else (replace_with keeps it).
            self._head_partial = True
            return len(rest)

    def send(self, data: bytes) -> bool:
        """Write ``data`` now, or queue it behind what is queued (event loop thread only).

        False when it could not be queued (closed, or past the limit: see ``overflowed``).
        """
        rest = self.write_now(data)
        if rest > 0:
            self.wake()
        elif rest == BUSY:
            return self.put(data)
        return True

    def wake(self) -> None:
        """Wake the writer task (event loop thread only)."""
        self._wakeup.set()

    def detach_fd(self) -> None:
        """No more direct writes (the socket is about to close)."""
        with self._lock:
            self.fd = -1

    def replace_with(self, data: bytes) -> None:
        """Drop everything queued, queue ``data`` as the last message, and close.

        The unwritten tail of a message the peer has already started receiving is kept in
        front of ``data``: the peer reads whole messages only, never a cut one.
        """
        with self._lock:
            head = self._items[0] if self._head_partial and self._items else None
            self._items.clear()
            if head is not None:
                self._items.append(head)
            self._items.append(data)
            self._bytes = sum(len(item) for item in self._items)
        self.close()

    def close(self) -> None:
        """No more puts; :meth:`get_batch` returns what is left, then ``b""``."""
        self._closed = True
        self._wakeup.set()

    def empty(self) -> bool:
        return not self._items

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return not self._items and not self._writing

    async def get_batch(self) -> bytes:
        """Wait for data and return as much as is queued (up to a batch); ``b""`` once closed.

        The batch counts as being written until :meth:`written` (direct writes wait for it).
        """
        while not self._items:
            if self._closed:
                return b""
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        with self._lock:
            items = self._items
            self._head_partial = False  # taken whole into this batch
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
            self._writing = True
        return data

    def written(self) -> None:
        """The writer finished the batch :meth:`get_batch` returned."""
        self._writing = False
