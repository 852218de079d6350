"""Driving the app-server bridge from a test: wait for ready, start threads and turns, wait for
notifications and pending approvals (each with a deadline)."""

from __future__ import annotations

import time
from typing import Any

from codexd.client import Client, ReceivedNotification
from tests.helpers import eventually


def wait_ready(c: Client, timeout: float = 30) -> None:
    eventually(lambda: c.call("daemon/appServer/status")["state"] == "ready", timeout,
               what="the app-server to be ready", interval=0.05)


def until(c: Client, pred: Any, timeout: float = 30) -> list[ReceivedNotification]:
    """Notifications up to and including the first that satisfies ``pred``."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        note = c.next_notification(timeout=max(0.1, deadline - time.monotonic()))
        seen.append(note)
        if pred(note):
            return seen


def wait_pending(c: Client, timeout: float = 30) -> list[dict[str, Any]]:
    """The pending server requests, once there is at least one."""
    pending: list[dict[str, Any]] = eventually(
        lambda: c.call("approval/list", {"status": "pending"})["approvals"], timeout,
        what="a server request", interval=0.05)
    return pending


def start_thread(c: Client, cwd: Any) -> str:
    return c.call("thread/start", {"cwd": str(cwd)})["thread"]["id"]


def start_turn(c: Client, thread_id: str, text: str) -> str:
    out = c.call("turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": text}]})
    return out["turn"]["id"]
