"""Socket activation: the listening sockets a service manager passed us (sd_listen_fds(3)).

systemd (a ``.socket`` unit, or ``systemd-socket-activate``) binds the sockets, starts codexd on
the first connection and passes them as fds 3, 4, … with ``LISTEN_FDS=N``, ``LISTEN_PID`` (ours,
or the fds are not meant for us) and optionally ``LISTEN_FDNAMES=a:b:…``. Each fd is claimed by
one listener:

* by name: ``ndjson`` (also ``codexd``), ``appserver``, ``websocket`` (the names the rendered
  units give with ``FileDescriptorName=``);
* otherwise by address: a Unix socket at the configured NDJSON or app-server path, a TCP
  socket for the WebSocket listener; a single remaining Unix socket is the NDJSON socket
  (``systemd-socket-activate -l PATH codexd run`` serves PATH).

The variables are removed from the environment once read, so no child inherits them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from codexd.errors import CodexdError

#: The first passed fd (SD_LISTEN_FDS_START).
FIRST_FD = 3
NAMES = {"ndjson": "ndjson", "codexd": "ndjson", "appserver": "appserver",
         "websocket": "websocket"}


@dataclass
class Passed:
    """The sockets passed to this process, by listener (empty when not socket-activated)."""

    ndjson: socket.socket | None = None
    appserver: socket.socket | None = None
    websocket: list[socket.socket] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.ndjson or self.appserver or self.websocket)

    def describe(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {}
        if self.ndjson:
            out["ndjson"] = _address(self.ndjson)
        if self.appserver:
            out["appserver"] = _address(self.appserver)
        if self.websocket:
            out["websocket"] = [_address(s) for s in self.websocket]
        return out

    def close(self) -> None:
        for s in [self.ndjson, self.appserver, *self.websocket]:
            if s is not None:
                s.close()


def _address(s: socket.socket) -> str:
    name = s.getsockname()
    if isinstance(name, str | bytes):
        return os.fsdecode(name) if name else "(unnamed)"
    host, port = name[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def take(environ: MutableMapping[str, str], *, ndjson_path: Path,
         appserver_path: Path | None) -> Passed:
    """Claim the passed sockets (none when ``LISTEN_PID`` is not ours). Raises CodexdError for
    a socket no listener can serve (a datagram socket, an unknown name, two for one listener)."""
    count = environ.pop("LISTEN_FDS", "")
    pid = environ.pop("LISTEN_PID", "")
    names_text = environ.pop("LISTEN_FDNAMES", "")
    if not count:
        return Passed()
    if pid and pid != str(os.getpid()):
        return Passed()  # meant for a parent that exec'd us without clearing them
    try:
        n = int(count)
    except ValueError:
        raise CodexdError(f"LISTEN_FDS={count!r} is not a number") from None
    names = names_text.split(":") if names_text else []
    passed = Passed()
    unclaimed: list[socket.socket] = []
    try:
        for i in range(n):
            fd = FIRST_FD + i
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
            if sock.type != socket.SOCK_STREAM:
                sock.close()
                raise CodexdError(f"passed fd {fd} is not a stream socket; codexd listens on "
                                  "stream sockets only (ListenStream=)")
            role = NAMES.get(names[i] if i < len(names) else "")
            if role is None:
                role = _by_address(sock, ndjson_path, appserver_path)
            if role is None:
                unclaimed.append(sock)
                continue
            _assign(passed, role, sock)
        for sock in unclaimed:
            if sock.family == socket.AF_UNIX and passed.ndjson is None:
                passed.ndjson = sock
            else:
                raise CodexdError(
                    f"passed socket {_address(sock)} is for no codexd listener; name it with "
                    "FileDescriptorName=ndjson, appserver or websocket")
    except BaseException:
        passed.close()
        for sock in unclaimed:
            sock.close()
        raise
    return passed


def _by_address(sock: socket.socket, ndjson_path: Path,
                appserver_path: Path | None) -> str | None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return "websocket"
    if sock.family != socket.AF_UNIX:
        return None
    path = _address(sock)
    if path == str(ndjson_path):
        return "ndjson"
    if appserver_path is not None and path == str(appserver_path):
        return "appserver"
    return None


def _assign(passed: Passed, role: str, sock: socket.socket) -> None:
    if role == "websocket":
        passed.websocket.append(sock)
        return
    if getattr(passed, role) is not None:
        raise CodexdError(f"two sockets were passed for the {role} listener; pass one")
    if sock.family != socket.AF_UNIX:
        raise CodexdError(f"the {role} listener needs a Unix socket, got {_address(sock)}")
    setattr(passed, role, sock)
