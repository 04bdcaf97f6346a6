"""The emulator behaves like Bybit where the sidecar depends on it (issue 11, DESIGN §4.4).

Quiet tickers (push on change, changed fields only), category-shaped public replies (option's
`COMMAND_RESP` without `op`), `stall_public`, the exchange clock offset, Bybit-shaped cursors,
crossing amends, closed-order amends, post-ack races with the double `Filled` push, closed-order
retention and order history, option and inverse instruments, and spot's deprecated minOrderQty.
Each test talks to a real emulator over loopback; expectations come from reference/bybit-v5.md and
the audit, not from the sidecar's client.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from sidecar.emulator import Emulator
from sidecar.emulator.instruments import OPTION_SYMBOL
from tests.emulator.emulator_testkit import (
    WsClient,
    connect,
    linear_order,
    now_ms,
    private_session,
    trade_session,
)
from tests.emulator.test_emulator_rest import control, get, signed


async def subscribe(
    c: WsClient, topic: str, req_id: str | None = "s1"
) -> tuple[dict[str, Any], dict[str, Any]]:
    frame: dict[str, Any] = {"op": "subscribe", "args": [topic]}
    if req_id is not None:
        frame["req_id"] = req_id
    await c.send(frame)
    return await c.recv(), await c.recv()


async def next_is_pong(emu: Emulator, c: WsClient, ticks: int = 5) -> dict[str, Any]:
    """Run market ticks on this loop, then ping: the next frame must be the pong (nothing was pushed)."""
    for _ in range(ticks):
        emu.hub.on_tick()
    await c.send({"op": "ping"})
    return await c.recv()


async def order_pushes(p: WsClient, order_id: str, until_status: str) -> list[dict[str, Any]]:
    """Every `order` push element for `order_id`, in order, up to the first with `until_status`."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while True:
            frame = await p.recv()
            if frame.get("topic") != "order":
                continue
            for d in frame["data"]:
                if d["orderId"] == order_id:
                    seen.append(d)
            if seen and seen[-1]["orderStatus"] == until_status:
                return seen


# ------------------------------------------------------------------------------------ tickers


