"""The Unix-socket listener: binding safely, the single-instance lock, the peer check, and
accepting clients (each handed on as an :class:`NdjsonTransport`).

Binding order (each step guards the next): create the socket folder 0700, take an exclusive
``flock`` on ``<socket>.lock`` (a live daemon holding it means we exit, naming its pid), remove a
stale socket file if nothing answers on it, bind with a 0177 umask and chmod the socket 0600.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import socket as stdsocket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
import trio

from codexd import faults
from codexd.errors import AlreadyRunning, CodexdError, ErrorCode
from codexd.paths import MAX_SOCKET_PATH
from codexd.transport.base import Transport
from codexd.transport.ndjson import NdjsonTransport
from codexd.transport.peercred import PeerCred, peer_credentials

log = structlog.get_logger("codexd.transport")


class InstanceLock:
    """An exclusive ``flock`` held for the daemon's lifetime; the file holds our pid.

    The kernel drops the lock when the process dies, however it dies, so a stale lock file never
    blocks a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> str | None:
        """Take the lock without waiting: None when taken, else the holder's pid (as text)."""
        if self._fd is not None:
            return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return None

    def acquire(self, socket_path: Path) -> None:
        pid = self.try_acquire()
        if pid is not None:
            raise AlreadyRunning(
                f"codexd is already running (pid {pid}) on socket {socket_path}; "
                "stop it first (codexctl shutdown) or use another --socket"
            )

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def prepare_socket_dir(socket_path: Path) -> None:
    """Create the socket's folder 0700 (or check an existing one is ours and private)."""
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise CodexdError(
            f"socket path is {len(os.fsencode(socket_path))} bytes, over the system limit of "
            f"{MAX_SOCKET_PATH}: {socket_path}; choose a shorter --socket"
        )
    folder = socket_path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise CodexdError(f"socket folder {folder} belongs to uid {st.st_uid}, not to us")
    if stat.S_IMODE(st.st_mode) & 0o077 and folder.name == "codexd":
        # Our own folder: make it private. A user-chosen shared folder is left alone; the
        # socket itself is 0600 and the peer check refuses other users either way.
        folder.chmod(0o700)


def remove_stale_socket(socket_path: Path) -> None:
    """Remove a socket file nothing listens on; refuse to touch anything else."""
    try:
        st = socket_path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise CodexdError(f"{socket_path} exists and is not a socket; move it away")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.connect(str(socket_path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise CodexdError(f"cannot probe existing socket {socket_path}: {exc}") from None
        log.info("stale_socket_removed", socket=str(socket_path))
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
    else:
        raise CodexdError(
            f"another process is listening on {socket_path} without holding its lock; "
            "stop it or choose another --socket"
        )
    finally:
        probe.close()


async def bind_listener(socket_path: Path, backlog: int = 256) -> trio.SocketListener:
    """Bind and listen on ``socket_path`` (mode 0600). The caller holds the instance lock."""
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(str(socket_path))
    except OSError as exc:
        sock.close()
        raise CodexdError(f"cannot bind {socket_path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(socket_path, 0o600)
    sock.listen(backlog)
    return trio.SocketListener(sock)


def check_peer(stream: trio.SocketStream) -> tuple[bool, PeerCred | None]:
    """Whether the peer runs as our uid (root is not special: a per-user daemon is per-user)."""
    try:
        cred = peer_credentials(stream.socket)
    except OSError as exc:
        log.warning("peer_credentials_unavailable", error=str(exc))
        return False, None
    return cred.uid == os.getuid(), cred


Serve = Callable[[Transport], Awaitable[None]]


class UnixListener:
    """Accepts clients on a bound socket until cancelled; each one that passes the peer check
    is served as ``serve(NdjsonTransport)`` in the ``clients`` nursery.

    Out of file descriptors (EMFILE), a spare fd kept open for the purpose is given up to accept
    the waiting client and tell it why, instead of leaving it in the backlog learning nothing.
    """

    def __init__(self, listener: trio.SocketListener, serve: Serve) -> None:
        self._listener = listener
        self._serve = serve
        self._spare_fd = -1
        self._take_spare()

    async def run(self, clients: trio.Nursery) -> None:
        try:
            async with self._listener:
                while True:
                    try:
                        stream = await self._listener.accept()
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._spare_fd >= 0:
                            await self._refuse_for_fds(clients)
                            continue
                        # Anything else: do not spin, do not die.
                        log.error("accept_failed", error=str(exc))
                        await trio.sleep(0.1)
                        continue
                    faults.inject("daemon.accept")
                    clients.start_soon(self._checked, stream)
        finally:
            if self._spare_fd >= 0:
                os.close(self._spare_fd)
                self._spare_fd = -1

    async def _checked(self, stream: trio.SocketStream) -> None:
        ok, peer = check_peer(stream)
        transport = NdjsonTransport(stream, peer)
        if not ok:
            log.warning(
                "peer_refused", peer_uid=peer.uid if peer else None,
                peer_pid=peer.pid if peer else None, our_uid=os.getuid(),
            )
            await transport.refuse(ErrorCode.PEER_REFUSED,
                                   "connection refused: codexd serves only its own user")
            return
        await self._serve(transport)

    async def _refuse_for_fds(self, clients: trio.Nursery) -> None:
        """Out of fds: give the spare one up to accept the waiting client, tell it why, close
        it, and take the spare back.

        If the spare can be taken back while the client is held, fds are free again (others
        were closed meanwhile): the client is served, not refused.
        """
        os.close(self._spare_fd)
        self._spare_fd = -1
        try:
            with trio.move_on_after(1):
                stream = await self._listener.accept()
                if self._take_spare():
                    clients.start_soon(self._checked, stream)
                    return
                limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                log.error("client_refused", reason="out_of_fds", fd_limit=limit)
                await NdjsonTransport(stream, None).refuse(
                    ErrorCode.TOO_MANY_CLIENTS,
                    f"codexd is out of file descriptors (limit {limit}); close some clients "
                    "or terminals, or raise LimitNOFILE")
        except OSError as exc:
            log.error("accept_failed", error=str(exc))
            await trio.sleep(0.1)
        finally:
            self._take_spare()

    def _take_spare(self) -> bool:
        if self._spare_fd < 0:
            try:
                self._spare_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        return True
