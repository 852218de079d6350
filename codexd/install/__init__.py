"""Installing codexd as a user service: what ``codexctl service install`` writes and runs.

A :class:`Plan` is computed first (files with their rendered contents, commands, notes) and only
then applied, so ``--dry-run`` prints exactly what ``install`` would do. The templates in
``templates/`` are the checked-in units; rendering fills in what only the installing machine
knows:

* ``ExecStart`` / ``ProgramArguments``: the interpreter running this code (``sys.executable``,
  unresolved, so a virtualenv stays a virtualenv) with ``-m codexd run``: the code that is
  actually installed, never a ``codexd`` found on PATH (an unrelated project on PyPI has that
  name);
* ``PATH``: the folders of the CLIs the daemon is configured with (codex, claude, and node for
  the npm-installed ones), then the system folders. Nothing else of the installing shell's
  environment is copied into the unit.
* the sockets: the paths and the WebSocket address the daemon would use, with
  ``%t`` (``$XDG_RUNTIME_DIR``) where the default applies.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from codexd.config import Config
from codexd.paths import APP, SOCKET_NAME, WIRE_SOCKET_NAME

Manager = Literal["systemd", "launchd"]

SERVICE = "codexd.service"
SOCKETS = {"ndjson": "codexd.socket", "appserver": "codexd-appserver.socket",
           "websocket": "codexd-websocket.socket"}
LABEL = "dev.codexd.codexd"
#: `codexd worker` (codexctl service install --worker).
WORKER_SERVICE = "codexd-worker.service"
WORKER_LABEL = "dev.codexd.worker"
SYSTEM_PATH = ["/usr/local/bin", "/usr/bin", "/bin"]


@dataclass(frozen=True, slots=True)
class UnitFile:
    path: Path
    content: str


@dataclass(slots=True)
class Plan:
    """Everything ``install`` (or ``uninstall``) will do, in order."""

    manager: Manager
    files: list[UnitFile] = field(default_factory=list)
    #: Run after the files are written (install) or before they are removed (uninstall).
    commands: list[list[str]] = field(default_factory=list)
    #: The service's PATH and where each CLI was found (None: not found).
    path: str = ""
    found: dict[str, str | None] = field(default_factory=dict)
    exec_start: list[str] = field(default_factory=list)
    #: Things the user should know (a missing CLI, linger, CODEX_HOME not in the config).
    notes: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)


def default_manager() -> Manager:
    return "launchd" if sys.platform == "darwin" else "systemd"


def unit_dir(manager: Manager, environ: dict[str, str], home: Path) -> Path:
    if manager == "launchd":
        return home / "Library" / "LaunchAgents"
    xdg = environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return base / "systemd" / "user"


def program(config_file: Path | None, *, worker: bool = False) -> list[str]:
    """The daemon's (or the worker's) argv: this interpreter, this package."""
    argv = [sys.executable, "-m", "codexd", "worker" if worker else "run", "--log-format",
            "json"]
    if config_file is not None:
        argv += ["--config", str(config_file)]
    return argv


def find_clis(cfg: Config, environ: dict[str, str]) -> dict[str, str | None]:
    """Where the daemon will find each CLI it is configured with, searched like it does."""
    from codexd.runs.executor import ROOT

    search = environ.get("PATH", os.defpath)
    local = ROOT / ".tools" / "npm" / "node_modules" / ".bin"

    def which(name: str, configured: str = "") -> str | None:
        if configured:
            return shutil.which(os.path.expanduser(configured), path=search)
        found = shutil.which(name, path=search)
        if found is None and os.access(local / name, os.X_OK):
            found = str(local / name)
        return found

    found: dict[str, str | None] = {
        "codex": which("codex", cfg.appserver.command or cfg.runs.codex_command),
        "claude": which("claude", cfg.runs.claude_command),
    }
    # The npm-installed CLIs are scripts starting with `#!/usr/bin/env node`.
    found["node"] = shutil.which("node", path=search)
    return found


def service_path(found: dict[str, str | None]) -> str:
    dirs: list[str] = [os.path.dirname(sys.executable)]
    dirs += [os.path.dirname(p) for p in found.values() if p]
    dirs += SYSTEM_PATH
    return os.pathsep.join(dict.fromkeys(dirs))


def _systemd_arg(arg: str) -> str:
    """One ExecStart word: specifiers (%) and variables ($) escaped, quoted when needed."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if any(c in escaped for c in " \t\"'\\;"):
        return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def _template(name: str) -> str:
    return resources.files("codexd.install").joinpath("templates", name).read_text()


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"unfilled template placeholders: {left}"
    return text


def _unit_path(path: str) -> str:
    return os.path.expanduser(path).replace("%", "%%")


def sockets(cfg: Config) -> dict[str, str]:
    """The ListenStream= of each socket unit: the addresses the daemon itself would use
    under the service manager (``%t`` is its ``$XDG_RUNTIME_DIR``)."""
    ndjson = _unit_path(cfg.daemon.socket) if cfg.daemon.socket else f"%t/{APP}/{SOCKET_NAME}"
    out = {"ndjson": ndjson}
    if cfg.appserver.enabled and cfg.appserver.serve_socket:
        out["appserver"] = _unit_path(cfg.appserver.socket) if cfg.appserver.socket else \
            f"{ndjson.rpartition('/')[0]}/{WIRE_SOCKET_NAME}"
    if cfg.websocket.listen:
        out["websocket"] = cfg.websocket.listen
    return out