async def test_frozen_linear_ticker_is_silent_and_deltas_carry_only_changes(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/public/linear") as c:
        _, snap = await subscribe(c, "tickers.BTCUSDT")
        assert snap["type"] == "snapshot" and snap["data"]["markPrice"] == "95000.00"
        pong = await next_is_pong(emu, c)
        assert pong["ret_msg"] == "pong"  # a still market sends nothing, not even the same prices

        emu.set_price("linear", "BTCUSDT", mark_price="95000.00", last_price="95000.20")
        delta = await c.recv()
        # Like ccxt#21451: a delta without markPrice (the mark did not move); the rest unchanged too.
        assert delta["type"] == "delta" and delta["data"]["symbol"] == "BTCUSDT"
        assert delta["data"]["lastPrice"] == "95000.20" and "markPrice" not in delta["data"]
        assert "indexPrice" not in delta["data"] and "fundingRate" not in delta["data"]
        assert delta["cs"] > snap["cs"] and delta["ts"] >= snap["ts"]
        assert (await next_is_pong(emu, c))["ret_msg"] == "pong"


async def test_walking_market_pushes_on_change(emu: Emulator) -> None:
    emu.set_walk(True)
    emu.set_price("linear", "ETHUSDT", mark_price="3500.00", freeze=False)
    async with connect(emu.ws_url + "/v5/public/linear") as c:
        _, snap = await subscribe(c, "tickers.ETHUSDT")
        emu.hub.on_tick()
        moved = await c.recv_until(lambda f: f.get("type") == "delta")
        assert set(moved["data"]) - {"symbol"}  # something changed, and only that is sent
        assert set(moved["data"]) <= set(snap["data"])


async def test_spot_stream_is_snapshot_only_without_book_or_mark(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/public/spot") as c:
        reply, snap = await subscribe(c, "tickers.BTCUSDT", req_id="10001")
        assert (reply["ret_msg"], reply["req_id"], reply["op"]) == ("subscribe", "10001", "subscribe")
        assert set(snap) == {"topic", "ts", "type", "cs", "data"} and snap["type"] == "snapshot"
        assert not {"bid1Price", "ask1Price", "markPrice", "indexPrice"} & set(snap["data"])
        assert (await next_is_pong(emu, c))["op"] == "ping"
        emu.set_price("spot", "BTCUSDT", last_price="95001.00")
        again = await c.recv()
        assert again["type"] == "snapshot" and again["data"]["lastPrice"] == "95001.00"
        assert set(again["data"]) == set(snap["data"])  # spot sends every field, every time


async def test_option_public_shapes_have_no_op_on_subscribe(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/public/option") as c:
        reply, snap = await subscribe(c, f"tickers.{OPTION_SYMBOL}")
        assert reply == {
            "success": True,
            "conn_id": reply["conn_id"],
            "data": {"failTopics": [], "successTopics": [f"tickers.{OPTION_SYMBOL}"]},
            "type": "COMMAND_RESP",
        }
        assert set(snap) == {"id", "topic", "ts", "data", "type"} and snap["type"] == "snapshot"
        data = snap["data"]
        assert {"bidPrice", "askPrice", "markPrice", "indexPrice", "underlyingPrice", "markPriceIv"} <= set(
            data
        )
        assert "bid1Price" not in data
        assert Decimal(data["bidPrice"]) < Decimal(data["askPrice"])
        assert data["markPrice"] == "2500" and data["indexPrice"] == "95000.00"
        pong = await next_is_pong(emu, c)
        assert set(pong) == {"args", "op"} and pong["op"] == "pong" and pong["args"][0].isdigit()
        await c.send({"op": "subscribe", "args": ["tickers.BTC-1JAN99-1-C"]})
        bad = await c.recv()
        assert bad["success"] is False and bad["data"]["failTopics"] == ["tickers.BTC-1JAN99-1-C"]
        assert "op" not in bad


async def test_inverse_and_usdc_perpetuals_stream_deltas(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/public/inverse") as c:
        reply, snap = await subscribe(c, "tickers.BTCUSD", req_id=None)
        assert (reply["ret_msg"], reply["req_id"]) == ("", "")  # linear/inverse always carry req_id
        assert snap["data"]["markPrice"] == "95000.00"
        emu.set_price("inverse", "BTCUSD", mark_price="95100.50")
        assert (await c.recv())["type"] == "delta"
    async with connect(emu.ws_url + "/v5/public/linear") as c:
        _, snap = await subscribe(c, "tickers.BTCPERP")
        assert snap["data"]["symbol"] == "BTCPERP"


# ------------------------------------------------------------------------------------ stall


async def test_stall_public_silences_every_public_socket_until_it_ends(emu: Emulator) -> None:
    loop = asyncio.get_running_loop()
    async with connect(emu.ws_url + "/v5/public/linear") as old:
        await subscribe(old, "tickers.BTCUSDT")
        started = loop.time()
        status, body = await control(
            emu, "POST", "/emulator/faults", {"faults": [{"kind": "stall_public", "ms": 400}]}
        )
        assert status == 200 and body["faults"][0]["kind"] == "stall_public"
        emu.set_price("linear", "BTCUSDT", mark_price="95500.00")  # a change during the stall
        await old.send({"op": "ping", "req_id": "during"})
        async with connect(emu.ws_url + "/v5/public/linear") as new:
            await new.send({"op": "subscribe", "req_id": "late", "args": ["tickers.BTCUSDT"]})
            reply = await new.recv()  # held: arrives only once the stall is over
            assert loop.time() - started >= 0.4
            assert reply["req_id"] == "late" and reply["success"] is True
            assert (await new.recv())["data"]["markPrice"] == "95500.00"
        delta = await old.recv()  # what was held arrives in order: the push, then the pong
        assert delta["data"]["markPrice"] == "95500.00"
        assert (await old.recv())["req_id"] == "during"
    assert (await control(emu, "GET", "/emulator/faults"))[1]["faults"] == []


async def test_clearing_faults_ends_a_stall_at_once(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/public/spot") as c:
        await subscribe(c, "tickers.BTCUSDT")
        emu.add_faults([{"kind": "stall_public", "ms": 60_000}])
        emu.set_price("spot", "BTCUSDT", last_price="95123.00")  # pushed into the stalled socket
        conn = next(x for x in emu.hub.conns if x.kind == "public")
        assert conn.held is not None and len(conn.held) == 1
        emu.clear_faults()
        async with asyncio.timeout(5):  # far less than the 60 s stall
            assert (await c.recv())["data"]["lastPrice"] == "95123.00"


# ------------------------------------------------------------------------------------ clock


async def test_clock_offset_moves_server_time_timenow_and_the_recv_window(emu: Emulator) -> None:
    status, body = await control(emu, "POST", "/emulator/clock", {"offsetMs": -2500})
    assert status == 200 and body["offsetMs"] == -2500
    assert abs(body["serverTimeMs"] - (now_ms() - 2500)) < 200
    t = await get(emu, "/v5/market/time")
    assert abs(int(t["result"]["timeNano"]) // 1_000_000 - (now_ms() - 2500)) < 200
    async with trade_session(emu) as c:
        # The host's time is 2.5 s ahead of the exchange: beyond the 1 s future tolerance.
        ack = await c.request("order.create", linear_order(), ts=now_ms())
        assert ack["retCode"] == 10002
        ack = await c.request("order.create", linear_order(), ts=now_ms() - 2500)
        assert ack["retCode"] == 0
        assert abs(int(ack["header"]["Timenow"]) - (now_ms() - 2500)) < 200
    order = emu.orders()[0]
    assert abs(int(order["updatedTime"]) - (now_ms() - 2500)) < 200
    assert (await control(emu, "POST", "/emulator/clock", {"offsetMs": "soon"}))[0] == 400
    assert (await control(emu, "GET", "/emulator/clock"))[1]["offsetMs"] == -2500


async def test_rest_signature_window_follows_the_exchange_clock(emu: Emulator) -> None:
    emu.set_clock_offset(-2500)
    query = "category=linear&symbol=BTCUSDT"
    late = await get(emu, "/v5/order/realtime", query, signed(query))
    assert late["retCode"] == 10002
    ok = await get(emu, "/v5/order/realtime", query, signed(query, ts=emu.server_time_ms()))
    assert ok["retCode"] == 0


# ------------------------------------------------------------------------------------ cursors


async def get_raw(
    emu: Emulator, path: str, query: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """GET with the query sent byte for byte (yarl would otherwise turn `%3A` back into `:`)."""
    url = URL(f"{emu.url}{path}?{query}", encoded=True)
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        body: dict[str, Any] = await r.json()
        return body


async def realtime(emu: Emulator, query: str) -> dict[str, Any]:
    return await get_raw(emu, "/v5/order/realtime", query, signed(query))


async def test_order_cursors_are_bybit_shaped_and_must_come_back_verbatim(emu: Emulator) -> None:
    for i in range(120):
        emu.place_order("linear", "BTCUSDT", "Buy", "0.001", f"{80000 + i}.00")
    ids: list[str] = []
    query = "category=linear&settleCoin=USDT&limit=50"
    body = await realtime(emu, query)
    pages = [len(body["result"]["list"])]
    ids += [o["orderId"] for o in body["result"]["list"]]
    cursor = body["result"]["nextPageCursor"]
    # As in ccxt's captured fixture: "{id}%3A{created}%2C{id}%3A{created}".
    assert "%3A" in cursor and "%2C" in cursor and ":" not in cursor
    double = await realtime(emu, f"{query}&cursor={quote(cursor, safe='')}")
    assert double["retCode"] == 10001  # encoded twice: refused
    while cursor:
        body = await realtime(emu, f"{query}&cursor={cursor}")
        assert body["retCode"] == 0
        pages.append(len(body["result"]["list"]))
        ids += [o["orderId"] for o in body["result"]["list"]]
        cursor = body["result"]["nextPageCursor"]
    assert pages == [50, 50, 20, 0] and len(set(ids)) == 120
    one = await realtime(emu, "category=linear&symbol=BTCUSDT&limit=1")
    assert len(one["result"]["list"]) == 1 and one["result"]["nextPageCursor"]  # non-empty on one row


async def test_instrument_cursor_round_trip(emu: Emulator) -> None:
    body = await get(emu, "/v5/market/instruments-info", "category=linear&limit=2")
    cursor = body["result"]["nextPageCursor"]
    assert cursor == "first%3DBTCPERP%26last%3DBTCUSDT"
    rest = await get_raw(emu, "/v5/market/instruments-info", f"category=linear&limit=2&cursor={cursor}")
    assert [i["symbol"] for i in rest["result"]["list"]] == ["ETHUSDT", "SOLUSDT"]
    bad = await get_raw(
        emu, "/v5/market/instruments-info", f"category=linear&cursor={quote(cursor, safe='')}"
    )
    assert bad["retCode"] == 10001


# ------------------------------------------------------------------------------------ amends


async def test_crossing_amend_fills_at_once_at_the_touch_as_taker(emu: Emulator) -> None:
    resting = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "94000.00")
    async with trade_session(emu) as t, private_session(emu, ("order", "execution")) as p:
        body = {"category": "linear", "symbol": "BTCUSDT", "orderId": resting["orderId"], "price": "95100.00"}
        ack = await t.request("order.amend", body)
        assert ack["retCode"] == 0
        pushes = await order_pushes(p, resting["orderId"], "Filled")
        execution = await p.recv_until(lambda f: f.get("topic") == "execution")
    assert len(pushes) == 1  # one push: the amended order took liquidity at once
    (filled,) = pushes
    assert filled["price"] == "95100.00" and filled["avgPrice"] == "95000.1"  # the ask, not its price
    assert int(filled["updatedTime"]) > int(resting["updatedTime"])
    assert execution["data"][0]["isMaker"] is False and execution["data"][0]["execPrice"] == "95000.10"


async def test_crossing_postonly_amend_is_cancelled(emu: Emulator) -> None:
    resting = emu.place_order("linear", "BTCUSDT", "Sell", "0.010", "96000.00", timeInForce="PostOnly")
    async with trade_session(emu) as t, private_session(emu) as p:
        body = {"category": "linear", "symbol": "BTCUSDT", "orderId": resting["orderId"], "price": "94000.00"}
        assert (await t.request("order.amend", body))["retCode"] == 0
        (gone,) = await order_pushes(p, resting["orderId"], "Cancelled")
    assert gone["rejectReason"] == "EC_PostOnlyWillTakeLiquidity" and gone["cumExecQty"] == "0.000"
    # The price it shows (the amended one here) is UNCONFIRMED: probe check postonly_cross_cancel.
    assert gone["price"] == "94000.00"


async def test_amending_a_closed_order_answers_110001(emu: Emulator) -> None:
    filled = emu.place_order("linear", "ETHUSDT", "Buy", "0.10", "3400.00")
    emu.fill_order(filled["orderId"])
    async with trade_session(emu) as t:
        body = {"category": "linear", "symbol": "ETHUSDT", "orderId": filled["orderId"], "price": "3401.00"}
        ack = await t.request("order.amend", body)
    assert (ack["retCode"], ack["retMsg"]) == (110001, "order not exists or too late to replace")


# ------------------------------------------------------------------------------------ races after the ack


async def test_fill_after_ack_race_ends_in_the_double_filled_push(emu: Emulator) -> None:
    resting = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "94000.00")
    emu.add_faults([{"kind": "fill_after_ack", "count": 1}])
    async with trade_session(emu) as t, private_session(emu) as p:
        body = {"category": "linear", "symbol": "BTCUSDT", "orderId": resting["orderId"], "price": "94100.00"}
        ack = await t.request("order.amend", body)
        assert ack["retCode"] == 0  # accepted...
        first = (await order_pushes(p, resting["orderId"], "Filled"))[-1]
        second = (await order_pushes(p, resting["orderId"], "Filled"))[-1]
    # ...but the fill won: filled at its old price, then the refused amend's own `Filled` push.
    assert first["price"] == "94000.00" and first["rejectReason"] == "EC_NoError"
    assert second["rejectReason"] == "EC_OrigClOrdIDDoesNotExist"
    assert second["updatedTime"] == first["updatedTime"] and second["cumExecQty"] == "0.010"
    assert emu.orders()[0]["rejectReason"] == "EC_NoError"


async def test_fill_after_ack_with_the_amend_landing_first(emu: Emulator) -> None:
    resting = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "94000.00")
    emu.add_faults([{"kind": "fill_after_ack", "count": 1, "amended": True}])
    async with trade_session(emu) as t, private_session(emu) as p:
        body = {"category": "linear", "symbol": "BTCUSDT", "orderId": resting["orderId"], "price": "94100.00"}
        assert (await t.request("order.amend", body))["retCode"] == 0
        pushes = await order_pushes(p, resting["orderId"], "Filled")
    assert [(d["orderStatus"], d["price"]) for d in pushes] == [("New", "94100.00"), ("Filled", "94100.00")]


async def test_cancel_after_ack(emu: Emulator) -> None:
    resting = emu.place_order("linear", "SOLUSDT", "Buy", "1.0", "170.000")
    emu.add_faults([{"kind": "cancel_after_ack", "count": 1, "symbol": "SOLUSDT"}])
    async with trade_session(emu) as t, private_session(emu) as p:
        body = {"category": "linear", "symbol": "SOLUSDT", "orderId": resting["orderId"], "qty": "2.0"}
        assert (await t.request("order.amend", body))["retCode"] == 0
        (gone,) = await order_pushes(p, resting["orderId"], "Cancelled")
    assert (gone["qty"], gone["cancelType"]) == ("1.0", "CancelByUser")  # the amend never landed


async def test_cancel_crossing_a_fill_gives_two_filled_pushes(emu: Emulator) -> None:
    """Reference §3.2 (D-ORDWS): a cancel that crosses a fill yields two `Filled` pushes."""
    resting = emu.place_order("linear", "BTCUSDT", "Sell", "0.010", "96000.00")
    emu.add_faults([{"kind": "fill_after_ack", "count": 1, "op": "order.cancel"}])
    async with trade_session(emu) as t, private_session(emu) as p:
        ack = await t.request(
            "order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderId": resting["orderId"]}
        )
        assert ack["retCode"] == 0
        fill = (await order_pushes(p, resting["orderId"], "Filled"))[-1]
        refused = (await order_pushes(p, resting["orderId"], "Filled"))[-1]
    assert (fill["rejectReason"], fill["cancelType"]) == ("EC_NoError", "UNKNOWN")
    assert (refused["rejectReason"], refused["cancelType"]) == ("EC_OrigClOrdIDDoesNotExist", "CancelByUser")


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "stall_public"},  # needs ms
        {"kind": "stall_public", "ms": 10, "op": "order.amend"},
        {"kind": "stall_public", "ms": 10, "symbol": "BTCUSDT"},
        {"kind": "fill_after_ack", "amended": "yes"},
        {"kind": "drop_ack", "amended": True},
    ],
)
async def test_new_fault_specs_are_checked(emu: Emulator, spec: dict[str, Any]) -> None:
    status, body = await control(emu, "POST", "/emulator/faults", {"faults": [spec]})
    assert status == 400 and body["error"]


