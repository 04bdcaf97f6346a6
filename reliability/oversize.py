"""`python -m reliability oversize`: the worst case of oversized input (issue 9), as one JSON object.

Its one job is to measure what a hostile request costs the sidecar: a 10,000- and a 100,000-item
batch and a 1 MiB `symbol`, each through the MCP server in process (the SDK's `Client`) against the
in-process emulator. Per case: the call's wall time, the longest event-loop stall seen meanwhile,
the peak RSS growth of the process, the answer's size, and the journal bytes the request added.
It must not change the sidecar (it only reads the journal file sizes and the process's RSS).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import quiet_logging, rss_kb, temp_dir
from reliability.stack import soak_config, start_stack

__all__ = ["run"]

ITEM = {"symbol": "BTCUSDT", "orderLinkId": "x-1", "price": "94500"}


async def _watch_loop(stalls: list[float], stop: asyncio.Event) -> None:
    """The longest gap between two 1 ms sleeps: how long the event loop was blocked."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        stalls.append(now - last)
        last = now


async def _case(stack: Any, args: dict[str, Any]) -> dict[str, Any]:
    from mcp import Client  # noqa: PLC0415

    from sidecar.journal import disk_bytes  # noqa: PLC0415
    from sidecar.mcp_server import build_server  # noqa: PLC0415

    stack.service.journal.flush()
    journal_before = disk_bytes(stack.journal_path)
    rss_before = rss_kb()
    peak = rss_before
    stalls: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_loop(stalls, stop))
    started = time.perf_counter()
    async with Client(build_server(stack.service)) as client:
        task = asyncio.create_task(client.call_tool("wsBatchAmendOrders", args))
        while not task.done():
            peak = max(peak, rss_kb())
            await asyncio.sleep(0.005)
        result = task.result()
    elapsed = time.perf_counter() - started
    stop.set()
    await watcher
    stack.service.journal.flush()
    text = "".join(getattr(c, "text", "") for c in result.content)
    body = result.structured_content or {}
    return {
        "call_ms": round(elapsed * 1000, 1),
        "max_loop_stall_ms": round(max(stalls, default=0) * 1000, 1),
        "rss_growth_mb": round((peak - rss_before) / 1024, 1),
        "answer_bytes": len(text.encode()),
        "items_listed": len(body.get("items", [])),
        "items_omitted": body.get("itemsOmitted", 0),
        "codes": sorted({r["code"] for it in body.get("items", []) for r in it["reasons"]}),
        "journal_bytes": disk_bytes(stack.journal_path) - journal_before,
    }


async def _run(tmp: Path) -> dict[str, Any]:
    config = soak_config(tmp / "oversize.sqlite3")
    stack = await start_stack(config)
    try:
        out = {
            "batch_10k_items": await _case(stack, {"category": "linear", "request": [ITEM] * 10_000}),
            "batch_100k_items": await _case(stack, {"category": "linear", "request": [ITEM] * 100_000}),
            "symbol_1mib": await _case(
                stack, {"category": "linear", "request": [{**ITEM, "symbol": "A" * (1 << 20)}]}
            ),
        }
    finally:
        await stack.stop()
    return out


def run() -> dict[str, Any]:
    quiet_logging("WARNING")
    with temp_dir("sidecar-oversize-") as tmp:
        return asyncio.run(_run(tmp))
