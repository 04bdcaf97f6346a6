"""The sidecar's own paths against the emulator process: to the ack, to `verified`, through MCP
(in-process and stdio), and sustained throughput.

The service runs exactly as `sidecar serve` builds it (bench config: local limits raised, journal in
a temp dir with the default `synchronous`, INFO logs rendered to /dev/null so their cost counts).
The ack figure comes from a `Service` subclass that timestamps `_on_ack` (the moment the ack event
is applied) against the submit's own start; nothing inside the service is changed. It must not
reach into the emulator except through its HTTP control API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from bench.common import (
    API_KEY,
    API_SECRET,
    CATEGORY,
    ROOT,
    EmulatorProcess,
    OrderSet,
    bench_config,
)

__all__ = ["measure_mcp_stdio", "measure_service"]

READY_S = 15.0


_devnull: TextIO | None = None


@contextlib.contextmanager
def _logs_to_devnull() -> Iterator[None]:
    """Configure structlog at INFO (as `serve` does) but render into /dev/null, not our stdout."""
    from sidecar.logs import configure_logging  # noqa: PLC0415

    global _devnull  # noqa: PLW0603 - one sink per process, kept open as long as logging uses it
    if _devnull is None:
        _devnull = open(os.devnull, "w")  # noqa: SIM115
    saved = sys.stderr
    sys.stderr = _devnull
    try:
        configure_logging("INFO")
    finally:
        sys.stderr = saved
    yield


def _timed_service_class() -> Any:
    from sidecar.core.types import Ack  # noqa: PLC0415
    from sidecar.service import Service  # noqa: PLC0415

    class TimedService(Service):
        """`Service` plus, per request, the time from submit start to the ack being applied and
        to the frame being handed to the trade socket (`sent_ns` is filled by `_time_sends`)."""

        ack_ns: dict[str, int]
        presend_ns: dict[str, int]
        sent_ns: dict[str, int]

        def _on_ack(self, ack: Ack, now: int, wall: int) -> None:
            t = self.clock.monotonic_ns()
            for p in self._pending.values():
                if p.req_id == ack.req_id:
                    self.ack_ns[p.request_id] = t - p.started_ns
                    sent = self.sent_ns.pop(ack.req_id, None)
                    if sent is not None:
                        self.presend_ns[p.request_id] = sent - p.started_ns
                    break
            super()._on_ack(ack, now, wall)

    return TimedService


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


def _check(body: dict[str, Any], what: str) -> None:
    if body.get("outcome") != "verified":
        items = body.get("items") or [{}]
        raise RuntimeError(
            f"{what}: outcome {body.get('outcome')!r}: {body.get('reasons') or items[0].get('reasons')}"
        )


def _time_sends(service: Any) -> None:
    """Wrap the trade socket's `send` (an attribute of this instance only) to note when a frame leaves."""
    send = service.trade.send
    clock = service.clock

    async def timed_send(req_id: str, frame: str, *, items: int | None = None) -> None:
        service.sent_ns[req_id] = clock.monotonic_ns()
        await send(req_id, frame, items=items)

    service.trade.send = timed_send


async def _sequential(service: Any, orders: OrderSet, runs: int, warmup: int) -> dict[str, list[int]]:
    ack: list[int] = []
    verified: list[int] = []
    presend: list[int] = []
    for i in range(warmup + runs):
        req = _request(orders.items(i))
        t0 = time.perf_counter_ns()
        result = await service.submit(req)
        t1 = time.perf_counter_ns()
        _check(result.body, f"sidecar request {i}")
        ack_ns = service.ack_ns.pop(result.body["requestId"], None)
        if ack_ns is None:
            raise RuntimeError(f"sidecar request {i}: verified but no ack was timed")
        presend_ns = service.presend_ns.pop(result.body["requestId"], 0)
        if i >= warmup:
            verified.append(t1 - t0)
            ack.append(ack_ns)
            presend.append(presend_ns)
    return {"ack_ns": ack, "verified_ns": verified, "presend_ns": presend}


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
            _check(r.structured_content or {}, f"mcp in-process call {i}")
            if i >= warmup:
                samples.append(t1 - t0)
    return samples


