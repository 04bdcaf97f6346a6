"""REST subset (reference §4) and the control API (DESIGN §4.4), over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from tests.emulator.emulator_testkit import hmac_hex, now_ms

ENVELOPE = {"retCode", "retMsg", "result", "retExtInfo", "time"}


async def get(emu: Emulator, path: str, query: str = "", headers: dict[str, str] | None = None) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"{emu.url}{path}?{query}", headers=headers) as r:
        assert r.status == 200
        body = await r.json()
        body["_headers"] = dict(r.headers)
        return body


async def control(emu: Emulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, f"{emu.url}{path}", json=body) as r:
        return r.status, await r.json()


def signed(
    query: str, *, key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET, ts: int | None = None
) -> dict[str, str]:
    stamp = str(ts if ts is not None else now_ms())
    return {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": stamp,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": hmac_hex(secret, f"{stamp}{key}5000{query}"),
        "X-BAPI-SIGN-TYPE": "2",
    }


async def test_market_time(emu: Emulator) -> None:
    body = await get(emu, "/v5/market/time")
    assert set(body) >= ENVELOPE and body["retCode"] == 0
    assert abs(int(body["result"]["timeSecond"]) - now_ms() // 1000) <= 2
    assert body["result"]["timeNano"].isdigit()


async def test_instruments_info_linear_and_spot(emu: Emulator) -> None:
    body = await get(emu, "/v5/market/instruments-info", "category=linear")
    assert body["retCode"] == 0 and body["result"]["category"] == "linear"
    # Bybit-shaped: opaque, URL-encoded, non-empty while the page has rows (D-INSTR's BIOUSDT example).
    assert body["result"]["nextPageCursor"] == "first%3DBTCPERP%26last%3DSOLUSDT"
    by_symbol = {i["symbol"]: i for i in body["result"]["list"]}
    assert set(by_symbol) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCPERP"}
    assert by_symbol["BTCPERP"]["settleCoin"] == "USDC"
    btc = by_symbol["BTCUSDT"]
    assert btc["priceFilter"] == {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"}
    assert btc["lotSizeFilter"]["qtyStep"] == "0.001" and btc["lotSizeFilter"]["minOrderQty"] == "0.001"
    assert btc["lotSizeFilter"]["maxOrderQty"] == "1190.000" and btc["status"] == "Trading"
    assert by_symbol["SOLUSDT"]["priceFilter"]["tickSize"] == "0.010"
    assert by_symbol["ETHUSDT"]["lotSizeFilter"]["maxOrderQty"] == "7240.00"
    one = await get(emu, "/v5/market/instruments-info", "category=linear&symbol=ETHUSDT")
    assert [i["symbol"] for i in one["result"]["list"]] == ["ETHUSDT"]
    spot = await get(emu, "/v5/market/instruments-info", "category=spot&symbol=BTCUSDT")
    (item,) = spot["result"]["list"]
    assert item["priceFilter"] == {"tickSize": "0.01"}
    lot = item["lotSizeFilter"]
    assert (lot["basePrecision"], lot["minOrderQty"], lot["maxLimitOrderQty"]) == (
        "0.000001",
        "0.000048",
        "71.73956243",
    )
    bad = await get(emu, "/v5/market/instruments-info", "category=futures")
    assert bad["retCode"] == 10001


async def test_tickers(emu: Emulator) -> None:
    emu.set_price("linear", "BTCUSDT", mark_price="95500.00", last_price="95501.00")
    body = await get(emu, "/v5/market/tickers", "category=linear&symbol=BTCUSDT")
    (t,) = body["result"]["list"]
    assert (t["markPrice"], t["lastPrice"], t["indexPrice"]) == ("95500.00", "95501.00", "95500.00")
    spot = await get(emu, "/v5/market/tickers", "category=spot")
    assert "markPrice" not in spot["result"]["list"][0]
    missing = await get(emu, "/v5/market/tickers", "category=linear&symbol=XYZ")
    assert missing["retCode"] == 10001


async def test_order_realtime_signature_checks(emu: Emulator) -> None:
    q = "category=linear&symbol=BTCUSDT"
    ok = await get(emu, "/v5/order/realtime", q, signed(q))
    assert ok["retCode"] == 0 and ok["result"]["list"] == []
    for name in ("X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp"):
        assert name in ok["_headers"]
    bad_sig = await get(emu, "/v5/order/realtime", q, signed(q, secret="nope"))
    assert bad_sig["retCode"] == 10004
    tampered = await get(emu, "/v5/order/realtime", q + "&limit=5", signed(q))
    assert tampered["retCode"] == 10004
    unknown = await get(emu, "/v5/order/realtime", q, signed(q, key="stranger"))
    assert unknown["retCode"] == 10003
    stale = await get(emu, "/v5/order/realtime", q, signed(q, ts=now_ms() - 60_000))
    assert stale["retCode"] == 10002
    no_headers = await get(emu, "/v5/order/realtime", q)
    assert no_headers["retCode"] == 10003


async def test_order_realtime_queries(emu: Emulator) -> None:
    first = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00", order_link_id="q-1")
    second = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.10", order_link_id="q-2")
    emu.place_order("linear", "ETHUSDT", "Buy", "0.10", "3000.00")
    closed = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.20", order_link_id="q-3")
    emu.fill_order(closed["orderId"])

    async def query(q: str) -> dict[str, Any]:
        body: dict[str, Any] = await get(emu, "/v5/order/realtime", q, signed(q))
        assert body["retCode"] == 0, body
        result: dict[str, Any] = body["result"]
        return result

    open_btc = await query("category=linear&symbol=BTCUSDT")
    assert [o["orderId"] for o in open_btc["list"]] == [second["orderId"], first["orderId"]]  # newest first
    assert (await query("category=linear&symbol=BTCUSDT&limit=1"))["list"][0]["orderId"] == second["orderId"]
    by_id = await query(f"category=linear&orderId={closed['orderId']}")
    assert by_id["list"][0]["orderStatus"] == "Filled"  # by id: returned even though closed
    by_link = await query("category=linear&orderLinkId=q-1")
    assert [o["orderId"] for o in by_link["list"]] == [first["orderId"]]
    both = await query(f"category=linear&orderId={first['orderId']}&orderLinkId=q-2")
    assert [o["orderId"] for o in both["list"]] == [first["orderId"]]  # orderId > orderLinkId
    history = await query("category=linear&symbol=BTCUSDT&openOnly=1")
    assert [o["orderId"] for o in history["list"]] == [closed["orderId"]]
    settle = await query("category=linear&settleCoin=USDT")
    assert len(settle["list"]) == 3
    q = "category=linear"
    missing = await get(emu, "/v5/order/realtime", q, signed(q))
    assert missing["retCode"] == 10001


# ---------------------------------------------------------------------------------- control API


async def test_control_prices(emu: Emulator) -> None:
    status, body = await control(
        emu,
        "POST",
        "/emulator/prices",
        {"category": "linear", "symbol": "SOLUSDT", "markPrice": "181.5", "lastPrice": "181.52"},
    )
    assert status == 200 and body["ticker"]["markPrice"] == "181.500"
    status, body = await control(
        emu, "POST", "/emulator/prices", {"category": "linear", "symbol": "NOPE", "markPrice": "1"}
    )
    assert status == 400 and "unknown" in body["error"]
    status, body = await control(
        emu, "POST", "/emulator/prices", {"category": "linear", "symbol": "SOLUSDT", "markPrice": "x"}
    )
    assert status == 400


async def test_control_faults_and_walk_and_limits(emu: Emulator) -> None:
    status, body = await control(
        emu, "POST", "/emulator/faults", {"faults": [{"kind": "drop_ack", "count": 2}]}
    )
    assert status == 200 and body["faults"] == [
        {"kind": "drop_ack", "count": 2, "ms": 0, "code": 0, "msg": ""}
    ]
    status, body = await control(emu, "POST", "/emulator/faults", {"faults": [{"kind": "explode"}]})
    assert status == 400 and "unknown fault kind" in body["error"]
    status, body = await control(emu, "POST", "/emulator/faults", {"faults": [{"kind": "delay_ack"}]})
    assert status == 400  # delay kinds need "ms"
    status, body = await control(emu, "GET", "/emulator/faults")
    assert len(body["faults"]) == 1
    status, body = await control(emu, "DELETE", "/emulator/faults")
    assert status == 200 and body == {"faults": []}
    status, body = await control(emu, "POST", "/emulator/walk", {"enabled": True})
    assert (status, body) == (200, {"enabled": True}) and emu.hub.exchange.market.walk_enabled
    status, _ = await control(emu, "POST", "/emulator/walk", {"enabled": "yes"})
    assert status == 400
    limit = {"op": "order.amend-batch", "category": "linear", "perSecond": 1000}
    status, body = await control(emu, "POST", "/emulator/limits", limit)
    assert (status, body) == (200, limit)
    assert emu.hub.limiter.limit("order.amend-batch", "inverse") == 1000
    status, _ = await control(emu, "POST", "/emulator/limits", {"op": "order.fly", "perSecond": 5})
    assert status == 400


async def test_control_orders_fills_frames(emu: Emulator) -> None:
    order = {"category": "linear", "symbol": "BTCUSDT", "side": "Sell", "qty": "0.005", "price": "99000.00"}
    status, body = await control(emu, "POST", "/emulator/orders", {**order, "orderLinkId": "c-1"})
    assert status == 200 and body["order"]["orderStatus"] == "New" and body["order"]["orderLinkId"] == "c-1"
    oid = body["order"]["orderId"]
    status, bad = await control(
        emu,
        "POST",
        "/emulator/orders",
        {"category": "linear", "symbol": "BTCUSDT", "side": "Sell", "qty": "0.0001", "price": "1"},
    )
    assert status == 400 and bad["retCode"] == 10001
    status, body = await control(emu, "POST", "/emulator/fills", {"orderId": oid, "qty": "0.002"})
    assert status == 200 and body["order"]["orderStatus"] == "PartiallyFilled"
    status, body = await control(emu, "POST", "/emulator/fills", {"orderId": "nope"})
    assert status == 400 and body["retCode"] == 110001
    status, body = await control(emu, "GET", "/emulator/orders")
    assert [o["orderId"] for o in body["orders"]] == [oid] and body["orders"][0]["leavesQty"] == "0.003"
    status, body = await control(emu, "GET", "/emulator/frames")
    assert status == 200 and body == {"frames": []}


@pytest.mark.parametrize(
    "path", ["/emulator/prices", "/emulator/faults", "/emulator/orders", "/emulator/limits"]
)
async def test_control_rejects_non_json(emu: Emulator, path: str) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{emu.url}{path}", data=b"nope") as r:
        assert r.status == 400
