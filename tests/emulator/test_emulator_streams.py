"""Private (`/v5/private`) and public (`/v5/public/{category}`) streams: envelopes, pushes, tickers."""

from __future__ import annotations

import itertools
from decimal import Decimal

from sidecar.emulator import Emulator
from tests.emulator.emulator_testkit import (
    auth_frame,
    connect,
    is_order_push,
    linear_order,
    now_ms,
    private_session,
    trade_session,
)

# reference §3.2: every documented field of an `order` push element
ORDER_FIELDS = {
    "category", "orderId", "orderLinkId", "parentOrderLinkId", "isLeverage", "blockTradeId", "symbol",
    "price", "qty", "brokerOrderPrice", "side", "positionIdx", "orderStatus", "createType", "cancelType",
    "rejectReason", "avgPrice", "leavesQty", "leavesValue", "cumExecQty", "cumExecValue", "cumExecFee",
    "closedPnl", "feeCurrency", "timeInForce", "orderType", "stopOrderType", "ocoTriggerBy", "orderIv",
    "placeType", "marketUnit", "slippageToleranceType", "slippageTolerance", "triggerPrice", "takeProfit",
    "stopLoss", "tpslMode", "tpLimitPrice", "slLimitPrice", "tpTriggerBy", "slTriggerBy", "triggerBy",
    "triggerDirection", "lastPriceOnCreated", "reduceOnly", "closeOnTrigger", "smpType", "smpGroup",
    "smpOrderId", "createdTime", "updatedTime", "cumFeeDetail", "rpiTakerAccess", "rpiMatchedQty",
}  # fmt: skip
LINEAR_TICKER = {
    "symbol",
    "lastPrice",
    "markPrice",
    "indexPrice",
    "bid1Price",
    "bid1Size",
    "ask1Price",
    "ask1Size",
}


