"""Newline-delimited framing with a hard line limit (sans-IO).

A :class:`LineFramer` turns an arbitrary split of a byte stream into whole lines. A line longer
than the limit is never buffered whole: as soon as the limit is passed the framer reports
:class:`OversizedLine` once and discards bytes until the next newline, so a peer cannot make us
hold more than ``max_line`` bytes however long its line is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OversizedLine:
    """A line passed the limit and was (or is being) discarded."""

    limit: int


class LineFramer:
    """Splits bytes into lines; blank lines are ignored and a trailing ``\\r`` is dropped.

    Args:
        max_line: the longest line accepted, in bytes, excluding the newline.
    """

    __slots__ = ("_buf", "_discarding", "_scan_from", "max_line")

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.max_line = max_line
        self._buf = bytearray()
        self._scan_from = 0
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[bytes | OversizedLine]:
        """Add ``data`` and return the lines it completed, in order."""
        out: list[bytes | OversizedLine] = []
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return out
            self._discarding = False
            data = data[nl + 1 :]
        buf = self._buf
        buf += data
        start = 0
        scan = self._scan_from
        while True:
            nl = buf.find(b"\n", scan)
            if nl < 0:
                break
            if nl - start > self.max_line and not (
                nl - start == self.max_line + 1 and buf[nl - 1] == 0x0D
            ):
                out.append(OversizedLine(self.max_line))
            else:
                end = nl - 1 if nl > start and buf[nl - 1] == 0x0D else nl
                if end > start:
                    out.append(bytes(buf[start:end]))
            start = scan = nl + 1
        if start:
            del buf[:start]
        if len(buf) > self.max_line + 1:
            # The pending line can no longer fit: report it now and drop it.
            out.append(OversizedLine(self.max_line))
            buf.clear()
            self._discarding = True
            self._scan_from = 0
        else:
            self._scan_from = len(buf)
        return out
