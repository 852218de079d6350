"""Provider runs from a test: a daemon with the real CLIs against the fake model server
(:class:`Env`), the fault-injection CLI, waiting for a run to end, its events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codexd.client import Client
from tests.fake_model import FakeModel, write_codex_home
from tests.helpers import eventually, require_cli
from tests.helpers.daemon import make_daemon

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


CLAUDE_TOKEN = "sk-ant-api03-" + "Zq8" * 12


class Env:
    def __init__(self, base: Path, extra_config: str = "", release: str = "current",
                 env: dict[str, str] | None = None) -> None:
        codex = require_cli("codex", release)
        self.release = release
        if release != "current":  # the previous pins, for both providers
            extra_config = (f'codex_command = "{codex}"\n'
                            f'claude_command = "{require_cli("claude", release)}"\n'
                            + extra_config)
        self.base = base
        self.model = FakeModel().start()
        self.codex_home = write_codex_home(base / "codex-home", self.model.base_url)
        self.ws = base / "ws"
        self.ws.mkdir()
        (base / "home").mkdir()
        self.daemon = make_daemon(base, config=(
            f'[runs]\ncodex_home = "{self.codex_home}"\nsecret_store = "file"\n'
            + extra_config), env={"HOME": str(base / "home"), **(env or {})})

    @property
    def claude_env(self) -> dict[str, str]:
        require_cli("claude")
        return {"ANTHROPIC_BASE_URL": self.model.base_url[:-3]}

    def close(self) -> None:
        self.daemon.stop()
        self.model.stop()
