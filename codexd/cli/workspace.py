"""``codexctl workspace``: the folders frontends (and token holders) may work in."""

from __future__ import annotations

import argparse
import os
from typing import Any

from codexd.cli.output import age, table
from codexd.client import Client
from codexd.protocol.base import NoParams
from codexd.protocol.workspace import (
    WORKSPACE_GRANT,
    WORKSPACE_LIST,
    WORKSPACE_REVOKE,
    GrantParams,
    PathRef,
)


def cmd_add(c: Client, a: argparse.Namespace) -> Any:
    g = c.request(WORKSPACE_GRANT, GrantParams(path=os.path.abspath(a.path), name=a.name))
    if a.json:
        return g
    shown = g.path if g.path == g.real_path else f"{g.path} (really {g.real_path})"
    print(f"granted {shown}")
    return None


def cmd_ls(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(WORKSPACE_LIST, NoParams())
    if a.json:
        return out
    table(["NAME", "PATH", "REAL PATH", "GRANTED"],
          [[g.name, g.path, "" if g.real_path == g.path else g.real_path, age(g.created_at)]
           for g in out.grants],
          empty="no workspaces (grant one with `codexctl workspace add DIR`)")
    return None


def cmd_rm(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(WORKSPACE_REVOKE, PathRef(path=os.path.abspath(a.path)))
    if a.json:
        return out
    print(f"{out.path}: {'revoked' if out.revoked else 'was not granted'}")
    return None


def add_commands(add: Any, sub: Any) -> None:
    ws = sub.add_parser("workspace", help="folders files/* and git/* may work in"
                        ).add_subparsers(dest="workspace_command", required=True,
                                         metavar="WORKSPACE_COMMAND")
    sp = add("add", cmd_add, "grant a folder (and everything under it)", ws)
    sp.add_argument("path", metavar="DIR")
    sp.add_argument("--name", help="a label (default: the folder's name)")
    add("ls", cmd_ls, "list the granted folders", ws)
    add("rm", cmd_rm, "withdraw a grant", ws).add_argument("path", metavar="DIR")
