"""Where notifications go: a program, the desktop, a webhook. Each ``send`` raises on failure
(the service logs and counts it) and is run under the service's timeout.

- **program**: ``notify.program`` plus the JSON payload as its last argument, as Codex's
  ``notify = [...]`` runs it (stdin, stdout: /dev/null; the stderr tail is logged on failure).
  Runs in its own process group; the whole group is killed when the timeout ends it.
- **desktop**: on Linux the freedesktop ``org.freedesktop.Notifications`` service on the
  session bus (jeepney, natively on trio); a follow-up (an approval answered) replaces the first
  notification. On macOS ``osascript`` (the title and body passed as arguments, never spliced
  into the script).
- **webhook**: an HTTP POST of the payload (httpx) with ``X-Codexd-Event``,
  ``X-Codexd-Timestamp`` and ``X-Codexd-Signature: sha256=<hex>``, the HMAC-SHA256 of
  ``timestamp + "." + body`` with ``notify.webhook_secret``. Any non-2xx answer is a failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Any, Protocol

import trio

from codexd.notify.payloads import Payload


class ChannelError(Exception):
    """A notification could not be delivered (the message says why and what to check)."""


class Channel(Protocol):
    name: str

    async def send(self, payload: Payload, key: str | None) -> None: ...


def encode(payload: Payload) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class ProgramChannel:
    name = "program"

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    async def send(self, payload: Payload, key: str | None) -> None:
        argv = [*self.argv, encode(payload).decode()]

        async def kill_group(proc: trio.Process) -> None:
            # The hook and anything it started: TERM, a moment, then KILL.
            for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 0.0)):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    return
                with trio.move_on_after(wait):
                    await proc.wait()
                    return

        try:
            result = await trio.run_process(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, capture_stderr=True,
                check=False, start_new_session=True, deliver_cancel=kill_group)
        except OSError as exc:
            raise ChannelError(f"cannot run {self.argv[0]}: {exc.strerror or exc} "
                               "(check notify.program)") from exc
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise ChannelError(f"{self.argv[0]} exited with {result.returncode}"
                               + (": " + " | ".join(tail) if tail else ""))


_NOTIFICATIONS = ("/org/freedesktop/Notifications", "org.freedesktop.Notifications",
                  "org.freedesktop.Notifications")


def session_bus_present() -> bool:
    """Whether a D-Bus session bus is there to talk to (macOS needs none: osascript)."""
    return sys.platform == "darwin" or bool(os.environ.get("DBUS_SESSION_BUS_ADDRESS")) or \
        os.path.exists(f"/run/user/{os.getuid()}/bus")


class DesktopChannel:
    name = "desktop"

    def __init__(self) -> None:
        #: A notification's key → the id the desktop gave it (so a follow-up replaces it).
        self._ids: OrderedDict[str, int] = OrderedDict()

    async def send(self, payload: Payload, key: str | None) -> None:
        title, body = str(payload.get("title", "codexd")), str(payload.get("body", ""))
        if sys.platform == "darwin":
            await self._osascript(title, body)
            return
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.trio import open_dbus_router
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg

        if not session_bus_present():
            raise ChannelError("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset): "
                               "desktop notifications need a graphical session")
        replaces = self._ids.get(key, 0) if key else 0
        urgency = 2 if payload.get("event") in ("approval", "breaker-open") and \
            payload.get("type") != "approval-resolved" else 1
        path, bus_name, interface = _NOTIFICATIONS
        msg = new_method_call(
            DBusAddress(path, bus_name=bus_name, interface=interface), "Notify", "susssasa{sv}i",
            ("codexd", replaces, "", title, body, [], {"urgency": ("y", urgency)}, -1))
        try:
            async with open_dbus_router(bus="SESSION") as router:
                reply = await router.send_and_get_reply(msg)
            (nid,) = unwrap_msg(reply)
        except DBusErrorResponse as exc:
            raise ChannelError(f"the desktop refused the notification: {exc.name} "
                               "(is a notification daemon running?)") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise ChannelError(f"cannot reach the D-Bus session bus: {exc}") from exc
        if key:
            self._ids[key] = int(nid)
            while len(self._ids) > 1000:
                self._ids.popitem(last=False)

    async def _osascript(self, title: str, body: str) -> None:
        script = ["-e", "on run argv", "-e",
                  "display notification (item 2 of argv) with title (item 1 of argv)",
                  "-e", "end run"]
        result = await trio.run_process(["osascript", *script, title, body],
                                        capture_stderr=True, check=False,
                                        stdout=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ChannelError("osascript failed: " + result.stderr.decode(errors="replace"))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Codexd-Signature`` value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret

    async def send(self, payload: Payload, key: str | None) -> None:
        import httpx

        body = encode(payload)
        stamp = str(int(time.time()))
        headers: dict[str, Any] = {"content-type": "application/json",
                                   "user-agent": "codexd-notify",
                                   "x-codexd-event": str(payload.get("type", "")),
                                   "x-codexd-timestamp": stamp}
        if self.secret:
            headers["x-codexd-signature"] = signature(self.secret, stamp, body)
        try:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                resp = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ChannelError(f"POST {_safe(self.url)} failed: {exc}") from exc
        if not 200 <= resp.status_code < 300:
            raise ChannelError(f"POST {_safe(self.url)} answered {resp.status_code}")


def _safe(url: str) -> str:
    """The URL without its query (which may hold a token) or user info."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
