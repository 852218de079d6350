"""File-system helpers shared by the features that write user files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, *, mode: int | None = None,
                 prefix: str = ".codexd-") -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new, never half: a
    temporary file in the same folder, fsync, (chmod), rename, fsync of the folder."""
    folder = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def private_dir(path: str | Path) -> Path:
    """``path`` (and missing parents) as a folder only its owner can enter: 0700, whatever the
    umask, and tightened when it already existed."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(p, 0o700)
    return p
