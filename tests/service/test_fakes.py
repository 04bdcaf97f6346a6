"""The fakes keep the real adapters' contracts (sidecar/bybit/), so what the service tests prove
holds against the adapters too: the events they emit, in which order, and when `send` refuses."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from sidecar.bybit.codec import encode_amend_batch
from sidecar.bybit.ws_private import OrderSeen, PrivateEvent, PrivateReady
from sidecar.bybit.ws_trade import AckTimeout, ConnectionLost, TradeReady
from sidecar.core.market_state import Connected, MarketEvent, TickerSeen
from sidecar.core.types import AmendItem, Category, CodeClass
from sidecar.errors import NotConnected
from sidecar.testing import FakeClock, FakeMarket, FakePrivate, FakeRest, FakeTrade
from tests.service.kit import PRICES, resting_order


def _frame(req_id: str, *order_ids: str) -> str:
    items = [
        AmendItem("BTCUSDT", oid, None, {"price": PRICES[(Category.LINEAR, "BTCUSDT")]}) for oid in order_ids
    ]
    return encode_amend_batch(req_id, Category.LINEAR, items, 1, 5000)


async def test_trade_send_refuses_before_writing_like_the_real_socket() -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    trade = FakeTrade(FakeClock(), events, ack_timeout_ms=500)

    with pytest.raises(NotConnected):
        await trade.send("r1", _frame("r1", "oid-1"), items=1)
    assert trade.sent == []

    trade.connect()
    assert isinstance(events.get_nowait(), TradeReady)
    await trade.send("r1", _frame("r1", "oid-1"), items=1)
    with pytest.raises(ValueError, match="in flight"):
        await trade.send("r1", _frame("r1", "oid-1"), items=1)
    assert [s.req_id for s in trade.sent] == ["r1"]


async def test_trade_ends_each_pending_request_once_and_reports_a_late_ack() -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    trade = FakeTrade(FakeClock(), events, ack_timeout_ms=500)
    trade.connect()
    events.get_nowait()
    await trade.send("r1", _frame("r1", "oid-1", "oid-2"), items=2)
    await trade.send("r2", _frame("r2", "oid-3"), items=1)

    trade.time_out("r1")
    assert events.get_nowait() == AckTimeout("r1", 500)
    with pytest.raises(ValueError, match="not pending"):
        trade.time_out("r1")
    late = trade.ack("r1", [0, 10001])  # after its timeout: still reported
    assert events.get_nowait() is late
    assert [(i.order_id, i.cls) for i in late.items] == [
        ("oid-1", CodeClass.SUCCESS),
        ("oid-2", CodeClass.REJECTED),
    ]

    assert trade.lose_connection("gone") == ("r2",)
    assert events.get_nowait() == ConnectionLost(("r2",), "gone")
    assert not trade.ready
    with pytest.raises(ValueError, match="no frame"):
        trade.ack("r9")


async def test_private_connect_snapshots_rereads_held_orders_then_is_ready() -> None:
    rest = FakeRest(FakeClock(), 5000)
    open_order = resting_order(1)
    filled = dataclasses.replace(resting_order(2), order_status="Filled", updated_time_ms=9)
    rest.put(open_order, filled)
    seen: list[PrivateEvent] = []
    held_as_open = [resting_order(2)]  # the service still holds order 2 as open
    private = FakePrivate(rest, [Category.LINEAR], seen.append, lambda: held_as_open)

    await private.connect()

    assert seen == [
        OrderSeen(open_order, "snapshot"),
        OrderSeen(filled, "snapshot"),
        PrivateReady("fake-private", 1),
    ]
    assert private.ready
    private.push(dataclasses.replace(open_order, category=Category.SPOT))  # not subscribed: dropped
    assert len(seen) == 3


async def test_market_reports_a_connection_before_its_tickers() -> None:
    clock = FakeClock()
    seen: list[MarketEvent] = []
    market = FakeMarket(clock, seen.append, {}, PRICES)

    market.connect(Category.SPOT)

    price = PRICES[(Category.SPOT, "BTCUSDT")]
    assert seen == [
        Connected(Category.SPOT),
        TickerSeen(
            Category.SPOT,
            "BTCUSDT",
            True,
            {"mark": price, "last": price, "index": price},
            clock.monotonic_ns(),
        ),
    ]
