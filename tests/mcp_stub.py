#!/usr/bin/env python3
"""A minimal stdio MCP server with one tool, ``approve``, that starts at once: for tests that
only check that a run's MCP servers reach the CLI (the real helper, on the official SDK, takes
over a second to import, and codex does not wait that long before its first request)."""

import json
import sys

TOOL = {"name": "approve", "description": "Say yes.",
        "inputSchema": {"type": "object", "properties": {}}}

for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue  # notifications
    method = msg.get("method")
    if method == "initialize":
        result = {"protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "stub", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "yes"}]}
    else:
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                          "error": {"code": -32601, "message": "method not found"}}), flush=True)
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
