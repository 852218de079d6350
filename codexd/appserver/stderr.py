"""The app-server's stderr: kept as a tail of lines and logged, rate-limited, as JSON events.

Lines lose their terminal escape sequences (colours, cursor moves) and are logged at the level
they state themselves (``ERROR``, ``WARN``, ...; ``info`` when they state none). At most
``per_second()`` lines a second are logged; the rest are counted in one
``appserver_stderr_suppressed`` line. The tail keeps the last 200 lines for status and health.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable

import structlog
import trio

log = structlog.get_logger("codexd.appserver")

#: Terminal escape sequences (colours, cursor moves) in the child's stderr.
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
#: The level word of a tracing/log line ("2026-… ERROR codex_core: …"), mapped to ours.
_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b")
_LEVELS = {"TRACE": "debug", "DEBUG": "debug", "INFO": "info", "WARN": "warning",
           "WARNING": "warning", "ERROR": "error", "FATAL": "critical"}


def clean(raw: bytes) -> str:
    """One stderr line as text: decoded, without escape sequences, trimmed to 2,000 chars."""
    return _ANSI.sub("", raw.decode(errors="replace")).rstrip()[:2000]


def level_of(line: str) -> str:
    """Our log level for a line, from the level word it starts with."""
    found = _LEVEL.search(line[:80])
    return _LEVELS[found.group(1)] if found else "info"


class StderrTail:
    """Owned by the supervisor; one per daemon (the tail spans app-server generations)."""

    def __init__(self, per_second: Callable[[], int], size: int = 200) -> None:
        self._per_second = per_second
        self.lines: deque[str] = deque(maxlen=size)
        self._budget = (0, 0)
        self._buf = b""

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        """Read lines until EOF (the partial last line survives a cancelled read)."""
        while data := await stream.receive_some(65536):
            self._buf += data
            *lines, self._buf = self._buf.split(b"\n")
            for raw in lines:
                self.add(raw)
            if len(self._buf) > 65536:
                self._buf = b""
        if self._buf:
            self.add(self._buf)
            self._buf = b""

    def add(self, raw: bytes) -> None:
        line = clean(raw)
        if line:
            self.lines.append(line)
            self._log(line)

    def _log(self, line: str) -> None:
        limit = self._per_second()
        second = int(time.monotonic())
        start, count = self._budget
        if start != second:
            if count > limit:
                log.warning("appserver_stderr_suppressed", lines=count - limit)
            self._budget = (second, 1)
        else:
            self._budget = (start, count + 1)
        if self._budget[1] <= limit:
            getattr(log, level_of(line))("appserver_stderr", line=line)
