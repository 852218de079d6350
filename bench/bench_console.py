"""Benchmark: the web console in Debian's Chromium (headless) against a plain client, side by
side in one run, on the same daemon (the real `codex app-server`, the fake model server).

1. Time to first delta: from `turn/start` to the first streamed agent delta — painted in the
   console (clicking Send starts the clock; a MutationObserver and the next animation frame stop
   it), and received by a Python client on the Unix socket (sending turn/start starts it).
2. Notifications per second kept up with: one turn streaming N deltas; the console's rate is
   from its first to its last delta painted (the whole text on screen), measured together with
   a bare WebSocket in the same page that only counts them (what Chromium itself delivers); then
   the same turn for the plain client (first to last delta received). The console keeps up when
   its rate equals the bare socket's.

    .venv/bin/python bench/bench_console.py [--turns 10] [--deltas 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_model import streamed  # noqa: E402
from tests.helpers.bridge import start_thread, start_turn, wait_ready  # noqa: E402
from tests.helpers.daemon import make_bridge  # noqa: E402
from tests.test_console_browser import CHROMIUM_ARGS  # noqa: E402

# In the page: click Send and resolve with the ms until the first agent text is painted.
FIRST_PAINT = """() => new Promise((resolve) => {
  const transcript = document.querySelector('[data-testid=transcript]');
  const before = transcript.querySelectorAll('.item.agent').length;
  const t0 = performance.now();
  const seen = new MutationObserver(() => {
    const agents = transcript.querySelectorAll('.item.agent');
    if (agents.length > before && agents[agents.length - 1].textContent.length > 0) {
      seen.disconnect();
      requestAnimationFrame(() => resolve(performance.now() - t0));
    }
  });
  seen.observe(transcript, { childList: true, subtree: true, characterData: true });
  document.querySelector('[data-testid=send]').click();
})"""

# In the page: a second WebSocket of its own that only counts deltas (what the browser itself
# delivers, with no console code or painting): the baseline for the console's rate.
RAW_SOCKET = """() => new Promise((resolve) => {
  const ws = new WebSocket(`ws://${location.host}/`);
  window.__raw = { n: 0, first: null, last: 0 };
  ws.onopen = () => {
    const init = {clientInfo: {name: "bench-raw"}};
    ws.send(JSON.stringify({id: 1, method: "initialize", params: init}));
    ws.send(JSON.stringify({method: "initialized"}));
    ws.send(JSON.stringify({id: 2, method: "events/subscribe", params: {all: true}}));
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.id === 2) resolve(true);
    if (m.method === "item/agentMessage/delta") {
      const r = window.__raw, t = performance.now();
      if (r.first === null) r.first = t;
      r.last = t;
      r.n++;
    }
  };
})"""

# In the page: click Send; resolve with [ms first delta painted, ms whole text painted] (the
# console paints once per frame, so reading the bubble's text per mutation batch is cheap).
STREAM_PAINT = """(expected) => new Promise((resolve, reject) => {
  const transcript = document.querySelector('[data-testid=transcript]');
  const before = transcript.querySelectorAll('.item.agent').length;
  let first = null;
  const timer = setTimeout(() => reject(new Error("the text was not painted in 120 s")), 120000);
  const seen = new MutationObserver(() => {
    const agents = transcript.querySelectorAll('.item.agent');
    if (agents.length <= before) return;
    const length = agents[agents.length - 1].textContent.length;
    const now = performance.now();
    if (first === null && length > 0) first = now;
    if (length >= expected) {
      seen.disconnect();
      clearTimeout(timer);
      requestAnimationFrame(() => resolve([first, performance.now()]));
    }
  });
  seen.observe(transcript, { childList: true, subtree: true, characterData: true });
  document.querySelector('[data-testid=send]').click();
})"""


def plain_first_delta(c: Any, thread_id: str) -> float:
    t0 = time.perf_counter()
    start_turn(c, thread_id, "hi")
    first = None
    while True:
        n = c.next_notification(timeout=60)
        if n.method == "item/agentMessage/delta" and first is None:
            first = (time.perf_counter() - t0) * 1000
        if n.method == "turn/completed":
            assert first is not None
            return first


def plain_stream(c: Any, thread_id: str, deltas: int) -> tuple[float, int]:
    start_turn(c, thread_id, "stream")
    got, first, last = 0, 0.0, 0.0
    while True:
        n = c.next_notification(timeout=120)
        if n.method == "item/agentMessage/delta":
            last = time.perf_counter()
            first = first or last
            got += 1
        if n.method == "turn/completed":
            return (got - 1) / (last - first) if last > first else 0.0, got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--deltas", type=int, default=5000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None or not (ROOT / "codexd/web/dist/index.html").exists():
        print("needs Debian's chromium and the built console (make system-deps web)",
              file=sys.stderr)
        return 2
    from playwright.sync_api import expect, sync_playwright

    base = Path(tempfile.mkdtemp(prefix="cxd-bench-", dir="/tmp"))
    b = make_bridge(base)
    b.daemon.start()
    pieces = [f"w{i} " for i in range(args.deltas)]
    text_len = len("".join(pieces))
    out: dict[str, Any] = {}
    try:
        with b.daemon.client() as c:
            wait_ready(c, timeout=60)
            c.call("workspace/grant", {"path": str(b.workspace)})
        url = b.daemon.ctl("web").stdout.strip()
        with sync_playwright() as p, b.daemon.client() as plain:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            expect(page.get_by_test_id("connection")).to_have_text("connected")
            page.get_by_test_id("new-thread").click()
            expect(page.get_by_test_id("transcript")).to_be_visible()
            plain_thread = start_thread(plain, b.workspace)
            console_first, plain_first = [], []
            for i in range(args.turns + 1):  # the first of each is a warm-up
                b.model.script([streamed("first ", "delta")])
                page.get_by_test_id("prompt").fill(f"turn {i}")
                ms = page.evaluate(FIRST_PAINT)
                expect(page.get_by_test_id("turn-state")).to_have_text("", timeout=60_000)
                b.model.script([streamed("first ", "delta")])
                plain_ms = plain_first_delta(plain, plain_thread)
                if i:
                    console_first.append(ms)
                    plain_first.append(plain_ms)
            b.model.script([streamed(*pieces)])
            page.evaluate(RAW_SOCKET)
            page.get_by_test_id("prompt").fill("stream")
            first, last = page.evaluate(STREAM_PAINT, text_len)
            console_rate = (args.deltas - 1) / ((last - first) / 1000) if last > first else 0.0
            expect(page.get_by_test_id("turn-state")).to_have_text("", timeout=120_000)
            raw = page.evaluate("() => window.__raw")
            raw_rate = (raw["n"] - 1) / ((raw["last"] - raw["first"]) / 1000) \
                if raw["n"] > 1 and raw["last"] > raw["first"] else 0.0
            b.model.script([streamed(*pieces)])
            plain_rate, plain_got = plain_stream(plain, plain_thread, args.deltas)
            browser.close()
        out = {
            "turns": args.turns, "deltas": args.deltas,
            "first_delta_ms": {"console_p50": statistics.median(console_first),
                               "console_max": max(console_first),
                               "plain_p50": statistics.median(plain_first),
                               "plain_max": max(plain_first)},
            "deltas_per_second": {"console": console_rate, "browser_socket": raw_rate,
                                  "browser_socket_received": raw["n"], "plain": plain_rate,
                                  "plain_received": plain_got},
        }
    finally:
        b.daemon.stop()
        b.model.stop()  # type: ignore[attr-defined]
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    f, r = out["first_delta_ms"], out["deltas_per_second"]
    print(f"turn/start to first delta, {args.turns} turns (p50 / max):")
    print(f"  console, painted in Chromium   {f['console_p50']:7.1f} / {f['console_max']:.1f} ms")
    print(f"  plain client, received         {f['plain_p50']:7.1f} / {f['plain_max']:.1f} ms")
    print(f"  console - plain                {f['console_p50'] - f['plain_p50']:+7.1f} ms")
    print(f"one turn of {args.deltas} deltas:")
    print(f"  console, painted               {r['console']:9.0f} deltas/s")
    print(f"  same page, bare WebSocket      {r['browser_socket']:9.0f} deltas/s "
          f"({r['browser_socket_received']} received, nothing painted)")
    print(f"  plain client, received         {r['plain']:9.0f} deltas/s "
          f"({r['plain_received']} received)")
    print(f"  console / bare WebSocket       {r['console'] / r['browser_socket']:9.2f}x")
    print(f"  console / plain                {r['console'] / r['plain']:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
