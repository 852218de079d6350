"""Token holders are confined to workspace grants on every path a method takes (codexd's own
and the app-server's, from one table); local clients only with workspaces.confine_local."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from codexd.errors import ErrorCode, RpcError
from tests.helpers.daemon import DaemonProc, make_daemon
from tests.helpers.peers import ws_tcp

INIT = {"clientInfo": {"name": "remote", "version": "1"}}


def _setup(d: DaemonProc, base: Path) -> tuple[str, str, Path, Path]:
    inside, outside = base / "project", base / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    assert d.ctl("workspace", "add", str(inside)).returncode == 0
    token = d.ctl("token", "create", "--name", "laptop", "--role", "operator").stdout.strip()
    with d.client() as c:
        url = c.call("daemon/status")["websocket"]
    return url, token, inside, outside


@asynccontextmanager
async def _peer(url: str, token: str):
    async with ws_tcp(url, token) as p:
        await p.call("initialize", INIT)
        await p.send({"jsonrpc": "2.0", "method": "initialized"})
        yield p


async def test_a_token_holder_works_only_inside_grants(short_tmp: Path):
    d = make_daemon(short_tmp).start()
    try:
        url, token, inside, outside = _setup(d, short_tmp)
        async with _peer(url, token) as p:
            term = {"cols": 80, "rows": 24, "command": ["/bin/true"]}
            err = await p.error("terminal/create", {**term, "cwd": str(outside)})
            assert err["code"] == ErrorCode.OUTSIDE_WORKSPACE
            assert err["data"]["nearestGrant"] == str(inside)
            assert (await p.call("terminal/create", {**term, "cwd": str(inside)}))["pid"] > 0
            for method, params in (
                    ("run/start", {"prompt": "x", "cwd": str(outside)}),
                    ("conversation/create", {"provider": "codex", "cwd": str(outside)}),
                    ("automation/create", {"kind": "cron", "prompt": "x",
                                           "rrule": "FREQ=DAILY;BYHOUR=9",
                                           "cwds": [str(inside), str(outside)]}),
                    ("profile/save", {"name": "p", "defaults": {"cwd": str(outside)}}),
                    # The app-server's methods, checked before they are forwarded.
                    ("thread/start", {"cwd": str(outside)}),
                    ("command/exec", {"command": ["cat", "/etc/hostname"],
                                      "cwd": str(outside)}),
                    ("fs/readFile", {"path": "/etc/passwd"}),
                    ("fs/copy", {"sourcePath": f"{inside}/a", "destinationPath": "/tmp/b"}),
                    ("fuzzyFileSearch", {"query": "x", "roots": [str(inside), "/"]})):
                err = await p.error(method, params)
                assert err["code"] == ErrorCode.OUTSIDE_WORKSPACE, (method, err)
            # thread/start without a cwd runs in the app-server's folder (home): outside.
            err = await p.error("thread/start", {})
            assert err["code"] == ErrorCode.OUTSIDE_WORKSPACE
            # Inside, the request goes on (here to an app-server that is switched off).
            err = await p.error("thread/start", {"cwd": str(inside)})
            assert err["code"] == ErrorCode.METHOD_NOT_FOUND
            # A run's effective cwd counts: a profile's default outside is refused too.
        with d.client() as local:  # a local client is not confined (it could run a shell)
            local.call("profile/save", {"name": "out", "defaults": {"cwd": str(outside),
                                                                 "provider": "codex"}})
            assert local.call("terminal/create", {**term, "cwd": str(outside)})["pid"] > 0
        async with _peer(url, token) as p:
            err = await p.error("run/start", {"prompt": "x", "profile": "out"})
            assert err["code"] == ErrorCode.OUTSIDE_WORKSPACE, err
            assert (await p.call("run/start", {"prompt": "x", "provider": "codex",
                                                "cwd": str(inside)}))["runId"]
    finally:
        d.stop()


def test_confine_local_confines_local_clients_and_keeps_existing_work(short_tmp: Path):
    old = short_tmp / "old-project"
    old.mkdir()
    d = make_daemon(short_tmp).start()
    with d.client() as c:
        c.call("automation/create", {"kind": "cron", "prompt": "nightly", "rrule":
                                     "FREQ=DAILY;BYHOUR=2", "cwds": [str(old)]})
    d.stop()
    # The upgrade: confinement is switched on; what worked keeps working.
    config = d.base / "config" / "codexd" / "config.toml"
    config.write_text(config.read_text() + "\n[workspaces]\nconfine_local = true\n")
    d.start()
    try:
        with d.client() as c:
            grants = [g["path"] for g in c.call("workspace/list")["grants"]]
            assert grants == [str(old)]
            term = {"cols": 80, "rows": 24, "command": ["/bin/true"]}
            assert c.call("terminal/create", {**term, "cwd": str(old)})["pid"] > 0
            with pytest.raises(RpcError) as err:
                c.call("terminal/create", {**term, "cwd": "/tmp"})
            assert err.value.code == ErrorCode.OUTSIDE_WORKSPACE
        assert '"event":"workspaces_granted_for_existing_work"' in d.log()
    finally:
        d.stop()
