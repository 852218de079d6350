"""The daemon process: single instance, signals, sd_notify, crash safety, config, peer check."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from codexd.client import ConnectionClosed, DaemonUnreachable
from codexd.errors import ErrorCode
from tests.helpers.daemon import make_daemon


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "codexd", "--version"], capture_output=True,
                         text=True, timeout=30, check=True)
    from codexd import __version__

    assert out.stdout.strip() == f"codexd {__version__}"


def test_second_instance_is_refused_naming_socket_and_pid(daemon):
    second = subprocess.run(
        [sys.executable, "-m", "codexd", "run", "--socket", str(daemon.socket),
         "--state-dir", str(daemon.state_dir)],
        env=daemon.env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert second.returncode == 1
    assert str(daemon.socket) in second.stderr
    assert f"pid {daemon.proc.pid}" in second.stderr
    with daemon.client() as c:  # the first one is unharmed
        assert c.call("daemon/health")["ok"]


def test_stale_socket_file_is_removed(short_tmp):
    d = make_daemon(short_tmp)
    d.socket.parent.mkdir(parents=True, mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(d.socket))  # bound, never listening: connect is refused
    dead.close()
    d.start()
    try:
        with d.client() as c:
            assert c.call("daemon/health")["ok"]
        assert "stale_socket_removed" in d.log()
    finally:
        d.stop()


def test_sigterm_tells_clients_and_removes_the_socket(daemon):
    c = daemon.client()
    try:
        daemon.signal(signal.SIGTERM)
        note = c.next_notification(timeout=10)
        assert note.method == "daemon/shuttingDown"
        assert note.params["reason"] == "signal SIGTERM"
        assert note.params["graceSeconds"] == 5.0
        assert daemon.wait() == 0
    finally:
        c.close()
    assert not daemon.socket.exists()
    assert not (daemon.socket.parent / "codexd.sock.lock").exists()
    log = daemon.log()
    assert "daemon_stopping" in log and "daemon_stopped" in log


def test_shutdown_method_answers_first_then_stops(daemon):
    out = daemon.ctl("shutdown", "--json", "--reason", "test")
    assert out.returncode == 0, out.stderr
    assert '"stopping": true' in out.stdout
    assert daemon.wait() == 0
    assert not daemon.socket.exists()
    assert daemon.ctl("status").returncode == 3


def test_requests_during_shutdown_get_a_clear_error(short_tmp):
    d = make_daemon(short_tmp, config="[daemon]\nshutdown_grace_seconds = 3\n").start()
    try:
        # A client with output still queued keeps the daemon in its grace period: 50 answers
        # of 100 kB each, far more than the socket buffers hold, to a client that never reads.
        c = d.client()
        c.call("atom/set", {"key": "k", "value": "v" * 100_000})
        hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(str(d.socket))
        hog.sendall(b'{"id":0,"method":"initialize","params":{"clientInfo":{"name":"h"}}}\n'
                    + b'{"id":1,"method":"atom/list"}\n' * 50)
        time.sleep(0.3)
        d.signal(signal.SIGTERM)
        assert c.next_notification(timeout=10).method == "daemon/shuttingDown"
        with pytest.raises(Exception) as info:
            c.call("atom/get", {"key": "k"})
        assert getattr(info.value, "code", None) == ErrorCode.SHUTTING_DOWN
        assert c.call("daemon/status")["pid"] == d.proc.pid  # status stays answerable
        assert d.wait(20) == 0
        hog.close()
        c.close()
    finally:
        d.stop()


def test_sd_notify_ready_status_watchdog_stopping(short_tmp):
    notify_path = short_tmp / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(10)
    d = make_daemon(short_tmp, env={"NOTIFY_SOCKET": str(notify_path),
                                     "WATCHDOG_USEC": "200000"})
    d.start(wait=False)
    try:
        messages: list[str] = []

        def collect_until(pred) -> None:
            while not pred():
                messages.append(listener.recv(4096).decode())

        collect_until(lambda: any("READY=1" in m for m in messages))
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=serving on " + str(d.socket) in ready
        assert f"MAINPID={d.proc.pid}" in ready
        # The socket accepts clients once READY=1 was sent.
        with d.client() as c:
            assert c.call("daemon/health")["ok"]
        start = len(messages)
        collect_until(lambda: sum(m == "WATCHDOG=1" for m in messages[start:]) >= 3)
        d.signal(signal.SIGTERM)
        collect_until(lambda: any("STOPPING=1" in m for m in messages))
        assert d.wait() == 0
    finally:
        listener.close()
        d.stop()


def test_atoms_survive_restart(daemon):
    daemon.ctl("atoms", "set", "ui.layout", '{"sidebar": "left"}')
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    daemon.start()
    with daemon.client() as c:
        atom = c.call("atom/get", {"key": "ui.layout"})
        assert atom["value"] == {"sidebar": "left"} and atom["revision"] == 1


def test_acknowledged_writes_survive_kill_9_at_any_point(daemon):
    rng = random.Random(1234)
    for round_ in range(4):
        acked = -1
        stop = threading.Event()

        def writer(round_: int = round_, stop: threading.Event = stop) -> None:
            nonlocal acked
            try:
                with daemon.client(timeout=5) as c:
                    i = 0
                    while not stop.is_set():
                        c.call("atom/set", {"key": f"r{round_}", "value": i})
                        c.call("settings/update", {"patch": {"inboxRetentionDays": 1 + i % 3000}})
                        acked = i
                        i += 1
            except (ConnectionClosed, OSError):
                pass

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(rng.uniform(0.2, 0.6))
        daemon.proc.kill()
        daemon.wait()
        stop.set()
        t.join(10)
        assert acked >= 0
        daemon.start()
        assert "previous_run_unclean" in daemon.log()
        with daemon.client() as c:
            got = c.call("atom/get", {"key": f"r{round_}"})["value"]
            # Every acknowledged write is there (one more may have landed unacknowledged).
            assert got in (acked, acked + 1), (got, acked)
            days = c.call("settings/get")["settings"]["inboxRetentionDays"]
            assert days in (1 + acked % 3000, 1 + (acked + 1) % 3000), (days, acked)
            assert c.call("daemon/health")["ok"]


def test_config_errors_name_the_key(short_tmp):
    d = make_daemon(short_tmp, config="[rpc]\nmax_mesage_bytes = 10\n")
    out = subprocess.run([sys.executable, "-m", "codexd", "run", "--socket", str(d.socket)],
                         env=d.env, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2
    assert "rpc.max_mesage_bytes" in out.stderr and "unknown field" in out.stderr
    (short_tmp / "config" / "codexd" / "config.toml").write_text("[rpc]\nmax_message_bytes = 1\n")
    out = subprocess.run([sys.executable, "-m", "codexd", "run"], env=d.env,
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2 and "rpc.max_message_bytes" in out.stderr and ">= 1024" in out.stderr


def test_environment_overrides_paths(short_tmp):
    d = make_daemon(short_tmp)
    env = dict(d.env, CODEXD_SOCKET=str(short_tmp / "env.sock"),
               CODEXD_STATE_DIR=str(short_tmp / "envstate"))
    out = subprocess.run([sys.executable, "-m", "codexd", "config", "--json"], env=env,
                         capture_output=True, text=True, timeout=30, check=True)
    assert f'"socket":"{short_tmp}/env.sock"' in out.stdout
    assert f'"stateDir":"{short_tmp}/envstate"' in out.stdout


def test_default_paths_follow_xdg(short_tmp):
    d = make_daemon(short_tmp)
    out = subprocess.run([sys.executable, "-m", "codexd", "config", "--json"], env=d.env,
                         capture_output=True, text=True, timeout=30, check=True)
    assert f'"socket":"{short_tmp}/xdgrun/codexd/codexd.sock"' in out.stdout
    assert f'"stateDir":"{short_tmp}/xdgstate/codexd"' in out.stdout
    env = {k: v for k, v in d.env.items() if k != "XDG_RUNTIME_DIR"}
    out = subprocess.run([sys.executable, "-m", "codexd", "config", "--json"], env=env,
                         capture_output=True, text=True, timeout=30, check=True)
    assert f'"socket":"{short_tmp}/xdgstate/codexd/run/codexd.sock"' in out.stdout


def test_sighup_reloads_limits_for_live_connections(short_tmp, wire):
    d = make_daemon(short_tmp, config="[rpc]\nmax_message_bytes = 2048\n").start()
    try:
        w = wire(d)
        w.initialize()
        big = {"key": "k", "value": "x" * 4000}
        assert w.call("atom/set", big, rid=1)["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
        (short_tmp / "config" / "codexd" / "config.toml").write_text(
            "[appserver]\nenabled = false\n[rpc]\nmax_message_bytes = 65536\n"
            "[store]\nbusy_timeout_ms = 9000\n")
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "config_reloaded" not in d.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "result" in w.call("atom/set", big, rid=2)
        log = d.log()
        assert "config_needs_restart" in log and "store.busy_timeout_ms" in log
    finally:
        d.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user (nobody)")
def test_connections_from_another_uid_are_refused(daemon):
    if not shutil.which("python3", path="/usr/bin:/bin"):
        pytest.skip("no system python3 for the nobody client")
    # Defence in depth: even if the socket's permissions were opened up, another uid is refused.
    os.chmod(daemon.base, 0o755)
    os.chmod(daemon.socket.parent, 0o755)
    os.chmod(daemon.socket, 0o777)
    code = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);\n"
        "try: s.sendall(sys.argv[2].encode())\n"
        "except BrokenPipeError: pass  # refused before we spoke\n"
        "s.settimeout(10); print(s.recv(4096).decode())"
    )
    hello = '{"id":1,"method":"initialize","params":{"clientInfo":{"name":"x"}}}\n'
    out = subprocess.run(["/usr/bin/python3", "-c", code, str(daemon.socket), hello],
                         user="nobody",
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert str(int(ErrorCode.PEER_REFUSED)) in out.stdout
    assert "only its own user" in out.stdout
    assert "peer_refused" in daemon.log()
    with daemon.client() as c:
        assert c.call("daemon/health")["ok"]


def test_unreachable_daemon_error_says_how_to_start_it(short_tmp):
    with pytest.raises(DaemonUnreachable, match=r"codexd run.*systemctl --user start codexd"):
        make_daemon(short_tmp).client()


def test_database_locked_by_another_process_is_a_clear_retryable_error(daemon):
    import apsw

    holder = apsw.Connection(str(daemon.state_dir / "codexd.db"))
    holder.execute("BEGIN IMMEDIATE")  # e.g. a sqlite3 shell holding a write transaction
    try:
        with daemon.client() as c:
            with pytest.raises(Exception) as info:
                c.call("atom/set", {"key": "k", "value": 1})  # waits busy_timeout_ms (5 s)
            assert getattr(info.value, "code", None) == ErrorCode.STORE_BUSY
            assert "retry" in str(info.value)
            # Reads are not blocked by the writer's lock (WAL).
            assert c.call("atom/get", {"key": "k"})["exists"] is False
            holder.execute("ROLLBACK")
            assert c.call("atom/set", {"key": "k", "value": 1})["revision"] >= 1
    finally:
        holder.close()


def test_status_shows_how_long_the_start_took(daemon):
    with daemon.client() as c:
        startup = c.call("daemon/status")["startup"]
    # From exec: the socket first, then the scheduler; no app-server here (it is off).
    assert 0 < startup["socketBoundMs"] <= startup["schedulerLoadedMs"] < 60_000
    assert startup["appServerReadyMs"] is None
    out = daemon.ctl("status")
    assert out.returncode == 0 and "socket bound" in out.stdout and "after exec" in out.stdout
