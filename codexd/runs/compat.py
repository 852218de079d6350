"""What an installed provider CLI really offers, read off the binary itself.

:func:`probe` runs ``--version`` and the help of the subcommands codexd uses (``codex exec
--help``, ``codex exec resume --help``; ``claude --help``), collects the flags and the choices
of ``--permission-mode``, and :func:`assess` maps them to ``supported | degraded | blocked``
with the reasons: a flag codexd cannot run without (``codex exec --json``, ``claude -p
--output-format stream-json``) or a version older than :data:`MIN_VERSION` blocks the binary; an
optional one missing degrades it, and a run asking for that option gets a
``run.compatibility_warning`` instead of the option. Results are cached per binary path, mtime
and size (in memory and in the ``capability_snapshots`` table): a CLI upgraded in place is
probed again, an unchanged one never.

Pure but for :func:`probe` (subprocesses; call it from a worker thread).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["supported", "degraded", "blocked"]

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_FLAG = re.compile(r"(?<![\w-])(--[a-zA-Z][a-zA-Z0-9-]*|-[a-zA-Z](?=[ ,]))")
_CHOICES = re.compile(r'--permission-mode\b.*?\(choices:\s*([^)]*)\)', re.S)

#: Oldest versions codexd runs at all.
MIN_VERSION = {"codex": (0, 100, 0), "claude": (2, 0, 0)}
#: The versions the test suite runs against (the Makefile's pins), newest first.
TESTED = {"codex": ("0.171.0", "0.169.0"), "claude": ("2.1.332", "2.1.197")}
#: Flags codexd cannot run a provider without.
REQUIRED = {
    "codex": ("--json", "--cd", "--skip-git-repo-check"),
    "claude": ("--print", "--output-format", "--verbose"),
}
#: Flags that work though the help does not list them (claude hides --permission-prompt-tool;
#: it has been there since 1.0).
HIDDEN = {"codex": frozenset[str](), "claude": frozenset({"--permission-prompt-tool"})}
#: Optional flags: what each gives a run (named as in run/start), for the reasons.
OPTIONAL = {
    "codex": {
        "--output-schema": "outputSchema", "--model": "model", "--sandbox": "sandbox",
        "--config": "harness.config (-c key=value)", "--add-dir": "harness.addDirs",
        "--image": "harness.images", "--profile": "harness.codexProfile",
        "resume": "resuming a session",
    },
    "claude": {
        "--json-schema": "outputSchema", "--max-budget-usd": "maxBudgetUsd",
        "--model": "model", "--resume": "resuming a session",
        "--mcp-config": "harness.mcp", "--allowedTools": "harness.allowedTools",
        "--disallowedTools": "harness.disallowedTools",
        "--append-system-prompt": "harness.appendSystemPrompt", "--add-dir": "harness.addDirs",
        "--permission-mode": "autoApprove",
    },
}


@dataclass(frozen=True)
class Snapshot:
    provider: str
    path: str
    mtime_ns: int
    size: int
    version: str | None
    flags: frozenset[str]
    permission_modes: tuple[str, ...]
    status: Status
    reasons: tuple[str, ...]
    checked_at: int
    #: Optional flags this binary lacks.
    missing: tuple[str, ...] = field(default=())

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def prompt_mode(self) -> str | None:
        """claude's permission mode that asks before acting: ``manual`` (2.1.332) or
        ``default`` (2.1.197); None when neither is offered."""
        for mode in ("manual", "default"):
            if mode in self.permission_modes:
                return mode
        return None


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = _VERSION.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def parse_help(text: str) -> tuple[set[str], tuple[str, ...]]:
    """(every flag named in a help text, the choices of --permission-mode)."""
    flags = set(_FLAG.findall(text))
    # clap's "-C, --cd <DIR>" and commander's "-p, --print": both spellings count.
    m = _CHOICES.search(text)
    modes = tuple(re.findall(r'"([^"]+)"', m.group(1))) if m else ()
    return flags, modes


def _subcommands(text: str) -> set[str]:
    """Names listed under a "Commands:" heading (clap and commander both print one)."""
    out: set[str] = set()
    section = re.split(r"^Commands:\s*$", text, maxsplit=1, flags=re.M)
    if len(section) < 2:
        return out
    for line in section[1].splitlines():
        if not line.strip():
            if out:
                break
            continue
        if not line.startswith(" "):
            break
        m = re.match(r"^ {2}(\S+)", line)  # deeper indents continue a description
        if m:
            out.update(w for w in m.group(1).split("|") if re.fullmatch(r"[a-z][a-z0-9-]*", w))
    return out


def assess(provider: str, version: str | None, flags: set[str] | frozenset[str],
           modes: tuple[str, ...] = ()) -> tuple[Status, tuple[str, ...], tuple[str, ...]]:
    """(status, reasons, optional flags missing)."""
    if version is None:
        return "blocked", (f"`{provider} --version` printed no version",), ()
    parsed = parse_version(version)
    minimum = MIN_VERSION[provider]
    if parsed is None or parsed < minimum:
        return "blocked", (f"{provider} {version} is older than "
                           f"{'.'.join(map(str, minimum))}, the oldest codexd runs; "
                           f"install {TESTED[provider][0]}",), ()
    lacking = [f for f in REQUIRED[provider] if f not in flags]
    if lacking:
        return "blocked", (f"{provider} {version} has no {', '.join(lacking)}: codexd cannot "
                           "read its output",), ()
    missing = tuple(f for f in OPTIONAL[provider] if f not in flags)
    reasons = [f"no {f}: {OPTIONAL[provider][f]} is dropped" for f in missing]
    if provider == "claude" and "--permission-mode" in flags and not (
            {"manual", "default"} & set(modes)):
        reasons.append("--permission-mode offers neither manual nor default: approvals "
                       "through codexd are off")
    if reasons:
        return "degraded", tuple(reasons), missing
    return "supported", (), ()


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return p.returncode, p.stdout + p.stderr


def identity(path: str) -> tuple[str, int, int]:
    """(real path, mtime in ns, size): what a cached snapshot is valid for."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_mtime_ns, st.st_size


