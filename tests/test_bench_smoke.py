"""Smoke test for the benchmarks (bench/): the whole `python -m bench` suite with tiny counts, so the
bench code cannot rot unnoticed. It checks shape and plumbing (every figure present, no phase
failed, the plot is a PNG, the raw client's frame is the sidecar's, the targets are issue 12's
table), never performance; and the percentile helper every figure goes through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bench.common import PRICES
from bench.raw import body_text, frame_text
from bench.stats import dist_ms, pct_us, percentile
from reliability.suite import plan
from sidecar.bybit.codec import encode_amend_batch
from sidecar.core.types import AmendItem, Category

ROOT = Path(__file__).resolve().parent.parent

KEYS = [
    "decision_p50_us",
    "decision_p99_us",
    "raw_ack_p50_us",
    "raw_ack_p99_us",
    "raw_ack_with_stream_p50_us",
    "raw_ack_with_stream_p99_us",
    "raw_verified_p50_us",
    "raw_verified_p99_us",
    "pybit_ack_p50_us",
    "pybit_ack_p99_us",
    "pybit_unmodified_drop_rate",
    "pybit_verified_p50_us",
    "sidecar_presend_p50_us",
    "sidecar_presend_p99_us",
    "sidecar_ack_p50_us",
    "sidecar_ack_p99_us",
    "sidecar_verified_p50_us",
    "sidecar_verified_p99_us",
    "mcp_inprocess_p50_us",
    "mcp_server_overhead_p50_us",
    "mcp_stdio_p50_us",
    "throughput_batches_per_s",
    "sidecar_cpu_us_per_batch",
    "journal_bytes_per_batch",
    "stream_events_per_s",
    "rss_mb_100k_orders",
]
# Issue 12's table: every row a target; mcp_stdio is reported only.
TARGETS = {
    "decision_p50_us",
    "decision_p99_us",
    "sidecar_presend_p50_us",
    "sidecar_ack_vs_raw_ack_with_stream",
    "sidecar_verified_vs_raw_verified",
    "sidecar_verified_vs_pybit_verified",
    "mcp_server_overhead_p50_us",
    "mcp_stdio_p50_us",
    "sidecar_cpu_us_per_batch",
    "throughput_batches_per_s",
    "stream_events_per_s",
    "rss_mb_100k_orders",
    "journal_bytes_per_batch",
}
REPORTED_ONLY = {"mcp_stdio_p50_us"}


def test_raw_client_sends_the_sidecars_frame() -> None:
    items = [{"symbol": "BTCUSDT", "orderId": f"o{i}", "price": PRICES[1]} for i in range(3)]
    ours = encode_amend_batch(
        "r-1",
        Category.LINEAR,
        [AmendItem("BTCUSDT", f"o{i}", None, {"price": Decimal(PRICES[1])}) for i in range(3)],
        1_700_000_000_000,
        5000,
    )
    raw = frame_text("r-1", 1_700_000_000_000, body_text(items))
    assert raw == ours


def test_bench_suite_runs_end_to_end_with_tiny_counts(tmp_path: Path) -> None:
    plot = tmp_path / "cdf.png"
    env = {
        **os.environ,
        "BENCH_RUNS": "5",
        "BENCH_WARMUP": "2",
        "BENCH_DECISION_RUNS": "50",
        "BENCH_MCP_RUNS": "3",
        "BENCH_DROP_RUNS": "5",
        "BENCH_THROUGHPUT_S": "0.3",
        "BENCH_SUBMITTERS": "2",
        "BENCH_STREAM_EVENTS": "500",
        "BENCH_RSS_ORDERS": "500",
        "BENCH_PLOT": str(plot),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = json.loads(proc.stdout)
    assert "errors" not in out, out.get("errors")
    assert proc.returncode == 0, proc.stderr[-2000:]
    missing = [k for k in KEYS if not isinstance(out.get(k), int | float)]
    assert not missing
    assert out["runs"]["sidecar_ack"] == 5 and out["runs"]["mcp_stdio"] == 3
    assert out["runs"]["raw_verified"] == 5 and out["runs"]["mcp_server_overhead"] == 3
    assert set(out["machine"]) == {"cores", "python", "platform"}
    assert set(out["targets"]) == TARGETS
    for name, t in out["targets"].items():
        assert set(t) >= {"value", "limit", "pass", "what"}, name
        assert isinstance(t["pass"], bool) is (name not in REPORTED_ONLY), (name, t)
    # Ratios are the quotient of the two figures they name.
    ack = out["targets"]["sidecar_ack_vs_raw_ack_with_stream"]["value"]
    assert ack == round(out["sidecar_ack_p50_us"] / out["raw_ack_with_stream_p50_us"], 3)
    # Pre-send comes before the ack, the ack before the verified answer (same requests).
    assert out["sidecar_presend_p50_us"] < out["sidecar_ack_p50_us"] < out["sidecar_verified_p50_us"]
    # The server's own part of a tool call is a part of it: positive, below the whole.
    parts = out["details"]["mcp_server_overhead_parts_p50_us"]
    assert 0 < out["mcp_server_overhead_p50_us"] < parts["total"]
    assert out["sidecar_cpu_us_per_batch"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_percentiles_are_nearest_rank_and_empty_is_none() -> None:
    assert percentile(range(1, 2001), 0.99) == 1980  # not 1981: 0.99 x 2000 is exactly 1980
    assert percentile([5, 1, 3], 0.5) == 3 and percentile([4, 1, 3, 2], 0.5) == 2
    assert percentile([7], 0.999) == 7 and percentile([], 0.5) is None
    assert pct_us([1_500, 2_500, 9_000], 0.5) == 2.5 and pct_us([], 0.5) is None
    assert dist_ms([]) == {"n": 0, "p50": None, "p99": None, "p999": None, "max": None}


def test_the_reliability_suite_refuses_an_unknown_argument() -> None:
    with pytest.raises(ValueError, match="unknown argument '--quik'"):
        plan(["--quik"])
    with pytest.raises(ValueError, match="unknown part"):
        plan(["--only", "load,nap"])
    assert plan(["--quick", "--only", "faults"]).parts == ("faults",)


def test_python_m_bench_soak_still_runs_the_reliability_suite() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--quik"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown argument '--quik'" in json.loads(proc.stdout)["error"]
    assert "moved to `python -m reliability --quik`" in proc.stderr
