"""The default control socket of a ``CODEX_HOME``, claimed for codexd on request.

``codex --remote unix://`` with no path (and ``codex app-server daemon``) use
``$CODEX_HOME/app-server-control/app-server-control.sock``. With ``appserver.control_socket =
true`` codexd makes that path a symlink to its own app-server wire socket, so those clients land
on codexd. It never takes the path from a live process: a socket there that answers means an
official app-server daemon holds it, and codexd says so and leaves it alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from codexd.errors import CodexdError

CONTROL_DIR = "app-server-control"
CONTROL_NAME = "app-server-control.sock"


def control_path(codex_home: Path) -> Path:
    return codex_home / CONTROL_DIR / CONTROL_NAME


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
    except OSError as exc:
        # EACCES and the like: something is there that we must not remove.
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK, errno.ELOOP)
    finally:
        probe.close()
    return True


def claim(codex_home: Path, target: Path) -> Path:
    """Point the control socket path at ``target``; returns the path.

    Raises:
        CodexdError: another process listens there (an official ``codex app-server daemon``),
            or the path is something else than a socket or a symlink.
    """
    path = control_path(codex_home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_symlink() and os.readlink(path) == str(target):
        return path  # ours (left by a crash): still right
    if path.exists() or path.is_symlink():
        if _answers(path):
            raise CodexdError(
                f"{path} is held by a running app-server (an official `codex app-server "
                "daemon`?); stop it to let codexd serve this CODEX_HOME's default socket, or "
                "set appserver.control_socket = false and use codexd's app-server.sock")
        if not (path.is_symlink() or path.is_socket()):
            raise CodexdError(f"{path} exists and is not a socket; move it away")
        path.unlink()  # stale: nothing answers
    os.symlink(target, path)
    return path


def release(path: Path, target: Path) -> None:
    """Remove the symlink if it is still ours."""
    with contextlib.suppress(OSError):
        if path.is_symlink() and os.readlink(path) == str(target):
            path.unlink()
