"""Metrics: rolling windows and quantiles (pure), daemon/metrics, /metrics and codexctl metrics."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from codexd.errors import ErrorCode, RpcError
from codexd.metrics import BOUNDS_MS, Metrics
from tests.helpers.daemon import DaemonProc, make_daemon


def test_windows_slide_and_forget_what_is_older():
    m = Metrics()
    t0 = 10_000.0
    for i in range(30):  # one call every 10 s for 5 minutes, the last at t0 + 290
        m.observe("a/b", "codexd", 5.0, ErrorCode.INVALID_PARAMS if i % 10 == 0 else None,
                  t0 + i * 10)
    now = t0 + 295
    assert m.window("a/b", 60, now).calls == 6
    assert m.window("a/b", 300, now).calls == 30
    assert m.window("a/b", 300, now).errors == 3
    assert m.window("a/b", 3600, now).calls == 30
    later = now + 3600  # an hour on: every window is empty, the totals are not
    assert m.window("a/b", 60, later).calls == m.window("a/b", 3600, later).calls == 0
    calls, errors, _, buckets, codes = m.totals("a/b")
    assert (calls, errors, codes) == (30, 3, {int(ErrorCode.INVALID_PARAMS): 3})
    assert sum(buckets) == 30
    assert m.window("nothing", 60, now).calls == 0


def test_quantiles_come_from_the_buckets():
    m = Metrics()
    for _ in range(90):
        m.observe("x", "codexd", 0.8, None, 0.0)   # the (0.5, 1] bucket
    for _ in range(10):
        m.observe("x", "codexd", 400.0, None, 0.0)  # the (250, 500] bucket
    w = m.window("x", 60, 1.0)
    assert 0.5 < w.quantile(0.5) <= 1.0
    assert 250 < w.quantile(0.95) <= 500
    assert w.mean_ms == pytest.approx((90 * 0.8 + 10 * 400) / 100, abs=0.01)
    m.observe("slow", "appserver", 10 * BOUNDS_MS[-1], None, 0.0)
    assert m.window("slow", 60, 1.0).quantile(0.99) == BOUNDS_MS[-1]
    assert Metrics().window("x", 60, 0).quantile(0.5) is None


def test_usage_counts_only_token_numbers():
    m = Metrics()
    m.count_usage("codex", {"input_tokens": 10, "cached_input_tokens": 2, "output_tokens": 5})
    m.count_usage("codex", {"input_tokens": 1, "output_tokens": True, "model": "x",
                            "reasoning_tokens": -3})
    m.count_usage("claude", None)
    assert m.tokens == {"codex": {"input": 11, "cached_input": 2, "output": 5}}


@pytest.fixture
def daemon(short_tmp: Path):
    d = make_daemon(short_tmp).start()
    yield d
    d.stop()


def _port(d: DaemonProc) -> int:
    with d.client() as c:
        return int(c.call("daemon/status")["websocket"].rsplit(":", 1)[1].rstrip("/"))


def _scrape(port: int, token: str | None) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": f"127.0.0.1:{port}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("GET", "/metrics", headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, resp.getheader("content-type") or "", body


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_daemon_metrics_count_own_unknown_and_invalid_calls(daemon: DaemonProc):
    with daemon.client() as c:
        for _ in range(5):
            c.call("daemon/health")
        with pytest.raises(RpcError):
            c.call("atom/get", {"key": 5})
        with pytest.raises(RpcError):
            c.call("daemon/nonesuch")
        with pytest.raises(RpcError):
            c.call("daemon/nonesuch2")
        m = c.call("daemon/metrics")
    health = m["methods"]["daemon/health"]
    assert health["owner"] == "codexd" and health["calls"] == 5 and health["errors"] == 0
    assert sum(health["buckets"]) == 5 and len(health["buckets"]) == len(m["bucketBoundsMs"]) + 1
    for window in ("1m", "5m", "1h"):
        assert health["windows"][window]["calls"] == 5
        assert health["windows"][window]["p95Ms"] >= health["windows"][window]["p50Ms"] > 0
    assert m["methods"]["atom/get"]["errorCodes"] == {str(int(ErrorCode.INVALID_PARAMS)): 1}
    unknown = m["methods"]["(unknown)"]
    assert unknown["owner"] == "unknown" and unknown["calls"] == 2
    assert "daemon/nonesuch" not in m["methods"]
    g = m["gauges"]
    assert g["clientsConnected"] == 1 and g["clientsByTransport"] == {"unix": 1}
    assert g["dbBytes"] > 0 and g["pendingApprovals"] == 0 and g["terminals"] == 0
    assert m["appServer"]["state"] == "disabled"


def test_metrics_over_http_for_token_holders_only(daemon: DaemonProc):
    port = _port(daemon)
    with daemon.client() as c:
        observer = c.call("token/create", {"name": "prom", "role": "observer"})["token"]
        c.call("daemon/health")
        terminal = c.call("terminal/create", {"cols": 80, "rows": 24, "cwd": str(daemon.base)})
    try:
        status, _, body = _scrape(port, None)
        assert status == 401 and "Bearer" in body
        status, _, _ = _scrape(port, "cdx_not-a-token")
        assert status == 401
        status, kind, text = _scrape(port, observer)
        assert status == 200 and kind.startswith("application/openmetrics-text")
        samples = _samples(text)
        key = ("codexd_rpc_duration_seconds_count",
               frozenset({("method", "daemon/health"), ("owner", "codexd")}))
        assert samples[key] == 1
        assert samples[("codexd_terminals", frozenset())] == 1
        assert samples[("codexd_appserver_state", frozenset({("state", "disabled")}))] == 1
        # The observer's own scrape is not a JSON-RPC call: nothing counted for it.
        assert not any(name.startswith("codexd_rpc") and dict(labels).get("method") == "/metrics"
                       for name, labels in samples)
    finally:
        with daemon.client() as c:
            c.call("terminal/close", {"terminalId": terminal["terminalId"]})


def test_codexctl_metrics_table_json_and_openmetrics(daemon: DaemonProc):
    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "codexd.cli.codexctl", "--socket",
                               str(daemon.socket), *args], capture_output=True, text=True,
                              timeout=30, env=daemon.env)

    with daemon.client() as c:
        c.call("daemon/health")
    table = ctl("metrics")
    assert table.returncode == 0, table.stderr
    assert "daemon/health" in table.stdout and "app-server   disabled" in table.stdout
    as_json = json.loads(ctl("metrics", "--json").stdout)
    assert as_json["methods"]["daemon/health"]["calls"] == 1
    text = ctl("metrics", "--openmetrics").stdout
    assert text.endswith("# EOF\n")
    assert _samples(text)[("codexd_rpc_duration_seconds_count",
                           frozenset({("method", "daemon/health"), ("owner", "codexd")}))] == 1
