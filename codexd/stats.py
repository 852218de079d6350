"""Per-method call counters for ``daemon/status``."""

from __future__ import annotations

from codexd.protocol.daemon import MethodCount


class Stats:
    def __init__(self) -> None:
        self._calls: dict[str, list[int]] = {}
        self.clients_total = 0

    def count(self, method: str, error_code: int | None) -> None:
        entry = self._calls.get(method)
        if entry is None:
            entry = self._calls[method] = [0, 0]
        entry[0] += 1
        if error_code is not None:
            entry[1] += 1

    def methods(self) -> dict[str, MethodCount]:
        return {m: MethodCount(calls=c, errors=e) for m, (c, e) in sorted(self._calls.items())}