# ------------------------------------------------------------------------------------ retention


async def test_closed_orders_leave_realtime_but_stay_in_history(emu: Emulator) -> None:
    order = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "94000.00")
    emu.fill_order(order["orderId"])
    by_id = f"category=linear&orderId={order['orderId']}"
    assert [o["orderStatus"] for o in (await realtime(emu, by_id))["result"]["list"]] == ["Filled"]
    status, _ = await control(emu, "POST", "/emulator/retention", {"realtimeClosedOrders": 0})
    assert status == 200
    assert (await realtime(emu, by_id))["result"]["list"] == []  # as after a Bybit release
    history = await get_raw(emu, "/v5/order/history", by_id, signed(by_id))
    assert [o["orderStatus"] for o in history["result"]["list"]] == ["Filled"]
    assert (await control(emu, "POST", "/emulator/retention", {"realtimeClosedOrders": -1}))[0] == 400


async def test_realtime_keeps_only_the_most_recent_closed_orders(emu: Emulator) -> None:
    emu.set_realtime_retention(2)
    ids = []
    for i in range(3):
        o = emu.place_order("linear", "ETHUSDT", "Buy", "0.10", f"340{i}.00")
        emu.fill_order(o["orderId"])
        ids.append(o["orderId"])
    listed = await realtime(emu, "category=linear&settleCoin=USDT&openOnly=1")
    assert {o["orderId"] for o in listed["result"]["list"]} == set(ids[1:])
    oldest = f"category=linear&orderId={ids[0]}"
    assert (await realtime(emu, oldest))["result"]["list"] == []


