"""A bounded byte ring that remembers how many bytes ever passed through it (sans-IO)."""

from __future__ import annotations


class Scrollback:
    """Keeps the last ``limit`` bytes of a stream; ``end`` counts every byte ever appended.

    ``end`` is the stream offset a client continues from after a snapshot, so ``terminal/output``
    chunks can carry their offset and a client can check it missed nothing.
    """

    __slots__ = ("_buf", "end", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self.end = 0

    def append(self, data: bytes) -> None:
        self.end += len(data)
        if len(data) >= self.limit:
            self._buf[:] = data[-self.limit :]
            return
        self._buf += data
        excess = len(self._buf) - self.limit
        if excess > 0:
            del self._buf[:excess]

    def snapshot(self) -> tuple[bytes, int]:
        """(the kept bytes, the offset just after them)."""
        return bytes(self._buf), self.end

    @property
    def start(self) -> int:
        """Offset of the oldest byte still kept."""
        return self.end - len(self._buf)

    def __len__(self) -> int:
        return len(self._buf)
