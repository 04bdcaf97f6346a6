"""`python -m bench fleet` runs end to end with tiny counts (shape and plumbing, never speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "budget_items_per_s",
    "within_budget_everywhere",
    "exchange_10006_coordinated",
    "exchange_10006_baseline",
    "halt_visibility_p50_ms",
    "halt_visibility_p99_ms",
    "halt_visibility_max_ms",
    "refuse_frozen_ms",
    "refuse_refused_ms",
    "runs",
}
RUN_KEYS = {
    "sidecars",
    "coordination",
    "peak_units_per_rolling_s",
    "exchange_10006",
    "decision_p50_ms",
    "decision_p99_ms",
}


def test_the_fleet_benchmark_prints_its_figures(redis_binary: str) -> None:
    env = {**os.environ, "BENCH_FLEET_SIZES": "2", "BENCH_FLEET_SECONDS": "1", "BENCH_FLEET_BUDGET": "20"}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "fleet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    figures = json.loads(out.stdout)
    assert figures.keys() >= KEYS, figures
    assert [(r["sidecars"], r["coordination"]) for r in figures["runs"]] == [(2, "redis"), (2, "local")]
    assert all(r.keys() >= RUN_KEYS for r in figures["runs"])
    coordinated = figures["runs"][0]
    assert coordinated["round_trips_per_decision"] == 1.0  # one decision, one round trip
    assert coordinated["state_changes_seen"] == "80/80"  # every sidecar saw every halt and resume
    assert figures["within_budget_everywhere"] is True
    assert figures["exchange_10006_coordinated"] == 0
    assert figures["refuse_frozen_ms"] < 1000  # refused within the timeout, not redis-py's 1.9 s
