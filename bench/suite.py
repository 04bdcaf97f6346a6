"""The whole benchmark run behind `make bench`: every figure of the benchmark issue in ONE dict.

Order: the pure decision bench; then one emulator process that every client talks to over
loopback, one client at a time (raw websockets floor, pybit, the sidecar service, MCP in-process,
MCP over stdio, throughput); then the in-process stream and memory figures; then the targets and
the CDF plot. A phase that fails is reported under `errors` and the others still run. It must not
print anything (the caller prints the one JSON object).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench import policy
from bench.common import ROOT, Counts, EmulatorProcess, machine, pct_us, temp_dir

__all__ = ["DEFAULT_PLOT", "run", "targets"]

DEFAULT_PLOT = ROOT / "docs" / "img" / "latency_cdf.png"
T = TypeVar("T")

SIDECAR, PYBIT, RAW = (30, 90, 200), (230, 120, 20), (46, 139, 87)


def _p(samples: list[int], q: float) -> float:
    return pct_us(sorted(samples), q)


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the issue: value, limit, pass (None when a figure is missing)."""

    def t(what: str, value: Any, limit: Any, ok: Callable[[float, float], bool]) -> dict[str, Any]:
        have = isinstance(value, int | float) and isinstance(limit, int | float)
        return {
            "target": what,
            "value": value,
            "limit": round(limit, 1) if isinstance(limit, float) else limit,
            "pass": ok(value, limit) if have else None,
        }

    def mul(k: str, f: float) -> float | None:
        v = r.get(k)
        return v * f if isinstance(v, int | float) else None

    le: Callable[[float, float], bool] = lambda v, lim: v <= lim  # noqa: E731
    ge: Callable[[float, float], bool] = lambda v, lim: v >= lim  # noqa: E731
    return {
        "sidecar_ack_vs_raw": t(
            "sidecar_ack_p50 <= 1.3 x raw_ack_p50",
            r.get("sidecar_ack_p50_us"),
            mul("raw_ack_p50_us", 1.3),
            le,
        ),
        "sidecar_ack_vs_pybit": t(
            "sidecar_ack_p50 <= 0.7 x pybit_ack_p50",
            r.get("sidecar_ack_p50_us"),
            mul("pybit_ack_p50_us", 0.7),
            le,
        ),
        "sidecar_verified_vs_pybit": t(
            "sidecar_verified_p50 <= 0.7 x pybit_verified_p50",
            r.get("sidecar_verified_p50_us"),
            mul("pybit_verified_p50_us", 0.7),
            le,
        ),
        "decision": t("decision_p50 <= 40 us", r.get("decision_p50_us"), 40, le),
        "throughput": t("throughput >= 500 batches/s", r.get("throughput_batches_per_s"), 500, ge),
        "stream": t("stream >= 50,000 events/s", r.get("stream_events_per_s"), 50_000, ge),
        "rss": t("RSS with 100k orders <= 150 MB", r.get("rss_mb_100k_orders"), 150, le),
        "journal": t(
            "journal_bytes_per_batch <= 8192 (verified 20-item batch)",
            r.get("journal_bytes_per_batch"),
            8192,
            le,
        ),
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

    def put(prefix: str, samples: list[int] | None, *, p99: bool = True) -> None:
        if samples:
            lat[prefix] = samples
            out[f"{prefix}_p50_us"] = _p(samples, 0.5)
            if p99:
                out[f"{prefix}_p99_us"] = _p(samples, 0.99)
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
        s = phase(
            "raw_ack_with_stream",
            lambda: raw.measure_raw_ack(emu, emu.rest_orders("raws"), c.runs, c.warmup, with_stream=True),
        )
        if s:
            details["raw_ack_with_stream_p50_us"] = _p(s, 0.5)
            details["raw_ack_with_stream_p99_us"] = _p(s, 0.99)
            runs["raw_ack_with_stream"] = len(s)
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
        v = phase(
            "pybit_verified",
            lambda: pybit_peer.measure_pybit_verified(emu, emu.rest_orders("pv"), c.runs, c.warmup),
        )
        if v:
            lat["pybit_verified"] = v
            out["pybit_verified_p50_us"] = _p(v, 0.5)
            details["pybit_verified_p99_us"] = _p(v, 0.99)
            runs["pybit_verified"] = len(v)
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
            put("sidecar_ack", svc["ack_ns"])
            put("sidecar_verified", svc["verified_ns"])
            details["sidecar_presend_p50_us"] = _p(svc["presend_ns"], 0.5)
            details["sidecar_presend_p99_us"] = _p(svc["presend_ns"], 0.99)
            put("mcp_inprocess", svc["mcp_inprocess_ns"], p99=False)
            details["mcp_inprocess_p99_us"] = _p(svc["mcp_inprocess_ns"], 0.99)
            details["journal_synchronous"] = svc["journal_synchronous"]
            if "throughput" in svc:
                out["throughput_batches_per_s"] = svc["throughput"]["batches_per_s"]
                out["journal_bytes_per_batch"] = svc["throughput"]["journal_bytes_per_batch"]
                details["throughput"] = svc["throughput"]
                runs["throughput_batches"] = svc["throughput"]["batches"]
        (tmp / "stdio").mkdir()
        m = phase(
            "mcp_stdio",
            lambda: sidecar_path.measure_mcp_stdio(emu, tmp / "stdio", c.mcp_runs, min(c.warmup, 50)),
        )
        if m:
            put("mcp_stdio", m, p99=False)
            details["mcp_stdio_p99_us"] = _p(m, 0.99)

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
