"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright, against
the real daemon with the real `codex app-server` and the fake model server.

A person logs in with the link `codexctl web` prints, starts a thread, sees the turn stream,
approves the command it asks for and sees it run, sees an approval answered elsewhere vanish,
types into a terminal and sees the echo; a browser without a valid login gets the login page and
no data. Screenshots go to build/screenshots/ (``make screenshots`` writes docs/screenshots/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_model import shell_call, streamed
from tests.helpers.bridge import wait_ready
from tests.helpers.daemon import ROOT, Bridge, make_bridge

pytestmark = pytest.mark.timeout(300)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(os.environ.get("CODEXD_SCREENSHOTS") or ROOT / "build" / "screenshots")
# What a headless Chromium needs on a closed, GPU-less box (no sandbox as root, no calls home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture
def console(short_tmp: Path) -> Iterator[Bridge]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is needed (make system-deps installs it)")
    if not (ROOT / "codexd" / "web" / "dist" / "index.html").exists():
        pytest.fail("the console is not built: run `make web` (make test does)")
    b = make_bridge(short_tmp)
    b.daemon.start()
    with b.daemon.client() as c:
        wait_ready(c, timeout=60)
        c.call("workspace/grant", {"path": str(b.workspace)})
    yield b
    b.daemon.stop()
    b.model.stop()  # type: ignore[attr-defined]


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _web_url(b: Bridge) -> str:
    out = b.daemon.ctl("web")
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert "/login?ticket=" in url and "logs a browser in once" in out.stderr
    return url


def _web_url_base(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_a_person_runs_a_turn_approves_it_and_uses_a_terminal(console: Bridge, browser: Any):
    from playwright.sync_api import expect

    b = console
    b.model.script([shell_call("echo from-the-console > console.txt")],
                   [streamed("The file ", "is written ", "and checked.")])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(_web_url(b))
    expect(page.get_by_test_id("connection")).to_have_text("connected")
    # The ticket left the address bar (the login redirected to the console).
    assert page.url == _web_url_base(page.url) + "/#threads", page.url

    # A new thread in the granted workspace, and a prompt.
    expect(page.get_by_test_id("new-thread-cwd")).to_have_value(str(b.workspace))
    page.get_by_test_id("new-thread").click()
    page.get_by_test_id("prompt").fill("write console.txt")
    page.get_by_test_id("send").click()

    # The approval shows up (badge, command, cwd); approve it with one click.
    approvals_tab = page.locator("nav button[data-pane=approvals]")
    expect(approvals_tab).to_contain_text("1", timeout=60_000)
    approvals_tab.click()
    card = page.locator("[data-approval]")
    expect(card.get_by_test_id("approval-command")).to_contain_text("from-the-console")
    expect(card).to_contain_text(str(b.workspace))
    _shot(page, "console-approval")
    card.get_by_role("button", name="Approve", exact=True).click()
    expect(card).to_have_count(0)

    # Back on the thread: the command ran, and the agent's reply streamed in.
    page.locator("nav button[data-pane=threads]").click()
    expect(page.get_by_test_id("agent-message").last).to_have_text(
        "The file is written and checked.", timeout=60_000)
    expect(page.get_by_test_id("transcript")).to_contain_text("echo from-the-console")
    assert (b.workspace / "console.txt").read_text() == "from-the-console\n"
    _shot(page, "console-thread")

    # An approval answered by another client disappears from the page at once.
    b.model.script([shell_call("echo second > second.txt")], [streamed("ok")])
    page.get_by_test_id("prompt").fill("again")
    page.get_by_test_id("send").click()
    approvals_tab.click()
    expect(page.locator("[data-approval]")).to_have_count(1, timeout=60_000)
    with b.daemon.client() as other:
        pending = other.call("approval/list", {"status": "pending"})["approvals"]
        other.call("approval/respond", {"approvalId": pending[0]["approvalId"],
                                        "result": {"decision": "decline"}})
    expect(page.locator("[data-approval]")).to_have_count(0)
    expect(approvals_tab.locator(".badge")).to_have_text("")

    # A terminal: type into it and see the shell's echo.
    page.locator("nav button[data-pane=terminals]").click()
    page.get_by_test_id("new-terminal").click()
    screen = page.get_by_test_id("screen")
    expect(screen.locator(".xterm")).to_be_visible()
    page.wait_for_timeout(300)  # the shell's first prompt
    screen.click()
    page.keyboard.type("echo typed-$((6*7))\n")
    expect(screen).to_contain_text("typed-42", timeout=20_000)
    _shot(page, "console-terminal")
    with b.daemon.client() as other:
        terms = other.call("terminal/list")["terminals"]
    assert len(terms) == 1 and terms[0]["attached"] == 1
    assert errors == [], errors


def test_without_a_valid_login_the_page_shows_how_to_log_in_and_no_data(console: Bridge,
                                                                        browser: Any):
    from playwright.sync_api import expect

    b = console
    with b.daemon.client() as c:
        c.call("atom/set", {"key": "private/note", "value": "do not show"})
    page = browser.new_page()
    base = _web_url(b).split("/login")[0]
    # A made-up ticket: refused, with what to do.
    resp = page.goto(f"{base}/login?ticket=cxt_made_up")
    assert resp is not None and resp.status == 401
    expect(page.locator("h1")).to_have_text("Cannot log in")
    expect(page.locator("body")).to_contain_text("codexctl web")
    # The console itself: the login page, no navigation, no data, no WebSocket.
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(base + "/")
    expect(page.get_by_test_id("login")).to_contain_text("not logged in")
    expect(page.locator("nav")).to_have_count(0)
    assert "do not show" not in page.content()
    assert sockets == []
    _shot(page, "console-login")
    # A used ticket is refused the second time, in another browser too.
    url = _web_url(b)
    first = browser.new_page()
    first.goto(url)
    expect(first.get_by_test_id("connection")).to_have_text("connected")
    second = browser.new_context().new_page()
    assert second.goto(url).status == 401  # type: ignore[union-attr]


def _git(cwd: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_a_person_stages_and_discards_single_hunks(console: Bridge, browser: Any):
    from playwright.sync_api import expect

    if shutil.which("git") is None:
        pytest.skip("git is needed (make system-deps installs it)")
    ws = console.workspace
    lines = [f"line {i}" for i in range(1, 31)]
    (ws / "notes.txt").write_text("\n".join(lines) + "\n")
    _git(ws, "init", "-q", "-b", "main")
    _git(ws, "add", "notes.txt")
    _git(ws, "commit", "-qm", "first")
    lines[1] = "line 2, changed"
    lines[27] = "line 28, changed"
    (ws / "notes.txt").write_text("\n".join(lines) + "\n")

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(_web_url(console))
    page.locator("nav button[data-pane=git]").click()
    expect(page.get_by_test_id("git-summary")).to_contain_text("main")
    worktree = page.locator('[data-diff="worktree:notes.txt"]')
    expect(worktree.locator(".hunk")).to_have_count(2)
    _shot(page, "console-git")
    # Stage the first hunk only: the index has it, the work tree keeps the second.
    worktree.locator(".hunk").first.get_by_role("button", name="Stage hunk").click()
    staged = page.locator('[data-diff="staged:notes.txt"]')
    expect(staged.locator(".hunk")).to_have_count(1)
    expect(staged).to_contain_text("line 2, changed")
    expect(worktree.locator(".hunk")).to_have_count(1)
    cached = _git(ws, "diff", "--cached")
    assert "line 2, changed" in cached and "line 28" not in cached
    # Discard the other one: gone from the file; the staged one stays.
    worktree.locator(".hunk").first.get_by_role("button", name="Discard hunk").click()
    expect(page.locator('[data-diff="worktree:notes.txt"]')).to_have_count(0)
    assert "line 28, changed" not in (ws / "notes.txt").read_text()
    assert "line 2, changed" in (ws / "notes.txt").read_text()
    # A change made outside the browser shows up by itself (files/watch).
    (ws / "new.txt").write_text("hello\n")
    expect(page.locator('[data-file="new.txt"]')).to_be_visible(timeout=15_000)
