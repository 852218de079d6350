"""codexctl against a real daemon: output, --json, and its named exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.helpers.daemon import make_daemon


def test_status_human_and_json(daemon):
    out = daemon.ctl("status")
    assert out.returncode == 0, out.stderr
    assert f"pid {daemon.proc.pid}" in out.stdout
    assert str(daemon.socket) in out.stdout
    data = json.loads(daemon.ctl("status", "--json").stdout)
    assert data["pid"] == daemon.proc.pid
    assert data["dbPath"] == str(daemon.state_dir / "codexd.db")
    assert data["methods"]["daemon/status"]["calls"] >= 1
    # --json before the command works too.
    assert json.loads(daemon.ctl("--json", "status").stdout)["pid"] == daemon.proc.pid


def test_atoms_commands(daemon):
    assert daemon.ctl("atoms", "set", "ui.theme", '"dark"').returncode == 0
    assert daemon.ctl("atoms", "set", "ui.name", "plain words", "--string").returncode == 0
    assert daemon.ctl("atoms", "get", "ui.theme").stdout.strip() == '"dark"'
    got = json.loads(daemon.ctl("atoms", "get", "ui.name", "--json").stdout)
    assert got["value"] == "plain words" and got["exists"] is True
    ls = daemon.ctl("atoms", "ls", "ui.").stdout.splitlines()
    assert ls[0].split() == ["KEY", "REVISION", "VALUE"]  # a table with a header
    assert [line.split()[0] for line in ls[1:]] == ["ui.name", "ui.theme"]
    listed = json.loads(daemon.ctl("atoms", "ls", "--json").stdout)
    assert {a["key"] for a in listed["atoms"]} == {"ui.name", "ui.theme"}

    conflict = daemon.ctl("atoms", "set", "ui.theme", '"light"', "--expect-revision", "0")
    assert conflict.returncode == 1
    assert "revision" in conflict.stderr and "-32010" in conflict.stderr
    err = json.loads(daemon.ctl("atoms", "set", "ui.theme", "1", "--expect-revision", "0",
                                "--json").stdout)
    assert err["error"]["code"] == -32010 and err["error"]["data"]["currentRevision"] == 1

    assert daemon.ctl("atoms", "rm", "ui.theme").returncode == 0
    missing = daemon.ctl("atoms", "get", "ui.theme")
    assert missing.returncode == 1 and "not set" in missing.stderr


def test_call_prints_result_json(daemon):
    out = daemon.ctl("call", "settings/update", '{"patch": {"defaultModel": "gpt-5"}}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["settings"]["defaultModel"] == "gpt-5"
    assert json.loads(daemon.ctl("call", "settings/get").stdout)["settings"]["defaultModel"] \
        == "gpt-5"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["call", "no/such/method"], 1),
        (["call", "atom/get", '{"key": 5}'], 1),
        (["call", "atom/get", "{not json"], 2),
        (["atoms", "set", "k", "not-json"], 2),
        (["frobnicate"], 2),
        (["atoms"], 2),
    ],
)
def test_exit_codes(daemon, args, code):
    out = daemon.ctl(*args)
    assert out.returncode == code, (out.stdout, out.stderr)
    assert out.stderr.strip(), "an error must say what went wrong"


def test_unreachable_exit_code_and_hint(short_tmp):
    d = make_daemon(short_tmp)
    out = d.ctl("status")
    assert out.returncode == 3
    assert "codexd run" in out.stderr and "systemctl --user start codexd" in out.stderr
    out = d.ctl("status", "--json")
    assert out.returncode == 3 and "codexd run" in json.loads(out.stdout)["error"]["message"]


def test_health_command(daemon):
    out = daemon.ctl("health")
    assert out.returncode == 0 and out.stdout.startswith("healthy")
    assert "store" in out.stdout and "socket" in out.stdout


def test_health_reports_missing_socket(daemon):
    with daemon.client() as c:
        daemon.socket.unlink()
        h = c.call("daemon/health")
    assert h["ok"] is False
    assert "missing" in h["checks"]["socket"]["detail"]


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_by_hand_with_socat(daemon):
    script = (
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"socat"}}}\n'
        b'{"jsonrpc":"2.0","method":"initialized"}\n'
        b'{"id":2,"method":"daemon/status"}\n'
    )
    out = subprocess.run(["socat", "-t", "2", "-", f"UNIX-CONNECT:{daemon.socket}"],
                         input=script, capture_output=True, timeout=30, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[0]["id"] == 1 and lines[0]["result"]["server"] == "codexd"
    assert lines[1]["id"] == 2 and lines[1]["result"]["pid"] == daemon.proc.pid
