"""A real ``codexd run`` subprocess on a private socket and state dir, and a bridge to the real
`codex app-server` against a fake model server: what the end-to-end tests drive."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from codexd.client import Client

ROOT = Path(__file__).resolve().parents[2]


def short_tempdir() -> Path:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix="cxd-", dir="/tmp"))


def daemon_env(base: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    drop = ("CODEXD_", "NOTIFY_", "WATCHDOG_", "LISTEN_", "JOURNAL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["XDG_CONFIG_HOME"] = str(base / "config")
    env["XDG_STATE_HOME"] = str(base / "xdgstate")
    env["XDG_RUNTIME_DIR"] = str(base / "xdgrun")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class DaemonProc:
    base: Path
    socket: Path
    state_dir: Path
    log_path: Path
    env: dict[str, str]
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    _log_file: object = field(default=None, repr=False)

    def start(self, *, wait: bool = True, timeout: float = 15.0) -> DaemonProc:
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codexd", "run", "--socket", str(self.socket),
             "--state-dir", str(self.state_dir), "--log-format", "json", *self.args],
            env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"codexd exited with {self.proc.returncode}:\n{self.log()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.socket))
                return
            except OSError:
                time.sleep(0.02)
            finally:
                s.close()
        raise AssertionError(f"codexd did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kw: object) -> Client:
        return Client.connect(self.socket, **kw)  # type: ignore[arg-type]

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "codexd.cli.codexctl", "--socket", str(self.socket), *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        return self.proc.returncode


def make_daemon(base: Path, *, config: str | None = None, args: list[str] | None = None,
                env: dict[str, str] | None = None) -> DaemonProc:
    """A daemon on a private socket and state dir. Without an [appserver] section in ``config``
    the app-server is disabled: tests of codexd's own methods need no codex process."""
    config = config or ""
    if "[appserver]" not in config:
        config = "[appserver]\nenabled = false\n" + config
    if "[websocket]" not in config:  # any free port: tests never take a user's 4870
        config += '\n[websocket]\nlisten = "127.0.0.1:0"\n'
    if "[automations]" not in config:  # never the user's ~/.codex/automations
        config += f'\n[automations]\ncodex_home = "{base / "codex-home"}"\n'

    (base / "config" / "codexd").mkdir(parents=True, exist_ok=True)
    (base / "config" / "codexd" / "config.toml").write_text(config)
    return DaemonProc(
        base=base,
        socket=base / "run" / "codexd.sock",
        state_dir=base / "state",
        log_path=base / "daemon.log",
        env=daemon_env(base, env),
        args=list(args or []),
    )


@dataclass
class Bridge:
    """A daemon supervising the real `codex app-server` against a fake model server."""

    daemon: DaemonProc
    model: object
    codex_home: Path
    workspace: Path

    def client(self, *, server_requests: bool = False, name: str = "test") -> Client:
        c = Client.connect(self.daemon.socket, client_name=name, initialize=False)
        caps = {"serverRequests": True} if server_requests else {}
        c.server_info = c.call("initialize", {"clientInfo": {"name": name},
                                              "capabilities": caps})
        c.notify("initialized")
        return c


def make_bridge(base: Path, extra_config: str = "") -> Bridge:
    from tests.fake_model import FakeModel, write_codex_home
    from tests.helpers import require_cli

    require_cli("codex")

    model = FakeModel().start()
    home = write_codex_home(base / "codex-home", model.base_url)
    workspace = base / "ws"
    workspace.mkdir()
    # The agent's commands run in login shells (bash -lc): give them a clean HOME so the
    # machine's own profile (pyenv init, ...) cannot slow or hang them.
    (base / "home").mkdir()
    d = make_daemon(base, config=(
        f'[appserver]\nenabled = true\ncodex_home = "{home}"\n{extra_config}'),
        env={"HOME": str(base / "home")})
    return Bridge(daemon=d, model=model, codex_home=home, workspace=workspace)
