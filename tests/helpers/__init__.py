"""Helpers shared by tests (never imported from conftest or from another test file)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(pred: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.02) -> T:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T = pred()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
        last = pred()
    return last


def log_events(log_path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The daemon's JSON log lines (optionally one event's); a non-JSON line fails the test."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise AssertionError(f"a log line is not JSON: {line[:300]!r}") from None
        if event is None or rec.get("event") == event:
            out.append(rec)
    return out


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def require_cli(name: str, release: str = "current") -> str:
    """The pinned agent CLI's path (the project-local one first, as the daemon finds it); skip
    (with the reason and the fix) when it is not installed. ``release="previous"``: the
    previous pin, from .tools/npm-previous (the provider tests' version matrix)."""
    import shutil

    import pytest

    folder = "npm" if release == "current" else "npm-previous"
    local = Path(__file__).resolve().parents[2] / ".tools" / folder / "node_modules" / ".bin"
    if (local / name).exists():
        return str(local / name)
    if release != "current":
        pytest.skip(f"the previous pinned `{name}` is not installed; `make test` installs it "
                    "into .tools/npm-previous (npm needed)")
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"the pinned `{name}` CLI is not installed; `make test` installs it into "
                    ".tools/npm (npm needed)")
    return found


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate (and its key) for 127.0.0.1 and localhost, valid for a day."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:"
                    "localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key
