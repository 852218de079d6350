"""A bounded byte ring that remembers how many bytes ever passed through it (sans-IO)."""

from __future__ import annotations


class Scrollback:
    """Keeps the last ``limit`` bytes of a stream; ``end`` counts every byte ever appended.

    ``end`` is the stream offset a client continues from after a snapshot, so ``terminal/output``
    chunks can carry their offset and a client can check it missed nothing. A fixed buffer with
    a moving write position: appending never moves what is already kept.
    """

    __slots__ = ("_buf", "_pos", "end", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray(limit)
        self._pos = 0  # where the next byte goes
        self.end = 0

    def append(self, data: bytes) -> None:
        self.end += len(data)
        n = len(data)
        if n >= self.limit:
            self._buf[:] = data[-self.limit :]
            self._pos = 0
            return
        first = min(n, self.limit - self._pos)
        self._buf[self._pos : self._pos + first] = data[:first]
        if first < n:
            self._buf[: n - first] = data[first:]
        self._pos = (self._pos + n) % self.limit

    def snapshot(self) -> tuple[bytes, int]:
        """(the kept bytes, oldest first, and the offset just after them)."""
        if self.end < self.limit:
            return bytes(self._buf[: self.end]), self.end
        return bytes(self._buf[self._pos :]) + bytes(self._buf[: self._pos]), self.end

    @property
    def start(self) -> int:
        """Offset of the oldest byte still kept."""
        return max(0, self.end - self.limit)

    def __len__(self) -> int:
        return min(self.end, self.limit)