async def test_private_auth_envelopes(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/private") as c:
        await c.send(auth_frame(secret="bad"))
        fail = await c.recv()
        assert fail["success"] is False and fail["op"] == "auth" and "conn_id" in fail
        await c.send({"op": "subscribe", "req_id": "early", "args": ["order"]})
        refused = await c.recv()
        assert (refused["success"], refused["req_id"]) == (False, "early")
        await c.send(auth_frame())
        ok = await c.recv()
        assert ok == {"success": True, "ret_msg": "", "op": "auth", "conn_id": ok["conn_id"]}
        await c.send(auth_frame())
        assert (await c.recv())["success"] is False  # repeat auth


async def test_private_subscribe_and_ping(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/private") as c:
        await c.send({"op": "ping", "req_id": "test"})
        pong = await c.recv()
        assert set(pong) == {"req_id", "op", "args", "conn_id"}
        assert (pong["req_id"], pong["op"]) == ("test", "pong") and pong["args"][0].isdigit()
        await c.send(auth_frame())
        await c.recv()
        await c.send({"op": "subscribe", "req_id": "s-1", "args": ["order"]})
        reply = await c.recv()
        assert set(reply) == {"success", "ret_msg", "op", "conn_id", "req_id"}
        assert (reply["success"], reply["op"], reply["req_id"]) == (True, "subscribe", "s-1")
        await c.send({"op": "subscribe", "req_id": "s-2", "args": ["order", "order.linear"]})
        mixed = await c.recv()
        assert (mixed["success"], mixed["req_id"]) == (False, "s-2")
        await c.send({"op": "subscribe", "req_id": "s-3", "args": ["wallet.nonsense"]})
        assert (await c.recv())["success"] is False
        await c.send({"op": "subscribe", "req_id": "s-4", "args": ["execution.linear", "position.linear"]})
        assert (await c.recv())["success"] is True
        await c.send("{broken")
        assert (await c.recv())["success"] is False
        await c.send({"op": "ping"})
        assert (await c.recv())["op"] == "pong"


async def test_order_push_fields_and_advancing_updated_time(emu: Emulator) -> None:
    async with trade_session(emu) as t, private_session(emu) as p:
        ack = await t.request("order.create", linear_order())
        oid = ack["data"]["orderId"]
        frame = await p.recv_until(is_order_push(oid))
        assert set(frame) == {"id", "topic", "creationTime", "data"}
        assert frame["topic"] == "order" and isinstance(frame["creationTime"], int)
        assert set(frame["data"][0]) == ORDER_FIELDS
        times = [int(frame["data"][0]["updatedTime"])]
        for price in ("90000.10", "90000.20", "90000.30", "90000.40"):  # faster than the ms clock
            await t.send(
                {
                    "reqId": f"a-{price}",
                    "header": {"X-BAPI-TIMESTAMP": now_ms()},
                    "op": "order.amend",
                    "args": [{"category": "linear", "symbol": "BTCUSDT", "orderId": oid, "price": price}],
                }
            )
        for price in ("90000.10", "90000.20", "90000.30", "90000.40"):
            pushed = await p.recv_until(is_order_push(oid, price=price))
            times.append(int(pushed["data"][0]["updatedTime"]))
    assert all(b > a for a, b in itertools.pairwise(times)), times


async def test_categorised_topic_and_spot_fields(emu: Emulator) -> None:
    async with (
        private_session(emu, ("order.spot",)) as spot_only,
        private_session(emu, ("order",)) as everything,
    ):
        lin = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
        spot = emu.place_order("spot", "BTCUSDT", "Buy", "0.001000", "90000.00")
        frame = await spot_only.recv()
        assert frame["topic"] == "order.spot" and frame["data"][0]["orderId"] == spot["orderId"]
        assert "createType" not in frame["data"][0]  # absent for spot (reference §3.2)
        assert set(frame["data"][0]) == ORDER_FIELDS - {"createType"}
        first = await everything.recv()
        assert (
            first["data"][0]["orderId"] == lin["orderId"] and first["data"][0]["createType"] == "CreateByUser"
        )


async def test_fill_pushes_order_execution_position(emu: Emulator) -> None:
    async with private_session(emu, ("order", "execution", "position")) as p:
        order = emu.place_order("linear", "ETHUSDT", "Sell", "0.10", "3600.00")
        await p.recv_until(is_order_push(order["orderId"], orderStatus="New"))
        emu.set_price("linear", "ETHUSDT", mark_price="3600.00", last_price="3600.00")
        filled = await p.recv_until(is_order_push(order["orderId"], orderStatus="Filled"), wait_s=10)
        data = filled["data"][0]
        assert (data["cumExecQty"], data["leavesQty"], data["avgPrice"]) == ("0.10", "0.00", "3600")
        execution = await p.recv_until(lambda f: f.get("topic") == "execution")
        e = execution["data"][0]
        assert e["orderId"] == order["orderId"] and e["execType"] == "Trade" and e["isMaker"] is True
        assert Decimal(e["execPrice"]) == Decimal("3600")
        position = await p.recv_until(
            lambda f: f.get("topic") == "position" and f["data"][0]["size"] == "0.10"
        )
        assert position["data"][0]["side"] == "Sell" and position["data"][0]["symbol"] == "ETHUSDT"


async def test_market_order_fills_immediately(emu: Emulator) -> None:
    async with trade_session(emu) as t, private_session(emu) as p:
        body = {"category": "linear", "symbol": "SOLUSDT", "side": "Buy", "orderType": "Market", "qty": "1.0"}
        ack = await t.request("order.create", body)
        assert ack["retCode"] == 0
        filled = await p.recv_until(is_order_push(ack["data"]["orderId"], orderStatus="Filled"))
        assert filled["data"][0]["timeInForce"] == "IOC" and filled["data"][0]["cumExecQty"] == "1.0"


async def test_partial_fills_on_crossed_price(emu: Emulator) -> None:
    emu.hub.exchange.partial_fill_pct = 100  # every tick fills only part of what is left
    async with private_session(emu) as p:
        order = emu.place_order("linear", "SOLUSDT", "Buy", "10.0", "170.000")
        emu.set_price("linear", "SOLUSDT", mark_price="169.000", last_price="169.000")
        partial = await p.recv_until(
            is_order_push(order["orderId"], orderStatus="PartiallyFilled"), wait_s=10
        )
        d = partial["data"][0]
        assert Decimal(d["cumExecQty"]) + Decimal(d["leavesQty"]) == Decimal("10.0")
        assert Decimal(d["cumExecQty"]) > 0


async def test_public_ticker_snapshot_then_deltas(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/public/linear") as c:
        await c.send({"op": "subscribe", "req_id": "p1", "args": ["tickers.BTCUSDT"]})
        reply = await c.recv()
        assert reply == {  # the linear/inverse shape of D-CONN: ret_msg "", req_id present
            "success": True,
            "ret_msg": "",
            "conn_id": reply["conn_id"],
            "req_id": "p1",
            "op": "subscribe",
        }
        snap = await c.recv()
        assert set(snap) == {"topic", "type", "data", "cs", "ts"}
        assert (snap["topic"], snap["type"]) == ("tickers.BTCUSDT", "snapshot")
        assert set(snap["data"]) >= LINEAR_TICKER
        emu.set_price("linear", "BTCUSDT", mark_price="96000.00", last_price="96000.10")
        delta = await c.recv_until(
            lambda f: f.get("type") == "delta" and f["data"].get("lastPrice") == "96000.10"
        )
        assert delta["data"]["markPrice"] == "96000.00" and delta["cs"] > snap["cs"]
        # only what changed: funding, open interest and volume did not
        assert not {"fundingRate", "openInterest", "volume24h", "nextFundingTime"} & set(delta["data"])
        # frozen: silent. Ticks run (synchronously, on this loop) and the next frame is the pong.
        for _ in range(5):
            emu.hub.on_tick()
        await c.send({"op": "ping", "req_id": "pp"})
        pong = await c.recv()
        assert (pong["success"], pong["ret_msg"], pong["req_id"], pong["op"]) == (True, "pong", "pp", "ping")


async def test_public_spot_has_no_mark_or_index(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/public/spot") as c:
        await c.send({"op": "subscribe", "args": ["tickers.BTCUSDT"]})
        assert (await c.recv())["success"] is True
        snap = await c.recv()
        assert "markPrice" not in snap["data"] and "indexPrice" not in snap["data"]
        assert snap["data"]["lastPrice"] == "95000.00"
        await c.send({"op": "subscribe", "req_id": "bad", "args": ["tickers.NOPEUSDT"]})
        assert (await c.recv_until(lambda f: f.get("req_id") == "bad"))["success"] is False


async def test_walk_moves_published_prices() -> None:
    async with Emulator(seed=11, walk=True, tick_ms=20) as e, connect(e.ws_url + "/v5/public/linear") as c:
        await c.send({"op": "subscribe", "args": ["tickers.ETHUSDT"]})
        await c.recv()
        snap = await c.recv()
        moved = await c.recv_until(lambda f: f["data"]["lastPrice"] != snap["data"]["lastPrice"])
        assert moved["type"] == "delta"
        e.set_walk(False)
