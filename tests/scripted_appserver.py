"""A scripted stand-in for `codex app-server`, for fault injection and exact event control only
(the real-binary tests use the real codex). Speaks the app-server's stdio wire (no "jsonrpc").

- ``initialize`` → a result with a userAgent;
- ``test/emit {threadId, count, size?}`` → ``count`` ``turn/completed`` notifications for that
  thread (with ``size`` bytes of padding), then the result ``{"emitted": count}``;
- ``test/deep {depth}`` → one notification nested ``depth`` levels deep, then ``{}``;
- ``test/ask {method, threadId}`` → sends codexd a server request ``method`` (id ``ask-N``)
  for that thread, then the result ``{}``;
- a response from codexd (the answer to a server request) → the notification
  ``test/answered {id, result?, error?}``, so a test sees exactly what reached the app-server;
- ``test/stderr {line}`` → writes ``line`` to stderr, then ``{}``;
- ``test/seen`` → ``{"methods": [...]}``: every method received so far, requests and
  notifications, in arrival order;
- any other request → ``{"data": []}``; notifications are only recorded.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    out = sys.stdout
    asked = 0
    seen: list[str] = []
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "id" in msg and "method" not in msg:
            out.write(json.dumps({"method": "test/answered", "params": msg}) + "\n")
            out.flush()
            continue
        seen.append(msg.get("method"))
        if "id" not in msg:
            continue
        method, rid, params = msg["method"], msg["id"], msg.get("params") or {}
        if method == "initialize":
            result: object = {"userAgent": "scripted/0", "codexHome": "/nonexistent"}
        elif method == "test/emit":
            pad = "p" * int(params.get("size", 0))
            for i in range(int(params.get("count", 1))):
                out.write(json.dumps({"method": "turn/completed", "params": {
                    "threadId": params["threadId"], "turn": {"id": f"t{i}", "pad": pad}}}) + "\n")
            result = {"emitted": params.get("count", 1)}
        elif method == "test/ask":
            asked += 1
            out.write(json.dumps({"id": f"ask-{asked}", "method": params["method"],
                                  "params": {"threadId": params["threadId"],
                                             "command": "make deploy"}}) + "\n")
            result = {}
        elif method == "test/stderr":
            sys.stderr.write(params["line"] + "\n")
            sys.stderr.flush()
            result = {}
        elif method == "test/seen":
            result = {"methods": seen}
        elif method == "test/deep":
            depth = int(params.get("depth", 997))
            out.write('{"method":"x/deep","params":' + "[" * depth + "]" * depth + "}\n")
            result = {}
        else:
            result = {"data": []}
        out.write(json.dumps({"id": rid, "result": result}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