# ------------------------------------------------------------------------------------ instruments


async def test_option_and_inverse_instruments_and_orders(emu: Emulator) -> None:
    option = await get(emu, "/v5/market/instruments-info", "category=option")
    (opt,) = option["result"]["list"]
    assert (opt["symbol"], opt["optionsType"], opt["settleCoin"]) == (OPTION_SYMBOL, "Call", "USDC")
    assert opt["priceFilter"]["tickSize"] == "5" and option["result"]["nextPageCursor"] == ""
    inverse = await get(emu, "/v5/market/instruments-info", "category=inverse")
    (inv,) = inverse["result"]["list"]
    assert (inv["contractType"], inv["settleCoin"], inv["quoteCoin"]) == ("InversePerpetual", "BTC", "USD")
    async with trade_session(emu) as t:
        body = {"category": "option", "symbol": OPTION_SYMBOL, "side": "Buy", "orderType": "Limit"}
        ack = await t.request(
            "order.create", {**body, "qty": "0.10", "price": "2000", "orderLinkId": "opt-1"}
        )
        assert ack["retCode"] == 0
        ack = await t.request(
            "order.amend",
            {"category": "option", "symbol": OPTION_SYMBOL, "orderLinkId": "opt-1", "price": "2005"},
        )
        assert ack["retCode"] == 0
        inv_body = {"category": "inverse", "symbol": "BTCUSD", "side": "Buy", "orderType": "Limit"}
        ack = await t.request("order.create", {**inv_body, "qty": "100", "price": "90000.50"})
        assert ack["retCode"] == 0
    inv_order = next(o for o in emu.orders() if o["category"] == "inverse")
    assert Decimal(inv_order["leavesValue"]) == (Decimal(100) / Decimal("90000.50")).quantize(Decimal("1e-8"))


