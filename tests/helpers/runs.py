"""Provider runs from a test: the fault-injection CLI, waiting for a run to end, its events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codexd.client import Client
from tests.helpers import eventually

FAKE_CLI = Path(__file__).resolve().parents[1] / "fake_cli.py"


def wait_done(c: Client, run_id: str, timeout: float = 90) -> dict[str, Any]:
    """The run, once it has ended."""
    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = c.call("run/get", {"runId": run_id})
        return None if run["status"] in ("queued", "running") else run

    run: dict[str, Any] = eventually(ended, timeout, what=f"run {run_id} to end",
                                     interval=0.05)
    return run


def events(c: Client, run_id: str) -> list[dict[str, Any]]:
    return c.call("run/events", {"runId": run_id})["events"]  # type: ignore[no-any-return]
