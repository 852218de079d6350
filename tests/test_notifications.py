"""Change notifications reach the other clients, in order, through the trio client."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import trio

from codexd.client import open_client

ROOT = Path(__file__).resolve().parent.parent


async def test_changes_reach_other_clients_in_order_and_not_the_writer(daemon):
    with trio.fail_after(30):
        async with open_client(daemon.socket, client_name="watcher") as watcher, \
                open_client(daemon.socket, client_name="writer") as writer:
            await writer.call("atom/set", {"key": "a", "value": 1})
            await writer.call("atom/set", {"key": "a", "value": {"deep": [1, 2]}})
            await writer.call("atom/delete", {"key": "a"})
            await writer.call("settings/update", {"patch": {"defaultModel": "o3"}})
            seen = []
            async for note in watcher.notifications():
                seen.append(note)
                if len(seen) == 4:
                    break
            assert [n.method for n in seen] == ["atom/changed"] * 3 + ["settings/changed"]
            assert seen[0].params["value"] == 1 and seen[0].params["revision"] == 1
            assert seen[1].params["value"] == {"deep": [1, 2]}
            assert seen[2].params["deleted"] is True and seen[2].params["value"] is None
            assert seen[3].params["settings"] == {"defaultModel": "o3"}
            # The writer was told nothing about its own changes.
            with trio.move_on_after(0.3):
                async for note in writer.notifications():
                    raise AssertionError(f"writer got its own change: {note}")


def test_watch_atoms_example_prints_changes(daemon):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "clients" / "watch_atoms.py"), "--socket",
         str(daemon.socket), "--prefix", "ui."],
        stdout=subprocess.PIPE, text=True, env=daemon.env,
    )
    try:
        deadline = time.monotonic() + 15
        with daemon.client() as c:
            while c.call("daemon/status")["clientsConnected"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            c.call("atom/set", {"key": "other", "value": 0})
            c.call("atom/set", {"key": "ui.theme", "value": "dark"})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ui.theme = 'dark' (revision 2)"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
