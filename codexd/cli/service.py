"""``codexctl service``: install codexd as a systemd/launchd user service, and look after it.

These commands work without a running daemon: they talk to the service manager
(``systemctl --user``, ``launchctl``, ``journalctl``) and, for ``status``, to the daemon if it
answers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from codexd import config, install
from codexd.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_UNREACHABLE
from codexd.cli.output import CommandFailed, UsageError, print_json
from codexd.client import Client, DaemonUnreachable
from codexd.errors import ConfigError, RpcError
from codexd.paths import default_config_file, default_socket, default_state_dir
from codexd.protocol.daemon import DAEMON_STATUS


def _manager(a: argparse.Namespace) -> install.Manager:
    chosen: install.Manager = a.manager or install.default_manager()
    return chosen


def _environ() -> dict[str, str]:
    return dict(os.environ)


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise CommandFailed(
            f"{argv[0]} not found: this system has no "
            f"{'launchd' if argv[0] == 'launchctl' else 'systemd'} user manager; run "
            "`codexd run` under your own supervisor (docs/operations.md)")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        err = (done.stderr or done.stdout).strip()
        hint = ""
        if "bus" in err.lower() or "XDG_RUNTIME_DIR" in err:
            hint = ("; there is no systemd user instance for this login (over ssh or in a "
                    "container): `loginctl enable-linger $USER`, then log in again, or export "
                    "XDG_RUNTIME_DIR=/run/user/$(id -u)")
        raise CommandFailed(f"`{' '.join(argv)}` failed (exit {done.returncode}): {err}{hint}")
    return done


def _load_config(a: argparse.Namespace) -> tuple[config.Config, Path | None]:
    given = Path(a.config).expanduser().resolve() if a.config else None
    try:
        return config.load(given or default_config_file(), required=given is not None), given
    except ConfigError as exc:
        raise UsageError(f"invalid configuration: {exc}") from None


def _linger() -> tuple[bool | None, str]:
    """Whether this user's services run without a login session (None: cannot tell)."""
    if shutil.which("loginctl") is None:
        return None, "loginctl not found"
    user = os.environ.get("USER") or str(os.getuid())
    done = subprocess.run(["loginctl", "show-user", user, "--property=Linger", "--value"],
                          capture_output=True, text=True, check=False)
    value = done.stdout.strip()
    if done.returncode != 0 or value not in ("yes", "no"):
        return None, (done.stderr or done.stdout).strip() or "no answer"
    return value == "yes", ""


def _running_outside(manager: install.Manager) -> int | None:
    """The pid of a codexd answering on the default socket that the service did not start."""
    try:
        with Client.connect(default_socket(), client_name="codexctl", timeout=3) as c:
            pid = c.request(DAEMON_STATUS).pid
    except (DaemonUnreachable, RpcError, OSError, TimeoutError):
        return None
    if manager == "systemd" and shutil.which("systemctl"):
        main = _run(["systemctl", "--user", "show", install.SERVICE, "-p", "MainPID",
                     "--value"], check=False).stdout.strip()
        if main == str(pid):
            return None
    return pid


def cmd_install(_c: Client | None, a: argparse.Namespace) -> Any:
    cfg, config_file = _load_config(a)
    manager = _manager(a)
    plan = install.plan_install(cfg, manager=manager, environ=_environ(), home=Path.home(),
                                config_file=config_file, now=a.now, worker=a.worker)
    if manager == "systemd":
        linger, why = _linger()
        if linger is False:
            plan.notes.append(
                "linger is off: your user services stop when you log out and do not start at "
                "boot. On a headless box, or to keep agents running after logout: "
                "`sudo loginctl enable-linger $USER`")
        elif linger is None:
            plan.notes.append(f"could not check linger ({why}); on a headless box run "
                              "`sudo loginctl enable-linger $USER`")
    if a.now and not a.dry_run and not a.worker:
        pid = _running_outside(manager)
        if pid is not None:
            raise CommandFailed(
                f"codexd is already running (pid {pid}) outside the service manager, on the "
                "socket the service would take; stop it first (`codexctl shutdown`), then run "
                "`codexctl service install --now` again")
    if not a.dry_run:
        try:
            for f in plan.files:
                f.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.path.with_name(f".{f.path.name}.tmp")
                tmp.write_text(f.content)
                os.chmod(tmp, 0o644)
                os.replace(tmp, f.path)
            for argv in plan.commands:
                _run(argv)
        except OSError as exc:
            raise CommandFailed(f"cannot write the unit files: {exc}") from None
    return _report(a, plan, "install")