async def test_linear_and_inverse_share_one_amend_bucket(emu: Emulator) -> None:
    lin = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
    inv = emu.place_order("inverse", "BTCUSD", "Buy", "100", "90000.00")
    emu.set_rate_limit("order.amend", "linear", 2)
    async with trade_session(emu) as t:
        a = await t.request(
            "order.amend",
            {"category": "linear", "symbol": "BTCUSDT", "orderId": lin["orderId"], "price": "90000.10"},
        )
        b = await t.request(
            "order.amend",
            {"category": "inverse", "symbol": "BTCUSD", "orderId": inv["orderId"], "price": "90000.50"},
        )
        c = await t.request(
            "order.amend",
            {"category": "inverse", "symbol": "BTCUSD", "orderId": inv["orderId"], "price": "90001.00"},
        )
    assert [a["retCode"], b["retCode"], c["retCode"]] == [0, 0, 10006]
    assert b["header"]["X-Bapi-Limit-Status"] == "0"


async def test_spot_min_order_qty_is_not_enforced_but_min_amount_is(emu: Emulator) -> None:
    async with trade_session(emu) as t:
        spot = {"category": "spot", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Limit"}
        # 0.000047 < the deprecated minOrderQty 0.000048, but worth 5.64 USDT >= minOrderAmt 5
        ok = await t.request("order.create", {**spot, "qty": "0.000047", "price": "120000.00"})
        small = await t.request("order.create", {**spot, "qty": "0.000040", "price": "120000.00"})
    assert ok["retCode"] == 0 and small["retCode"] == 170140


async def test_history_endpoint_is_signed(emu: Emulator) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{emu.url}/v5/order/history?category=linear") as r:
        assert (await r.json())["retCode"] == 10003
