"""A verified 20-item batch adds at most 8 KiB to the journal (issue 10 item 6, DESIGN.md §4.5).

Measured as the real bytes on disk: the database file plus its WAL, each time right after a
TRUNCATE checkpoint (so the WAL is empty and every committed page is in the file), around 100
verified batches sent through the real service to the emulator. That counts everything a batch
costs: the record bodies, their columns and chain links, the indexes, the `requests` row, and the
space SQLite leaves unused in its pages. The batch is the benchmark's: 20 orders named by their
orderId (the orders also carry an orderLinkId, which the journal must name too), price amends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.core.types import AmendRequest
from sidecar.testing.disk import checkpointed_disk_bytes
from tests.e2e.e2e_kit import start_stack, stop_stack

pytestmark = pytest.mark.slow

LIMIT_BYTES = 8192
BATCHES = 100
WARMUP = 3
ORDERS = [("linear", "BTCUSDT", "Buy", "0.01", f"{94000 + 10 * i}", f"size-{i:02d}-link") for i in range(20)]
BIG = 1_000_000
LIMITS = [
    {"scope": "tool", "max": BIG, "window_s": 1},
    {"scope": "global", "max": BIG, "window_s": 1},
    {"scope": "symbol", "max": BIG, "window_s": 1},
    {"scope": "exchange", "op": "order.amend-batch", "category": "linear", "max": 100_000, "window_s": 1},
]


def on_disk(path: Path) -> int:
    """Database + WAL bytes once everything committed is in the database file."""
    return checkpointed_disk_bytes(path, must_complete=True)


async def test_a_verified_20_item_batch_adds_at_most_8_kib(tmp_path: Path) -> None:
    emu, service, config, placed = await start_stack(tmp_path, orders_to_rest=ORDERS, rate_limits=LIMITS)
    path = Path(config.journal.path)
    try:
        ids = [placed[link]["orderId"] for *_, link in ORDERS]

        async def batch(n: int) -> None:
            items = tuple(
                {"symbol": "BTCUSDT", "orderId": oid, "price": f"{94000 + 10 * i + (5 if n % 2 == 0 else 0)}"}
                for i, oid in enumerate(ids)
            )
            async with asyncio.timeout(10):
                result = await service.submit(
                    AmendRequest("linear", items, batch=True, tool="wsBatchAmendOrders")
                )
            assert result.body["outcome"] == "verified", result.body

        for n in range(WARMUP):
            await batch(n)
        service.journal.flush()
        records_before = len(service.journal.last_records(100_000))
        before = on_disk(path)
        for n in range(WARMUP, WARMUP + BATCHES):
            await batch(n)
        service.journal.flush()
        grown = on_disk(path) - before
        records = len(service.journal.last_records(100_000)) - records_before
    finally:
        await stop_stack(emu, service)
    per_batch = grown / BATCHES
    print(f"journal: {per_batch:.0f} bytes and {records / BATCHES:.1f} records per verified 20-item batch")
    assert records == 3 * BATCHES  # request, intent, final
    assert per_batch <= LIMIT_BYTES, per_batch