def _report(a: argparse.Namespace, plan: install.Plan, verb: str) -> Any:
    done = not a.dry_run
    if a.json:
        return {"manager": plan.manager, "dryRun": a.dry_run, "units": plan.units,
                "files": [{"path": str(f.path), "content": f.content} if verb == "install"
                          else {"path": str(f.path)} for f in plan.files],
                "commands": plan.commands, "path": plan.path or None,
                "found": plan.found or None, "execStart": plan.exec_start or None,
                "notes": plan.notes, "done": done}
    for f in plan.files:
        if verb == "install":
            if a.dry_run:
                print(f"# {f.path}\n{f.content}")
            else:
                print(f"wrote    {f.path}")
        else:
            print(f"{'remove' if a.dry_run else 'removed'}   {f.path}")
    for argv in plan.commands:
        print(f"{'would run' if a.dry_run else 'ran'}  {' '.join(argv)}")
    if plan.exec_start:
        print(f"command  {' '.join(plan.exec_start)}")
    if plan.path:
        print(f"PATH     {plan.path}")
        for name, where in plan.found.items():
            print(f"  {name:<7} {where or 'NOT FOUND'}")
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if verb == "install" and done and getattr(a, "worker", False):
        print("codexd worker " + ("is running" if a.now else "is enabled; it starts at your "
              "next login, or now with `systemctl --user start codexd-worker`"),
              file=sys.stderr)
    elif verb == "install" and done:
        if a.now:
            print("codexd is running; `codexctl service status` shows it", file=sys.stderr)
        elif plan.manager == "systemd":
            print("enabled; it starts at your next login, or on the first connection once the "
                  "sockets are up: `systemctl --user start codexd.socket` (or install --now)",
                  file=sys.stderr)
    return None


def cmd_uninstall(_c: Client | None, a: argparse.Namespace) -> Any:
    manager = _manager(a)
    plan = install.plan_uninstall(manager=manager, environ=_environ(), home=Path.home(),
                                  worker=a.worker)
    purge = _purge_targets() if a.purge else []
    if purge and not a.dry_run and not a.yes:
        listing = ", ".join(map(str, purge))
        if not sys.stdin.isatty():
            raise UsageError(f"--purge deletes {listing} and everything in them; add --yes to "
                             "confirm")
        answer = input(f"delete {listing} and everything in them (threads' state, runs, "
                       "tokens, config)? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing removed", file=sys.stderr)
            return EXIT_ERROR
    if not a.dry_run:
        for argv in plan.commands[:1]:
            # Disabling units that are not installed is not an error worth stopping for.
            _run(argv, check=False)
        for f in plan.files:
            f.path.unlink(missing_ok=True)
        for argv in plan.commands[1:]:
            _run(argv)
        for folder in purge:
            shutil.rmtree(folder, ignore_errors=True)
    if purge:
        plan.notes.append(("would delete " if a.dry_run else "deleted ")
                          + ", ".join(map(str, purge)))
        plan.notes.append("tokens kept in the OS keyring stay; `codexctl secret clear "
                          "PROVIDER` before uninstalling removes them")
    return _report(a, plan, "uninstall")


def _purge_targets() -> list[Path]:
    targets = [default_state_dir(), default_config_file().parent, default_socket().parent]
    return [p for p in dict.fromkeys(targets) if p.exists()]


def _systemd_units() -> list[dict[str, str]]:
    names = [install.SERVICE, *install.SOCKETS.values()]
    out = _run(["systemctl", "--user", "show", *names, "-p",
                "Id,LoadState,ActiveState,SubState,MainPID,UnitFileState,NRestarts,"
                "ActiveEnterTimestamp,Result"], check=False).stdout
    units: list[dict[str, str]] = []
    for block in out.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields and fields.get("LoadState") != "not-found":
            units.append(fields)
    return units


def _launchd_unit() -> list[dict[str, str]]:
    done = _run(["launchctl", "print", f"gui/{os.getuid()}/{install.LABEL}"], check=False)
    if done.returncode != 0:
        return []
    fields = {"Id": install.LABEL}
    for line in done.stdout.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and key in ("state", "pid", "last exit code"):
            fields[key] = value
    return [fields]


