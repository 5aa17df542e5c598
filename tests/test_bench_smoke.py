"""The benchmark harness still runs end to end (a seconds-long plan; no timing is asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "hello_per_s",
    "rpc_per_s",
    "rpc_p50_ms",
    "rpc_p99_ms",
    "rpc_ratio",
    "rpc_iotmp_per_s",
    "rpc_iotmp_ratio",
    "rpc_token_per_s",
    "devices",
    "device_bytes",
    "connect_s",
)


def run_smoke(module: str, timeout: int) -> dict[str, Any]:
    """Run ``python -m <module> --smoke``; the figures of its last line."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (make wrk)")
def test_bench_smoke_run_reports_every_figure() -> None:
    figures = run_smoke("bench.run", timeout=300)
    for key in KEYS:
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    assert figures["devices"] == 200


def test_call_cost_smoke_run_reports_both_figures() -> None:
    figures = run_smoke("bench.call_cost", timeout=120)
    assert set(figures) == {"hello_us", "rpc_us"}
    assert all(isinstance(value, float) and value > 0 for value in figures.values())
