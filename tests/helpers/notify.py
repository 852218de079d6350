"""Where a test's notifications land: a notify program that records its payloads, a loopback
webhook receiver that checks the signature, and a real D-Bus session bus with a notification
service on it (the freedesktop interface, served with jeepney)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.helpers import eventually

HOOK = '''\
import json, os, subprocess, sys, time
out, mode, payload = sys.argv[1], sys.argv[2], sys.argv[-1]
json.loads(payload)  # a payload that is not JSON fails the hook (and the test)
if mode == "hang":
    child = subprocess.Popen(["sleep", "600"])
    with open(out + ".pids", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)
if mode == "fail":
    print("the hook is broken today", file=sys.stderr)
    sys.exit(3)
with open(out, "a") as f:
    f.write(payload + "\\n")
'''


class Recorder:
    """``notify.program`` = this: each payload (its last argument) appended to a file."""

    def __init__(self, base: Path, mode: str = "record") -> None:
        self.script = base / "notify_hook.py"
        self.script.write_text(HOOK)
        self.out = base / "notified.jsonl"
        self.mode = mode

    @property
    def argv(self) -> list[str]:
        return [sys.executable, str(self.script), str(self.out), self.mode]

    def toml(self) -> str:
        return "program = " + json.dumps(self.argv)

    def payloads(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait(self, kind: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """The payloads of this ``type``, once there are ``count`` of them."""
        found: list[dict[str, Any]] = eventually(
            lambda: (lambda got: got if len(got) >= count else None)(
                [p for p in self.payloads() if p["type"] == kind]),
            timeout, what=f"{count} {kind} notification(s) from the program", interval=0.05)
        return found

    def pids(self) -> list[int]:
        path = Path(str(self.out) + ".pids")
        return [int(p) for p in path.read_text().split()] if path.exists() else []


class Webhook:
    """A loopback HTTP receiver; every POST is kept with whether its signature was right."""

    def __init__(self, secret: str, status: int = 204) -> None:
        self.secret = secret
        self.status = status
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stamp = self.headers.get("X-Codexd-Timestamp", "")
                mac = hmac.new(hook.secret.encode(), stamp.encode() + b"." + body,
                               hashlib.sha256).hexdigest()
                hook.received.append({
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "payload": json.loads(body),
                    "signed": hmac.compare_digest(self.headers.get("X-Codexd-Signature", ""),
                                                  "sha256=" + mac),
                    "fresh": abs(time.time() - int(stamp or 0)) < 300,
                })
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/codexd"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def toml(self) -> str:
        return f'webhook_url = "{self.url}"\nwebhook_secret = "{self.secret}"'

    def payloads(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.received if kind in (None, r["payload"]["type"])]

    def wait(self, kind: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = eventually(
            lambda: (lambda got: got if len(got) >= count else None)(self.payloads(kind)),
            timeout, what=f"{count} {kind} webhook(s)", interval=0.05)
        return found

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Desktop:
    """``dbus-daemon --session`` on a private socket, and an ``org.freedesktop.Notifications``
    service on it that records every Notify call and answers with a new id."""

    def __init__(self, base: Path) -> None:
        import shutil

        import pytest

        if shutil.which("dbus-daemon") is None:
            pytest.skip("dbus-daemon is not installed (make system-deps installs Debian's dbus)")
        from jeepney import HeaderFields, MessageType, new_error, new_method_return
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self._bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1",
             f"--address=unix:path={base / 'bus'}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._bus.stdout is not None
        self.address = self._bus.stdout.readline().strip()
        assert self.address, "dbus-daemon did not start"
        self.calls: list[dict[str, Any]] = []
        self._stop = threading.Event()
        conn = open_dbus_connection(bus=self.address)
        reply = conn.send_and_get_reply(message_bus.RequestName(
            "org.freedesktop.Notifications", 4))  # DO_NOT_QUEUE
        assert reply.body == (1,), reply.body  # PRIMARY_OWNER

        def serve() -> None:
            next_id = 100
            while not self._stop.is_set():
                try:
                    msg = conn.receive(timeout=0.1)
                except TimeoutError:
                    continue
                if msg.header.message_type != MessageType.method_call:
                    continue
                member = msg.header.fields.get(HeaderFields.member)
                if member == "Notify":
                    next_id += 1
                    app, replaces, _icon, summary, body, _actions, hints, expire = msg.body
                    self.calls.append({"app": app, "replaces": replaces, "summary": summary,
                                       "body": body, "hints": dict(hints), "id": next_id,
                                       "expire": expire})
                    conn.send(new_method_return(msg, "u", (next_id,)))
                else:
                    conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
            conn.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def wait(self, summary_start: str, count: int = 1,
             timeout: float = 30) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = eventually(
            lambda: (lambda got: got if len(got) >= count else None)(
                [c for c in self.calls if c["summary"].startswith(summary_start)]),
            timeout, what=f"{count} desktop notification(s) '{summary_start}…'", interval=0.05)
        return found

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._bus.terminate()
        self._bus.wait(5)
        assert self._bus.stdout is not None
        self._bus.stdout.close()
