"""The benchmark harness still runs end to end (a seconds-long plan; no timing is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ sits beside roost/, not installed with it
    sys.path.insert(0, str(ROOT))

from bench.harness import Latencies, nats_binary  # noqa: E402

KEYS = (
    "hello_per_s",
    "floor_per_s",
    "rpc_per_s",
    "rpc_requests",
    "rpc_p50_ms",
    "rpc_p99_ms",
    "rpc_ratio",
    "rpc_per_hello",
    "rpc_iotmp_per_s",
    "rpc_iotmp_ratio",
    "floor_token_per_s",
    "rpc_token_per_s",
    "rpc_token_ratio",
    "rpc_cross_per_s",
    "rpc_cross_p99_ms",
    "rpc_cross_ratio",
    "rpc_same_node_per_s",
    "rpc_cross_server_us",
    "rpc_cross_cost_ratio",
    "devices",
    "devices_reached",
    "device_bytes",
    "connect_s",
    "mqtt_connections",
    "mqtt_bytes",
    "device_mqtt_ratio",
    "tls_devices",
    "ingest_per_s",
    "ingest_ratio",
    "box_devices",
    "box_device_bytes",
    "box_calls_ok",
)


def run_smoke(module: str, timeout: int, database_url: str = "") -> dict[str, Any]:
    """Run ``python -m <module> --smoke``; the figures of its last line."""
    url = ["--database-url", database_url] if database_url else []
    result = subprocess.run(
        [sys.executable, "-m", module, "--smoke", *url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def has_mosquitto() -> bool:
    return bool(shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin"))


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (make wrk)")
@pytest.mark.skipif(not has_mosquitto(), reason="mosquitto not installed (make mosquitto)")
@pytest.mark.skipif(nats_binary() is None, reason="nats-server not installed (make nats)")
def test_bench_smoke_run_reports_every_figure() -> None:
    figures = run_smoke("bench.run", timeout=300)
    for key in KEYS:
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    # the devices connected until refused, below the descriptor limit the server was given
    assert 0 < figures["devices"] <= figures["devices_reached"] < figures["devices_fd_limit"]
    assert figures["devices_stopped_by"] == "the first refusal"
    assert figures["mqtt_connections"] == figures["devices"]
    # the box (roost serve --workers 2): every device it was given connected and answered a call
    assert figures["box_devices"] == figures["box_devices_target"] == figures["box_calls_ok"]
    assert len(figures["box_devices_per_worker"]) == 2
    # a cross call's CPU by process: both nodes spend some (nats-server's few us a call may
    # round to nothing in a short smoke run: CPU time comes in 10 ms ticks)
    split = figures["rpc_cross_us_by_process"]
    assert set(split) == {"a", "b", "nats"} and split["a"] > 0 and split["b"] > 0


def test_bucket_reads_smoke_reports_its_figures() -> None:
    figures = run_smoke("bench.bucket_reads", timeout=300)
    for key in ("bucket_latest_ms", "bucket_hourly_mean_ms", "bucket_latest_p90_ms"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["bucket_points"] == 20_000


def test_latencies_pool_every_request_of_the_rounds() -> None:
    """p99 of the pool, not the median of each round's p99: one slow round of three shows."""
    fast = Latencies(99, 1.0, Counter({1000: 99}))
    slow = Latencies(99, 1.0, Counter({1000: 90, 50000: 9}))
    pooled = Latencies()
    for run in (fast, fast, slow):
        pooled.add(run)
    assert pooled.requests == 297 and pooled.per_s == 99.0
    assert [run.percentile_ms(99) for run in (fast, fast, slow)] == [1.0, 1.0, 50.0]
    assert pooled.percentile_ms(50) == 1.0
    assert pooled.percentile_ms(99) == 50.0  # 9 of 297 requests: past the fastest 96.97 %
    assert pooled.percentile_ms(96) == 1.0


def test_ingest_smoke_run_reports_its_figures() -> None:
    figures = run_smoke("bench.ingest", timeout=120)
    for key in ("ingest_per_s", "ingest_ratio", "ingest_bare_per_s", "ingest_bare_one_tx_per_s"):
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    # the baseline inserted rows the server stored: at least those confirmed in the second
    assert figures["ingest_bare_rows"] >= figures["ingest_per_s"]


def test_ingest_pg_smoke_run_reports_its_figures() -> None:
    url = os.environ.get("ROOST_TEST_DATABASE_URL")
    if not url:
        pytest.skip("bench.ingest_pg needs ROOST_TEST_DATABASE_URL (a PostgreSQL database)")
    figures = run_smoke("bench.ingest_pg", timeout=120, database_url=url)
    for key in ("ingest_pg_per_s", "ingest_pg_p50_ms", "ingest_pg_p99_ms"):
        assert figures[key] > 0, key
    assert figures["ingest_pg_points"] >= figures["ingest_pg_per_s"]  # at least those confirmed


def test_call_cost_smoke_run_reports_both_figures() -> None:
    figures = run_smoke("bench.call_cost", timeout=120)
    assert set(figures) == {"hello_us", "rpc_us"}
    assert all(isinstance(value, float) and value > 0 for value in figures.values())
