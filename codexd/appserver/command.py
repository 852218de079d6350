"""Which `codex` to start as the app-server, with which arguments and environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from codexd.config import AppServerSection
from codexd.errors import CodexdError

_PROJECT_CODEX = Path(__file__).resolve().parents[2] / ".tools" / "npm" / "node_modules" / ".bin"


def resolve_command(cfg: AppServerSection) -> list[str]:
    """The argv to start the app-server with (raises when no codex can be found)."""
    exe = cfg.command
    if not exe:
        exe = shutil.which("codex") or ""
        if not exe and (_PROJECT_CODEX / "codex").exists():
            exe = str(_PROJECT_CODEX / "codex")
    elif os.sep not in exe:
        exe = shutil.which(exe) or exe
    if not exe:
        raise CodexdError(
            "codex not found: install it (npm install -g @openai/codex) or set "
            "appserver.command in config.toml"
        )
    argv = [exe, *cfg.args]
    for override in cfg.config_overrides:
        argv += ["-c", override]
    return argv


def codex_home(cfg: AppServerSection) -> Path:
    """The app-server's CODEX_HOME: ``appserver.codex_home``, $CODEX_HOME, else ~/.codex."""
    value = cfg.codex_home or os.environ.get("CODEX_HOME", "")
    return Path(value).expanduser() if value else Path.home() / ".codex"


def child_cwd(cfg: AppServerSection) -> str:
    """The app-server's working directory: ``appserver.cwd``, else the home directory."""
    return os.path.expanduser(cfg.cwd or "~")


def child_env(cfg: AppServerSection) -> dict[str, str]:
    env = dict(os.environ)
    if cfg.codex_home:
        env["CODEX_HOME"] = os.path.expanduser(cfg.codex_home)
    return env
