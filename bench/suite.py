"""The whole benchmark run behind `make bench`: every figure of issue 12's table in ONE dict.

Order: the pure decision bench; then one emulator process that every client talks to over
loopback, one client at a time (raw websockets floor: ack, ack with a stream subscriber, verified;
pybit; the sidecar service: pre-send, ack, verified, MCP in-process, the MCP server's own overhead
over pipes, throughput with CPU per batch; MCP over stdio); then the in-process stream and memory
figures; then the targets and the CDF plot. A phase that fails is reported under `errors` and the
others still run. It must not print anything (the caller prints the one JSON object).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench import policy
from bench.common import ROOT, Counts, EmulatorProcess, temp_dir
from bench.report import at_least, at_most, machine, ratio, target
from bench.stats import pct_us

__all__ = ["DEFAULT_PLOT", "run", "targets"]

DEFAULT_PLOT = ROOT / "docs" / "img" / "latency_cdf.png"
T = TypeVar("T")

SIDECAR, PYBIT, RAW = (30, 90, 200), (230, 120, 20), (46, 139, 87)


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 12's table, one entry per row: value, limit, pass (None: missing, or reported only)."""

    def le(key: str, limit: float, note: str = "") -> dict[str, Any]:
        return at_most(r.get(key), limit, f"{key}{note} <= {limit:g}")

    def ge(key: str, limit: float) -> dict[str, Any]:
        return at_least(r.get(key), limit, f"{key} >= {limit:g}")

    def ratio_le(top: str, bottom: str, limit: float) -> dict[str, Any]:
        return at_most(
            ratio(r, f"{top}_p50_us", f"{bottom}_p50_us"), limit, f"{top} / {bottom} p50 <= {limit:g}"
        )

    return {
        "decision_p50_us": le("decision_p50_us", 40),
        "decision_p99_us": le("decision_p99_us", 150),
        "sidecar_presend_p50_us": le("sidecar_presend_p50_us", 150, " (call decoded -> frame written)"),
        "sidecar_ack_vs_raw_ack_with_stream": ratio_le("sidecar_ack", "raw_ack_with_stream", 1.2),
        "sidecar_verified_vs_raw_verified": ratio_le("sidecar_verified", "raw_verified", 1.3),
        "sidecar_verified_vs_pybit_verified": ratio_le("sidecar_verified", "pybit_verified", 0.5),
        "mcp_server_overhead_p50_us": le(
            "mcp_server_overhead_p50_us", 300, " (tools/call read -> answer written, minus the service)"
        ),
        "mcp_stdio_p50_us": target(
            r.get("mcp_stdio_p50_us"), None, None, "reported only (includes the Python client's schema check)"
        ),
        "sidecar_cpu_us_per_batch": le("sidecar_cpu_us_per_batch", 1000, " (verified 20-item batch)"),
        "throughput_batches_per_s": ge("throughput_batches_per_s", 500),
        "stream_events_per_s": ge("stream_events_per_s", 200_000),
        "rss_mb_100k_orders": le("rss_mb_100k_orders", 100),
        "journal_bytes_per_batch": le("journal_bytes_per_batch", 8192, " (verified 20-item batch)"),
    }


