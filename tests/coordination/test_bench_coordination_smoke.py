"""`python -m bench coordination` runs end to end with tiny counts (shape and plumbing, never speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "round_trips_per_decision",
    "decision_p50_us",
    "decision_p99_us",
    "local_decision_p50_us",
    "local_decision_p99_us",
    "halt_visibility_p50_ms",
    "halt_visibility_p99_ms",
    "halt_visibility_max_ms",
    "refuse_frozen_ms",
    "refuse_refused_ms",
}


def test_the_coordination_benchmark_prints_its_figures(redis_binary: str) -> None:
    env = {**os.environ, "BENCH_COORD_RUNS": "50", "BENCH_COORD_HALTS": "3", "BENCH_COORD_INSTANCES": "3"}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "coordination"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    figures = json.loads(out.stdout)
    assert figures.keys() >= KEYS, figures
    assert figures["round_trips_per_decision"] == 1.0  # one decision, one round trip
    assert figures["refuse_frozen_ms"] < 1000  # refused within the timeout, not redis-py's 1.9 s