def cmd_status(_c: Client | None, a: argparse.Namespace) -> Any:
    manager = _manager(a)
    units = _systemd_units() if manager == "systemd" else _launchd_unit()
    daemon: dict[str, Any] | None = None
    error = ""
    try:
        with Client.connect(a.socket, client_name="codexctl", timeout=5) as c:
            st = c.request(DAEMON_STATUS)
            daemon = {"pid": st.pid, "version": st.version, "socket": st.socket,
                      "uptimeSeconds": st.uptime_seconds, "clients": st.clients_connected}
    except (DaemonUnreachable, RpcError, OSError, TimeoutError) as exc:
        error = str(exc)
    service = next((u for u in units if u.get("Id") in (install.SERVICE, install.LABEL)), None)
    installed = service is not None
    active = service is not None and (service.get("ActiveState") == "active"
                                      or service.get("state") == "running")
    failed = service is not None and service.get("ActiveState") == "failed"
    code = EXIT_OK if daemon else EXIT_ERROR if failed else EXIT_UNREACHABLE
    if a.json:
        print_json({"manager": manager, "installed": installed, "active": active,
                    "units": units, "daemon": daemon, "daemonError": error or None})
        return code
    if not installed:
        print(f"not installed as a {manager} service (`codexctl service install`)")
    for u in units:
        if manager == "systemd":
            state = f"{u.get('ActiveState')} ({u.get('SubState')})"
            extra = f", pid {u['MainPID']}" if u.get("MainPID", "0") != "0" else ""
            extra += f", {u['NRestarts']} restarts" if u.get("NRestarts", "0") != "0" else ""
            print(f"{u.get('Id', '?'):<26} {state:<22} {u.get('UnitFileState', '')}{extra}")
        else:
            print(f"{u['Id']:<26} {u.get('state', '?')}"
                  + (f", pid {u['pid']}" if u.get("pid") else ""))
    if daemon:
        print(f"daemon   codexd {daemon['version']}, pid {daemon['pid']}, socket "
              f"{daemon['socket']}, {daemon['clients']} client(s)")
    else:
        print(f"daemon   not answering: {error}")
    if failed:
        print("hint: `codexctl service logs -n 50` shows why; `systemctl --user reset-failed "
              "codexd` after too many restarts", file=sys.stderr)
    return code


def cmd_logs(_c: Client | None, a: argparse.Namespace) -> Any:
    if _manager(a) == "launchd":
        log = Path.home() / "Library" / "Logs" / "codexd.log"
        argv = ["tail", "-n", str(a.lines), *(["-f"] if a.follow else []), str(log)]
    else:
        argv = ["journalctl", "--user", "-u", install.SERVICE, "-n", str(a.lines),
                "--no-pager", *(["-f"] if a.follow else []),
                *(["-p", a.priority] if a.priority else []),
                *(["-o", "json"] if a.json else [])]
    if shutil.which(argv[0]) is None:
        raise CommandFailed(f"{argv[0]} not found; the daemon logs JSON lines to stderr")
    return subprocess.run(argv, check=False).returncode


def add_commands(add: Any, sub: Any) -> None:
    svc = sub.add_parser("service", help="run codexd as a systemd/launchd user service"
                         ).add_subparsers(dest="service_command", required=True,
                                          metavar="SERVICE_COMMAND")
    manager = {"choices": ["systemd", "launchd"],
               "help": "the service manager (default: this system's)"}
    sp = add("install", cmd_install, "write and enable the user service (and its sockets)",
             svc)
    sp.add_argument("--dry-run", action="store_true",
                    help="print every file and command; change nothing")
    sp.add_argument("--now", action="store_true", help="also start it now")
    sp.add_argument("--config", metavar="FILE",
                    help="the config file the service uses (default: the standard one)")
    sp.add_argument("--manager", **manager)
    sp.add_argument("--worker", action="store_true",
                    help="`codexd worker` instead of the daemon (docs/operations.md, "
                    "\"Running a fleet\")")
    sp = add("uninstall", cmd_uninstall, "stop, disable and remove the user service", svc)
    sp.add_argument("--worker", action="store_true", help="the worker's service only")
    sp.add_argument("--purge", action="store_true",
                    help="also delete the state, config and socket folders")
    sp.add_argument("--yes", action="store_true", help="do not ask before --purge deletes")
    sp.add_argument("--dry-run", action="store_true", help="print what would be removed")
    sp.add_argument("--manager", **manager)
    add("status", cmd_status, "the units' state and the daemon's", svc).add_argument(
        "--manager", **manager)
    sp = add("logs", cmd_logs, "the daemon's log (journalctl --user -u codexd)", svc)
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("-n", "--lines", type=int, default=100, metavar="N")
    sp.add_argument("-p", "--priority", metavar="PRIO",
                    help="only this priority and worse, e.g. err, warning")
    sp.add_argument("--manager", **manager)
    for p in svc.choices.values():
        p.set_defaults(connect=False)
