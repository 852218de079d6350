"""``codexctl metrics``, ``notify``, ``doctor`` and ``diag``: what an operator looks at."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from codexd.cli import diag, doctor
from codexd.cli.output import print_json, table
from codexd.client import Client
from codexd.metrics import render_openmetrics
from codexd.protocol.base import NoParams
from codexd.protocol.daemon import DAEMON_METRICS, DaemonMetrics
from codexd.protocol.notify import NOTIFY_TEST, NotifyTestParams


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def cmd_metrics(c: Client, a: argparse.Namespace) -> Any:
    out: DaemonMetrics = c.request(DAEMON_METRICS, NoParams())
    if a.openmetrics:
        sys.stdout.buffer.write(render_openmetrics(out))
        sys.stdout.flush()
        return None
    if a.json:
        return out
    window = a.window
    rows = []
    for name, mm in out.methods.items():
        w = mm.windows[window]
        if not w.calls and not a.all:
            continue
        rows.append([name, mm.owner, str(w.calls), str(w.errors), _ms(w.p50_ms), _ms(w.p95_ms),
                     _ms(w.p99_ms), str(mm.calls)])
    table(["METHOD", "OWNER", f"CALLS/{window}>", "ERRORS>", "P50 MS>", "P95 MS>", "P99 MS>",
           "TOTAL>"], rows, empty=f"no calls in the last {window} (--all shows every method)")
    g, s = out.gauges, out.app_server
    print()
    clients = ", ".join(f"{n} {k}" for k, n in g.clients_by_transport.items()) or "none"
    print(f"clients      {g.clients_connected} ({clients})")
    print(f"approvals    {g.pending_approvals} pending")
    lanes = ", ".join(f"{p}: {g.runs_running.get(p, 0)} running, {g.runs_queued.get(p, 0)} "
                      f"queued" for p in sorted({*g.runs_queued, *g.runs_running})) or "idle"
    print(f"runs         {lanes}" + (f"; paused: {', '.join(g.lanes_paused)}"
                                     if g.lanes_paused else ""))
    print(f"terminals    {g.terminals}")
    lag = "" if g.scheduler_lag_ms is None else f", last fire {g.scheduler_lag_ms:.0f} ms late"
    print(f"automations  {g.automations_scheduled} scheduled{lag}")
    breaker = ", breaker OPEN" if s.breaker_open else ""
    print(f"app-server   {s.state}, generation {s.generation}, {s.restarts} restarts{breaker}")
    print(f"database     {(g.db_bytes + g.wal_bytes) / 1048576:.1f} MiB (WAL "
          f"{g.wal_bytes / 1048576:.1f} MiB), event seq {g.event_seq}")
    for provider, kinds in out.tokens.items():
        print(f"tokens       {provider}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    return None


def cmd_notify_test(c: Client, a: argparse.Namespace) -> Any:
    out = c.request(NOTIFY_TEST, NotifyTestParams(channel=a.channel))
    if a.json:
        return out if all(r.ok for r in out.results) else _json_exit(out, 1)
    for r in out.results:
        if r.ok:
            print(f"{r.channel}: sent ({r.duration_ms:.0f} ms)")
        else:
            print(f"{r.channel}: FAILED: {r.error}")
    return 0 if all(r.ok for r in out.results) else 1


def _json_exit(out: Any, code: int) -> int:
    print_json(out)
    return code


def add_commands(add: Callable[..., Any], sub: Any) -> None:
    sp = add("metrics", cmd_metrics, "latency and errors per method over 1m/5m/1h, gauges, "
             "token counters")
    sp.add_argument("--openmetrics", action="store_true",
                    help="print OpenMetrics text (what GET /metrics serves)")
    sp.add_argument("--window", choices=["1m", "5m", "1h"], default="5m",
                    help="the window of the table (default 5m)")
    sp.add_argument("--all", action="store_true", help="also methods with no calls in it")

    notify = sub.add_parser("notify", help="notifications ([notify] in the config)") \
        .add_subparsers(dest="notify_command", required=True, metavar="NOTIFY_COMMAND")
    sp = add("test", cmd_notify_test, "send a test notification through each channel (exit 1 "
             "when one fails)", notify)
    sp.add_argument("--channel", choices=["program", "desktop", "webhook"],
                    help="only this channel")
    sp = add("doctor", doctor.cmd_doctor, "check this installation (works with the daemon "
             "down); exit 1 when a check fails")
    doctor.add_arguments(sp)
    diag.add_commands(add, sub)
