"""A whole codexd for tests in other languages: ``python -m tests.helpers.stack``.

Starts the real daemon (with extra TOML config when given one argument) supervising the real
`codex app-server` against the fake model server (as ``make_bridge`` does), waits until the
app-server is ready, grants the workspace, creates an operator token and an observer token,
and prints one JSON line::

    {"socket": …, "websocket": "ws://127.0.0.1:…/", "token": …, "observerToken": …,
     "workspace": …, "pid": …}

Then it reads commands from stdin, one JSON object per line, answering each with a JSON line:
``{"script": [[item, …], …]}`` queues fake-model replies (``message``/``shell_call`` shapes from
tests/fake_model.py, or the shorthands ``{"message": "text"}``, ``{"shell": "cmd"}``,
``{"stream": ["piece", …]}``),
``{"stop": true}`` or end of input stops everything and removes the folder. The TypeScript
client's tests (clients/typescript/test/) drive it.
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

from tests.fake_model import message, shell_call, streamed
from tests.helpers.bridge import wait_ready
from tests.helpers.daemon import make_bridge, short_tempdir


def _item(spec: dict[str, Any]) -> dict[str, Any]:
    if "message" in spec:
        return message(spec["message"])
    if "shell" in spec:
        return shell_call(spec["shell"])
    if "stream" in spec:
        return streamed(*spec["stream"])
    return spec


def main(argv: list[str]) -> int:
    # Optional: more daemon config (TOML sections), e.g. "[rpc]\npending_notifications = 40".
    extra = argv[0] if argv else ""
    base = short_tempdir()
    bridge = make_bridge(base, extra)
    try:
        bridge.daemon.start()
        with bridge.daemon.client(client_name="stack") as c:
            wait_ready(c, timeout=60)
            c.call("workspace/grant", {"path": str(bridge.workspace)})
            token = c.call("token/create", {"name": "ts-test", "role": "operator"})["token"]
            observer = c.call("token/create", {"name": "ts-observer", "role": "observer"})["token"]
            status = c.call("daemon/status")
        print(json.dumps({"socket": str(bridge.daemon.socket), "websocket": status["websocket"],
                          "token": token, "observerToken": observer,
                          "workspace": str(bridge.workspace), "pid": bridge.daemon.proc.pid}),
              flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("stop"):
                break
            if "script" in cmd:
                bridge.model.script(*[[_item(i) for i in reply] for reply in cmd["script"]])
            print(json.dumps({"ok": True}), flush=True)
    finally:
        bridge.daemon.stop()
        bridge.model.stop()  # type: ignore[attr-defined]
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
