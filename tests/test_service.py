"""codexd as a user service: the units `codexctl service` renders, installing and removing them,
socket activation, and logging under the journal.

There is no systemd PID 1 on these machines (containers), so `systemctl` and `loginctl` are
replaced by recording stubs; the rendered units are checked by the real `systemd-analyze
verify`, and socket activation is driven by the real `systemd-socket-activate`.
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import daemon_env, make_daemon

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (Debian: systemd)")
needs_activate = pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                                    reason="systemd-socket-activate is not installed")

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_CALLS"
case "$*" in
  *show-user*) echo no ;;
  *"show codexd.service -p MainPID"*) echo 0 ;;
  *"show codexd.service codexd.socket"*) cat "$STUB_SHOW" 2>/dev/null ;;
esac
exit 0
"""


@pytest.fixture
def home(short_tmp: Path) -> dict[str, str]:
    """A private HOME and XDG_CONFIG_HOME, with stub systemctl/loginctl/journalctl first on
    PATH (the real CLIs stay findable after them)."""
    stubs = short_tmp / "stubs"
    stubs.mkdir()
    for name in ("systemctl", "loginctl", "journalctl", "launchctl"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    env = daemon_env(short_tmp, {"HOME": str(short_tmp / "home"),
                                 "STUB_CALLS": str(short_tmp / "calls"),
                                 "STUB_SHOW": str(short_tmp / "show"),
                                 "PATH": f"{stubs}:{os.environ['PATH']}"})
    (short_tmp / "home").mkdir()
    return env


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codexd.cli.codexctl", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["STUB_CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def unit_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user"


def verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    runtime = Path(os.environ.get("TMPDIR", "/tmp")) / f"verify-{os.getpid()}"
    runtime.mkdir(exist_ok=True, mode=0o700)
    return subprocess.run(["systemd-analyze", "--user", "verify", "--man=no", *map(str, paths)],
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
                          capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
def test_install_renders_units_that_verify_and_enables_them(home):
    dry = ctl(home, "service", "install", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not unit_dir(home).exists(), "--dry-run wrote something"
    assert not any("enable" in c or "daemon-reload" in c for c in calls(home))
    for unit in ("codexd.service", "codexd.socket", "codexd-appserver.socket",
                 "codexd-websocket.socket"):
        assert f"# {unit_dir(home) / unit}" in dry.stdout
    assert "would run  systemctl --user enable codexd.socket" in dry.stdout

    out = ctl(home, "service", "install")
    assert out.returncode == 0, out.stderr
    files = sorted(unit_dir(home).iterdir())
    assert [f.name for f in files] == ["codexd-appserver.socket", "codexd-websocket.socket",
                                       "codexd.service", "codexd.socket"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files)
    assert calls(home)[-2:] == [
        "systemctl --user daemon-reload",
        "systemctl --user enable codexd.socket codexd-appserver.socket "
        "codexd-websocket.socket codexd.service"]
    assert "enable-linger" in out.stderr  # the stub says Linger=no

    result = verify(files)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    service = (unit_dir(home) / "codexd.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", service, re.M).group(1)  # type: ignore[union-attr]
    assert exec_start.split()[:4] == [sys.executable, "-m", "codexd", "run"]
    path = re.search(r'^Environment="PATH=(.*)"$', service, re.M).group(1)  # type: ignore[union-attr]
    codex = json.loads(ctl(home, "service", "install", "--dry-run", "--json").stdout)["found"][
        "codex"]
    assert codex and os.path.dirname(codex) in path.split(":")
    assert "STUB_CALLS" not in service and str(Path(home["PATH"].split(":")[0])) not in path
    assert "PATH" in out.stdout and "codex" in out.stdout  # shown to the user

    # The installed units start the real daemon the way it expects: notify, watchdog, sockets.
    assert "Type=notify" in service and "WatchdogSec=30" in service
    assert "KillMode=mixed" in service and "Restart=on-failure" in service
    assert "ListenStream=%t/codexd/codexd.sock" in (unit_dir(home) / "codexd.socket").read_text()

    gone = ctl(home, "service", "uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not any(unit_dir(home).iterdir())
    assert calls(home)[-2].startswith("systemctl --user disable --now codexd.service")
    assert calls(home)[-1] == "systemctl --user daemon-reload"


@needs_analyze
def test_custom_paths_render_escaped_and_verify(home, short_tmp):
    odd = short_tmp / "odd 50%"
    odd.mkdir()
    cfg = odd / "codexd.toml"
    cfg.write_text(f'[daemon]\nsocket = "{odd}/c.sock"\n[websocket]\nlisten = ""\n'
                   f'[appserver]\nsocket = "{odd}/wire.sock"\n')
    out = ctl(home, "service", "install", "--config", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["units"] == ["codexd.socket", "codexd-appserver.socket", "codexd.service"]
    assert plan["execStart"][-2:] == ["--config", str(cfg)]
    files = sorted(unit_dir(home).iterdir())
    result = verify(files)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = (unit_dir(home) / "codexd.socket").read_text()
    assert f"ListenStream={odd}/c.sock".replace("%", "%%") in text


def test_launchd_plist_has_what_launchd_needs(home):
    out = ctl(home, "service", "install", "--manager", "launchd", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    [file] = plan["files"]
    assert file["path"] == f"{home['HOME']}/Library/LaunchAgents/dev.codexd.codexd.plist"
    plist = plistlib.loads(file["content"].encode())
    assert plist["Label"] == "dev.codexd.codexd"
    assert plist["ProgramArguments"][:4] == [sys.executable, "-m", "codexd", "run"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert plist["Umask"] == 0o077
    assert plist["StandardErrorPath"] == f"{home['HOME']}/Library/Logs/codexd.log"
    codex = plan["found"]["codex"]
    assert codex and os.path.dirname(codex) in plist["EnvironmentVariables"]["PATH"]
    assert plan["commands"] == [["launchctl", "bootstrap", f"gui/{os.getuid()}",
                                 file["path"]]]
    assert not Path(file["path"]).exists()


def test_install_now_refuses_to_steal_from_a_running_daemon(home, daemon):
    env = {**home, "CODEXD_SOCKET": str(daemon.socket)}
    out = ctl(env, "service", "install", "--now")
    assert out.returncode == 1
    assert f"already running (pid {daemon.proc.pid})" in out.stderr
    assert "codexctl shutdown" in out.stderr
    assert not unit_dir(home).exists()


def test_status_shows_units_and_daemon(home, daemon):
    Path(home["STUB_SHOW"]).write_text(
        "Id=codexd.service\nLoadState=loaded\nActiveState=active\nSubState=running\n"
        f"MainPID={daemon.proc.pid}\nUnitFileState=enabled\nNRestarts=2\n\n"
        "Id=codexd.socket\nLoadState=loaded\nActiveState=active\nSubState=running\n"
        "MainPID=0\nUnitFileState=enabled\n\nId=codexd-websocket.socket\nLoadState=not-found\n")
    out = ctl(home, "--socket", str(daemon.socket), "service", "status")
    assert out.returncode == 0, out.stderr
    assert re.search(r"codexd.service\s+active \(running\)\s+enabled, pid \d+, 2 restarts",
                     out.stdout)
    assert f"pid {daemon.proc.pid}, socket {daemon.socket}" in out.stdout
    data = json.loads(ctl(home, "service", "status", "--json", "--socket",
                          str(daemon.socket)).stdout)
    assert data["active"] and data["daemon"]["pid"] == daemon.proc.pid
    assert [u["Id"] for u in data["units"]] == ["codexd.service", "codexd.socket"]
    daemon.stop()
    down = ctl(home, "--socket", str(daemon.socket), "service", "status")
    assert down.returncode == 3 and "not answering" in down.stdout


def test_uninstall_purge_asks_then_deletes(home, short_tmp):
    assert ctl(home, "service", "install").returncode == 0
    state = Path(home["XDG_STATE_HOME"]) / "codexd"
    state.mkdir(parents=True)
    (state / "codexd.db").write_text("x")
    refused = ctl(home, "service", "uninstall", "--purge")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert state.exists() and (unit_dir(home) / "codexd.service").exists()
    dry = ctl(home, "service", "uninstall", "--purge", "--dry-run")
    assert dry.returncode == 0 and f"would delete {state}" in dry.stderr and state.exists()
    done = ctl(home, "service", "uninstall", "--purge", "--yes")
    assert done.returncode == 0, done.stderr
    assert not state.exists() and not (unit_dir(home) / "codexd.service").exists()


def test_logs_wraps_journalctl(home):
    out = ctl(home, "service", "logs", "-n", "5", "-p", "err")
    assert out.returncode == 0, out.stderr
    assert calls(home)[-1] == "journalctl --user -u codexd.service -n 5 --no-pager -p err"


# ----------------------------------------------------------------------- socket activation


@pytest.fixture
def notify(short_tmp: Path) -> Iterator[NotifySocket]:
    n = NotifySocket(short_tmp / "notify")
    yield n
    n.sock.close()


class NotifySocket:
    """What systemd would receive on NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(line in m.split("\n") for m in self.messages):
            left = deadline - time.monotonic()
            assert left > 0, f"no {line} in {self.messages}"
            self.sock.settimeout(left)
            self.messages.append(self.sock.recv(4096).decode())


def _activate(base: Path, listen: list[str], extra: list[str], notify: NotifySocket,
              config: str = "") -> subprocess.Popen[bytes]:
    d = make_daemon(base, config=config)  # writes the config file the daemon reads
    env = d.env
    passed = [f"-E{k}={v}" for k, v in env.items()
              if k.startswith("XDG_") or k in ("PYTHONUNBUFFERED", "HOME")]
    argv = ["systemd-socket-activate", *(f"-l{a}" for a in listen), *extra, *passed,
            f"-ENOTIFY_SOCKET={notify.path}", "-EWATCHDOG_USEC=1000000",
            sys.executable, "-m", "codexd", "run", "--state-dir", str(base / "state"),
            "--log-format", "json"]
    with open(base / "daemon.log", "ab") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)


def _wait_socket(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@needs_activate
def test_socket_activation_starts_the_daemon_on_first_connection(short_tmp, notify):
    """`systemd-socket-activate -l PATH codexd run`: the first connection starts the daemon,
    which serves PATH (not its default socket) and speaks sd_notify."""
    sock = short_tmp / "activated.sock"
    proc = _activate(short_tmp, [str(sock)], [], notify)
    try:
        _wait_socket(sock)
        assert notify.messages == []  # nothing runs until someone connects
        env = daemon_env(short_tmp)
        out = ctl(env, "--socket", str(sock), "status", "--json")
        assert out.returncode == 0, out.stderr + (short_tmp / "daemon.log").read_text()
        st = json.loads(out.stdout)
        assert st["socket"] == str(sock) and st["pid"] == proc.pid
        notify.wait_for("READY=1")
        notify.wait_for("WATCHDOG=1")
        assert ctl(env, "--socket", str(sock), "shutdown").returncode == 0
        notify.wait_for("STOPPING=1")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (short_tmp / "daemon.log").read_text()
    assert '"event":"socket_activated"' in log
    assert "without holding its lock" not in log
    assert sock.exists(), "the daemon removed a socket that was not its own"


@needs_activate
def test_named_sockets_each_reach_their_listener(short_tmp, notify):
    ndjson, wire = short_tmp / "n.sock", short_tmp / "w.sock"
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = _activate(short_tmp, [str(wire), f"127.0.0.1:{port}", str(ndjson)],
                     ["--fdname=appserver:websocket:ndjson"], notify,
                     config='[appserver]\nenabled = true\nserve_socket = true\n'
                            '[websocket]\nlisten = "127.0.0.1:1"\n')
    try:
        _wait_socket(ndjson)
        out = ctl(daemon_env(short_tmp), "--socket", str(ndjson), "status", "--json")
        assert out.returncode == 0, out.stderr + (short_tmp / "daemon.log").read_text()
        st = json.loads(out.stdout)
        assert st["socket"] == str(ndjson)
        assert st["appServerSocket"] == str(wire)
        assert st["websocket"] == f"ws://127.0.0.1:{port}/"
        # The WebSocket port is served: an upgrade without a token is refused with 401.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 401")
        assert ctl(daemon_env(short_tmp), "--socket", str(ndjson), "shutdown").returncode == 0
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -------------------------------------------------------------------------- the journal


def test_under_the_journal_every_line_carries_its_priority(short_tmp):
    d = make_daemon(short_tmp, config='[appserver]\nenabled = true\n'
                                      'command = "/nonexistent/codex"\n')
    d.log_path.touch()
    st = d.log_path.stat()
    d.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    d.start()
    deadline = time.monotonic() + 15
    while '"level":"error"' not in d.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    d.stop()
    lines = d.log().splitlines()
    assert lines
    for line in lines:
        m = re.fullmatch(r"<([0-7])>(\{.*\})", line)
        assert m, f"a line without a priority prefix: {line!r}"
        event = json.loads(m.group(2))
        assert int(m.group(1)) == {"debug": 7, "info": 6, "warning": 4, "error": 3,
                                   "critical": 2}[event["level"]]
    assert any(line.startswith("<3>") for line in lines)


def test_without_the_journal_lines_are_plain_json(daemon):
    daemon.stop()
    assert all(line.startswith("{") for line in daemon.log().splitlines())


@needs_analyze
def test_a_worker_installs_as_its_own_unit(home):
    out = ctl(home, "service", "install", "--worker")
    assert out.returncode == 0, out.stderr
    unit = unit_dir(home) / "codexd-worker.service"
    assert [f.name for f in unit_dir(home).iterdir()] == ["codexd-worker.service"]
    result = verify([unit])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = unit.read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)  # type: ignore[union-attr]
    assert exec_start.split()[:4] == [sys.executable, "-m", "codexd", "worker"]
    assert "KillMode=mixed" in text and "TimeoutStopSec=60" in text
    assert calls(home)[-1] == "systemctl --user enable codexd-worker.service"
    assert "runs.executor.address" in out.stderr  # the default address: said so
    plist = json.loads(ctl(home, "service", "install", "--worker", "--manager", "launchd",
                           "--dry-run", "--json").stdout)["files"][0]
    assert plist["path"].endswith("/Library/LaunchAgents/dev.codexd.worker.plist")
    assert plistlib.loads(plist["content"].encode())["ProgramArguments"][3] == "worker"
    gone = ctl(home, "service", "uninstall", "--worker")
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists()
    assert calls(home)[-2] == "systemctl --user disable --now codexd-worker.service"
