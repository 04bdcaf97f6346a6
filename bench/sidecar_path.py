"""The sidecar's own paths against the emulator process: to the frame written, to the ack, to
`verified`, through MCP (in-process, the server's own overhead over pipes, and stdio), and sustained
throughput with the sidecar's CPU per batch.

The service runs exactly as `sidecar serve` builds it (bench config: local limits raised, journal in
a temp dir with the default `synchronous`, INFO logs rendered to /dev/null so their cost counts).
The pre-send and ack figures come from the service's own observer hook (bench/timing.py: it reports
when the frame was handed to the trade socket and when the ack was applied), read against the
bench's clock just before `submit`; nothing in the service is subclassed or wrapped. It must not
reach into the emulator except through its HTTP control API.
"""

from __future__ import annotations

import asyncio
import cProfile
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CATEGORY,
    ROOT,
    EmulatorProcess,
    OrderSet,
    bench_config,
    build_service,
    check_verified,
    quiet_logging,
)
from bench.mcp_overhead import measure_server_overhead
from bench.timing import Timings

__all__ = ["measure_mcp_stdio", "measure_service"]

READY_S = 15.0
ITEMS = 20


def _request(items: list[dict[str, str]]) -> Any:
    from sidecar.core.types import AmendRequest  # noqa: PLC0415

    return AmendRequest(category=CATEGORY, items=tuple(items), batch=True, tool="wsBatchAmendOrders")


async def _until_allowed(service: Any, orders: list[OrderSet]) -> None:
    """Set-up only: wait until the order snapshot and a fresh reference price make every batch pass."""
    deadline = time.monotonic() + READY_S
    while True:
        bodies = [(await service.preview(_request(o.items(0)))).body for o in orders]
        if all(b["outcome"] == "allowed" for b in bodies):
            return
        if time.monotonic() > deadline:
            bad = next(b for b in bodies if b["outcome"] != "allowed")
            raise RuntimeError(
                f"sidecar never allowed the bench batch: {bad.get('reasons') or bad['items'][0]}"
            )
        await asyncio.sleep(0.05)


async def _sequential(
    service: Any,
    timings: Timings,
    orders: OrderSet,
    runs: int,
    warmup: int,
    profiler: cProfile.Profile | None = None,
) -> dict[str, list[int]]:
    """One request at a time: each must be sent, acked and answered exactly once while it runs.
    `profiler` (bench/profile.py) is enabled for the runs after the warm-up."""
    ack: list[int] = []
    verified: list[int] = []
    presend: list[int] = []
    tail: list[int] = []
    for i in range(warmup + runs):
        if i == warmup and profiler is not None:
            profiler.enable()
        req = _request(orders.items(i))
        timings.clear()
        t0 = time.perf_counter_ns()
        result = await service.submit(req)
        t1 = time.perf_counter_ns()
        check_verified(result.body, f"sidecar request {i}")
        seen = (len(timings.sent_ns), len(timings.ack_ns), len(timings.answer_ns))
        if seen != (1, 1, 1):
            raise RuntimeError(f"sidecar request {i}: verified but observed (sent, ack, answer) {seen}")
        if i >= warmup:
            verified.append(t1 - t0)
            presend.append(timings.sent_ns[0] - t0)
            ack.append(timings.ack_ns[0] - t0)
            tail.append(t1 - timings.answer_ns[0])
    if profiler is not None:
        profiler.disable()
    return {"ack_ns": ack, "verified_ns": verified, "presend_ns": presend, "answer_tail_ns": tail}


async def _mcp_inprocess(service: Any, orders: OrderSet, runs: int, warmup: int) -> list[int]:
    from mcp import Client  # noqa: PLC0415

    from sidecar.mcp_server import build_server  # noqa: PLC0415

    samples: list[int] = []
    async with Client(build_server(service)) as client:
        for i in range(warmup + runs):
            args = {"category": CATEGORY, "request": orders.items(i)}
            t0 = time.perf_counter_ns()
            r = await client.call_tool("wsBatchAmendOrders", args)
            t1 = time.perf_counter_ns()
            check_verified(r.structured_content or {}, f"mcp in-process call {i}")
            if i >= warmup:
                samples.append(t1 - t0)
    return samples


def _journal_on_disk(service: Any) -> int:
    """The service's journal on disk once everything committed is in the database file."""
    from sidecar.testing.disk import checkpointed_disk_bytes  # noqa: PLC0415

    service.journal.flush()
    return checkpointed_disk_bytes(Path(service.journal.path))


async def _throughput(service: Any, sets: list[OrderSet], duration_s: float) -> dict[str, float | int | None]:
    """Closed-loop submitters, each over its own orders; verified batches per second, this
    process's CPU time per verified batch after the warm-up (the emulator runs in its own process;
    the submitters' own loop is counted with the sidecar's, a few µs per batch), and the bytes each
    verified batch added to the journal (all of the run's batches, warm-up included)."""
    counts = [0] * len(sets)
    every = [0]
    failures: list[str] = []
    warm_until = time.perf_counter() + min(1.0, duration_s / 5)
    end = warm_until + duration_s
    cpu_at_warm: list[float] = []

    async def submitter(k: int, orders: OrderSet) -> None:
        i = 0
        while time.perf_counter() < end:
            result = await service.submit(_request(orders.items(i)))
            i += 1
            if result.body.get("outcome") != "verified":
                failures.append(str(result.body.get("outcome")))
            else:
                every[0] += 1
                if time.perf_counter() > warm_until:
                    if not cpu_at_warm:  # the first verified batch after the warm-up starts the count
                        cpu_at_warm.append(time.process_time())
                    counts[k] += 1

    journal_before = _journal_on_disk(service)
    await asyncio.gather(*(submitter(k, o) for k, o in enumerate(sets)))
    cpu_s = time.process_time() - cpu_at_warm[0] if cpu_at_warm else 0.0
    elapsed = time.perf_counter() - warm_until
    journal_grown = _journal_on_disk(service) - journal_before
    if failures:
        raise RuntimeError(f"throughput: {len(failures)} batches not verified, e.g. {failures[0]}")
    total = sum(counts)
    return {
        "batches_per_s": round(total / elapsed, 1),
        "items_per_s": round(ITEMS * total / elapsed, 1),
        "cpu_us_per_batch": round(cpu_s * 1e6 / total, 1) if total else None,
        "batches": total,
        "seconds": round(elapsed, 2),
        "submitters": len(sets),
        "journal_bytes_per_batch": round(journal_grown / every[0]) if every[0] else None,
        "journal_batches": every[0],
    }


