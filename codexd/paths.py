"""Where codexd keeps its socket, state and config, per the XDG base directory spec.

Linux: socket ``$XDG_RUNTIME_DIR/codexd/codexd.sock``, state ``$XDG_STATE_HOME/codexd``
(default ``~/.local/state/codexd``), config ``$XDG_CONFIG_HOME/codexd/config.toml`` (default
``~/.config/codexd/config.toml``). Without ``XDG_RUNTIME_DIR`` the socket goes to
``<state dir>/run/codexd.sock``. macOS: state ``~/Library/Application Support/codexd``, config
``~/Library/Application Support/codexd/config.toml`` unless the XDG variables are set, socket
under ``$XDG_RUNTIME_DIR`` when set, else ``<state dir>/run``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "codexd"
SOCKET_NAME = "codexd.sock"
#: The app-server wire's socket, beside codexd's unless appserver.socket says otherwise.
WIRE_SOCKET_NAME = "app-server.sock"
DB_NAME = "codexd.db"

# sun_path is 108 bytes on Linux and 104 on macOS, including the terminating NUL.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    # The XDG spec says relative paths are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return None


def _macos() -> bool:
    return sys.platform == "darwin"


def default_state_dir() -> Path:
    if env := os.environ.get("CODEXD_STATE_DIR"):
        return Path(env).expanduser()
    if xdg := _env_path("XDG_STATE_HOME"):
        return xdg / APP
    if _macos():
        return Path.home() / "Library" / "Application Support" / APP
    return Path.home() / ".local" / "state" / APP


def default_config_file() -> Path:
    if env := os.environ.get("CODEXD_CONFIG"):
        return Path(env).expanduser()
    if xdg := _env_path("XDG_CONFIG_HOME"):
        return xdg / APP / "config.toml"
    if _macos():
        return Path.home() / "Library" / "Application Support" / APP / "config.toml"
    return Path.home() / ".config" / APP / "config.toml"


def default_socket(state_dir: Path | None = None) -> Path:
    """The socket path a client or daemon uses when none is given.

    ``CODEXD_SOCKET`` wins; then ``$XDG_RUNTIME_DIR/codexd/codexd.sock``; then a folder under the
    state dir (the runtime dir is the right place: it is per-user, 0700 and cleared on logout).
    """
    if env := os.environ.get("CODEXD_SOCKET"):
        return Path(env).expanduser()
    if runtime := _env_path("XDG_RUNTIME_DIR"):
        return runtime / APP / SOCKET_NAME
    return (state_dir or default_state_dir()) / "run" / SOCKET_NAME


def lock_file_for(socket_path: Path) -> Path:
    """The single-instance lock lives beside the socket: one daemon per socket."""
    return socket_path.with_name(socket_path.name + ".lock")
