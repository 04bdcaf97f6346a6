"""The service's unit-test kit: the real `Service` (real journal, real config, real core) on a
`FakeClock`, with the exchange played by `sidecar.testing.FakeAdapters`.

Time moves only when a test says so (`Rig.advance`); nothing here sleeps. Every wait is bounded
(`within`), so a lost event fails the test in a second instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sidecar.config import SidecarConfig
from sidecar.core.types import AmendRequest, Category, Instrument, OrderView, Side
from sidecar.journal import Journal
from sidecar.service import AmendResult, Service
from sidecar.testing import FakeAdapters, FakeClock, SentFrame
from tests.e2e.e2e_kit import e2e_config

T = TypeVar("T")

# Every symbol of config/sidecar.yaml, priced, so the start finds a quote for each at once.
PRICES: dict[tuple[Category, str], Decimal] = {
    (Category.LINEAR, "BTCUSDT"): Decimal("95000"),
    (Category.LINEAR, "ETHUSDT"): Decimal("3500"),
    (Category.LINEAR, "SOLUSDT"): Decimal("180"),
    (Category.SPOT, "BTCUSDT"): Decimal("95000"),
}
INSTRUMENTS = [
    Instrument(cat, sym, Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal("100"))
    for cat, sym in PRICES
]
# The wall time the fake clock starts at (FakeClock's default); resting orders were last updated before.
START_WALL_MS = 1_700_000_000_000
ORDER_COUNT = 8


def resting_order(n: int, price: str = "94000.0", qty: str = "0.01") -> OrderView:
    """Resting linear BTCUSDT buy order number `n` (orderId `oid-n`, orderLinkId `link-n`)."""
    return OrderView(
        category=Category.LINEAR,
        symbol="BTCUSDT",
        order_id=f"oid-{n}",
        order_link_id=f"link-{n}",
        side=Side.BUY,
        price=Decimal(price),
        qty=Decimal(qty),
        leaves_qty=Decimal(qty),
        cum_exec_qty=Decimal(0),
        order_status="New",
        updated_time_ms=START_WALL_MS - 60_000 + n,
    )


def amend(*orders: tuple[int, str], batch: bool = True) -> AmendRequest:
    """An amend request setting the price of each (order number, price)."""
    items = tuple({"symbol": "BTCUSDT", "orderId": f"oid-{n}", "price": price} for n, price in orders)
    if batch:
        return AmendRequest(category="linear", items=items)
    return AmendRequest(category="linear", items=items, batch=False, tool="wsAmendOrder")


async def within(awaitable: Awaitable[T], seconds: float = 2.0) -> T:
    """Await with a bound: a missing event fails the test instead of hanging it."""
    async with asyncio.timeout(seconds):
        return await awaitable


def outcomes(result: AmendResult) -> list[str]:
    return [item["outcome"] for item in result.body["items"]]


def codes(result: AmendResult) -> set[str]:
    """Every denial code the answer names (request-level and per item)."""
    found = {r["code"] for r in result.body["reasons"]}
    for item in result.body["items"]:
        found |= {r["code"] for r in item["reasons"]}
    return found


@dataclass
class Checkpoints:
    """The service's checkpoint hook (pending.CHECKPOINTS): every point heard, in order."""

    points: list[str] = field(default_factory=list)
    _heard: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def __call__(self, point: str) -> None:
        self.points.append(point)
        self._heard.put_nowait(point)

    async def reached(self, point: str) -> None:
        """Wait until the amend path reports `point` (the next time not yet waited for). A verdict
        is settled and journaled by the time this returns: the hook is called inside the event
        task's synchronous drain, and this waiter runs only after it."""
        async with asyncio.timeout(2.0):
            while await self._heard.get() != point:
                pass


@dataclass
class Rig:
    service: Service
    exchange: FakeAdapters
    clock: FakeClock
    journal: Journal
    config: SidecarConfig
    heard: Checkpoints

    @property
    def points(self) -> list[str]:
        """The checkpoints the amend path reported, in order."""
        return self.heard.points

    async def reached(self, point: str) -> None:
        await self.heard.reached(point)

    def submit(self, request: AmendRequest) -> asyncio.Task[AmendResult]:
        """Start a submit as its own task (the caller's call), so the test can play the exchange."""
        return asyncio.create_task(self.service.submit(request))

    async def next_sent(self) -> SentFrame:
        return await within(self.exchange.trade.next_sent())

    def order_now(self, n: int) -> OrderView:
        view = self.exchange.rest.find(f"oid-{n}", None)
        assert view is not None
        return view

    def applied(self, n: int, **changes: Any) -> OrderView:
        """Order `n` as the exchange shows it after a change (updatedTime: now, and later than the
        order's last change even when the fake clock has not moved)."""
        before = self.order_now(n)
        updated_ms = max(self.clock.wall_ms(), before.updated_time_ms + 1)
        return dataclasses.replace(before, updated_time_ms=updated_ms, **changes)

    async def taken_in(self) -> None:
        """Until the event task has finished a pass after everything queued so far (events,
        deadlines, drain): what it was going to start, it has started."""
        intake = self.service.intake
        async with asyncio.timeout(2.0):
            while True:
                intake.pass_done.clear()
                await intake.pass_done.wait()
                if intake.queue.empty():
                    return

    def advance(self, ms: int) -> None:
        """Move time on, keep the quotes current (an answered ping per feed), and let the event
        task look at the reconciler's deadlines now."""
        self.clock.advance_ms(ms)
        for category in dict.fromkeys(c for c, _ in PRICES):
            self.exchange.market.pong(category)
        self.service.intake.wake()

    def records(self, request_id: str) -> list[str]:
        """The kinds of the committed journal records naming the request, in order, read through
        a connection of its own (what a crash would leave, not this process's buffer)."""
        with contextlib.closing(sqlite3.connect(self.config.journal.path)) as conn:
            rows = conn.execute(
                "SELECT kind FROM records WHERE request_id = ? ORDER BY seq", (request_id,)
            ).fetchall()
        return [kind for (kind,) in rows]


@contextlib.asynccontextmanager
async def started(
    tmp_path: Path, orders: Iterable[OrderView] | None = None, **overrides: Any
) -> AsyncIterator[Rig]:
    """A started `Service` on fake adapters and a fake clock; `overrides` as in e2e_config."""
    config = e2e_config(tmp_path, **overrides)
    clock = FakeClock(wall_ms=START_WALL_MS)
    exchange = FakeAdapters(
        instruments=INSTRUMENTS,
        prices=PRICES,
        orders=[resting_order(n) for n in range(1, ORDER_COUNT + 1)] if orders is None else orders,
    )
    journal = Journal(config.journal.path, config.journal.synchronous)
    heard = Checkpoints()
    service = Service(config, clock=clock, journal=journal, adapters=exchange, checkpoint=heard)
    rig = Rig(service, exchange, clock, journal, config, heard)
    try:
        await within(service.start(ready_timeout_s=2.0), 5.0)
        yield rig
    finally:
        await service.stop()
        journal.close()
