"""Codec: frames out match Bybit's reference frames; frames in decode to the core types."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.bybit.codec import (
    AuthReply,
    DecodeError,
    Pong,
    PrivateControl,
    PublicControl,
    TickerUpdate,
    TradeError,
    decode_private,
    decode_public,
    decode_ticker,
    decode_trade,
    encode_amend,
    encode_amend_batch,
    encode_auth,
    encode_ping,
    encode_subscribe,
    order_view_from_wire,
)
from sidecar.bybit.messages import OrderPush
from sidecar.bybit.signing import ws_auth_args
from sidecar.core.numbers import plain_decimal
from sidecar.core.types import Ack, AmendItem, Category, CodeClass, Side

# ---------------------------------------------------------------- plain_decimal (the wire's numbers)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("65000.5", "65000.5"),
        ("65000.50", "65000.5"),
        ("0.010", "0.01"),
        ("100", "100"),
        ("1E+3", "1000"),
        ("1.5E-7", "0.00000015"),
        ("0", "0"),
        ("-0", "0"),
        ("-0.000", "0"),
        ("0E-8", "0"),
        ("-1.50", "-1.5"),
        ("123456789012345678901234567890.123", "123456789012345678901234567890.123"),
    ],
)
def test_plain_decimal_examples(value: str, text: str) -> None:
    assert plain_decimal(Decimal(value)) == text


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_format_decimal_refuses_non_finite(value: str) -> None:
    with pytest.raises(ValueError):
        plain_decimal(Decimal(value))


@settings(max_examples=400, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_format_decimal_round_trips(d: Decimal) -> None:
    s = plain_decimal(d)
    assert Decimal(s) == d
    assert "E" not in s and "e" not in s
    assert s != "-0"
    if "." in s:
        assert not s.endswith("0") and not s.endswith(".")


# ---------------------------------------------------------------- encoding

ITEMS = (
    AmendItem(symbol="BTCUSDT", order_id="o1", order_link_id=None, values={"price": Decimal("101")}),
    AmendItem(symbol="BTCUSDT", order_id=None, order_link_id="L2", values={"qty": Decimal("0.0020")}),
)


def test_batch_frame_matches_reference() -> None:
    # reference §1.5 / Appendix A (pybit's capture); header values as strings per the docs.
    frame = encode_amend_batch(
        "716131fb-6e66-45d2-b001-f49aace98bd1", Category.LINEAR, ITEMS, 1795465616698, 5000
    )
    assert " " not in frame  # compact
    assert json.loads(frame) == {
        "reqId": "716131fb-6e66-45d2-b001-f49aace98bd1",
        "header": {"X-BAPI-TIMESTAMP": "1795465616698", "X-BAPI-RECV-WINDOW": "5000"},
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


def test_single_frame_matches_reference() -> None:
    # ccxt's captured order.amend (reference §8), same keys and values.
    item = AmendItem("BTCUSDT", "o1", None, {"qty": Decimal("0.002"), "price": Decimal("101")})
    frame = json.loads(encode_amend("1", Category.LINEAR, item, 1795465646497, 5000))
    assert frame == {
        "op": "order.amend",
        "reqId": "1",
        "args": [
            {"symbol": "BTCUSDT", "orderId": "o1", "category": "linear", "qty": "0.002", "price": "101"}
        ],
        "header": {"X-BAPI-TIMESTAMP": "1795465646497", "X-BAPI-RECV-WINDOW": "5000"},
    }


def test_order_id_wins_and_enum_fields_pass_through() -> None:
    item = AmendItem(
        "ETHUSDT",
        "oid",
        "link",
        {"takeProfit": Decimal("0"), "tpTriggerBy": "MarkPrice", "tpslMode": "Partial"},
    )
    req = json.loads(encode_amend_batch("r", Category.LINEAR, [item], 1, 2))["args"][0]["request"][0]
    assert req == {
        "symbol": "ETHUSDT",
        "orderId": "oid",
        "takeProfit": "0",
        "tpTriggerBy": "MarkPrice",
        "tpslMode": "Partial",
    }


def test_encoding_refuses_items_without_order_and_empty_batches() -> None:
    with pytest.raises(ValueError):
        encode_amend_batch("r", Category.LINEAR, [AmendItem("X", None, None, {"price": Decimal(1)})], 1, 2)
    with pytest.raises(ValueError):
        encode_amend_batch("r", Category.LINEAR, [], 1, 2)
    with pytest.raises(ValueError):
        encode_amend("r", Category.LINEAR, AmendItem("X", "o", None, {"price": Decimal("NaN")}), 1, 2)


def test_frames_are_the_stdlib_compact_json_for_every_code_point() -> None:
    # The frame is serialised by orjson; it must be byte-for-byte what json.dumps with compact
    # separators and ensure_ascii=False writes (what the hand-built encoder wrote before), for
    # every character a symbol, id or enum text could hold, lone surrogates included (orjson
    # refuses those; the codec then takes the stdlib path).
    compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    chars = [chr(cp) for cp in range(0x110000)]
    for start in range(0, len(chars), 4096):
        text = "".join(chars[start : start + 4096])
        item = AmendItem(text, text, None, {"price": Decimal("1.50"), "tpslMode": text})
        frame = encode_amend_batch(text, Category.LINEAR, [item], 1, 2)
        expected = {
            "reqId": text,
            "header": {"X-BAPI-TIMESTAMP": "1", "X-BAPI-RECV-WINDOW": "2"},
            "op": "order.amend-batch",
            "args": [
                {
                    "category": "linear",
                    "request": [{"symbol": text, "orderId": text, "price": "1.5", "tpslMode": text}],
                }
            ],
        }
        assert frame == compact(expected), hex(start)
        single = encode_amend(text, Category.LINEAR, AmendItem(text, None, text, {"qty": Decimal(2)}), 1, 2)
        args = {"category": "linear", "symbol": text, "orderLinkId": text, "qty": "2"}
        assert single == compact({**expected, "op": "order.amend", "args": [args]}), hex(start)


_text = st.text(min_size=1, max_size=12)
_dec = st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(_text, st.one_of(st.none(), _text), _text, _dec, _dec),
        min_size=1,
        max_size=20,
    ),
    _text,
)
def test_batch_encoding_is_valid_json_with_exact_values(
    rows: list[tuple[str, str | None, str, Decimal, Decimal]], req_id: str
) -> None:
    items = [AmendItem(sym, oid, link, {"price": p, "qty": q}) for sym, oid, link, p, q in rows]
    frame = json.loads(encode_amend_batch(req_id, Category.SPOT, items, 1700000000000, 5000))
    assert frame["reqId"] == req_id
    request = frame["args"][0]["request"]
    assert frame["args"][0]["category"] == "spot"
    for (sym, oid, link, p, q), out in zip(rows, request, strict=True):
        assert out["symbol"] == sym
        assert out.get("orderId") == (oid or None)
        assert out.get("orderLinkId") == (None if oid else link)
        assert Decimal(out["price"]) == p and Decimal(out["qty"]) == q
        assert "E" not in out["price"] + out["qty"]


def test_control_frames() -> None:
    assert json.loads(encode_ping()) == {"op": "ping"}
    auth = json.loads(encode_auth(ws_auth_args("test_key", "test_secret", 1700000001000)))
    assert auth == {
        "op": "auth",
        "args": [
            "test_key",
            1700000001000,
            "3763930b37bba7305c521ddbe2e899df26d1eff498d6c76669364ac3ad30101c",
        ],
    }
    assert json.loads(encode_auth(["k", 1, "s"], req_id="a1"))["reqId"] == "a1"
    assert json.loads(encode_subscribe(["order"], "s1")) == {
        "op": "subscribe",
        "req_id": "s1",
        "args": ["order"],
    }


# ---------------------------------------------------------------- trade decoding

SINGLE_ACK = {
    "reqId": "test-005",
    "retCode": 0,
    "retMsg": "OK",
    "op": "order.amend",
    "data": {"orderId": "a4c1718e-fe53-4659-a118-1f6ecce04ad9", "orderLinkId": ""},
    "retExtInfo": {},
    "header": {
        "X-Bapi-Limit": "10",
        "X-Bapi-Limit-Status": "9",
        "X-Bapi-Limit-Reset-Timestamp": "1711001595208",
        "Traceid": "38b7977b430f9bd228f4b19724794dfd",
        "Timenow": "1711001595209",
    },
    "connId": "cnt5leec0hvan15eukcg-2v",
}


def test_single_ack() -> None:
    ack = decode_trade(json.dumps(SINGLE_ACK))
    assert isinstance(ack, Ack)
    assert (ack.req_id, ack.op, ack.ret_code, ack.cls) == ("test-005", "order.amend", 0, CodeClass.SUCCESS)
    assert len(ack.items) == 1
    assert ack.items[0].order_id == "a4c1718e-fe53-4659-a118-1f6ecce04ad9"
    assert ack.items[0].cls is CodeClass.SUCCESS
    assert (ack.limit, ack.limit_status, ack.limit_reset_ms, ack.server_time_ms) == (
        10,
        9,
        1711001595208,
        1711001595209,
    )


def test_header_keys_are_case_insensitive() -> None:
    msg = dict(SINGLE_ACK, header={"x-bapi-limit-status": "3", "TIMENOW": "5", "TraceId": "t"})
    ack = decode_trade(json.dumps(msg))
    assert isinstance(ack, Ack)
    assert (ack.limit, ack.limit_status, ack.server_time_ms) == (None, 3, 5)


def test_single_rejection_from_ccxt() -> None:
    text = (
        '{"reqId":"1","retCode":170131,"retMsg":"Insufficient balance.","op":"order.create","data":{},'
        '"header":{"X-Bapi-Limit":"20","X-Bapi-Limit-Status":"19","X-Bapi-Limit-Reset-Timestamp":"1714236608944",'
        '"Traceid":"3d7168a137bf32a947b7e5e6a575ac7f","Timenow":"1714236608946"},"connId":"cojifin88smerbj9t560-406"}'
    )
    ack = decode_trade(text)
    assert isinstance(ack, Ack)
    assert ack.cls is CodeClass.REJECTED
    assert [(i.code, i.msg, i.cls) for i in ack.items] == [
        (170131, "Insufficient balance.", CodeClass.REJECTED)
    ]


def test_batch_ack_uses_per_item_codes() -> None:
    msg = {
        "reqId": "b1",
        "retCode": 0,
        "retMsg": "OK",
        "op": "order.amend-batch",
        "data": {
            "list": [
                {"category": "linear", "symbol": "BTCUSDT", "orderId": "o1", "orderLinkId": ""},
                {"category": "linear", "symbol": "BTCUSDT", "orderId": "", "orderLinkId": "L2"},
                {"category": "linear", "symbol": "BTCUSDT", "orderId": "o3", "orderLinkId": "L3"},
            ]
        },
        "retExtInfo": {
            "list": [
                {"code": 0, "msg": "OK"},
                {"code": 110001, "msg": "order not exists"},
                {"code": 110008, "msg": "x"},
            ]
        },
        "header": {"Timenow": "1740453408556", "X-Bapi-Limit": "150", "X-Bapi-Limit-Status": "147"},
        "connId": "c",
    }
    ack = decode_trade(json.dumps(msg))
    assert isinstance(ack, Ack)
    assert ack.cls is CodeClass.SUCCESS  # top level only: never enough on its own
    assert [(i.code, i.cls, i.order_id, i.order_link_id) for i in ack.items] == [
        (0, CodeClass.SUCCESS, "o1", ""),
        (110001, CodeClass.AMBIGUOUS, "", "L2"),  # not found, or closed: look
        (110008, CodeClass.ORDER_CLOSED, "o3", "L3"),
    ]
    assert ack.ret_ext_info == msg["retExtInfo"]


def test_failed_batch_gives_every_item_the_top_level_code() -> None:
    msg = {
        "reqId": "b2",
        "retCode": 10006,
        "retMsg": "Too many visits!",
        "op": "order.amend-batch",
        "data": {},
    }
    ack = decode_trade(json.dumps(msg), expected_items=3)
    assert isinstance(ack, Ack)
    assert ack.cls is CodeClass.RATE_LIMITED
    assert [(i.code, i.cls) for i in ack.items] == [(10006, CodeClass.RATE_LIMITED)] * 3
    # With lists present, still the top-level code for every item.
    msg2 = dict(msg, retCode=10016, retExtInfo={"list": [{"code": 0, "msg": "OK"}]})
    ack2 = decode_trade(json.dumps(msg2), expected_items=2)
    assert isinstance(ack2, Ack)
    assert [i.cls for i in ack2.items] == [CodeClass.RECONNECT, CodeClass.RECONNECT]


def test_batch_ack_with_missing_item_code_is_ambiguous() -> None:
    msg = {"reqId": "b3", "retCode": 0, "retMsg": "OK", "op": "order.amend-batch", "data": {"list": [{}, {}]}}
    ack = decode_trade(json.dumps(msg))
    assert isinstance(ack, Ack)
    assert [i.cls for i in ack.items] == [CodeClass.AMBIGUOUS, CodeClass.AMBIGUOUS]


def test_auth_pong_and_errors() -> None:
    auth = decode_trade('{"retCode":0,"retMsg":"OK","op":"auth","connId":"cnt5leec0hvan15eukcg-2t"}')
    assert auth == AuthReply(0, "OK", "cnt5leec0hvan15eukcg-2t", None)
    assert auth.ok  # the equality above already proved it an AuthReply
    bad = decode_trade('{"retCode":10004,"retMsg":"error sign!","op":"auth","connId":"c"}')
    assert isinstance(bad, AuthReply) and not bad.ok
    again = decode_trade('{"retCode":20001,"retMsg":"Repeat auth","op":"auth","connId":"c"}')
    assert isinstance(again, AuthReply) and again.ok
    pong = decode_trade('{"retCode":0,"retMsg":"OK","op":"pong","data":["1711002002529"],"connId":"c"}')
    assert pong == Pong(server_time_ms=1711002002529, conn_id="c")
    no_req = decode_trade('{"retCode":10005,"retMsg":"Permission denied","op":"order.amend","connId":"c"}')
    assert no_req == TradeError(10005, "Permission denied", "order.amend", "c")
    assert decode_trade("not json") == TradeError(-1, "undecodable frame")
    assert isinstance(decode_trade("[1,2]"), TradeError)


# ---------------------------------------------------------------- private decoding

OPTION_PUSH: dict[str, Any] = {
    "id": "5923240c6880ab-c59f-420b-9adb-3639adc9dd90",
    "topic": "order",
    "creationTime": 1672364262474,
    "data": [
        {
            "symbol": "ETH-30DEC22-1400-C",
            "orderId": "5cf98598-39a7-459e-97bf-76ca765ee020",
            "side": "Sell",
            "orderType": "Market",
            "cancelType": "UNKNOWN",
            "price": "72.5",
            "qty": "1",
            "timeInForce": "IOC",
            "orderStatus": "Filled",
            "orderLinkId": "",
            "leavesQty": "",
            "cumExecQty": "1",
            "avgPrice": "75",
            "createdTime": "1672364262444",
            "updatedTime": "1672364262457",
            "rejectReason": "EC_NoError",
            "category": "option",
            "smpType": "None",
            "smpGroup": 0,
            "cumFeeDetail": {"MNT": "0.00242968"},
            "takeProfit": "",
            "stopLoss": "0",
            "triggerPrice": "",
            "somethingNew": {"x": 1},
        }
    ],
}


def test_order_push_decodes_to_order_views() -> None:
    views = decode_private(json.dumps(OPTION_PUSH))
    assert isinstance(views, list) and len(views) == 1
    v = views[0]
    assert v.category is Category.OPTION and v.side is Side.SELL
    assert (v.price, v.qty, v.leaves_qty, v.cum_exec_qty) == (
        Decimal("72.5"),
        Decimal(1),
        Decimal(0),
        Decimal(1),
    )
    assert v.order_status == "Filled" and v.is_terminal
    assert v.updated_time_ms == 1672364262457
    assert v.take_profit is None and v.stop_loss == Decimal(0) and v.trigger_price is None


def test_hand_decoder_agrees_with_the_pydantic_model() -> None:
    item = OrderPush.model_validate(OPTION_PUSH).data[0]
    v = order_view_from_wire(OPTION_PUSH["data"][0])
    assert (item.order_id, item.symbol, item.price, item.qty, item.order_status, item.updated_time) == (
        v.order_id,
        v.symbol,
        v.price,
        v.qty,
        v.order_status,
        v.updated_time_ms,
    )
    assert item.category is v.category and item.stop_loss == v.stop_loss and item.take_profit is v.take_profit


def test_categorised_topic_other_topics_and_unknown_categories() -> None:
    push = dict(OPTION_PUSH, topic="order.option")
    views = decode_private(json.dumps(push))
    assert isinstance(views, list) and len(views) == 1
    assert decode_private(json.dumps(dict(OPTION_PUSH, topic="execution"))) == []
    odd = {"topic": "order", "data": [dict(OPTION_PUSH["data"][0], category="spread")]}
    assert decode_private(json.dumps(odd)) == []


def test_rest_rows_take_the_category_from_the_caller() -> None:
    row = {k: v for k, v in OPTION_PUSH["data"][0].items() if k != "category"}
    with pytest.raises(DecodeError):
        order_view_from_wire(row)
    assert order_view_from_wire(row, Category.OPTION).category is Category.OPTION


@pytest.mark.parametrize(
    "patch",
    [{"price": "abc"}, {"price": "NaN"}, {"updatedTime": ""}, {"orderId": None}, {"qty": [1]}],
)
def test_bad_order_objects_raise_decode_error(patch: dict[str, object]) -> None:
    row = dict(OPTION_PUSH["data"][0], **patch)
    if patch.get("orderId", 1) is None:
        del row["orderId"]
    with pytest.raises(DecodeError):
        decode_private(json.dumps({"topic": "order", "data": [row]}))


def test_numbers_sent_as_json_numbers_stay_exact() -> None:
    row = dict(OPTION_PUSH["data"][0], price=0.1, qty=3)
    v = order_view_from_wire(row)
    assert v.price == Decimal("0.1") and v.qty == Decimal(3)


def test_private_control_replies() -> None:
    auth = decode_private('{"success":true,"ret_msg":"","op":"auth","conn_id":"cejreaspqfh3sjdnldmg-p"}')
    assert auth == PrivateControl(op="auth", success=True, conn_id="cejreaspqfh3sjdnldmg-p")
    sub = decode_private('{"success":false,"ret_msg":"bad","op":"subscribe","conn_id":"c","req_id":"s1"}')
    assert sub == PrivateControl(op="subscribe", success=False, ret_msg="bad", conn_id="c", req_id="s1")
    pong = decode_private('{"req_id":"test","op":"pong","args":["1675418560633"],"conn_id":"c"}')
    assert isinstance(pong, PrivateControl) and pong.success and pong.server_time_ms == 1675418560633
    with pytest.raises(DecodeError):
        decode_private("{oops")


# ---------------------------------------------------------------- public decoding


def test_ticker_snapshot_and_delta() -> None:
    snap = {
        "topic": "tickers.BTCUSDT",
        "type": "snapshot",
        "data": {
            "symbol": "BTCUSDT",
            "lastPrice": "65000.5",
            "markPrice": "65001.10",
            "indexPrice": "64999",
            "bid1Price": "65000",
            "ask1Price": "65001",
            "volume24h": "1",
        },
        "cs": 1,
        "ts": 1700000000000,
    }
    u = decode_ticker(json.dumps(snap))
    assert u == TickerUpdate(
        symbol="BTCUSDT",
        snapshot=True,
        ts_ms=1700000000000,
        values={
            "mark": Decimal("65001.10"),
            "last": Decimal("65000.5"),
            "index": Decimal(64999),
            "bid": Decimal(65000),
            "ask": Decimal(65001),
        },
    )
    delta = {
        "topic": "tickers.BTCUSDT",
        "type": "delta",
        "data": {"symbol": "BTCUSDT", "markPrice": "1"},
        "ts": 2,
    }
    d = decode_ticker(json.dumps(delta))
    assert d is not None and not d.snapshot and d.values == {"mark": Decimal(1)}


def test_public_control_and_other_frames() -> None:
    assert decode_ticker('{"success":true,"ret_msg":"subscribe","conn_id":"c","op":"subscribe"}') is None
    sub = decode_public('{"success":true,"ret_msg":"subscribe","conn_id":"c","req_id":"m0","op":"subscribe"}')
    assert sub == PublicControl(op="subscribe", success=True, ret_msg="subscribe", conn_id="c", req_id="m0")
    assert decode_public('{"topic":"orderbook.1.BTCUSDT","data":{}}') is None
    with pytest.raises(DecodeError):
        decode_public('{"topic":"tickers.X","data":{"markPrice":"x1"}}')