async def _rest_orders(emu: EmulatorProcess, names: list[str]) -> list[OrderSet]:
    """Rest orders while the sidecar is connected: it learns them from the `order` stream's create
    pushes (the emulator's open-orders REST read returns one 50-order page, so a snapshot of more
    would miss some)."""
    return [await asyncio.to_thread(emu.rest_orders, n) for n in names]


async def _service_run(
    emu: EmulatorProcess,
    tmp: Path,
    submitters: int,
    runs: int,
    warmup: int,
    mcp_runs: int,
    duration_s: float,
    profiler: cProfile.Profile | None,
) -> dict[str, Any]:
    from sidecar.config import load_config  # noqa: PLC0415

    config = load_config(bench_config(tmp))
    service = build_service(config, emu.url)
    journal = service.journal
    timings = Timings()
    service.observer = timings  # the product's observer hook (what sidecar/metrics.py attaches to)
    out: dict[str, Any] = {"journal_synchronous": config.journal.synchronous}
    try:
        async with service:
            seq, mcp, pipe, *tput = await _rest_orders(
                emu,
                ["seq", "mcp", "pipe", *(f"tput{k}" for k in range(submitters if duration_s > 0 else 0))],
            )
            await _until_allowed(service, [seq, mcp, pipe, *tput])
            out.update(await _sequential(service, timings, seq, runs, warmup, profiler))
            out["mcp_inprocess_ns"] = await _mcp_inprocess(service, mcp, mcp_runs, min(warmup, 50))
            out["mcp_server"] = await measure_server_overhead(
                service, timings, pipe, mcp_runs, min(warmup, 50)
            )
            if duration_s > 0:
                out["throughput"] = await _throughput(service, tput, duration_s)
    finally:
        journal.close()
    return out


def measure_service(
    emu: EmulatorProcess,
    tmp: Path,
    *,
    submitters: int,
    runs: int,
    warmup: int,
    mcp_runs: int,
    duration_s: float,
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """Sidecar pre-send, ack and verified latencies (ns), MCP in-process latencies (ns), the MCP
    server's own overhead (ns, bench/mcp_overhead.py) and throughput. `profiler` (bench/profile.py)
    runs during the sequential requests after the warm-up."""
    quiet_logging("INFO")  # as `serve` logs, rendered into /dev/null so the cost counts
    return asyncio.run(_service_run(emu, tmp, submitters, runs, warmup, mcp_runs, duration_s, profiler))


async def _mcp_stdio_run(emu: EmulatorProcess, tmp: Path, runs: int, warmup: int) -> list[int]:
    from mcp import Client, StdioServerParameters  # noqa: PLC0415
    from mcp.client.stdio import stdio_client  # noqa: PLC0415

    config = bench_config(tmp)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "sidecar", "serve", "--config", str(config), "--exchange-url", emu.url],
        cwd=str(ROOT),
    )
    samples: list[int] = []
    errlog_path = tmp / "serve-stderr.log"
    with errlog_path.open("w") as errlog:
        # stdio_client directly (what Client(params) does) only to send the server's stderr to a file.
        try:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                await client.list_tools()  # the server is up (its service connected before serving)
                (orders,) = await _rest_orders(emu, ["stdio"])
                deadline = time.monotonic() + READY_S
                while True:
                    r = await client.call_tool(
                        "previewBatchAmendOrders", {"category": CATEGORY, "request": orders.items(0)}
                    )
                    if (r.structured_content or {}).get("outcome") == "allowed":
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"stdio server never allowed the batch: {r.structured_content}")
                    await asyncio.sleep(0.05)
                for i in range(warmup + runs):
                    args = {"category": CATEGORY, "request": orders.items(i)}
                    t0 = time.perf_counter_ns()
                    r = await client.call_tool("wsBatchAmendOrders", args)
                    t1 = time.perf_counter_ns()
                    check_verified(r.structured_content or {}, f"mcp stdio call {i}")
                    if i >= warmup:
                        samples.append(t1 - t0)
        except Exception as exc:
            tail = errlog_path.read_text()[-500:] if errlog_path.exists() else ""
            raise RuntimeError(f"{exc} (server stderr tail: {tail!r})") from exc
    return samples


def measure_mcp_stdio(emu: EmulatorProcess, tmp: Path, runs: int, warmup: int) -> list[int]:
    """One `wsBatchAmendOrders` call over stdio to a `sidecar serve` process, to a verified result."""
    return asyncio.run(_mcp_stdio_run(emu, tmp, runs, warmup))
