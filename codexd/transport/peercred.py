"""Who is on the other end of a Unix socket: SO_PEERCRED (Linux), LOCAL_PEERCRED (macOS/BSD)."""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass
from typing import Protocol


class _HasSockopt(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class PeerCred:
    uid: int
    gid: int | None
    pid: int | None


def peer_credentials(sock: _HasSockopt) -> PeerCred:
    """Read the connecting process's credentials (taken by the kernel at connect time).

    Raises:
        OSError: the platform offers no way to ask, or the socket is not AF_UNIX.
    """
    if sys.platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        return PeerCred(uid=uid, gid=gid, pid=pid)
    if sys.platform == "darwin" or "bsd" in sys.platform:
        # struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; }
        sol_local, local_peercred = 0, 0x001
        fmt = "IIh2x16I"
        raw = sock.getsockopt(sol_local, local_peercred, struct.calcsize(fmt))
        fields = struct.unpack(fmt, raw)
        return PeerCred(uid=fields[1], gid=fields[3] if fields[2] > 0 else None, pid=None)
    raise OSError(f"peer credentials are not supported on {sys.platform}")