def run(counts: Counts | None = None, plot_path: Path | None = DEFAULT_PLOT) -> dict[str, Any]:
    c = counts or Counts()
    out: dict[str, Any] = {}
    runs: dict[str, int | float] = {}
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    lat: dict[str, list[int]] = {}
    started = time.perf_counter()

    def phase(name: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except Exception as exc:  # one broken phase must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            return None

    def put(prefix: str, samples: list[int] | None, *, p99_in_details: bool = False) -> None:
        """`{prefix}_p50_us` at the top level, its p99 there too (or in `details`), the count in `runs`."""
        if samples:
            lat[prefix] = samples
            out[f"{prefix}_p50_us"] = pct_us(samples, 0.5)
            (details if p99_in_details else out)[f"{prefix}_p99_us"] = pct_us(samples, 0.99)
            runs[prefix] = len(samples)

    pol = phase("decision", lambda: policy.run(c.decision_runs, max(1, c.decision_runs // 10)))
    if isinstance(pol, dict) and "error" not in pol:
        out["decision_p50_us"], out["decision_p99_us"] = pol["decision_p50_us"], pol["decision_p99_us"]
        runs["decision"] = int(str(pol["runs"]))
        details["decision_parts_p50_us"] = pol["parts_p50_us"]
    elif isinstance(pol, dict):
        errors["decision"] = str(pol["error"])

    from bench import pybit_peer, raw, sidecar_path  # noqa: PLC0415 - after the pure bench

    with EmulatorProcess(seed=1) as emu, temp_dir() as tmp:
        emu.prepare()
        put(
            "raw_ack",
            phase("raw_ack", lambda: raw.measure_raw_ack(emu, emu.rest_orders("raw"), c.runs, c.warmup)),
        )
        put(
            "raw_ack_with_stream",
            phase(
                "raw_ack_with_stream",
                lambda: raw.measure_raw_ack(emu, emu.rest_orders("raws"), c.runs, c.warmup, with_stream=True),
            ),
        )
        put(
            "raw_verified",
            phase(
                "raw_verified",
                lambda: raw.measure_raw_verified(emu, emu.rest_orders("rawv"), c.runs, c.warmup),
            ),
        )
        put(
            "pybit_ack",
            phase(
                "pybit_ack",
                lambda: pybit_peer.measure_pybit_ack(emu, emu.rest_orders("pa"), c.runs, c.warmup),
            ),
        )
        drop = phase(
            "pybit_unmodified",
            lambda: pybit_peer.measure_pybit_drop_rate(emu, emu.rest_orders("pd"), c.drop_runs),
        )
        if drop:
            out["pybit_unmodified_drop_rate"] = drop["rate"]
            details["pybit_unmodified"] = drop
            runs["pybit_unmodified"] = drop["runs"]
        put(
            "pybit_verified",
            phase(
                "pybit_verified",
                lambda: pybit_peer.measure_pybit_verified(emu, emu.rest_orders("pv"), c.runs, c.warmup),
            ),
            p99_in_details=True,
        )
        (tmp / "service").mkdir()
        svc = phase(
            "sidecar",
            lambda: sidecar_path.measure_service(
                emu,
                tmp / "service",
                submitters=c.submitters,
                runs=c.runs,
                warmup=c.warmup,
                mcp_runs=c.mcp_runs,
                duration_s=c.throughput_s,
            ),
        )
        if svc:
            put("sidecar_presend", svc["presend_ns"])
            put("sidecar_ack", svc["ack_ns"])
            put("sidecar_verified", svc["verified_ns"])
            details["sidecar_answer_tail_p50_us"] = pct_us(svc["answer_tail_ns"], 0.5)
            put("mcp_inprocess", svc["mcp_inprocess_ns"], p99_in_details=True)
            server = svc["mcp_server"]
            put("mcp_server_overhead", server["overhead"], p99_in_details=True)
            details["mcp_server_overhead_parts_p50_us"] = {
                part: pct_us(server[part], 0.5) for part in ("total", "in", "out")
            }
            details["journal_synchronous"] = svc["journal_synchronous"]
            if "throughput" in svc:
                tput = svc["throughput"]
                out["throughput_batches_per_s"] = tput["batches_per_s"]
                out["sidecar_cpu_us_per_batch"] = tput["cpu_us_per_batch"]
                out["journal_bytes_per_batch"] = tput["journal_bytes_per_batch"]
                details["throughput"] = tput
                runs["throughput_batches"] = tput["batches"]
        (tmp / "stdio").mkdir()
        m = phase(
            "mcp_stdio",
            lambda: sidecar_path.measure_mcp_stdio(emu, tmp / "stdio", c.mcp_runs, min(c.warmup, 50)),
        )
        put("mcp_stdio", m, p99_in_details=True)

    from bench import stream  # noqa: PLC0415

    st = phase("stream", lambda: stream.measure_stream(c.stream_events))
    if st:
        out["stream_events_per_s"] = st["events_per_s"]
        details["stream"] = st
        runs["stream_events"] = st["events"]
    rss = phase("rss", lambda: stream.measure_rss(c.rss_orders))
    if rss:
        # Named for 100k orders; `runs.rss_orders` says how many were really held (smoke test: fewer).
        out["rss_mb_100k_orders"] = rss["rss_mb"]
        details["rss"] = rss
        runs["rss_orders"] = rss["orders"]

    out["machine"] = machine()
    out["runs"] = runs
    out["targets"] = targets(out)
    if plot_path is not None and lat:
        from bench.plot import write_cdf_png  # noqa: PLC0415

        def draw() -> None:
            series = [
                ("raw websockets ack", RAW, False, lat.get("raw_ack", [])),
                ("raw websockets verified", RAW, True, lat.get("raw_verified", [])),
                ("pybit ack", PYBIT, False, lat.get("pybit_ack", [])),
                ("sidecar ack", SIDECAR, False, lat.get("sidecar_ack", [])),
                ("pybit verified", PYBIT, True, lat.get("pybit_verified", [])),
                ("sidecar verified", SIDECAR, True, lat.get("sidecar_verified", [])),
            ]
            write_cdf_png(plot_path, series, "ack and verified latency, 20-item order.amend-batch, loopback")
            details["plot"] = (
                os.path.relpath(plot_path, ROOT) if plot_path.is_relative_to(ROOT) else str(plot_path)
            )

        phase("plot", draw)
    details["wall_s"] = round(time.perf_counter() - started, 1)
    details["command"] = "make bench  (= .venv/bin/python -m bench)"
    details["argv"] = sys.argv[1:]
    out["details"] = details
    if errors:
        out["errors"] = errors
    return out
