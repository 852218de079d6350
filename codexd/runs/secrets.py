"""Provider tokens: the OS keyring through ``keyring``, or a 0600 file in the state dir.

``mode`` is ``keyring``, ``file`` or ``auto`` (keyring when a usable backend exists, else the
file; ``daemon/status`` says which). Tokens are read only to put them into a child's environment
and into the redaction list; they are never logged, returned or exported.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import keyring
import keyring.errors
import structlog

log = structlog.get_logger("codexd.secrets")
SERVICE = "codexd"


def keyring_usable() -> tuple[bool, str]:
    """(usable, backend name). The fail and null backends are not usable."""
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # a broken keyring configuration
        return False, f"error: {exc}"
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    priority = getattr(backend, "priority", 0)
    if "fail" in name or "null" in name.lower() or (isinstance(priority, (int, float))
                                                   and priority <= 0):
        return False, name
    return True, name


class SecretStore:
    def __init__(self, mode: str, state_dir: Path) -> None:
        self.file = state_dir / "secrets.json"
        usable, self.backend = keyring_usable()
        if mode == "keyring" or (mode == "auto" and usable):
            self.kind = "keyring"
        else:
            self.kind = "file"
        self.fallback = mode == "auto" and not usable
        self._cache: dict[str, str | None] = {}

    def describe(self) -> str:
        if self.kind == "keyring":
            return f"keyring ({self.backend})"
        why = " (no keyring backend; auto fell back to the file)" if self.fallback else ""
        return f"file {self.file}{why}"

    def _read_file(self) -> dict[str, str]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_file(self, data: dict[str, str]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.file.parent, 0o700)
        tmp = self.file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.file)

    def get(self, provider: str) -> str | None:
        """Blocking (keyring may talk D-Bus): call from a worker thread."""
        if provider in self._cache:
            return self._cache[provider]
        if self.kind == "keyring":
            try:
                value = keyring.get_password(SERVICE, provider)
            except keyring.errors.KeyringError as exc:
                log.error("keyring_read_failed", provider=provider, error=type(exc).__name__)
                value = None
        else:
            value = self._read_file().get(provider)
        self._cache[provider] = value
        return value

    def set(self, provider: str, token: str) -> None:
        if self.kind == "keyring":
            keyring.set_password(SERVICE, provider, token)
        else:
            data = self._read_file()
            data[provider] = token
            self._write_file(data)
        self._cache[provider] = token

    def clear(self, provider: str) -> None:
        if self.kind == "keyring":
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                keyring.delete_password(SERVICE, provider)
        else:
            data = self._read_file()
            if data.pop(provider, None) is not None:
                self._write_file(data)
        self._cache[provider] = None

    def known(self) -> list[str]:
        """Tokens already read (for redaction without touching the backend)."""
        return [v for v in self._cache.values() if v]
