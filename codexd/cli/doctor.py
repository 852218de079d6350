"""``codexctl doctor``: what is wrong with this installation, and the exact fix for each.

Works with the daemon down: every check reads the machine (files, processes, /proc/locks, the
CLIs' ``--version``) and only the first one asks the daemon. When it answers, its own state
dir, config file and app-server pid are used; otherwise the config file and the standard paths.
Each check is ``ok``, ``warn`` or ``fail`` with a one-line summary and, when not ok, the fix; a
check that crashes is a ``warn`` saying so (doctor never dies of what it inspects).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from codexd import config, install
from codexd.appserver.command import codex_home, resolve_command
from codexd.appserver.process import descendants, pid_alive
from codexd.cli.output import print_json, table
from codexd.client import Client, DaemonUnreachable
from codexd.errors import CodexdError, ConfigError, RpcError
from codexd.paths import (
    DB_NAME,
    default_config_file,
    default_socket,
    default_state_dir,
    lock_file_for,
)
from codexd.protocol.daemon import DAEMON_STATUS
from codexd.runs import capabilities, compat

Status = Literal["ok", "warn", "fail"]
#: Free space below these (bytes) where the state lives: warn, fail.
DISK_WARN, DISK_FAIL = 1 << 30, 100 << 20
TESTED = {p: versions[0] for p, versions in compat.TESTED.items()}


@dataclass
class Check:
    name: str
    status: Status
    summary: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    cfg: config.Config
    config_file: Path
    socket: Path
    state_dir: Path
    #: daemon/status when the daemon answered.
    status: dict[str, Any] | None = None
    daemon_error: str = ""
    appserver_pid: int | None = None

    @property
    def db(self) -> Path:
        return Path(self.status["dbPath"]) if self.status else self.state_dir / DB_NAME


def _context(a: argparse.Namespace) -> tuple[Context, Check | None]:
    config_file = Path(a.config).expanduser() if a.config else default_config_file()
    bad_config: Check | None = None
    try:
        cfg = config.load(config_file, required=bool(a.config))
    except ConfigError as exc:
        cfg = config.Config()
        bad_config = Check("config", "fail", f"{config_file}: {exc}",
                           f"fix the file (docs/configuration.md), then check it with "
                           f"`codexd config --config {config_file}`")
    state_dir = Path(a.state_dir or cfg.daemon.state_dir or default_state_dir()).expanduser()
    sock = Path(a.socket or cfg.daemon.socket or default_socket(state_dir)).expanduser()
    ctx = Context(cfg=cfg, config_file=config_file, socket=sock, state_dir=state_dir)
    try:
        with Client.connect(sock, client_name="codexctl-doctor", timeout=5) as c:
            ctx.status = msgspec.to_builtins(c.request(DAEMON_STATUS))
            ctx.appserver_pid = c.call("daemon/appServer/status").get("pid")
    except (DaemonUnreachable, RpcError, OSError, TimeoutError) as exc:
        ctx.daemon_error = str(exc)
    if ctx.status:
        ctx.state_dir = Path(ctx.status["stateDir"])
        if ctx.status.get("configFile") and not a.config and bad_config is None:
            with contextlib.suppress(ConfigError):
                ctx.cfg = config.load(Path(ctx.status["configFile"]))
                ctx.config_file = Path(ctx.status["configFile"])
    return ctx, bad_config


# ------------------------------------------------------------------------------- checks


def check_daemon(ctx: Context) -> Check:
    lock = lock_file_for(ctx.socket)
    holder = _lock_holder(lock)
    if ctx.status:
        st = ctx.status
        if holder is not None and holder != st["pid"]:
            return Check("daemon", "fail", f"pid {st['pid']} answers on {ctx.socket} but pid "
                         f"{holder} holds its lock {lock}",
                         f"two daemons share one socket: stop pid {holder} (`kill {holder}`)")
        return Check("daemon", "ok", f"codexd {st['version']}, pid {st['pid']}, up "
                     f"{st['uptimeSeconds']:.0f} s, {st['clientsConnected']} client(s), "
                     f"socket {ctx.socket}", details={"pid": st["pid"]})
    if holder is not None and _alive(holder):
        return Check("daemon", "fail", f"pid {holder} holds {lock} but does not answer on "
                     f"{ctx.socket} ({ctx.daemon_error})",
                     f"it is hung or starting: wait a moment; if it stays so, `kill {holder}` "
                     "(then `kill -9` if it does not exit) and start codexd again",
                     {"lockHolder": holder})
    fix = ("start it: `codexctl service install --now` (a user service), or `codexd run` in "
           "the foreground")
    if ctx.socket.exists():
        fix += f"; {ctx.socket} is left over from a daemon that died (the next start removes it)"
    return Check("daemon", "fail", f"not running: nothing answers on {ctx.socket}", fix)


def _lock_holder(lock: Path) -> int | None:
    """The pid written in the daemon's lock file if the lock is held, else None."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return pid == -1  # held, but the pid is unreadable: someone holds it
    return pid_alive(pid)


