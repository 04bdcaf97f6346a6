"""Smoke test for the benchmarks (bench/): the whole `python -m bench` suite with tiny counts, so the
bench code cannot rot unnoticed. It checks shape and plumbing (every figure present, no phase
failed, the plot is a PNG, the raw client's frame is the sidecar's), never performance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

KEYS = [
    "decision_p50_us",
    "decision_p99_us",
    "raw_ack_p50_us",
    "raw_ack_p99_us",
    "pybit_ack_p50_us",
    "pybit_ack_p99_us",
    "pybit_unmodified_drop_rate",
    "pybit_verified_p50_us",
    "sidecar_ack_p50_us",
    "sidecar_ack_p99_us",
    "sidecar_verified_p50_us",
    "sidecar_verified_p99_us",
    "mcp_inprocess_p50_us",
    "mcp_stdio_p50_us",
    "throughput_batches_per_s",
    "journal_bytes_per_batch",
    "stream_events_per_s",
    "rss_mb_100k_orders",
]


def test_raw_client_sends_the_sidecars_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # bench/ is not an installed package: import after this
    from bench.common import PRICES  # noqa: PLC0415
    from bench.raw import body_text, frame_text  # noqa: PLC0415
    from sidecar.bybit.codec import encode_amend_batch  # noqa: PLC0415
    from sidecar.core.types import AmendItem, Category  # noqa: PLC0415

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
    assert set(out["machine"]) == {"cores", "python", "platform"}
    assert all(isinstance(t["pass"], bool) for t in out["targets"].values())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
