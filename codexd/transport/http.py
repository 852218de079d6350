"""Plain HTTP on the WebSocket listener's port: the web console, its login, and ``/whoami``.

A request without ``Upgrade: websocket`` comes here (h11 parses it; one request per
connection, answered with ``Connection: close``). What is served:

- ``GET /`` and ``/assets/<name>``: the web console, static files built from ``web/`` (no CDN,
  nothing fetched at run time). Every response carries a strict Content-Security-Policy.
- ``GET /login?ticket=<ticket>``: redeems a one-time ticket (``codexctl web`` prints the URL) and
  opens a browser session: an ``HttpOnly; SameSite=Strict`` cookie, kept by the daemon only as a
  hash, which the console's WebSocket (same origin) then carries instead of a token.
- ``GET /whoami``: 200 with the caller's name and role (a bearer token or the session cookie),
  401 with the reason otherwise; how a client tells "refused" from "unreachable", which a
  browser's WebSocket API hides.
- ``POST /logout``: ends the browser session.
- ``GET /metrics``: OpenMetrics text of ``daemon/metrics`` for any token holder (bearer token or
  session cookie), served whether or not the console is on.

With ``websocket.console = false`` only ``/whoami`` and ``/metrics`` answer; the console's paths
are 404.

The ``Host`` header is checked first, as for WebSocket upgrades (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import html
import http.cookies
import json
import mimetypes
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h11
import structlog
import trio

from codexd.metrics import OPENMETRICS_TYPE
from codexd.tokens import AuthRefused

if TYPE_CHECKING:
    from codexd.tokens import Auth

log = structlog.get_logger("codexd.transport")

#: The largest request head read (request line and headers).
MAX_HEAD_BYTES = 16384
COOKIE = "codexd_session"
#: The console as built into the package (``make web``); ``websocket.console_dir`` overrides it.
PACKAGED_CONSOLE = Path(__file__).resolve().parents[1] / "web" / "dist"
_ASSET = re.compile(r"^/assets/([A-Za-z0-9][A-Za-z0-9._-]{0,200})$")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".map": "application/json",
          ".svg": "image/svg+xml", ".woff2": "font/woff2", ".png": "image/png"}


def is_upgrade(head: bytes) -> bool:
    """Whether a request head asks for a WebSocket (else it is plain HTTP)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _csp(host: str, tls: bool) -> str:
    ws = f"{'wss' if tls else 'ws'}://{host}"
    # xterm.js writes its theme and cell sizes as <style> elements: styles may be inline,
    # scripts never (no inline script, no eval, nothing from another origin).
    return ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; font-src 'self'; connect-src 'self' {ws}; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] | None = None
    cache: str = "no-store"


