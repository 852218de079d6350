"""Plain HTTP on the WebSocket port: the web console's files with their security headers, the
login that turns a `codexctl web` ticket into a session cookie, /whoami, logout, and the Host
check; the cookie then opens the console's WebSocket, and ends with the token that issued it."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path

import pytest
import trio_websocket

from tests.helpers.daemon import DaemonProc, make_daemon
from tests.helpers.peers import ws_tcp


def _console(base: Path) -> Path:
    root = base / "console"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>codexd</title>")
    (root / "assets" / "app-1a2b.js").write_text("console.log('hi')")
    (base / "secret.txt").write_text("not for the web")
    return root


@pytest.fixture
def site(short_tmp: Path):
    root = _console(short_tmp)
    d = make_daemon(short_tmp, config=f'[websocket]\nlisten = "127.0.0.1:0"\n'
                                      f'console_dir = "{root}"\n').start()
    yield d
    d.stop()


def _port(d: DaemonProc) -> int:
    with d.client() as c:
        return int(c.call("daemon/status")["websocket"].rsplit(":", 1)[1].strip("/"))


def _get(d: DaemonProc, path: str, *, method: str = "GET", host: str | None = None,
         headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    port = _port(d)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdrs = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
    conn.request(method, path, headers=hdrs)
    resp = conn.getresponse()
    resp.body = resp.read()  # type: ignore[attr-defined]
    conn.close()
    return resp


def _ticket(d: DaemonProc, role: str = "operator") -> str:
    with d.client() as c:
        return str(c.call("token/ticket", {"role": role})["ticket"])


def test_the_console_is_served_with_strict_headers(site: DaemonProc):
    page = _get(site, "/")
    assert page.status == 200
    assert page.getheader("content-type") == "text/html; charset=utf-8"
    assert page.body.startswith(b"<!doctype html>")  # type: ignore[attr-defined]
    csp = page.getheader("content-security-policy") or ""
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert page.getheader("x-content-type-options") == "nosniff"
    assert page.getheader("cache-control") == "no-store"
    asset = _get(site, "/assets/app-1a2b.js")
    assert asset.status == 200 and asset.body == b"console.log('hi')"  # type: ignore[attr-defined]
    assert asset.getheader("content-type") == "text/javascript; charset=utf-8"
    assert "immutable" in (asset.getheader("cache-control") or "")
    head = _get(site, "/", method="HEAD")
    assert head.status == 200 and head.body == b""  # type: ignore[attr-defined]
    # Nothing outside the console's folder, nothing but GET/HEAD, nothing unknown.
    for path in ("/assets/../../secret.txt", "/assets/%2e%2e/secret.txt", "/secret.txt",
                 "/assets/", "/assets/nope.js"):
        assert _get(site, path).status == 404, path
    assert _get(site, "/", method="PUT").status == 405
    # The Host check guards plain HTTP as it does upgrades (DNS rebinding).
    refused = _get(site, "/", host="evil.example:80")
    assert refused.status == 403 and b"allowed_hosts" in refused.body  # type: ignore[attr-defined]


def test_an_unbuilt_console_says_how_to_build_it(short_tmp: Path):
    d = make_daemon(short_tmp, config=f'[websocket]\nlisten = "127.0.0.1:0"\n'
                                      f'console_dir = "{short_tmp / "nowhere"}"\n').start()
    try:
        page = _get(d, "/")
        assert page.status == 503 and b"make web" in page.body  # type: ignore[attr-defined]
    finally:
        d.stop()


def test_console_off_serves_no_console_but_whoami_and_metrics_stay(short_tmp: Path):
    d = make_daemon(short_tmp, config='[websocket]\nlisten = "127.0.0.1:0"\nconsole = false\n')
    d.start()
    try:
        for path in ("/", "/assets/app.js", "/login?ticket=x"):
            page = _get(d, path)
            assert page.status == 404 and b"websocket.console" in page.body  # type: ignore[attr-defined]
        assert _get(d, "/whoami").status == 401
        assert _get(d, "/metrics").status == 401
    finally:
        d.stop()


def _login(d: DaemonProc, ticket: str) -> tuple[int, str, bytes]:
    resp = _get(d, "/login?" + urllib.parse.urlencode({"ticket": ticket}))
    cookie = (resp.getheader("set-cookie") or "")
    return resp.status, cookie, resp.body  # type: ignore[attr-defined]


async def test_a_ticket_logs_in_once_and_the_cookie_opens_the_websocket(site: DaemonProc):
    status, set_cookie, _ = _login(site, _ticket(site, "approver"))
    assert status == 303
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    cookie = set_cookie.split(";", 1)[0]
    # The ticket worked once.
    again, _, body = _login(site, _ticket_used(site))
    assert again == 401 and b"codexctl web" in body
    who = _get(site, "/whoami", headers={"Cookie": cookie})
    assert who.status == 200
    assert json.loads(who.body)["role"] == "approver"  # type: ignore[attr-defined]
    url = f"ws://127.0.0.1:{_port(site)}/"
    async with ws_tcp(url, None, cookie=cookie) as peer:
        await peer.call("initialize", {"clientInfo": {"name": "console"}})
        assert (await peer.call("daemon/status"))["websocket"] == url
        # The session's role holds: an approver may not write atoms.
        err = await peer.error("atom/set", {"key": "k", "value": 1})
        assert err["code"] == -32041 and err["data"]["needs"] == "operator"
    # Logout ends it: /whoami and the WebSocket refuse the cookie.
    out = _get(site, "/logout", method="POST", headers={"Cookie": cookie})
    assert out.status == 204 and "Max-Age=0" in (out.getheader("set-cookie") or "")
    gone = _get(site, "/whoami", headers={"Cookie": cookie})
    assert gone.status == 401 and "codexctl web" in json.loads(gone.body)["error"]  # type: ignore[attr-defined]
    rejected: list[trio_websocket.ConnectionRejected] = []
    try:
        async with ws_tcp(url, None, cookie=cookie):
            pass
    except* trio_websocket.ConnectionRejected as group:  # bare or from the reader task
        rejected += [e for e in group.exceptions
                     if isinstance(e, trio_websocket.ConnectionRejected)]
    assert rejected and rejected[0].status_code == 401
    assert b"logged out" in (rejected[0].body or b"")


def _ticket_used(d: DaemonProc) -> str:
    ticket = _ticket(d)
    assert _login(d, ticket)[0] == 303
    return ticket


async def test_whoami_checks_bearer_tokens_and_revoking_ends_browser_sessions(site: DaemonProc):
    out = site.ctl("token", "create", "--name", "laptop", "--role", "operator")
    token = out.stdout.strip()
    who = _get(site, "/whoami", headers={"Authorization": f"Bearer {token}"})
    assert who.status == 200 and json.loads(who.body) == {"name": "laptop", "role": "operator"}  # type: ignore[attr-defined]
    bad = _get(site, "/whoami", headers={"Authorization": "Bearer cxd_nope_nope"})
    assert bad.status == 401 and json.loads(bad.body)["error"] == "unknown or wrong token"  # type: ignore[attr-defined]
    assert _get(site, "/whoami").status == 401
    # A browser session opened with this token's ticket ends when the token is revoked.
    url = f"ws://127.0.0.1:{_port(site)}/"
    async with ws_tcp(url, token) as device:
        await device.call("initialize", {"clientInfo": {"name": "laptop"}})
        ticket = (await device.call("token/ticket", {"role": "observer"}))["ticket"]
    status, set_cookie, _ = _login(site, ticket)
    cookie = set_cookie.split(";", 1)[0]
    assert status == 303 and _get(site, "/whoami", headers={"Cookie": cookie}).status == 200
    assert site.ctl("token", "revoke", "laptop").returncode == 0
    assert _get(site, "/whoami", headers={"Cookie": cookie}).status == 401


def test_codexctl_web_prints_a_login_link_for_the_role_asked(site: DaemonProc):
    out = site.ctl("web", "--json", "--role", "observer")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["role"] == "observer" and data["opened"] is False
    assert data["url"].startswith(f"http://127.0.0.1:{_port(site)}/login?ticket=cxt_")
    ticket = urllib.parse.parse_qs(urllib.parse.urlsplit(data["url"]).query)["ticket"][0]
    status, set_cookie, _ = _login(site, ticket)
    assert status == 303
    who = _get(site, "/whoami", headers={"Cookie": set_cookie.split(";", 1)[0]})
    assert json.loads(who.body)["role"] == "observer"  # type: ignore[attr-defined]


def test_codexctl_web_says_what_to_do_when_the_listener_is_off(short_tmp: Path):
    d = make_daemon(short_tmp, config='[websocket]\nlisten = ""\n').start()
    try:
        out = d.ctl("web")
        assert out.returncode != 0
        assert "websocket.listen" in out.stderr and "restart codexd" in out.stderr
    finally:
        d.stop()
