"""Call latency and errors over rolling windows, token counters, and OpenMetrics text.

Every answered request is observed once (``Metrics.observe``, on the hot path: a dict lookup, a
bisect and a few increments). Each method keeps

- totals since the daemon started: calls, errors by code, the latency sum and a histogram over
  :data:`BOUNDS_MS` (what Prometheus scrapes and turns into rates itself);
- two rings of time slots: 10-second slots for the last 5 minutes and 1-minute slots for the
  last hour, from which the 1 min, 5 min and 1 h windows are summed when asked. Windows slide in
  slot steps (the 1 min window is the current 10-second slot and the five before it).

Nothing here reads a clock of its own: ``observe`` and ``window`` take ``now`` (monotonic
seconds), so tests drive time. :func:`render_openmetrics` turns a ``daemon/metrics`` result into
OpenMetrics text with prometheus-client's exposition code (its registry and collectors; not its
thread-based HTTP server), for ``/metrics`` and ``codexctl metrics --openmetrics`` alike.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codexd.protocol.daemon import DaemonMetrics, MethodMetrics

#: Histogram bucket upper bounds in milliseconds (a last, unbounded bucket follows).
BOUNDS_MS: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
                                10_000, 30_000, 60_000)
#: The windows reported, by name, in seconds.
WINDOWS: tuple[tuple[str, int], ...] = (("1m", 60), ("5m", 300), ("1h", 3600))
_FINE = (10, 30)    # 10-second slots, 30 of them: up to 5 minutes
_COARSE = (60, 60)  # 1-minute slots, 60 of them: up to an hour
_NB = len(BOUNDS_MS) + 1


class _Slot:
    __slots__ = ("buckets", "calls", "errors", "index", "sum_ms")

    def __init__(self, index: int) -> None:
        self.index = index
        self.calls = 0
        self.errors = 0
        self.sum_ms = 0.0
        self.buckets = [0] * _NB


class _Series:
    __slots__ = ("buckets", "calls", "coarse", "codes", "errors", "fine", "owner", "sum_ms")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.calls = 0
        self.errors = 0
        self.sum_ms = 0.0
        self.buckets = [0] * _NB
        self.codes: dict[int, int] = {}
        self.fine: deque[_Slot] = deque()
        self.coarse: deque[_Slot] = deque()


def _slot(ring: deque[_Slot], index: int, keep: int) -> _Slot:
    if ring and ring[-1].index == index:
        return ring[-1]
    slot = _Slot(index)
    ring.append(slot)
    while ring[0].index <= index - keep:
        ring.popleft()
    return slot


class Window:
    """Calls in one window of one method (or of all of them)."""

    __slots__ = ("buckets", "calls", "errors", "sum_ms")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.sum_ms = 0.0
        self.buckets = [0] * _NB

    def add(self, slot: _Slot) -> None:
        self.calls += slot.calls
        self.errors += slot.errors
        self.sum_ms += slot.sum_ms
        for i, n in enumerate(slot.buckets):
            if n:
                self.buckets[i] += n

    @property
    def mean_ms(self) -> float | None:
        return round(self.sum_ms / self.calls, 3) if self.calls else None

    def quantile(self, q: float) -> float | None:
        """Estimated from the buckets with linear interpolation inside the bucket that holds the
        q-th call (as Prometheus's histogram_quantile does); the last bucket answers its lower
        bound. None with no calls."""
        if not self.calls:
            return None
        rank = q * self.calls
        seen = 0
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                if i == len(BOUNDS_MS):
                    return BOUNDS_MS[-1]
                low = BOUNDS_MS[i - 1] if i else 0.0
                return round(low + (BOUNDS_MS[i] - low) * (rank - seen) / n, 3)
            seen += n
        return BOUNDS_MS[-1]


#: How many call fingerprints ``daemon/diagnostics`` can show.
RECENT_CALLS = 1000


class Metrics:
    """The daemon's call metrics and counters. One per daemon; touched from the trio thread."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        #: Tokens reported by runs' usage events: provider → kind (input, output, ...) → count.
        self.tokens: dict[str, dict[str, int]] = {}
        #: Finished runs: provider → final status → count.
        self.runs_finished: dict[str, dict[str, int]] = {}
        #: Notifications: channel → outcome (sent, failed, suppressed) → count.
        self.notifications: dict[str, dict[str, int]] = {}
        #: The last calls' fingerprints: (wall time, method, owner, ms, error code); no params.
        self.recent: deque[tuple[float, str, str, float, int | None]] = deque(
            maxlen=RECENT_CALLS)

    def observe(self, method: str, owner: str, ms: float, code: int | None, now: float) -> None:
        s = self._series.get(method)
        if s is None:
            s = self._series[method] = _Series(owner)
        self.recent.append((time.time(), method, owner, ms, code))
        i = bisect.bisect_left(BOUNDS_MS, ms)  # bucket i holds BOUNDS_MS[i-1] < ms <= BOUNDS_MS[i]
        s.calls += 1
        s.sum_ms += ms
        s.buckets[i] += 1
        for ring, (width, keep) in ((s.fine, _FINE), (s.coarse, _COARSE)):
            slot = _slot(ring, int(now // width), keep)
            slot.calls += 1
            slot.sum_ms += ms
            slot.buckets[i] += 1
            if code is not None:
                slot.errors += 1
        if code is not None:
            s.errors += 1
            s.codes[code] = s.codes.get(code, 0) + 1

    def methods(self) -> Iterator[tuple[str, str]]:
        """(method, owner) of every method seen, by name."""
        for name in sorted(self._series):
            yield name, self._series[name].owner

    def window(self, method: str, seconds: int, now: float) -> Window:
        """The calls of ``method`` in the last ``seconds`` (at most an hour)."""
        out = Window()
        s = self._series.get(method)
        if s is None:
            return out
        ring, width = (s.fine, _FINE[0]) if seconds <= _FINE[0] * _FINE[1] else (s.coarse,
                                                                               _COARSE[0])
        first = int(now // width) - max(1, seconds // width) + 1
        for slot in reversed(ring):
            if slot.index < first:
                break
            out.add(slot)
        return out

    def totals(self, method: str) -> tuple[int, int, float, list[int], dict[int, int]]:
        """Since start: calls, errors, latency sum (ms), bucket counts (not cumulative), codes."""
        s = self._series[method]
        return s.calls, s.errors, s.sum_ms, list(s.buckets), dict(s.codes)

    def count_usage(self, provider: str, usage: object) -> None:
        """Add a run's usage report (``{"input_tokens": 12, ...}``; other keys are ignored)."""
        if not isinstance(usage, dict):
            return
        mine = self.tokens.setdefault(provider, {})
        for key, value in usage.items():
            if (isinstance(key, str) and key.endswith("_tokens") and isinstance(value, int)
                    and not isinstance(value, bool) and value >= 0):
                kind = key[: -len("_tokens")]
                mine[kind] = mine.get(kind, 0) + value

    def count_run(self, provider: str, status: str) -> None:
        mine = self.runs_finished.setdefault(provider, {})
        mine[status] = mine.get(status, 0) + 1

    def count_notification(self, channel: str, outcome: str) -> None:
        mine = self.notifications.setdefault(channel, {})
        mine[outcome] = mine.get(outcome, 0) + 1


# ------------------------------------------------------------------------------ OpenMetrics


def render_openmetrics(m: DaemonMetrics) -> bytes:
    """OpenMetrics text (``application/openmetrics-text; version=1.0.0``) of a metrics result."""
    from prometheus_client.openmetrics.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(m))  # type: ignore[arg-type]
    return bytes(generate_latest(registry))  # type: ignore[no-untyped-call]


OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class _Collector:
    def __init__(self, m: DaemonMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        m = self.m
        info = InfoMetricFamily("codexd_build", "The running daemon.")
        info.add_metric([], {"version": m.version})
        yield info
        yield GaugeMetricFamily("codexd_uptime_seconds", "Seconds since the daemon started.",
                                value=m.uptime_seconds)

        hist = HistogramMetricFamily("codexd_rpc_duration_seconds",
                                     "Request latency since start, by method and owner "
                                     "(codexd, appserver; unknown names as (unknown)).",
                                     labels=["method", "owner"])
        errors = CounterMetricFamily("codexd_rpc_errors", "Error answers since start, by code.",
                                     labels=["method", "owner", "code"])
        win_calls = GaugeMetricFamily("codexd_rpc_window_calls", "Requests in a rolling window.",
                                      labels=["method", "owner", "window"])
        win_errors = GaugeMetricFamily("codexd_rpc_window_errors",
                                       "Error answers in a rolling window.",
                                       labels=["method", "owner", "window"])
        win_q = GaugeMetricFamily("codexd_rpc_window_latency_seconds",
                                  "Estimated latency quantiles in a rolling window.",
                                  labels=["method", "owner", "window", "quantile"])
        for name, mm in m.methods.items():
            hist.add_metric([name, mm.owner], buckets=_buckets(mm, m.bucket_bounds_ms),
                            sum_value=mm.sum_ms / 1000)
            for code, n in mm.error_codes.items():
                errors.add_metric([name, mm.owner, code], n)
            for wname, w in mm.windows.items():
                win_calls.add_metric([name, mm.owner, wname], w.calls)
                win_errors.add_metric([name, mm.owner, wname], w.errors)
                for q, v in (("0.5", w.p50_ms), ("0.95", w.p95_ms), ("0.99", w.p99_ms)):
                    if v is not None:
                        win_q.add_metric([name, mm.owner, wname, q], v / 1000)
        yield from (hist, errors, win_calls, win_errors, win_q)

        g = m.gauges
        yield from _gauges("codexd_clients", "Connected clients, by transport.", "transport",
                           g.clients_by_transport)
        yield GaugeMetricFamily("codexd_approvals_pending", "Approvals waiting for an answer.",
                                value=g.pending_approvals)
        yield from _gauges("codexd_runs_queued", "Queued runs, by provider.", "provider",
                           g.runs_queued)
        yield from _gauges("codexd_runs_running", "Running runs, by provider.", "provider",
                           g.runs_running)
        paused = GaugeMetricFamily("codexd_lane_paused", "1 while a provider's lane is paused.",
                                   labels=["provider"])
        for provider in g.lanes_paused:
            paused.add_metric([provider], 1)
        yield paused
        yield GaugeMetricFamily("codexd_terminals", "Open terminals.", value=g.terminals)
        yield GaugeMetricFamily("codexd_automations_scheduled", "Automations with a next fire.",
                                value=g.automations_scheduled)
        if g.scheduler_lag_ms is not None:
            yield GaugeMetricFamily("codexd_scheduler_lag_seconds",
                                    "How late the last automation fired after it was due.",
                                    value=g.scheduler_lag_ms / 1000)
        yield GaugeMetricFamily("codexd_db_bytes", "The database file and its WAL.",
                                value=g.db_bytes + g.wal_bytes)
        yield GaugeMetricFamily("codexd_event_seq", "The last event number.", value=g.event_seq)

        a = m.app_server
        state = GaugeMetricFamily("codexd_appserver_state", "1 for the app-server's state.",
                                  labels=["state"])
        state.add_metric([a.state], 1)
        yield state
        yield GaugeMetricFamily("codexd_appserver_generation", "The app-server process number.",
                                value=a.generation)
        yield CounterMetricFamily("codexd_appserver_restarts", "App-server restarts since start.",
                                  value=a.restarts)
        yield GaugeMetricFamily("codexd_appserver_breaker_open",
                                "1 while the restart breaker is open.",
                                value=1 if a.breaker_open else 0)

        yield _nested("codexd_run_tokens", "Tokens reported by runs' usage events since "
                      "start.", ["provider", "kind"], m.tokens)
        yield _nested("codexd_runs_finished", "Runs finished since start.",
                      ["provider", "status"], m.runs_finished)
        yield _nested("codexd_notifications", "Notifications since start, by channel and "
                      "outcome.", ["channel", "outcome"], m.notifications)
        faults = CounterMetricFamily("codexd_faults", "Contained faults since start, by unit.",
                                     labels=["unit"])
        for unit, n in m.faults.items():
            faults.add_metric([unit], n)
        yield faults


def _buckets(mm: MethodMetrics, bounds: list[float]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip([*bounds, None], mm.buckets, strict=True):
        running += n
        out.append(("+Inf" if bound is None else repr(bound / 1000), running))
    return out


def _gauges(name: str, doc: str, label: str, values: dict[str, int]) -> Iterator[object]:
    from prometheus_client.core import GaugeMetricFamily

    fam = GaugeMetricFamily(name, doc, labels=[label])
    for key, n in values.items():
        fam.add_metric([key], n)
    yield fam


def _nested(name: str, doc: str, labels: list[str],
            data: dict[str, dict[str, int]]) -> Any:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, doc, labels=labels)
    for outer, inner in data.items():
        for key, n in inner.items():
            family.add_metric([outer, key], n)
    return family
