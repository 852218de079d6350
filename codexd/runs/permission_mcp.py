"""The MCP server claude asks for permission (``--permission-prompt-tool
mcp__codexd__approve``): one tool that hands each prompt to the daemon as a pending approval
(``run/permission``) and returns its answer in the form claude expects,
``{"behavior": "allow", "updatedInput": {...}}`` or ``{"behavior": "deny", "message": "..."}``.

Run by claude over stdio from the per-run ``--mcp-config`` codexd writes:
``python -m codexd.runs.permission_mcp --socket SOCK --run RUN_ID``. The MCP side is the
official SDK's; the daemon side is codexd's own client on its Unix socket (one connection per
prompt, so a prompt waits as long as its approval does).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

#: The tool's name; claude calls it as mcp__<server>__<tool>.
SERVER, TOOL = "codexd", "approve"
PROMPT_TOOL = f"mcp__{SERVER}__{TOOL}"


def ask(socket: str, run_id: str, tool_name: str, tool_input: dict[str, Any],
        tool_use_id: str | None) -> str:
    """Blocking: the daemon's answer as claude's permission result (JSON text)."""
    from codexd.client import Client, DaemonUnreachable
    from codexd.errors import RpcError

    try:
        with Client.connect(socket, client_name="codexd-permission", timeout=None) as c:
            answer = c.call("run/permission", {"runId": run_id, "toolName": tool_name,
                                               "input": tool_input, "toolUseId": tool_use_id})
    except (DaemonUnreachable, RpcError, OSError, ConnectionError) as exc:
        return json.dumps({"behavior": "deny", "message": f"codexd could not ask: {exc}"})
    if answer.get("behavior") == "allow":
        return json.dumps({"behavior": "allow", "updatedInput": tool_input})
    return json.dumps({"behavior": "deny",
                       "message": answer.get("message") or "denied through codexd"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="codexd-permission-mcp")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--run", required=True)
    a = parser.parse_args(argv)

    import anyio
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(SERVER, instructions="Asks a person, through codexd, whether a tool may "
                                            "run.")

    @server.tool(name=TOOL, description="Ask codexd's approval queue whether a tool may run.",
                 structured_output=False)  # claude wants exactly one text block
    async def approve(tool_name: str, input: dict[str, Any],
                      tool_use_id: str | None = None) -> str:
        return await anyio.to_thread.run_sync(ask, a.socket, a.run, tool_name, input,
                                              tool_use_id)

    server.run("stdio")


if __name__ == "__main__":
    main()