def check_permissions(ctx: Context) -> Check:
    problems: list[str] = []
    fixes: list[str] = []

    def private(path: Path, want: int, what: str) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            problems.append(f"{what} {path}: {exc.strerror}")
            return
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != os.getuid():
            problems.append(f"{what} {path} belongs to uid {st.st_uid}")
            fixes.append(f"chown {os.getuid()} {path}")
        elif mode & 0o077:
            problems.append(f"{what} {path} is {mode:04o} (others can read it)")
            fixes.append(f"chmod {want:o} {path}")

    private(ctx.state_dir, 0o700, "state dir")
    for name in (DB_NAME, f"{DB_NAME}-wal", "secrets.json"):
        private(ctx.state_dir / name, 0o600, "file")
    private(ctx.socket.parent, 0o700, "socket dir")
    private(ctx.socket, 0o600, "socket")
    try:
        cfg_mode = stat.S_IMODE(ctx.config_file.stat().st_mode)
    except OSError:
        cfg_mode = 0
    if cfg_mode & 0o022:
        problems.append(f"config {ctx.config_file} is {cfg_mode:04o} (others can change what "
                        "codexd runs)")
        fixes.append(f"chmod 600 {ctx.config_file}")
    if problems:
        return Check("permissions", "fail", "; ".join(problems), "; ".join(fixes) or
                     "make them yours and private")
    return Check("permissions", "ok", f"{ctx.state_dir} and {ctx.socket.parent} are private")


