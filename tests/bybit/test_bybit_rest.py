"""RestClient against the real emulator: signed read-backs, instruments, errors."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest

from sidecar.bybit.rest import RestClient, RestError, RestTransportError
from sidecar.clock import SystemClock
from sidecar.core.types import Category
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator


def client(emu: Emulator, secret: str = DEFAULT_API_SECRET, key: str = DEFAULT_API_KEY) -> RestClient:
    return RestClient(emu.url, key, secret, SystemClock())


async def test_get_order_by_id_and_link_id(emu: Emulator) -> None:
    o = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000", order_link_id="R-1")
    async with client(emu) as rest:
        by_id = await rest.get_order(Category.LINEAR, "BTCUSDT", order_id=o["orderId"])
        by_link = await rest.get_order(Category.LINEAR, "BTCUSDT", order_link_id="R-1")
        missing = await rest.get_order(Category.LINEAR, "BTCUSDT", order_id="nope")
        emu.fill_order(o["orderId"])
        closed = await rest.get_order(Category.LINEAR, "BTCUSDT", order_id=o["orderId"])
    assert by_id is not None and by_id == by_link
    assert (
        by_id.category is Category.LINEAR and by_id.price == Decimal(64000) and by_id.qty == Decimal("0.01")
    )
    assert by_id.order_link_id == "R-1" and by_id.is_open
    assert missing is None
    assert closed is not None and closed.order_status == "Filled"  # by id, closed orders too
    with pytest.raises(ValueError):
        await client(emu).get_order(Category.LINEAR, "BTCUSDT")


async def test_open_orders(emu: Emulator) -> None:
    # A single page (fewer than 50 orders): nextPageCursor is empty.
    ids = {emu.place_order("linear", "BTCUSDT", "Buy", "0.001", str(60000 + i))["orderId"] for i in range(12)}
    emu.place_order("spot", "BTCUSDT", "Buy", "0.001", "60000")
    async with client(emu) as rest:
        linear = await rest.open_orders(Category.LINEAR)  # no symbol: settleCoin=USDT
        by_symbol = await rest.open_orders(Category.LINEAR, "BTCUSDT")
        spot = await rest.open_orders(Category.SPOT)
    assert {v.order_id for v in linear} == ids == {v.order_id for v in by_symbol}
    assert len(spot) == 1 and spot[0].category is Category.SPOT


async def test_wrong_secret_is_10004_and_unknown_key_10003(emu: Emulator) -> None:
    async with client(emu, secret="not-the-secret") as rest:
        with pytest.raises(RestError) as e:
            await rest.get_order(Category.LINEAR, "BTCUSDT", order_id="x")
    assert e.value.ret_code == 10004
    assert "not-the-secret" not in str(e.value)
    async with client(emu, key="who") as rest:
        with pytest.raises(RestError) as e2:
            await rest.open_orders(Category.LINEAR)
    assert e2.value.ret_code == 10003


async def test_instruments_linear_and_spot_shapes(emu: Emulator) -> None:
    async with client(emu) as rest:
        linear = {i.symbol: i for i in await rest.instruments(Category.LINEAR)}
        spot = await rest.instruments(Category.SPOT, "BTCUSDT")
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{emu.url}/v5/market/instruments-info?category=spot&symbol=BTCUSDT") as resp,
    ):
        raw = (await resp.json())["result"]["list"][0]
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT"} <= set(linear)
    btc = linear["BTCUSDT"]
    assert btc.tick_size > 0 and btc.qty_step > 0 and btc.min_qty <= btc.max_qty and btc.min_price is not None
    assert len(spot) == 1
    s = spot[0]
    lot = raw["lotSizeFilter"]
    assert s.qty_step == Decimal(lot["basePrecision"])
    assert s.min_qty == s.qty_step < Decimal(lot["minOrderQty"])  # the deprecated minimum is not used
    assert s.max_qty == Decimal(lot["maxLimitOrderQty"])
    assert s.tick_size == Decimal(raw["priceFilter"]["tickSize"])


async def test_tickers_and_server_time(emu: Emulator) -> None:
    emu.set_price("linear", "BTCUSDT", mark_price="65432.1", last_price="65432.2")
    async with client(emu) as rest:
        rows = await rest.tickers(Category.LINEAR, "BTCUSDT")
        server_ms = await rest.server_time_ms()
    assert rows[0].mark_price == Decimal("65432.1") and rows[0].last_price == Decimal("65432.2")
    assert abs(server_ms - SystemClock().wall_ms()) < 5000


async def test_transport_error_when_nothing_listens() -> None:
    async with RestClient("http://127.0.0.1:9", "k", "s", SystemClock(), timeout_s=2) as rest:
        with pytest.raises(RestTransportError) as e:
            await rest.server_time_ms()
    assert e.value.ret_code == -1


async def test_open_orders_follow_the_cursor_across_pages(emu: Emulator) -> None:
    """Reference §4.5: 50 per page at most; the client follows nextPageCursor until it is empty."""
    links = {f"pg-{n}" for n in range(60)}
    for link in links:
        emu.place_order("linear", "SOLUSDT", "Buy", "0.1", "150.000", order_link_id=link)
    async with client(emu) as rest:
        views = await rest.open_orders(Category.LINEAR, "SOLUSDT")
    assert {v.order_link_id for v in views} == links
    assert len(views) == 60
