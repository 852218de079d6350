"""The systemd notify protocol, spoken directly (no libsystemd): one datagram per message.

``NOTIFY_SOCKET`` names a Unix datagram socket (a leading ``@`` means the abstract namespace).
When it is unset every call is a no-op, so the daemon can call these unconditionally.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("codexd.sdnotify")


class Notifier:
    """Sends ``READY=1``, ``STATUS=…``, ``STOPPING=1`` and ``WATCHDOG=1`` to the service manager."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr: str | None = None
        if addr.startswith("@"):
            self._addr = "\0" + addr[1:]
        elif addr.startswith("/"):
            self._addr = addr
        self._sock: socket.socket | None = None
        if self._addr is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        self.watchdog_seconds = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> None:
        """Send one message made of ``KEY=VALUE`` lines; failures are logged, never raised."""
        if self._sock is None or self._addr is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._addr)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The interval at which to ping: half of ``WATCHDOG_USEC``, if it is meant for us."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