def _version_of(argv0: str) -> tuple[str | None, str]:
    try:
        p = subprocess.run([argv0, "--version"], capture_output=True, text=True, timeout=30,
                           check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    text = (p.stdout or p.stderr).strip()
    if p.returncode != 0:
        return None, f"exit {p.returncode}: {text.splitlines()[-1] if text else ''}"
    return (text.split()[-1] if text else None), ""


def check_appserver(ctx: Context) -> Check:
    a = ctx.cfg.appserver
    if not a.enabled:
        return Check("appserver", "ok", "disabled (appserver.enabled = false): threads and "
                     "turns are not served")
    try:
        argv = resolve_command(a)
    except CodexdError as exc:
        return Check("appserver", "fail", str(exc).split(":")[0],
                     "install the pinned CLI (`npm install -g @openai/codex@"
                     f"{TESTED['codex']}`) or set appserver.command to its path")
    version, err = _version_of(argv[0])
    if version is None:
        return Check("appserver", "fail", f"`{argv[0]} --version` failed: {err}",
                     "reinstall codex (`npm install -g @openai/codex`) or fix appserver.command")
    parsed = compat.parse_version(version)
    minimum = compat.MIN_VERSION["codex"]
    details = {"command": argv, "version": version}
    if parsed is None or parsed < minimum:
        return Check("appserver", "warn", f"{argv[0]} is codex {version}, older than "
                     f"{'.'.join(map(str, minimum))}", "upgrade: `npm install -g @openai/codex@"
                     f"{TESTED['codex']}`", details)
    return Check("appserver", "ok", f"{argv[0]}: codex {version} (tested with "
                 f"{TESTED['codex']})", details=details)


def check_clis(ctx: Context) -> Check:
    notes, fixes = [], []
    status: Status = "ok"
    for provider in ("codex", "claude"):
        configured = getattr(ctx.cfg.runs, f"{provider}_command")
        cap = capabilities.probe(provider, configured)
        if cap.status == "supported":
            notes.append(f"{provider} {cap.version}")
        else:
            status = "warn"
            notes.append(f"{provider}: {cap.reason}")
            package = "@openai/codex" if provider == "codex" else "@anthropic-ai/claude-code"
            fixes.append(f"`npm install -g {package}@{TESTED[provider]}` (needed for "
                         f"{provider} runs) or set runs.{provider}_command")
    node = shutil.which("node")
    if node is None:
        status = "fail"
        notes.append("node not found")
        fixes.append("install Node.js 20 or newer: both CLIs' npm launchers need it")
    else:
        version, _ = _version_of(node)
        notes.append(f"node {version}")
    return Check("clis", status, ", ".join(notes), "; ".join(fixes) or None)


def check_secret_store(ctx: Context) -> Check:
    from codexd.runs.secrets import SecretStore, keyring_usable

    mode = ctx.cfg.runs.secret_store
    usable, backend = keyring_usable()
    if mode == "keyring" and not usable:
        return Check("secret-store", "fail", f"runs.secret_store = \"keyring\" but the keyring "
                     f"backend is {backend}",
                     "unlock or install a keyring (GNOME Keyring, KWallet, macOS Keychain), or "
                     "set runs.secret_store = \"file\"")
    store = SecretStore(mode, ctx.state_dir)
    if store.fallback:
        return Check("secret-store", "warn", f"no keyring ({backend}): provider tokens go to "
                     f"{store.file} (0600)",
                     "on a desktop, unlock your keyring; on a headless box set "
                     "runs.secret_store = \"file\" to keep the file deliberately")
    return Check("secret-store", "ok", store.describe())


def check_executor(ctx: Context) -> Check:
    """Where runs execute; for the temporal executor, whether the server answers and which
    workers poll the task queue."""
    ex = ctx.cfg.runs.executor
    if ex.kind == "local":
        return Check("executor", "ok", "runs execute on this machine (runs.executor.kind = "
                     "\"local\")")
    import asyncio

    from codexd.fleet import connect

    async def pollers() -> list[str]:
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        client = await connect.client(ex, identity="codexctl-doctor")
        resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=ex.namespace, task_queue=TaskQueue(name=ex.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
        return sorted({p.identity for p in resp.pollers})

    where = f"Temporal at {ex.address} (namespace {ex.namespace})"
    try:
        workers = asyncio.run(pollers())
    except connect.Unreachable as exc:
        return Check("executor", "fail", str(exc),
                     "start the Temporal server, or fix runs.executor.address and its TLS "
                     "settings; until then run/start with the temporal executor answers "
                     "-32073 (local runs are unaffected)")
    if not workers:
        return Check("executor", "warn", f"{where} answers, but no worker has polled task "
                     f"queue {ex.task_queue!r} lately: dispatched runs will wait",
                     f"start `codexd worker --address {ex.address} --task-queue "
                     f"{ex.task_queue}` on a machine with the CLIs (docs/operations.md, "
                     "\"Running a fleet\")")
    return Check("executor", "ok", f"{where}: {len(workers)} worker(s) polling "
                 f"{ex.task_queue!r} lately: {', '.join(workers)}",
                 details={"workers": workers, "address": ex.address,
                          "taskQueue": ex.task_queue})


# -- CODEX_HOME: other app-servers and the thread writer locks


def _proc_args(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _proc_env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _is_app_server(args: list[str]) -> bool:
    return "app-server" in args[1:3] + args[2:4] and any(
        os.path.basename(a).startswith("codex") for a in args[:2])


def app_servers(home: Path) -> dict[int, list[str]]:
    """``codex app-server`` processes of this user whose CODEX_HOME is ``home`` (the outermost
    process of each: the npm launcher, not also its native child)."""
    found: dict[int, list[str]] = {}
    me = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if entry.stat().st_uid != me:
                continue
        except OSError:
            continue
        args = _proc_args(pid)
        if not args or not _is_app_server(args):
            continue
        env = _proc_env(pid)
        their = env.get("CODEX_HOME") or os.path.join(env.get("HOME", str(Path.home())),
                                                      ".codex")
        try:
            same = Path(their).expanduser().resolve() == home.resolve()
        except OSError:
            same = False
        if same:
            found[pid] = args
    return {pid: args for pid, args in found.items() if _ppid(pid) not in found}


def _flocks() -> dict[tuple[int, int], int]:
    """(device, inode) → pid for every flock on this machine (/proc/locks)."""
    out: dict[tuple[int, int], int] = {}
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[3] == "->":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            out[(os.makedev(int(major, 16), int(minor, 16)), int(inode))] = int(parts[4])
        except ValueError:
            continue
    return out


def check_codex_home(ctx: Context) -> Check:
    home = codex_home(ctx.cfg.appserver)
    if not sys.platform.startswith("linux"):
        return Check("codex-home", "ok", f"{home} (process and lock checks need Linux /proc)")
    ours = {ctx.appserver_pid, *descendants(ctx.appserver_pid)} if ctx.appserver_pid else set()
    others = {pid: args for pid, args in app_servers(home).items() if pid not in ours}
    problems, fixes = [], []
    details: dict[str, Any] = {"codexHome": str(home), "otherAppServers": sorted(others)}
    if others:
        listed = ", ".join(f"pid {pid} ({' '.join(args)[:80]})" for pid, args in
                           sorted(others.items()))
        problems.append(f"{len(others)} other app-server(s) on {home}: {listed}")
        fixes.append("only one process may own a thread: quit them, and point the TUI or the "
                     "desktop at codexd instead (`codex --remote unix://"
                     f"{ctx.socket.with_name('app-server.sock')}`; docs/operations.md)")
    locks = home / "thread-writer-locks"
    held = _flocks()
    stale, foreign = [], []
    for f in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
        if f.name.startswith("."):
            continue  # the coordination lock is held only while a lock is taken
        try:
            st = f.stat()
        except OSError:
            continue
        holder = held.get((st.st_dev, st.st_ino))
        if holder is None:
            stale.append(f)
        elif holder not in ours:
            foreign.append((f.stem, holder))
    details.update(staleLocks=[str(f) for f in stale],
                   threadsOwnedElsewhere={t: pid for t, pid in foreign})
    if foreign:
        problems.append(f"{len(foreign)} thread(s) owned by another process: " + ", ".join(
            f"{t} (pid {pid})" for t, pid in foreign[:5]))
        fixes.append("codexd cannot resume those threads until that process exits: "
                     + " ".join(f"`kill {pid}`" for pid in sorted({p for _, p in foreign})))
    if stale:
        problems.append(f"{len(stale)} stale thread lock file(s) nobody holds (left by a codex "
                        "that crashed)")
        fixes.append(f"harmless, but safe to delete: `rm {locks}/<thread>.lock` ("
                     + ", ".join(f.name for f in stale[:3]) + ("…" if len(stale) > 3 else "")
                     + ")")
    if problems:
        return Check("codex-home", "warn", "; ".join(problems), "; ".join(fixes), details)
    return Check("codex-home", "ok", f"{home}: no other app-server, no stale thread locks",
                 details=details)


def check_service(ctx: Context) -> Check:
    manager = install.default_manager()
    if manager == "launchd":
        plist = Path.home() / "Library" / "LaunchAgents" / f"{install.LABEL}.plist"
        if not plist.exists():
            return Check("service", "warn", "not installed as a launchd agent",
                         "`codexctl service install --now`")
        return Check("service", "ok", f"launchd agent {plist}")
    folder = install.unit_dir(manager, dict(os.environ), Path.home())
    unit = folder / install.SERVICE
    if not unit.exists():
        return Check("service", "warn", f"not installed as a systemd user service ({unit} "
                     "absent)", "`codexctl service install --now` (starts at login, restarted "
                     "on failure)")
    notes, fixes = [f"{unit}"], []
    status: Status = "ok"
    if shutil.which("systemctl"):
        done = subprocess.run(["systemctl", "--user", "is-enabled", install.SERVICE],
                              capture_output=True, text=True, check=False, timeout=10)
        state = done.stdout.strip() or done.stderr.strip()
        notes.append(f"is-enabled: {state}")
        if state != "enabled":
            status = "warn"
            fixes.append(f"`systemctl --user enable --now {install.SERVICE}`")
    from codexd.cli.service import _linger

    linger, why = _linger()
    if linger is False:
        status = "warn"
        notes.append("linger off")
        fixes.append("on a headless box (or to keep agents running after logout): "
                     "`sudo loginctl enable-linger $USER`")
    elif linger is None:
        notes.append(f"linger unknown ({why})")
    return Check("service", status, ", ".join(notes), "; ".join(fixes) or None)


def check_disk(ctx: Context) -> Check:
    where = ctx.state_dir if ctx.state_dir.exists() else ctx.state_dir.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    free = f"{usage.free / (1 << 30):.1f} GiB free of {usage.total / (1 << 30):.0f} GiB at {where}"
    if usage.free < DISK_FAIL:
        return Check("disk", "fail", free, "free space now: SQLite refuses writes when the disk "
                     "is full (`codexctl gc` shrinks the database)", {"free": usage.free})
    if usage.free < DISK_WARN:
        return Check("disk", "warn", free, "free some space; `codexctl gc` and a lower "
                     "retention.runs_days shrink the database", {"free": usage.free})
    return Check("disk", "ok", free, details={"free": usage.free})


def check_database(ctx: Context) -> Check:
    import apsw

    from codexd.store.db import scalar
    from codexd.store.migrations import SCHEMA_VERSION

    db = ctx.db
    if not db.exists():
        return Check("database", "ok", f"{db} does not exist yet (the first start creates it)")
    size = db.stat().st_size + sum(p.stat().st_size for p in
                                   (db.with_name(db.name + "-wal"),) if p.exists())
    try:
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        conn.set_busy_timeout(5000)
        try:
            result = [r[0] for r in conn.execute("PRAGMA quick_check")]
            version = scalar(conn, "PRAGMA user_version")
        finally:
            conn.close()
    except apsw.Error as exc:
        return Check("database", "fail", f"{db}: cannot read it: {exc}",
                     "stop codexd, copy the file aside, and check it with `sqlite3 "
                     f"{db} 'PRAGMA integrity_check'`")
    details = {"path": str(db), "bytes": size, "schemaVersion": version,
               "codeSchemaVersion": SCHEMA_VERSION}
    summary = f"{db}: {size / 1048576:.1f} MiB, schema {version}"
    if result != ["ok"]:
        return Check("database", "fail", f"{summary}; quick_check: {'; '.join(result[:3])}",
                     f"stop codexd, back it up (`cp {db} {db}.bad`), then recover with "
                     f"`sqlite3 {db}.bad .recover | sqlite3 {db}`", details)
    if version > SCHEMA_VERSION:
        return Check("database", "fail", f"{summary}, written by a newer codexd (this one "
                     f"knows schema {SCHEMA_VERSION})", "run the newer codexd, or restore a "
                     "backup taken before the upgrade", details)
    if version < SCHEMA_VERSION:
        return Check("database", "ok", f"{summary} (upgraded to {SCHEMA_VERSION} at the next "
                     "start)", details=details)
    return Check("database", "ok", f"{summary}, quick_check ok", details=details)


def check_sandbox(_ctx: Context) -> Check:
    if sys.platform == "darwin":
        return Check("sandbox", "ok", "macOS: Codex uses Seatbelt")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Check("sandbox", "warn", "bubblewrap (bwrap) not found: Codex's Linux sandbox "
                     "needs it for sandboxed commands",
                     "`sudo apt install bubblewrap` (Debian/Ubuntu) or `sudo dnf install "
                     "bubblewrap`")
    done = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "true"],
                          capture_output=True, text=True, check=False, timeout=10)
    if done.returncode != 0:
        return Check("sandbox", "warn", f"{bwrap} cannot create a sandbox here: "
                     f"{done.stderr.strip()[:200]}",
                     "unprivileged user namespaces are off: `sudo sysctl -w "
                     "kernel.unprivileged_userns_clone=1` (or the AppArmor rule for bwrap on "
                     "Ubuntu 24.04+)")
    return Check("sandbox", "ok", f"{bwrap} works")


CHECKS: list[Callable[[Context], Check]] = [
    check_daemon, check_permissions, check_appserver, check_clis, check_secret_store,
    check_executor, check_codex_home, check_service, check_disk, check_database, check_sandbox,
]


def run_checks(a: argparse.Namespace) -> tuple[Context, list[Check]]:
    """The context the checks found (config, paths, the daemon's status) and the checks."""
    ctx, bad_config = _context(a)
    out = [bad_config] if bad_config else []
    for fn in CHECKS:
        name = fn.__name__.removeprefix("check_").replace("_", "-")
        try:
            out.append(fn(ctx))
        except Exception as exc:  # doctor reports; it never dies of what it inspects
            out.append(Check(name, "warn", f"the check itself failed: {type(exc).__name__}: "
                             f"{exc}", "report this as a bug, with `codexctl doctor --json`"))
    return ctx, out


def report(checks: list[Check]) -> dict[str, Any]:
    return {"ok": not any(c.status == "fail" for c in checks),
            "checks": [{"name": c.name, "status": c.status, "summary": c.summary, "fix": c.fix,
                        "details": c.details} for c in checks]}


def cmd_doctor(_c: Client | None, a: argparse.Namespace) -> int:
    _ctx, checks = run_checks(a)
    failed = any(c.status == "fail" for c in checks)
    if a.json:
        print_json(report(checks))
        return 1 if failed else 0
    table(["CHECK", "STATUS", "SUMMARY"], [[c.name, c.status, c.summary] for c in checks])
    fixes = [c for c in checks if c.status != "ok" and c.fix]
    if fixes:
        print()
        for c in fixes:
            print(f"{c.name}: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}
    print(f"\n{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if failed else 0


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--config", metavar="FILE", help="the config file (default: the daemon's, "
                    "or the standard one)")
    sp.add_argument("--state-dir", metavar="DIR", help="the state dir (default: the daemon's, "
                    "or the standard one)")
    sp.set_defaults(connect=False)