def plan_install(cfg: Config, *, manager: Manager, environ: dict[str, str], home: Path,
                 config_file: Path | None, now: bool = False, worker: bool = False) -> Plan:
    found = find_clis(cfg, environ)
    plan = Plan(manager=manager, found=found, path=service_path(found),
                exec_start=program(config_file, worker=worker))
    for name in ("codex", "claude"):
        if found.get(name) is None:
            plan.notes.append(f"{name} was not found on PATH: the service will not find it "
                              "either; install it, then run `codexctl service install` again")
    if environ.get("CODEX_HOME") and not cfg.appserver.codex_home:
        plan.notes.append(f"CODEX_HOME={environ['CODEX_HOME']} is set in this shell but the "
                          "service will not see it; set appserver.codex_home in config.toml")
    folder = unit_dir(manager, environ, home)
    if worker and cfg.runs.executor.address == "127.0.0.1:7233" and not config_file:
        plan.notes.append("runs.executor.address is the default (127.0.0.1:7233): set the "
                          "Temporal cluster's address in config.toml ([runs.executor])")
    if manager == "launchd":
        _plan_launchd(plan, folder, home, now, worker=worker)
    elif worker:
        _plan_systemd_worker(plan, folder, now)
    else:
        _plan_systemd(plan, cfg, folder, now)
    return plan


def _plan_systemd_worker(plan: Plan, folder: Path, now: bool) -> None:
    plan.files.append(UnitFile(folder / WORKER_SERVICE, _fill(_template(WORKER_SERVICE), {
        "EXEC_START": " ".join(map(_systemd_arg, plan.exec_start)),
        "PATH": plan.path.replace("%", "%%").replace('"', '\\"'),
    })))
    plan.units = [WORKER_SERVICE]
    plan.commands.append(["systemctl", "--user", "daemon-reload"])
    plan.commands.append(["systemctl", "--user", "enable", *(["--now"] if now else []),
                          WORKER_SERVICE])


def _plan_systemd(plan: Plan, cfg: Config, folder: Path, now: bool) -> None:
    listen = sockets(cfg)
    socket_units = [SOCKETS[k] for k in listen]
    extra = [u for u in socket_units if u != SOCKETS["ndjson"]]
    wants = f"Wants={' '.join(extra)}\nAfter={' '.join(extra)}" if extra else ""
    plan.files.append(UnitFile(folder / SERVICE, _fill(_template(SERVICE), {
        "EXEC_START": " ".join(map(_systemd_arg, plan.exec_start)),
        "PATH": plan.path.replace("%", "%%").replace('"', '\\"'),
        "WANTS_SOCKETS": wants,
        "ALSO": " ".join(socket_units),
    })))
    for key, address in listen.items():
        unit = SOCKETS[key]
        plan.files.append(UnitFile(folder / unit, _fill(_template(unit), {"LISTEN": address})))
    plan.units = [*socket_units, SERVICE]
    plan.commands.append(["systemctl", "--user", "daemon-reload"])
    plan.commands.append(["systemctl", "--user", "enable", *(["--now"] if now else []),
                          *plan.units])


def _plan_launchd(plan: Plan, folder: Path, home: Path, now: bool, *,
                  worker: bool = False) -> None:
    from xml.sax.saxutils import escape

    label = WORKER_LABEL if worker else LABEL
    args = "\n".join(f"        <string>{escape(a)}</string>" for a in plan.exec_start)
    target = folder / f"{label}.plist"
    plan.files.append(UnitFile(target, _fill(_template(f"{LABEL}.plist"), {
        "LABEL": label, "PROGRAM_ARGUMENTS": args, "PATH": escape(plan.path),
        "LOG": escape(str(home / "Library" / "Logs" /
                          ("codexd-worker.log" if worker else "codexd.log"))),
    })))
    plan.units = [label]
    domain = f"gui/{os.getuid()}"
    plan.commands.append(["launchctl", "bootstrap", domain, str(target)])
    if now:
        plan.commands.append(["launchctl", "kickstart", "-k", f"{domain}/{label}"])


def plan_uninstall(*, manager: Manager, environ: dict[str, str], home: Path,
                   worker: bool = False) -> Plan:
    folder = unit_dir(manager, environ, home)
    plan = Plan(manager=manager)
    if manager == "launchd":
        label = WORKER_LABEL if worker else LABEL
        target = folder / f"{label}.plist"
        plan.units = [label]
        plan.commands.append(["launchctl", "bootout", f"gui/{os.getuid()}/{label}"])
        plan.files.append(UnitFile(target, ""))
        return plan
    names = [WORKER_SERVICE] if worker else [SERVICE, *SOCKETS.values()]
    present = [n for n in names if (folder / n).exists()]
    plan.units = present or names
    plan.commands.append(["systemctl", "--user", "disable", "--now", *plan.units])
    plan.files += [UnitFile(folder / n, "") for n in names if (folder / n).exists()]
    plan.commands.append(["systemctl", "--user", "daemon-reload"])
    return plan
