"""PrivateStream against the real emulator: pushes feed the OrderBook; reconnects snapshot by REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import structlog

from sidecar.bybit.codec import encode_amend_batch
from sidecar.bybit.rest import RestClient
from sidecar.bybit.ws_private import OrderUpdate, PrivateLost, PrivateReady, PrivateStream
from sidecar.bybit.ws_trade import TradeConnection
from sidecar.clock import SystemClock
from sidecar.core.orders import ApplyResult, OrderBook
from sidecar.core.types import Ack, AmendItem, Category
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from tests.bybit.bybit_live_helpers import assert_quiet, fast_backoff, next_of, running

Events = asyncio.Queue[Any]


@pytest.fixture
async def rest(emu: Emulator) -> AsyncIterator[RestClient]:
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock()) as r:
        yield r


def make_stream(emu: Emulator, rest: RestClient, book: OrderBook, events: Events) -> PrivateStream:
    return PrivateStream(
        f"{emu.ws_url}/v5/private",
        DEFAULT_API_KEY,
        DEFAULT_API_SECRET,
        SystemClock(),
        book,
        rest,
        [Category.LINEAR],
        events,
        backoff=fast_backoff(),
    )


async def test_snapshot_then_pushes_update_the_book(emu: Emulator, rest: RestClient) -> None:
    a = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000", order_link_id="P-a")
    emu.place_order("linear", "ETHUSDT", "Sell", "0.1", "99999", order_link_id="P-b")
    book = OrderBook()
    events: Events = asyncio.Queue()
    stream = make_stream(emu, rest, book, events)
    trade_events: Events = asyncio.Queue()
    trade = TradeConnection(
        f"{emu.ws_url}/v5/trade", DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock(), trade_events
    )
    async with running(stream.run()), running(trade.run()):
        ready = await next_of(events, PrivateReady)
        assert ready.snapshot_orders == 2 and stream.ready
        held = book.find(Category.LINEAR, "BTCUSDT", None, "P-a")
        assert held is not None and held.price == Decimal(64000) and held.order_id == a["orderId"]

        # An amend over the trade socket shows up on the stream and moves the book.
        await trade.wait_ready()
        item = AmendItem("BTCUSDT", a["orderId"], None, {"price": Decimal("64250.5")})
        frame = encode_amend_batch("sc-p1", Category.LINEAR, [item], SystemClock().wall_ms(), 5000)
        await trade.send("sc-p1", frame)
        upd = await next_of(events, OrderUpdate, lambda u: u.view.price == Decimal("64250.5"))
        assert upd.source == "stream" and upd.result is ApplyResult.APPLIED and not upd.duplicate
        ack = await next_of(trade_events, Ack)
        assert ack.items[0].code == 0
        held = book.find(Category.LINEAR, "BTCUSDT", a["orderId"], None)
        assert held is not None and held.price == Decimal("64250.5")

        # A fill closes the order; the book keeps it terminal.
        emu.fill_order(a["orderId"])
        filled = await next_of(events, OrderUpdate, lambda u: u.view.order_status == "Filled")
        assert filled.view.order_id == a["orderId"]
        held = book.find(Category.LINEAR, "BTCUSDT", a["orderId"], None)
        assert held is not None and held.is_terminal


async def test_duplicate_pushes_are_flagged(emu: Emulator, rest: RestClient) -> None:
    book = OrderBook()
    events: Events = asyncio.Queue()
    async with running(make_stream(emu, rest, book, events).run()):
        await next_of(events, PrivateReady)
        emu.add_faults([{"kind": "duplicate_order_events", "count": 1}])
        o = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000")
        first = await next_of(events, OrderUpdate)
        second = await next_of(events, OrderUpdate)
    assert first.view.order_id == second.view.order_id == o["orderId"]
    assert first.result is ApplyResult.APPLIED and not first.duplicate
    assert second.result is ApplyResult.DUPLICATE and second.duplicate
    assert len(book) == 1


async def test_reconnect_snapshot_fills_the_gap(emu: Emulator, rest: RestClient) -> None:
    held_open = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000", order_link_id="G-1")
    book = OrderBook()
    events: Events = asyncio.Queue()
    async with running(make_stream(emu, rest, book, events).run()):
        await next_of(events, PrivateReady)
        # The next order event is never pushed: the private socket drops instead.
        emu.add_faults([{"kind": "disconnect_private", "count": 1}])
        emu.fill_order(held_open["orderId"])
        lost = await next_of(events, PrivateLost)
        assert lost.reason
        # The snapshot re-reads the order the book still holds as open and finds it filled.
        upd = await next_of(events, OrderUpdate, lambda u: u.view.order_id == held_open["orderId"])
        assert upd.source == "snapshot" and upd.view.order_status == "Filled"
        ready = await next_of(events, PrivateReady)
        assert ready.snapshot_orders == 0
        # A new order placed while connected again arrives on the stream as usual.
        new = emu.place_order("linear", "BTCUSDT", "Sell", "0.01", "66000")
        await next_of(events, OrderUpdate, lambda u: u.view.order_id == new["orderId"])
    held = book.find(Category.LINEAR, "BTCUSDT", None, "G-1")
    assert held is not None and held.order_status == "Filled"


async def test_wrong_secret_never_ready(emu: Emulator, rest: RestClient) -> None:
    book = OrderBook()
    events: Events = asyncio.Queue()
    stream = PrivateStream(
        f"{emu.ws_url}/v5/private",
        DEFAULT_API_KEY,
        "bad-secret",
        SystemClock(),
        book,
        rest,
        [Category.LINEAR],
        events,
        backoff=fast_backoff(),
    )
    with structlog.testing.capture_logs() as logs:
        async with running(stream.run()):
            await assert_quiet(events, PrivateReady, 0.3)
            assert not stream.ready
    fails = [e for e in logs if e["event"] == "ws_private.auth_failed"]
    assert len(fails) >= 2  # retried with backoff
    assert "bad-secret" not in repr(logs)