def probe(provider: str, path: str) -> Snapshot:
    """Ask the binary (blocking: a few short subprocesses). Raises OSError when it cannot be
    executed at all: a run then fails (and is retried) as a spawn failure."""
    real, mtime_ns, size = identity(path)
    code, out = _run([path, "--version"])
    if code == -1:  # it cannot be executed at all (now): not a verdict worth keeping
        raise OSError(f"cannot run {path}: {out}")
    version = None
    if code == 0 and (m := _VERSION.search(out)):
        version = m.group(0)
    flags: set[str] = set()
    modes: tuple[str, ...] = ()
    helps = ([[path, "exec", "--help"], [path, "exec", "resume", "--help"]]
             if provider == "codex" else [[path, "--help"]])
    for i, argv in enumerate(helps):
        hcode, text = _run(argv)
        if hcode != 0:
            continue
        found, choices = parse_help(text)
        flags |= found
        modes = modes or choices
        if i == 0:
            flags |= _subcommands(text)
    if provider == "codex":
        # The interactive CLI (session/start): its own options, prefixed "tui:".
        hcode, text = _run([path, "--help"])
        if hcode == 0:
            found, _ = parse_help(text)
            flags |= {"tui:" + f for f in found | _subcommands(text)}
    if version is not None:
        flags |= HIDDEN[provider]
    status, reasons, missing = assess(provider, version, flags, modes)
    return Snapshot(provider=provider, path=real, mtime_ns=mtime_ns, size=size,
                    version=version, flags=frozenset(flags), permission_modes=modes,
                    status=status, reasons=reasons, checked_at=int(time.time() * 1000),
                    missing=missing)