def _journal_on_disk(service: Any) -> int:
    """The journal's bytes on disk (database + WAL) once everything committed is in the database
    file: a TRUNCATE checkpoint from a connection of our own (if a reader keeps it from
    completing, the WAL is counted as it is)."""
    import sqlite3  # noqa: PLC0415

    from sidecar.journal import disk_bytes  # noqa: PLC0415

    service.journal.flush()
    path = Path(service.journal.path)
    conn = sqlite3.connect(path, timeout=10)  # the busy handler waits out a reader in the server
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return int(disk_bytes(path))


async def _throughput(service: Any, sets: list[OrderSet], duration_s: float) -> dict[str, float | int]:
    """Closed-loop submitters, each over its own orders; verified batches per second, and the
    bytes each verified batch added to the journal (all of the run's batches, warm-up included)."""
    counts = [0] * len(sets)
    every = [0]
    failures: list[str] = []
    warm_until = time.perf_counter() + min(1.0, duration_s / 5)
    end = warm_until + duration_s

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
                    counts[k] += 1

    journal_before = _journal_on_disk(service)
    await asyncio.gather(*(submitter(k, o) for k, o in enumerate(sets)))
    elapsed = time.perf_counter() - warm_until
    journal_grown = _journal_on_disk(service) - journal_before
    if failures:
        raise RuntimeError(f"throughput: {len(failures)} batches not verified, e.g. {failures[0]}")
    total = sum(counts)
    return {
        "batches_per_s": round(total / elapsed, 1),
        "items_per_s": round(20 * total / elapsed, 1),
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
) -> dict[str, Any]:
    from sidecar.bybit.endpoints import resolve_endpoints  # noqa: PLC0415
    from sidecar.clock import SystemClock  # noqa: PLC0415
    from sidecar.config import load_config  # noqa: PLC0415
    from sidecar.journal import Journal  # noqa: PLC0415
    from sidecar.service import Credentials  # noqa: PLC0415

    config = load_config(bench_config(tmp))
    journal = Journal(config.journal.path, config.journal.synchronous)
    service_cls = _timed_service_class()
    service = service_cls(
        config,
        clock=SystemClock(),
        endpoints=resolve_endpoints("sim", None, None, emu.url),
        credentials=Credentials(API_KEY, API_SECRET),
        journal=journal,
    )
    service.ack_ns, service.presend_ns, service.sent_ns = {}, {}, {}
    _time_sends(service)
    out: dict[str, Any] = {"journal_synchronous": config.journal.synchronous}
    try:
        async with service:
            seq, mcp, *tput = await _rest_orders(
                emu, ["seq", "mcp", *(f"tput{k}" for k in range(submitters if duration_s > 0 else 0))]
            )
            await _until_allowed(service, [seq, mcp, *tput])
            out.update(await _sequential(service, seq, runs, warmup))
            out["mcp_inprocess_ns"] = await _mcp_inprocess(service, mcp, mcp_runs, min(warmup, 50))
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
) -> dict[str, Any]:
    """Sidecar ack and verified latencies (ns), MCP in-process latencies (ns) and throughput."""
    with _logs_to_devnull():
        return asyncio.run(_service_run(emu, tmp, submitters, runs, warmup, mcp_runs, duration_s))


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
                    _check(r.structured_content or {}, f"mcp stdio call {i}")
                    if i >= warmup:
                        samples.append(t1 - t0)
        except Exception as exc:
            tail = errlog_path.read_text()[-500:] if errlog_path.exists() else ""
            raise RuntimeError(f"{exc} (server stderr tail: {tail!r})") from exc
    return samples


def measure_mcp_stdio(emu: EmulatorProcess, tmp: Path, runs: int, warmup: int) -> list[int]:
    """One `wsBatchAmendOrders` call over stdio to a `sidecar serve` process, to a verified result."""
    return asyncio.run(_mcp_stdio_run(emu, tmp, runs, warmup))
