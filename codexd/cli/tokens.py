"""``codexctl token``: device tokens for the WebSocket listener."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from typing import Any

from codexd.cli.output import UsageError, age, status, table
from codexd.client import Client
from codexd.protocol.audit import AUDIT_LIST, AuditListParams
from codexd.protocol.base import NoParams
from codexd.protocol.daemon import DAEMON_STATUS
from codexd.protocol.tokens import (
    TOKEN_CREATE,
    TOKEN_LIST,
    TOKEN_PAIR,
    TOKEN_REVOKE,
    TOKEN_TICKET,
    TicketParams,
    TokenCreateParams,
    TokenRef,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def duration(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``1w`` or plain seconds → seconds."""
    m = re.fullmatch(r"(\d+)([smhdw]?)", text.strip())
    if not m:
        raise UsageError(f"--expires {text!r}: give a number with s, m, h, d or w (e.g. 90d)")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M") if ms else "-"


def _params(a: argparse.Namespace) -> TokenCreateParams:
    return TokenCreateParams(name=a.name, role=a.role,
                             expires_seconds=duration(a.expires) if a.expires else None)


def cmd_create(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(TOKEN_CREATE, _params(a))
    if a.json:
        return out
    print(out.token)
    print(f"token {out.info.name!r} ({out.info.role}) created; it is shown only now. Send it as "
          "`Authorization: Bearer <token>`; revoke it with `codexctl token revoke "
          f"{out.info.name}`", file=sys.stderr)
    return None


def cmd_list(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(TOKEN_LIST, NoParams())
    if a.json:
        return out
    table(["ID", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST USED"],
          [[t.token_id, t.name, t.role, status("revoked" if t.revoked_at else "active"),
            _when(t.created_at), _when(t.expires_at), age(t.last_used_at)] for t in out.tokens],
          empty="no tokens (create one with `codexctl token create --name NAME --role ROLE`)")
    return None


def cmd_revoke(c: Client, a: argparse.Namespace) -> Any:
    ref = TokenRef(token_id=a.token) if re.fullmatch(r"[0-9a-f]{12}", a.token) else \
        TokenRef(name=a.token)
    out = c.request(TOKEN_REVOKE, ref)
    if a.json:
        return out
    print(f"token {out.token_id} {'revoked' if out.revoked else 'was already revoked'}; "
          f"{out.closed_connections} live connection(s) closed")
    return None


def cmd_ticket(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(TOKEN_TICKET, TicketParams(role=a.role))
    if a.json:
        return out
    url = c.request(DAEMON_STATUS).websocket
    if url is None:
        raise UsageError("the WebSocket listener is off (websocket.listen is empty)")
    print(f"{url}?ticket={out.ticket}")
    print(f"a {out.role} ticket: it works once, within a minute", file=sys.stderr)
    return None


def console_url(websocket_url: str, ticket: str) -> str:
    """The web console's login link on the WebSocket listener (ws://h:p/ → http://h:p/login)."""
    scheme, rest = websocket_url.split("://", 1)
    base = ("https" if scheme == "wss" else "http") + "://" + rest.rstrip("/")
    return f"{base}/login?ticket={ticket}"


def cmd_web(c: Client, a: argparse.Namespace) -> Any:
    status = c.request(DAEMON_STATUS)
    if status.websocket is None:
        raise UsageError("the WebSocket listener is off (websocket.listen is empty): set "
                         'websocket.listen = "127.0.0.1:4870" and restart codexd')
    out = c.request(TOKEN_TICKET, TicketParams(role=a.role))
    url = console_url(status.websocket, out.ticket)
    opened = False
    if a.open:
        import webbrowser  # only here: it probes for browsers when imported

        opened = webbrowser.open(url)
    if a.json:
        return {"url": url, "role": out.role, "expiresAt": out.expires_at, "opened": opened}
    print(url)
    print(f"the web console as {out.role}: this link logs a browser in once, within a minute"
          + ("" if not a.open else "; opened it" if opened else "; no browser to open it with"),
          file=sys.stderr)
    return None


def cmd_pair(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(TOKEN_PAIR, _params(a))
    if a.json:
        return out
    print(out.code)
    if out.url:
        print(out.url)
    print(f"pairing {out.name!r} ({out.role}): the device connects with this code within ten "
          "minutes and calls token/claim once to get its own token", file=sys.stderr)
    return None


def add_commands(add: Any, sub: Any) -> None:
    token = sub.add_parser("token", help="device tokens for WebSocket frontends").add_subparsers(
        dest="token_command", required=True, metavar="TOKEN_COMMAND")
    for sp in (add("pair", cmd_pair, "a one-time code a new device exchanges for its own token"),
               add("create", cmd_create, "create a token (printed once)", token)):
        sp.add_argument("--name", required=True, help="the device, e.g. phone")
        sp.add_argument("--role", required=True, choices=["observer", "approver", "operator"])
        sp.add_argument("--expires", metavar="DURATION",
                        help="the token's expiry, e.g. 90d, 12h (default: never)")
    add("list", cmd_list, "list tokens (never their secrets)", token)
    add("ticket", cmd_ticket, "a one-time, one-minute WebSocket URL for a browser",
        token).add_argument("--role", choices=["observer", "approver", "operator"])
    add("revoke", cmd_revoke, "revoke a token by name or id; its connections close",
        token).add_argument("token", metavar="NAME|ID")
    web = add("web", cmd_web, "a link that logs a browser in to the web console (once, within "
              "a minute)")
    web.add_argument("--open", action="store_true", help="open it in the default browser")
    web.add_argument("--role", choices=["observer", "approver", "operator"],
                     help="what the browser may do (default: all this client may)")


def cmd_audit(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(AUDIT_LIST, AuditListParams(token_name=a.token, limit=a.limit))
    if a.json:
        return out
    table(["WHEN", "TOKEN", "REMOTE", "METHOD", "OUTCOME"],
          [[datetime.fromtimestamp(e.at / 1000).strftime("%Y-%m-%d %H:%M:%S"), e.token_name,
            e.remote, e.method, e.outcome] for e in out.entries],
          empty="nothing audited yet (calls that change something, made with a token)")
    return None


def add_audit_command(add: Any) -> None:
    sp = add("audit", cmd_audit, "what token holders did (operator calls, approval answers)")
    sp.add_argument("--token", metavar="NAME", help="only this token's entries")
    sp.add_argument("--limit", type=int, default=50)
