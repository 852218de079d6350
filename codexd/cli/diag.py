"""``codexctl diag bundle``: one tar.gz with what it takes to diagnose a problem, and no secret.

Holds: ``manifest.json`` (what is in it, what could not be collected and why), ``doctor.json``,
``config.toml`` (secrets shown as "[REDACTED]"), ``versions.json``, ``tables.json`` (rows per
table, no contents) and, when the daemon answers, ``status.json``, ``metrics.json``,
``log-tail.jsonl`` (its last log events), ``appserver-stderr.txt`` and ``recent-calls.json``
(method, timing, outcome: never params or results). With the daemon down the log tail comes from
the journal when there is one. Every part is passed through the run redactor once more, with
the config's secrets and the stored provider tokens, before it is written; the file is 0600.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import msgspec

from codexd import config, diagnostics
from codexd.cli.doctor import Context, add_arguments, report, run_checks
from codexd.cli.output import print_json
from codexd.client import Client, DaemonUnreachable
from codexd.errors import RpcError
from codexd.protocol.base import NoParams
from codexd.protocol.daemon import (
    DAEMON_DIAGNOSTICS,
    DAEMON_METRICS,
    DAEMON_STATUS,
    DiagnosticsParams,
)
from codexd.runs.providers import PROVIDERS
from codexd.runs.redact import redact


def _json(obj: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(obj), indent=2).decode() + "\n"


def _known_secrets(ctx: Context) -> list[str]:
    from codexd.runs.secrets import SecretStore

    found = config.secret_values(ctx.cfg)
    store = SecretStore(ctx.cfg.runs.secret_store, ctx.state_dir)
    for provider in PROVIDERS:
        try:
            value = store.get(provider)
        except Exception:  # an unreadable keyring: the daemon's parts are redacted already
            value = None
        if value:
            found.append(value)
    return found


def collect(a: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]]:
    """(file name → text, part → why it is missing)."""
    ctx, checks = run_checks(a)
    parts: dict[str, str] = {"doctor.json": _json(report(checks))}
    missing: dict[str, str] = {}
    import tomlkit

    parts["config.toml"] = f"# {ctx.config_file}\n" + tomlkit.dumps(config.redacted(ctx.cfg))
    versions = diagnostics.versions()
    try:
        with Client.connect(ctx.socket, client_name="codexctl-diag", timeout=30) as c:
            parts["status.json"] = _json(c.request(DAEMON_STATUS))
            parts["metrics.json"] = _json(c.request(DAEMON_METRICS, NoParams()))
            diag = c.request(DAEMON_DIAGNOSTICS, DiagnosticsParams(
                log_lines=max(0, min(a.log_lines, 2000)), calls=max(0, min(a.calls, 1000))))
    except (DaemonUnreachable, RpcError, OSError, TimeoutError) as exc:
        missing["daemon"] = f"the daemon did not answer: {exc}"
        diag = None
    if diag is not None:
        parts["log-tail.jsonl"] = "".join(line + "\n" for line in diag.log_tail)
        parts["appserver-stderr.txt"] = "".join(line + "\n" for line in diag.app_server_stderr)
        parts["recent-calls.json"] = _json(diag.recent_calls)
        parts["tables.json"] = _json(diag.tables)
        versions = {**diag.versions, "codexctl": versions["codexd"]}
    else:
        tables = _tables_offline(ctx)
        if isinstance(tables, str):
            missing["tables.json"] = tables
        else:
            parts["tables.json"] = _json(tables)
        journal = _journal_tail(a.log_lines)
        if journal is None:
            missing["log-tail"] = "no journal (journalctl --user -u codexd) to read it from"
        else:
            parts["log-tail.txt"] = journal
    parts["versions.json"] = _json(versions)
    secrets = _known_secrets(ctx)
    clean = {name: redact(text, secrets) for name, text in parts.items()}
    clean["manifest.json"] = _json({
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "codexd": versions.get("codexd"), "host": platform.node(),
        "parts": sorted(clean), "missing": missing,
        "redaction": "run redactor (docs/protocol.md) with the config's secrets and the stored "
                     "provider tokens"})
    return clean, missing


def _tables_offline(ctx: Context) -> dict[str, int] | str:
    import apsw

    if not ctx.db.exists():
        return f"{ctx.db} does not exist"
    try:
        conn = apsw.Connection(str(ctx.db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.set_busy_timeout(5000)
            return diagnostics.table_sizes(conn)
        finally:
            conn.close()
    except apsw.Error as exc:
        return f"cannot read {ctx.db}: {exc}"


def _journal_tail(lines: int) -> str | None:
    if shutil.which("journalctl") is None or not lines:
        return None
    done = subprocess.run(["journalctl", "--user", "-u", "codexd", "-n", str(lines), "-o",
                           "cat", "--no-pager"], capture_output=True, text=True, check=False,
                          timeout=30)
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None


def write_bundle(path: Path, parts: dict[str, str]) -> int:
    """Write the tar.gz 0600 (whatever the umask); returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    folder = "codexd-diag"
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        now = time.time()
        for name in sorted(parts):
            data = parts[name].encode()
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime, info.mode = len(data), now, 0o600
            tar.addfile(info, io.BytesIO(data))
    return path.stat().st_size


def cmd_bundle(_c: Client | None, a: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(a.output or f"codexd-diag-{stamp}.tar.gz").expanduser()
    parts, missing = collect(a)
    size = write_bundle(path, parts)
    if a.json:
        print_json({"path": str(path.resolve()), "bytes": size, "parts": sorted(parts),
                    "missing": missing})
        return 0
    print(f"wrote {path} ({size / 1024:.0f} KiB): {', '.join(sorted(parts))}")
    for part, why in missing.items():
        print(f"  without {part}: {why}")
    print("it holds no secrets, tokens or file contents; look inside with "
          f"`tar -xzOf {path} codexd-diag/manifest.json`")
    return 0


def add_commands(add: Any, sub: Any) -> None:
    diag = sub.add_parser("diag", help="diagnostics").add_subparsers(
        dest="diag_command", required=True, metavar="DIAG_COMMAND")
    sp = add("bundle", cmd_bundle, "write a tar.gz for a bug report: status, metrics, doctor, "
             "redacted config, log tail, versions (works with the daemon down)", diag)
    sp.add_argument("-o", "--output", metavar="FILE",
                    help="where (default ./codexd-diag-<time>.tar.gz)")
    sp.add_argument("--log-lines", type=int, default=500, metavar="N",
                    help="log lines to include (default 500, at most 2000)")
    sp.add_argument("--calls", type=int, default=200, metavar="N",
                    help="recent call fingerprints to include (default 200, at most 1000)")
    add_arguments(sp)
