"""Per-method call counters for ``daemon/status``."""

from __future__ import annotations

from codexd.protocol.daemon import MethodCount


class Stats:
    """Counted on every call (the hot path): one dict lookup and an attribute increment. The
    counters are the wire structs themselves, so ``daemon/status`` copies nothing but the
    (sorted) dict that holds them."""

    def __init__(self) -> None:
        self._calls: dict[str, MethodCount] = {}
        self._sorted: dict[str, MethodCount] | None = {}
        self.clients_total = 0

    def count(self, method: str, error_code: int | None) -> None:
        entry = self._calls.get(method)
        if entry is None:
            entry = self._calls[method] = MethodCount(calls=0, errors=0)
            self._sorted = None
        entry.calls += 1
        if error_code is not None:
            entry.errors += 1

    def methods(self) -> dict[str, MethodCount]:
        """Every method's counters, by name. Encode the result before the next call counts:
        the counters in it are live."""
        if self._sorted is None:
            self._sorted = dict(sorted(self._calls.items()))
        return self._sorted
