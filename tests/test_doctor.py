"""`codexctl doctor` and `codexctl diag bundle` against a real daemon (and with none), real
`codex app-server` processes and a real database file."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import apsw

from codexd.runs.compat import TESTED
from tests.fake_model import FakeModel, message, write_codex_home
from tests.helpers import eventually, require_cli
from tests.helpers.bridge import wait_ready
from tests.helpers.daemon import DaemonProc, make_bridge, make_daemon
from tests.helpers.runs import wait_done

DATA = Path(__file__).resolve().parent / "data"


def doctor(d: DaemonProc, *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    out = d.ctl("doctor", "--json", "--state-dir", str(d.state_dir), *extra, timeout=90)
    assert out.stdout, out.stderr
    report = json.loads(out.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] == (out.returncode == 0)
    return out.returncode, checks


def test_doctor_with_the_daemon_down_names_each_problem_and_its_fix(short_tmp: Path):
    home = short_tmp / "codex-home"
    d = make_daemon(short_tmp, config=(
        f'[appserver]\nenabled = true\ncodex_home = "{home}"\n'))
    # Problems a user can have: a state dir others can read, a database from a newer codexd,
    # a thread lock left behind by a codex that crashed.
    d.state_dir.mkdir(parents=True)
    os.chmod(d.state_dir, 0o755)
    db = d.state_dir / "codexd.db"
    shutil.copy(DATA / "codexd-v1.db", db)
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    (home / "thread-writer-locks").mkdir(parents=True)
    (home / "thread-writer-locks" / "0199aaaa-dead-7000-8000-000000000001.lock").touch()

    code, checks = doctor(d, "--socket", str(d.socket))
    assert code == 1
    assert set(checks) >= {"daemon", "permissions", "appserver", "clis", "secret-store",
                           "codex-home", "service", "disk", "database", "sandbox"}
    for c in checks.values():
        assert c["status"] in ("ok", "warn", "fail")
        assert c["status"] == "ok" or c["fix"], f"{c['name']} says what is wrong but not the fix"
    assert checks["daemon"]["status"] == "fail"
    assert "codexd run" in checks["daemon"]["fix"]
    assert checks["permissions"]["status"] == "fail"
    assert f"chmod 700 {d.state_dir}" in checks["permissions"]["fix"]
    assert checks["database"]["status"] == "fail"
    assert "newer codexd" in checks["database"]["summary"]
    assert checks["database"]["details"]["schemaVersion"] == 999
    assert checks["codex-home"]["status"] == "warn"
    assert "1 stale thread lock" in checks["codex-home"]["summary"]
    assert checks["appserver"]["status"] == "ok"
    assert checks["appserver"]["details"]["version"] == TESTED["codex"][0]

    # Fixed as told, those checks pass.
    os.chmod(d.state_dir, 0o700)
    db.unlink()
    (home / "thread-writer-locks" / "0199aaaa-dead-7000-8000-000000000001.lock").unlink()
    _, checks = doctor(d, "--socket", str(d.socket))
    assert {n: checks[n]["status"] for n in ("permissions", "database", "codex-home")} == {
        "permissions": "ok", "database": "ok", "codex-home": "ok"}
    # The table for people says the same, with the fixes under it.
    text = d.ctl("doctor", "--state-dir", str(d.state_dir), timeout=90)
    assert text.returncode == 1
    assert "daemon: start it" in text.stdout and " fail" in text.stdout


def test_doctor_finds_another_app_server_on_codexds_codex_home(short_tmp: Path):
    codex = require_cli("codex")
    bridge = make_bridge(short_tmp)
    bridge.daemon.start()
    rogue = None
    try:
        with bridge.client() as c:
            wait_ready(c)
            ours = c.call("daemon/appServer/status")["pid"]
        _, checks = doctor(bridge.daemon)
        assert checks["daemon"]["status"] == "ok", checks["daemon"]
        assert checks["codex-home"]["status"] == "ok", checks["codex-home"]
        # The stock TUI or a desktop starting its own app-server on the same CODEX_HOME.
        rogue = subprocess.Popen([codex, "app-server"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**bridge.daemon.env, "CODEX_HOME": str(bridge.codex_home)})
        eventually(lambda: Path(f"/proc/{rogue.pid}/cmdline").exists(), 5, what="the rogue")
        _, checks = doctor(bridge.daemon)
        home = checks["codex-home"]
        assert home["status"] == "warn"
        assert home["details"]["otherAppServers"] == [rogue.pid]
        assert ours not in home["details"]["otherAppServers"]
        assert f"pid {rogue.pid}" in home["summary"] and "codex --remote unix://" in home["fix"]
    finally:
        if rogue is not None:
            rogue.kill()
            rogue.wait(10)
            assert rogue.stdin is not None
            rogue.stdin.close()
        bridge.daemon.stop()
        bridge.model.stop()  # type: ignore[attr-defined]


PLANTED = {place: f"pl4nt{place}Kx9q" for place in
           ("config", "env", "run", "terminal", "atom")}


def test_a_diagnostics_bundle_has_what_a_bug_report_needs_and_no_secret(short_tmp: Path):
    require_cli("codex")
    model = FakeModel().start()
    codex_home = write_codex_home(short_tmp / "codex-home", model.base_url)
    (short_tmp / "home").mkdir()
    d = make_daemon(short_tmp, config=(
        f'[runs]\ncodex_home = "{codex_home}"\nsecret_store = "file"\n'
        f'[notify]\nwebhook_url = "http://127.0.0.1:9/hook"\n'
        f'webhook_secret = "{PLANTED["config"]}"\n'),
        env={"HOME": str(short_tmp / "home"), "PLANTED_ENV": PLANTED["env"]})
    d.start()
    try:
        with d.client() as c:
            c.call("secret/set", {"provider": "codex", "token": PLANTED["run"]})
            model.script([message(f"the key is {PLANTED['run']}")])
            run = c.call("run/start", {"provider": "codex", "prompt": "print the key",
                                       "cwd": str(short_tmp)})
            assert wait_done(c, run["runId"])["status"] == "succeeded"
            c.call("atom/set", {"key": "planted", "value": PLANTED["atom"]})
            tid = c.call("terminal/create", {"cwd": str(short_tmp), "cols": 80, "rows": 24,
                                             "command": ["sh", "-c",
                                                         f"echo {PLANTED['terminal']}; cat"]})
            snap = eventually(lambda: (lambda s: s if PLANTED["terminal"].encode()
                                       in base64.b64decode(s["snapshot"]) else None)(
                c.call("terminal/attach", {"terminalId": tid["terminalId"]})), 10,
                what="the terminal to print the token")
            assert snap
            c.call("daemon/status")

        out = d.ctl("diag", "bundle", "-o", str(short_tmp / "bundle.tar.gz"), "--json",
                    "--state-dir", str(d.state_dir), timeout=120)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        path = Path(result["path"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert result["missing"] == {}
        with tarfile.open(path) as tar:
            files = {m.name.removeprefix("codexd-diag/"): tar.extractfile(m).read().decode()
                     for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        assert set(files) == {"manifest.json", "doctor.json", "config.toml", "status.json",
                              "metrics.json", "log-tail.jsonl", "appserver-stderr.txt",
                              "recent-calls.json", "tables.json", "versions.json"}
        for name, text in files.items():
            for place, token in PLANTED.items():
                assert token not in text, f"the {place} token leaked into {name}"
        # ... and it is useful: real figures, not placeholders.
        assert 'webhook_secret = "[REDACTED]"' in files["config.toml"]
        assert json.loads(files["status.json"])["pid"] == d.proc.pid  # type: ignore[union-attr]
        assert json.loads(files["metrics.json"])["methods"]["atom/set"]["calls"] == 1
        tables = json.loads(files["tables.json"])
        assert tables["runs"] == 1 and tables["atoms"] >= 1 and tables["run_events"] > 3
        calls = json.loads(files["recent-calls.json"])
        atom_call = next(x for x in calls if x["method"] == "atom/set")
        assert set(atom_call) == {"at", "method", "owner", "durationMs", "code"}
        events = [json.loads(line) for line in files["log-tail.jsonl"].splitlines()]
        assert any(e.get("event") == "daemon_started" for e in events)
        versions = json.loads(files["versions.json"])
        assert versions["codexd"] and versions["sqlite"] and versions["trio"] != "absent"
        assert {c["name"] for c in json.loads(files["doctor.json"])["checks"]} >= {
            "daemon", "database"}
    finally:
        d.stop()
        model.stop()