class HttpSite:
    """Collaborators: ``authenticate(token)`` and the token book's ticket/session calls."""

    def __init__(self, *, authenticate: Callable[[str | None], Awaitable[Auth]],
                 redeem: Callable[[str], Auth], open_session: Callable[[Auth], str],
                 check_session: Callable[[str], Auth], close_session: Callable[[str], bool],
                 console_dir: Callable[[], Path], console: Callable[[], bool],
                 metrics: Callable[[], bytes]) -> None:
        self._authenticate = authenticate
        self._redeem = redeem
        self._open_session = open_session
        self._check_session = check_session
        self._close_session = close_session
        self._console_dir = console_dir
        self._console = console
        self._metrics = metrics

    async def serve(self, stream: trio.abc.Stream, head: bytes, *, remote: str,
                    host_allowed: Callable[[str], bool], tls: bool) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        conn.receive_data(head)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            log.info("http_bad_request", remote=remote, error=str(exc))
            await self._send(stream, conn, Reply(400, b"bad request\n"), head_only=False, csp="")
            return
        if not isinstance(event, h11.Request):
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        host = headers.get("host", "")
        target = event.target.decode("latin-1")
        method = event.method.decode("latin-1")
        try:
            hostname = urllib.parse.urlsplit("//" + host).hostname or ""
        except ValueError:
            hostname = ""
        if not host_allowed(hostname):
            log.warning("http_refused", remote=remote, reason="host", host=host)
            reply = Reply(403, f"host {host!r} is not allowed (websocket.allowed_hosts)\n".encode())
        else:
            reply = await self._route(method, target, headers, tls)
        log.debug("http_request", remote=remote, method=method,
                  path=urllib.parse.urlsplit(target).path, status=reply.status)
        await self._send(stream, conn, reply, head_only=method == "HEAD", csp=_csp(host, tls))

    async def _route(self, method: str, target: str, headers: dict[str, str], tls: bool) -> Reply:
        url = urllib.parse.urlsplit(target)
        path = url.path
        if path not in ("/whoami", "/metrics") and not self._console():
            return Reply(404, b"nothing here: the web console is off (websocket.console)\n")
        if path == "/logout":
            if method != "POST":
                return Reply(405, b"POST /logout ends the browser session\n",
                             headers=[("allow", "POST")])
            cookie = _cookie(headers)
            if cookie:
                self._close_session(cookie)
            return Reply(204, headers=[("set-cookie", _set_cookie("", tls, max_age=0))])
        if method not in ("GET", "HEAD"):
            return Reply(405, f"{method} is not served here\n".encode(),
                         headers=[("allow", "GET, HEAD")])
        if path == "/login":
            return self._login(urllib.parse.parse_qs(url.query).get("ticket", [""])[0], tls)
        if path == "/whoami":
            return await self._whoami(headers)
        if path == "/metrics":
            return await self._metrics_text(headers)
        if path in ("/", "/index.html"):
            return self._file("index.html", cache="no-store")
        if (m := _ASSET.match(path)) is not None:
            return self._file(f"assets/{m.group(1)}", cache="public, max-age=31536000, immutable")
        return Reply(404, f"nothing at {path} (the web console is at /)\n".encode())

    def _login(self, ticket: str, tls: bool) -> Reply:
        try:
            auth = self._redeem(ticket) if ticket else None
        except AuthRefused as exc:
            return _page(401, "Cannot log in", f"{html.escape(str(exc))}. Run "
                         "<code>codexctl web</code> for a new link.")
        if auth is None:
            return _page(401, "Cannot log in", "This link has no ticket. Run "
                         "<code>codexctl web</code> and open the link it prints.")
        cookie = self._open_session(auth)
        return Reply(303, b"", headers=[("location", "/"),
                                        ("set-cookie", _set_cookie(cookie, tls))])

    async def _credential(self, headers: dict[str, str]) -> Auth:
        """The caller's token (bearer) or browser session (cookie); AuthRefused otherwise."""
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return await self._authenticate(authorization[7:].strip())
        if cookie := _cookie(headers):
            return self._check_session(cookie)
        raise AuthRefused("no credential: send `Authorization: Bearer <token>`, or log in with "
                          "the URL `codexctl web` prints")

    async def _whoami(self, headers: dict[str, str]) -> Reply:
        try:
            auth = await self._credential(headers)
        except AuthRefused as exc:
            return Reply(401, json.dumps({"error": str(exc)}).encode(), "application/json")
        return Reply(200, json.dumps({"name": auth.name, "role": auth.role}).encode(),
                     "application/json")

    async def _metrics_text(self, headers: dict[str, str]) -> Reply:
        try:
            await self._credential(headers)
        except AuthRefused as exc:
            return Reply(401, f"{exc}\n".encode(),
                         headers=[("www-authenticate", 'Bearer realm="codexd"')])
        return Reply(200, self._metrics(), OPENMETRICS_TYPE, cache="no-store")

    def _file(self, name: str, *, cache: str) -> Reply:
        root = self._console_dir()
        path = root / name
        try:
            body = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            if name == "index.html":
                return _page(503, "The web console is not built",
                             f"Nothing at {root}. Build it with <code>make web</code> (make run "
                             "does it when it is missing).")
            return Reply(404, b"no such file\n")
        suffix = path.suffix
        kind = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Reply(200, body, kind, cache=cache)

    async def _send(self, stream: trio.abc.Stream, conn: h11.Connection, reply: Reply, *,
                    head_only: bool, csp: str) -> None:
        headers = [("content-type", reply.content_type),
                   ("content-length", str(len(reply.body))),
                   ("cache-control", reply.cache),
                   ("x-content-type-options", "nosniff"),
                   ("referrer-policy", "no-referrer"),
                   ("x-frame-options", "DENY"),
                   ("cross-origin-opener-policy", "same-origin"),
                   ("cross-origin-resource-policy", "same-origin"),
                   ("connection", "close"),
                   *(reply.headers or [])]
        if csp:
            headers.append(("content-security-policy", csp))
        data = conn.send(h11.Response(status_code=reply.status, headers=headers)) or b""
        if reply.body and not head_only:
            data += conn.send(h11.Data(data=reply.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError,
                                                         trio.ClosedResourceError):
            await stream.send_all(data)


def _cookie(headers: dict[str, str]) -> str:
    jar = http.cookies.SimpleCookie()
    with contextlib.suppress(http.cookies.CookieError):
        jar.load(headers.get("cookie", ""))
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""


def session_cookie(raw_cookie_header: str) -> str:
    """The console's session cookie from a ``Cookie`` header ("" when absent)."""
    return _cookie({"cookie": raw_cookie_header})


def _set_cookie(value: str, tls: bool, *, max_age: int | None = None) -> str:
    parts = [f"{COOKIE}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if tls:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def _page(status: int, title: str, text: str) -> Reply:
    body = (f"<!doctype html><meta charset=utf-8><title>codexd: {title}</title>"
            f"<h1>{title}</h1><p>{text}</p>").encode()
    return Reply(status, body, "text/html; charset=utf-8")
