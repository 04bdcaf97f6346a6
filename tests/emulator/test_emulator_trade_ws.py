"""Raw-frame tests of `/v5/trade` against reference/bybit-v5.md §1, §2, §5, §6 and Appendix A."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from sidecar.emulator.signing import rest_payload, sign_hex, ws_auth_payload
from tests.emulator.emulator_testkit import (
    auth_frame,
    connect,
    hmac_hex,
    is_order_push,
    linear_order,
    now_ms,
    op_frame,
    private_session,
    trade_session,
)

ACK_KEYS = {"reqId", "retCode", "retMsg", "op", "data", "retExtInfo", "header", "connId"}
HEADER_KEYS = {"X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp", "Traceid", "Timenow"}


def test_signing_matches_reference_test_vectors() -> None:
    # reference §1.3 and §4.1 test vectors
    assert sign_hex("test_secret", ws_auth_payload(1700000001000)) == (
        "3763930b37bba7305c521ddbe2e899df26d1eff498d6c76669364ac3ad30101c"
    )
    get = rest_payload("1700000000000", "test_key", "5000", "category=linear&symbol=BTCUSDT")
    assert sign_hex("test_secret", get) == "8246a593895fdfbe234404b5964466f60c219ba371d95e4cb691394e078f2346"
    body = '{"category":"linear","symbol":"BTCUSDT","orderId":"abc","price":"101.5"}'
    post = rest_payload("1700000000000", "test_key", "5000", body)
    assert sign_hex("test_secret", post) == "6a918366c188715407dd3797b0756e551a7fb972b67e577d19e5ca106384e8e2"


# ---------------------------------------------------------------------------------------------- auth


async def test_auth_ok_int_and_string_expires_and_envelope(emu: Emulator) -> None:
    async with connect(emu.ws_url + "/v5/trade") as c:
        await c.send(auth_frame())  # pybit: expires as an int, no reqId (Appendix A)
        reply = await c.recv()
        assert set(reply) == {"retCode", "retMsg", "op", "connId"}
        assert (reply["retCode"], reply["retMsg"], reply["op"]) == (0, "OK", "auth")
    async with connect(emu.ws_url + "/v5/trade") as c:
        await c.send(auth_frame(expires=str(now_ms() + 10_000), reqId="a-1"))  # ccxt: a string
        reply = await c.recv()
        assert reply["retCode"] == 0 and reply["reqId"] == "a-1"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (lambda: {**auth_frame(), "args": [DEFAULT_API_KEY, now_ms() + 9000, "00" * 32]}, 10004),
        (lambda: auth_frame(secret="wrong-secret"), 10004),
        (lambda: auth_frame(key="unknown-key"), 10003),
        (lambda: auth_frame(expires=now_ms() - 1000), 10001),
        (lambda: {"op": "auth", "args": [DEFAULT_API_KEY]}, 10001),
        (lambda: {"op": "auth", "args": [DEFAULT_API_KEY, "soon", "x"]}, 10001),
    ],
)
async def test_auth_failures(emu: Emulator, frame: Any, code: int) -> None:
    async with connect(emu.ws_url + "/v5/trade") as c:
        await c.send(frame())
        reply = await c.recv()
        assert reply["op"] == "auth" and reply["retCode"] == code, reply
        # still unauthenticated: an order op is refused
        await c.send(op_frame("order.create", linear_order(), req_id="x"))
        assert (await c.recv())["retCode"] == 10005


async def test_repeat_auth_is_20001(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        await c.send(auth_frame(reqId="again"))
        reply = await c.recv()
        assert (reply["retCode"], reply["op"], reply["reqId"]) == (20001, "auth", "again")


async def test_order_before_auth_refused_without_req_id(emu: Emulator) -> None:
    async with trade_session(emu, auth=False) as c:
        await c.send(op_frame("order.create", linear_order(), req_id="early"))
        reply = await c.recv()
        assert reply["retCode"] == 10005 and reply["op"] == "order.create"
        assert "reqId" not in reply  # auth-class errors come without reqId (ccxt#29361)
    assert emu.orders() == []


async def test_trade_ping_pong(emu: Emulator) -> None:
    async with trade_session(emu, auth=False) as c:
        await c.send({"op": "ping"})
        pong = await c.recv()
        assert set(pong) == {"retCode", "retMsg", "op", "data", "connId"}
        assert (pong["retCode"], pong["retMsg"], pong["op"]) == (0, "OK", "pong")
        assert len(pong["data"]) == 1 and pong["data"][0].isdigit()
        assert abs(int(pong["data"][0]) - now_ms()) < 5000


async def test_malformed_frames_answered_and_connection_survives(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        for bad in ("not json", "[1, 2]", '"text"', "{"):
            await c.send(bad)
            reply = await c.recv()
            assert reply["retCode"] == 10001 and "reqId" not in reply
        await c.send({"op": "ping"})
        assert (await c.recv())["op"] == "pong"
    assert [f.get("malformed") for f in emu.frames()][1:5] == [True] * 4


# ------------------------------------------------------------------------------------------- reqId


async def test_req_id_echo_missing_too_long_duplicate(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        rid = str(uuid.uuid4())  # pybit's reqId: exactly 36 characters
        ack = await c.request("order.create", linear_order(), req_id=rid)
        assert ack["retCode"] == 0 and ack["reqId"] == rid and set(ack) == ACK_KEYS
        await c.send(op_frame("order.create", linear_order()))  # no reqId
        ack = await c.recv()
        assert ack["retCode"] == 0 and "reqId" not in ack
        too_long = "x" * 37
        ack = await c.request("order.create", linear_order(), req_id=too_long)
        assert ack["retCode"] == 10001
        ack = await c.request("order.create", linear_order(), req_id=rid)
        assert ack["retCode"] == 20006 and ack["data"] == {}
    async with trade_session(emu) as other:  # scope is the UID, not the connection
        ack = await other.request("order.create", linear_order(), req_id=rid)
        assert ack["retCode"] == 20006
    assert len(emu.orders()) == 2


# ----------------------------------------------------------------------------------- recv window


@pytest.mark.parametrize(
    ("offset_ms", "window", "code"),
    [
        (0, None, 0),
        (-4000, None, 0),
        (-6000, None, 10002),
        (-6000, 8000, 0),
        (-6000, "8000", 0),
        (500, "5000", 0),
        (2000, None, 10002),
        (-1500, 1000, 10002),
    ],
)
async def test_recv_window(emu: Emulator, offset_ms: int, window: int | str | None, code: int) -> None:
    async with trade_session(emu) as c:
        ack = await c.request("order.create", linear_order(), ts=now_ms() + offset_ms, recv_window=window)
        assert ack["retCode"] == code, ack
        ack = await c.request("order.create", linear_order(), ts=str(now_ms()), recv_window=window)
        assert ack["retCode"] == 0  # the timestamp may be a string (ccxt) or an int (pybit)


async def test_unknown_op_and_bad_category_are_10404(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        ack = await c.request("order.replace", linear_order())
        assert ack["retCode"] == 10404
        ack = await c.request("order.create", linear_order(category="futures"))
        assert ack["retCode"] == 10404
        ack = await c.request("order.amend-batch", {"category": "margin", "request": [{}]})
        assert ack["retCode"] == 10404


async def test_missing_header_or_args_is_10001(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        await c.send({"reqId": "h", "op": "order.create", "args": [linear_order()]})
        assert (await c.recv())["retCode"] == 10001
        frame = op_frame("order.create", linear_order(), req_id="a2")
        frame["args"].append(linear_order())
        await c.send(frame)
        assert (await c.recv())["retCode"] == 10001


# ------------------------------------------------------------------------------------ single ops


async def test_create_amend_cancel_acks_and_pushes(emu: Emulator) -> None:
    async with trade_session(emu) as c, private_session(emu) as p:
        ack = await c.request("order.create", linear_order(orderLinkId="life-1"))
        assert ack["retCode"] == 0 and ack["retExtInfo"] == {}
        assert set(ack["data"]) == {"orderId", "orderLinkId"} and ack["data"]["orderLinkId"] == "life-1"
        oid = ack["data"]["orderId"]
        created = await p.recv_until(is_order_push(oid, orderStatus="New"))
        t0 = int(created["data"][0]["updatedTime"])

        ack = await c.request(
            "order.amend", {"category": "linear", "symbol": "BTCUSDT", "orderId": oid, "price": "90100.00"}
        )
        assert ack["retCode"] == 0 and ack["data"] == {"orderId": oid, "orderLinkId": "life-1"}
        amended = await p.recv_until(is_order_push(oid, price="90100.00"))
        t1 = int(amended["data"][0]["updatedTime"])
        assert t1 > t0

        ack = await c.request(
            "order.amend",
            {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "life-1", "qty": "0.020"},
        )
        assert ack["retCode"] == 0
        pushed = await p.recv_until(is_order_push(oid, qty="0.020"))
        assert pushed["data"][0]["leavesQty"] == "0.020" and int(pushed["data"][0]["updatedTime"]) > t1

        ack = await c.request("order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderId": oid})
        assert ack["retCode"] == 0
        done = await p.recv_until(is_order_push(oid, orderStatus="Cancelled"))
        assert done["data"][0]["cancelType"] == "CancelByUser"

        ack = await c.request(
            "order.amend", {"category": "linear", "symbol": "BTCUSDT", "orderId": oid, "qty": "1"}
        )
        # A closed order: "order not exists or too late to replace" (SIEBLY-289), not 110008.
        assert (ack["retCode"], ack["data"], ack["retExtInfo"]) == (110001, {}, {})
        assert ack["retMsg"] == "order not exists or too late to replace"
        ack = await c.request("order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderId": oid})
        assert ack["retCode"] == 110001


async def test_ack_header_fields_are_strings_and_count_down(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        first = await c.request("order.create", linear_order())
        second = await c.request("order.create", linear_order())
    for ack in (first, second):
        assert set(ack["header"]) == HEADER_KEYS
        assert all(isinstance(v, str) for v in ack["header"].values())
    assert first["header"]["X-Bapi-Limit"] == "10"
    assert int(first["header"]["X-Bapi-Limit-Status"]) - int(second["header"]["X-Bapi-Limit-Status"]) == 1


async def test_dws_create_example_and_duplicate_link_id(emu: Emulator) -> None:
    # The D-WST single-op example (§1.5): string header values, Referer, PostOnly.
    frame: dict[str, Any] = {
        "reqId": "test-005",
        "header": {"X-BAPI-TIMESTAMP": str(now_ms()), "X-BAPI-RECV-WINDOW": "8000", "Referer": "bot-001"},
        "op": "order.create",
        "args": [
            {
                "symbol": "ETHUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "0.2",
                "price": "2800",
                "category": "linear",
                "timeInForce": "PostOnly",
                "orderLinkId": "dup-link",
            }
        ],
    }
    async with trade_session(emu) as c:
        await c.send(frame)
        ack = await c.recv()
        assert (ack["reqId"], ack["retCode"], ack["op"]) == ("test-005", 0, "order.create")
        ack = await c.request("order.create", frame["args"][0])
        assert ack["retCode"] == 110072  # orderLinkId unique among open orders
    (order,) = emu.orders()
    assert (order["price"], order["qty"], order["timeInForce"]) == ("2800.00", "0.20", "PostOnly")


async def test_create_validation_codes(emu: Emulator) -> None:
    cases: list[tuple[dict[str, Any], int]] = [
        (linear_order(price="90000.05"), 10001),  # off tick 0.10
        (linear_order(qty="0.0015"), 10001),  # off step 0.001
        (linear_order(qty="2000.000"), 10001),  # above max 1190
        (linear_order(price=None), 10001),
        (linear_order(qty=0.01), 10001),  # JSON numbers are refused: Bybit wants strings
        (linear_order(qty="1e-2"), 10001),  # no exponents
        (linear_order(side="Long"), 10001),
        (linear_order(symbol="DOGEUSDT"), 10001),
        (linear_order(positionIdx=1), 10001),  # one-way mode
        (linear_order(qty="0.001", price="100.00"), 110094),  # notional below 5 USDT
        ({**linear_order(), "category": "spot", "price": "90000.001"}, 170134),
        ({**linear_order(), "category": "spot", "qty": "0.0000001"}, 170137),
        # spot minOrderQty is deprecated and unchecked; the order value (minOrderAmt 5) is the floor
        ({**linear_order(), "category": "spot", "qty": "0.000010"}, 170140),
        ({**linear_order(), "category": "spot", "symbol": "NOPE"}, 170121),
    ]
    async with trade_session(emu) as c:
        for raw, code in cases:
            body = {k: v for k, v in raw.items() if v is not None}
            ack = await c.request("order.create", body)
            assert ack["retCode"] == code, (body, ack)
            assert ack["data"] == {}
    assert emu.orders() == []


# ------------------------------------------------------------------------------------------ batch


async def test_batch_size_limits(emu: Emulator) -> None:
    item = {"symbol": "BTCUSDT", "orderId": "x", "price": "1"}
    async with trade_session(emu) as c:
        ack = await c.request("order.amend-batch", {"category": "linear", "request": [item] * 21})
        assert ack["retCode"] == 10001
        ack = await c.request("order.amend-batch", {"category": "linear", "request": [item] * 20})
        assert ack["retCode"] == 0 and len(ack["retExtInfo"]["list"]) == 20
        ack = await c.request("order.cancel-batch", {"category": "spot", "request": [item] * 11})
        assert ack["retCode"] == 10001
        ack = await c.request("order.cancel-batch", {"category": "spot", "request": [item] * 10})
        assert ack["retCode"] == 0
        assert {e["code"] for e in ack["retExtInfo"]["list"]} == {170213}
        ack = await c.request("order.amend-batch", {"category": "linear", "request": []})
        assert ack["retCode"] == 10001


async def test_batch_amend_mixed_item_codes(emu: Emulator) -> None:
    emu.set_rate_limit("order.amend-batch", "linear", 100)  # the default 10 items/s would cut this batch
    live = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00", order_link_id="live")
    part = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00", order_link_id="part")
    emu.fill_order(part["orderId"], "0.004")
    filled = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
    emu.fill_order(filled["orderId"])
    gone = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
    cond = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00", triggerPrice="96000.00")
    assert cond["orderStatus"] == "Untriggered"
    async with trade_session(emu) as c:
        ack = await c.request(
            "order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderId": gone["orderId"]}
        )
        assert ack["retCode"] == 0
        request = [
            {"symbol": "BTCUSDT", "orderLinkId": "live", "price": "90000.50"},  # 0
            {"symbol": "BTCUSDT", "orderId": "no-such-order", "price": "90000.50"},  # 110001
            {"orderLinkId": "live", "price": "90000.50"},  # missing symbol: 10001
            {"symbol": "BTCUSDT", "price": "90000.50"},  # neither id: 10001
            {"symbol": "BTCUSDT", "orderLinkId": "live", "price": "90000.55"},  # off tick: 10001
            {"symbol": "BTCUSDT", "orderLinkId": "live", "qty": "0.0105"},  # off step: 10001
            {"symbol": "BTCUSDT", "orderLinkId": "live", "qty": "5000"},  # above max: 10001
            {"symbol": "BTCUSDT", "orderId": filled["orderId"], "price": "90000.50"},  # closed: 110001
            {"symbol": "BTCUSDT", "orderId": gone["orderId"], "price": "90000.50"},  # closed: 110001
            {"symbol": "BTCUSDT", "orderId": part["orderId"], "qty": "0.004"},  # 110064
            {"symbol": "BTCUSDT", "orderId": part["orderId"], "qty": "0.020"},  # 0
            {
                "symbol": "BTCUSDT",
                "orderLinkId": "live",
                "triggerPrice": "95000.00",
            },  # conditional field: 10001
            {
                "symbol": "BTCUSDT",
                "orderId": cond["orderId"],
                "price": "90000.50",
            },  # conditional order: 10001
            {"symbol": "BTCUSDT", "orderLinkId": "live", "qty": "0.010"},  # unchanged: 10001
        ]
        ack = await c.request("order.amend-batch", {"category": "linear", "request": request})
    assert ack["retCode"] == 0 and ack["retMsg"] == "OK"
    codes = [e["code"] for e in ack["retExtInfo"]["list"]]
    assert codes == [
        0,
        110001,
        10001,
        10001,
        10001,
        10001,
        10001,
        110001,
        110001,
        110064,
        0,
        10001,
        10001,
        10001,
    ]
    assert all(set(e) == {"code", "msg"} for e in ack["retExtInfo"]["list"])
    data = ack["data"]["list"]
    assert len(data) == len(request)
    assert all(set(d) == {"category", "symbol", "orderId", "orderLinkId"} for d in data)
    assert data[0] == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderId": live["orderId"],
        "orderLinkId": "live",
    }
    assert data[1]["orderId"] == "no-such-order"
    by_id = {o["orderId"]: o for o in emu.orders()}
    assert by_id[live["orderId"]]["price"] == "90000.50"
    assert (by_id[part["orderId"]]["qty"], by_id[part["orderId"]]["leavesQty"]) == ("0.020", "0.016")


async def test_spot_batch_codes(emu: Emulator) -> None:
    live = emu.place_order("spot", "BTCUSDT", "Buy", "0.001000", "90000.00")
    filled = emu.place_order("spot", "BTCUSDT", "Buy", "0.001000", "90000.00")
    emu.fill_order(filled["orderId"])
    gone = emu.place_order("spot", "BTCUSDT", "Sell", "0.001000", "99000.00")
    async with trade_session(emu) as c:
        await c.request("order.cancel", {"category": "spot", "symbol": "BTCUSDT", "orderId": gone["orderId"]})
        request = [
            {"symbol": "BTCUSDT", "orderId": live["orderId"], "price": "90001.00"},
            {"symbol": "BTCUSDT", "orderId": "missing", "price": "90001.00"},
            {"symbol": "BTCUSDT", "orderId": live["orderId"], "price": "90001.005"},
            {"symbol": "BTCUSDT", "orderId": filled["orderId"], "price": "90001.00"},
            {"symbol": "BTCUSDT", "orderId": gone["orderId"], "price": "90001.00"},
        ]
        ack = await c.request("order.amend-batch", {"category": "spot", "request": request})
    assert [e["code"] for e in ack["retExtInfo"]["list"]] == [0, 170213, 170134, 170139, 170142]


async def test_create_and_cancel_batch_shapes(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        ok_item = {k: v for k, v in linear_order(orderLinkId="b-0").items() if k != "category"}
        bad_item = {**ok_item, "orderLinkId": "b-1", "qty": "0.0001"}
        ack = await c.request("order.create-batch", {"category": "linear", "request": [ok_item, bad_item]})
        assert ack["retCode"] == 0
        first, second = ack["data"]["list"]
        assert set(first) == {"category", "symbol", "orderId", "orderLinkId", "createAt"}
        assert first["orderId"] and first["createAt"].isdigit()
        assert (second["orderId"], second["createAt"], second["orderLinkId"]) == ("", "", "b-1")
        assert [e["code"] for e in ack["retExtInfo"]["list"]] == [0, 10001]
        cancel = [{"symbol": "BTCUSDT", "orderLinkId": "b-0"}, {"symbol": "BTCUSDT", "orderLinkId": "b-1"}]
        ack = await c.request("order.cancel-batch", {"category": "linear", "request": cancel})
        assert [e["code"] for e in ack["retExtInfo"]["list"]] == [0, 110001]
        assert set(ack["data"]["list"][0]) == {"category", "symbol", "orderId", "orderLinkId"}


async def test_appendix_a_captured_frames(emu: Emulator) -> None:
    """The pybit and ccxt frames of Appendix A, verbatim apart from fresh timestamps."""
    emu.place_order("linear", "BTCUSDT", "Buy", "0.001", "90000.00", order_link_id="L2")
    pybit_batch = {
        "reqId": "716131fb-6e66-45d2-b001-f49aace98bd1",
        "header": {"X-BAPI-TIMESTAMP": now_ms(), "X-BAPI-RECV-WINDOW": 5000, "Referer": "ref-1"},
        "op": "order.amend-batch",
        "args": [
            {
                "category": "linear",
                "request": [
                    {"symbol": "BTCUSDT", "orderId": "o1", "price": "101"},
                    {"symbol": "BTCUSDT", "orderLinkId": "L2", "qty": "0.002"},
                ],
            }
        ],
    }
    ccxt_amend = {
        "op": "order.amend",
        "reqId": "1",
        "args": [
            {"symbol": "BTCUSDT", "orderId": "o1", "category": "linear", "qty": "0.002", "price": "101"}
        ],
        "header": {"X-BAPI-TIMESTAMP": str(now_ms()), "X-BAPI-RECV-WINDOW": "5000"},
    }
    async with connect(emu.ws_url + "/v5/trade") as c:
        expires = now_ms() + 1000
        await c.send(
            {
                "op": "auth",
                "args": [DEFAULT_API_KEY, expires, hmac_hex(DEFAULT_API_SECRET, f"GET/realtime{expires}")],
            }
        )
        await c.send(pybit_batch)  # pybit does not wait for the auth reply (§7.3)
        assert (await c.recv())["op"] == "auth"
        ack = await c.recv()
        assert ack["reqId"] == pybit_batch["reqId"] and ack["retCode"] == 0
        assert [e["code"] for e in ack["retExtInfo"]["list"]] == [110001, 0]
        await c.send(ccxt_amend)
        ack = await c.recv()
        assert (ack["reqId"], ack["retCode"], ack["data"]) == ("1", 110001, {})
        await c.send({"op": "ping"})
        assert (await c.recv())["op"] == "pong"
    frames = emu.frames()
    assert [f["op"] for f in frames] == ["auth", "order.amend-batch", "order.amend", "ping"]
    assert frames[0]["args"] == ["[redacted]", expires, "[redacted]"]
    assert frames[1]["args"] == pybit_batch["args"] and frames[1]["reqId"] == pybit_batch["reqId"]
    assert all({"path", "op", "reqId", "args", "receivedAt"} <= set(f) for f in frames)
    flat = repr(frames)
    assert DEFAULT_API_KEY not in flat and DEFAULT_API_SECRET not in flat


async def test_single_amend_of_conditional_order(emu: Emulator) -> None:
    cond = emu.place_order("linear", "BTCUSDT", "Sell", "0.010", "89000.00", triggerPrice="90000.00")
    assert cond["triggerDirection"] == 2 and cond["stopOrderType"] == "Stop"
    async with trade_session(emu) as c:
        body = {
            "category": "linear",
            "symbol": "BTCUSDT",
            "orderId": cond["orderId"],
            "triggerPrice": "89500.00",
        }
        ack = await c.request("order.amend", body)
        assert ack["retCode"] == 0
    (order,) = emu.orders()
    assert (order["triggerPrice"], order["orderStatus"]) == ("89500.00", "Untriggered")


# ------------------------------------------------------------------------------------- rate limits


async def test_single_op_rate_limit_10006(emu: Emulator) -> None:
    async with trade_session(emu) as c:
        codes = [(await c.request("order.create", linear_order()))["retCode"] for _ in range(11)]
        assert codes == [0] * 10 + [10006]
        ack = await c.request("order.create", linear_order())
        assert ack["retCode"] == 10006 and ack["header"]["X-Bapi-Limit-Status"] == "0"
        assert int(ack["header"]["X-Bapi-Limit-Reset-Timestamp"]) > now_ms() - 1000
        # separate budget per op path
        ack = await c.request(
            "order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "nope"}
        )
        assert ack["retCode"] == 110001


async def test_batch_partially_over_quota(emu: Emulator) -> None:
    emu.set_rate_limit("order.create-batch", "linear", 3)
    items = [{k: v for k, v in linear_order().items() if k != "category"} for _ in range(5)]
    async with trade_session(emu) as c:
        ack = await c.request("order.create-batch", {"category": "linear", "request": items})
        assert ack["retCode"] == 0
        assert [e["code"] for e in ack["retExtInfo"]["list"]] == [0, 0, 0, 10006, 10006]
        assert ack["header"]["X-Bapi-Limit"] == "3" and ack["header"]["X-Bapi-Limit-Status"] == "0"
        ack = await c.request("order.create-batch", {"category": "linear", "request": items[:1]})
        assert ack["retCode"] == 10006
    assert len(emu.orders()) == 3


async def test_option_batches_count_per_request(emu: Emulator) -> None:
    emu.set_rate_limit("order.cancel-batch", "option", 2)
    item = {"symbol": "BTC-30DEC26-100000-C", "orderId": "x"}
    async with trade_session(emu) as c:
        for _ in range(2):
            ack = await c.request("order.cancel-batch", {"category": "option", "request": [item] * 5})
            assert ack["retCode"] == 0 and all(e["code"] == 10001 for e in ack["retExtInfo"]["list"])
        ack = await c.request("order.cancel-batch", {"category": "option", "request": [item]})
        assert ack["retCode"] == 10006
