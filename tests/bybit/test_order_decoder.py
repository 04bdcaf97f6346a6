"""`OrderDecoder` (issue 12's stream work) against the decoder it replaced, and its own invariants.

The oracle is the decoder before issue 12, kept verbatim in `order_decoder_reference.py`. Every frame
and every order object must decode to the same views (compared by `repr`, so a Decimal's exponent
counts: "0.000" is not "0") or fail with the same DecodeError message, whichever route the frame
takes (msgspec's typed read, orjson, or the stdlib parser), and whatever the decoder's memos hold.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.bybit.codec import OrderDecoder, PrivateControl, decode_private, order_view_from_wire
from sidecar.core.orders import ApplyResult, OrderBook
from sidecar.core.types import AMEND_FIELDS, Category, OrderView, Side
from sidecar.errors import DecodeError
from tests.bybit import order_decoder_reference as ref

_REQUIRED = ("symbol", "orderId", "orderStatus", "updatedTime")
_NUMBERS = (
    "price",
    "qty",
    "leavesQty",
    "cumExecQty",
    "takeProfit",
    "stopLoss",
    "tpLimitPrice",
    "slLimitPrice",
    "triggerPrice",
    "orderIv",
)
_TEXTS = ("orderLinkId", "side", "tpTriggerBy", "slTriggerBy", "triggerBy", "tpslMode", "rejectReason")

# JSON values of every kind, weighted towards what Bybit sends (number text, "", labels).
_number_text = st.one_of(
    st.sampled_from(
        ["", "0", "0.000", "-0", "94000.10", "94000.1", "1e5", "1E-3", "NaN", "Infinity", "abc", " 1", "1_0"]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
)
_odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.text(max_size=4),
)
_label = st.sampled_from(["Buy", "Sell", "New", "MarkPrice", "EC_NoError"])
_value = st.one_of(_number_text, _number_text, _label, _odd)


_good_number = st.one_of(
    st.sampled_from(["", "", "0", "0.000", "-0", "94000.10", "94000.1", "1e5"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.none(),
)


@st.composite
def _order(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return draw(_bybit_order())
    o: dict[str, Any] = {}
    if draw(st.integers(0, 9)):  # category present 90% of the time
        o["category"] = draw(st.sampled_from(["linear", "inverse", "spot", "option", "future", None, 5]))
    for k in _REQUIRED:
        if draw(st.integers(0, 19)):
            o[k] = draw(
                st.one_of(st.sampled_from(["BTCUSDT", "New", "Filled", "1795460000000", "x1"]), _value)
                if k != "updatedTime"
                else st.one_of(st.integers(0, 2**63).map(str), _value)
            )
    for k in (*_NUMBERS, *_TEXTS):
        if draw(st.booleans()):
            o[k] = draw(_value)
    if draw(st.booleans()):
        o["positionIdx"] = draw(_odd)  # a field the sidecar does not read
    return o


@st.composite
def _bybit_order(draw: st.DrawFn) -> dict[str, Any]:
    """Bybit's shape (every field text, "" or null; an unread field of another type): the msgspec
    route. Sometimes a field is left out."""
    o: dict[str, Any] = {"category": draw(st.sampled_from(["linear", "spot", "option", "future", None]))}
    o["symbol"] = draw(st.sampled_from(["BTCUSDT", "ETHUSDT", ""]))
    o["orderId"] = draw(st.sampled_from(["o1", "o2", ""]))
    o["orderStatus"] = draw(st.sampled_from(["New", "Filled", "PartiallyFilled"]))
    o["updatedTime"] = draw(st.one_of(st.integers(0, 2**63).map(str), st.sampled_from(["", "x", "1.5"])))
    for k in _NUMBERS:
        o[k] = draw(_good_number)
    for k in _TEXTS:
        o[k] = draw(st.one_of(_label, st.just(""), st.none()))
    if draw(st.integers(0, 3)) == 0:  # now and then one field is garbled
        o[draw(st.sampled_from(sorted(o)))] = draw(_value)
    o["positionIdx"] = 0
    o["reduceOnly"] = False
    for k in draw(st.lists(st.sampled_from(sorted(o)), max_size=2)):
        o.pop(k, None)
    return o


@st.composite
def _frame(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.integers(0, 9))
    msg: object
    if kind <= 6:
        msg = {
            "id": "1",
            "topic": draw(st.sampled_from(["order", "order", "order.linear", "execution", 5, None])),
            "creationTime": 1,
            "data": draw(st.lists(_order(), max_size=3)) if kind <= 5 else draw(_odd),
        }
    elif kind == 7:
        msg = {"op": draw(st.sampled_from(["pong", "auth", "subscribe", 5])), "args": ["1675418560633"]}
    elif kind == 8:
        msg = draw(st.one_of(_odd, st.lists(_order(), max_size=1)))
    else:
        return draw(st.sampled_from(["{oops", "", "[", '{"topic":"order","data":[{"a":"\\ud800"}]}']))
    text = json.dumps(msg)  # NaN/Infinity floats become the stdlib's non-standard literals
    encoding = draw(st.sampled_from(["str", "str", "utf-8", "utf-16"]))
    return text if encoding == "str" else text.encode(encoding)


def _outcome(fn: Callable[..., object], *args: object) -> tuple[str, str]:
    try:
        return "ok", repr(fn(*args))
    except Exception as e:  # any error must be the same error (a TypeError escapes for a list category)
        return type(e).__name__, str(e)


@settings(max_examples=600, deadline=None)
@given(st.lists(_frame(), min_size=1, max_size=4))
def test_frames_decode_as_before(frames: list[str | bytes]) -> None:
    shared = OrderDecoder(bound=3)  # a tiny memo: hits, misses and clears all happen
    for text in frames:
        want = _outcome(ref.decode_private, text)
        assert _outcome(OrderDecoder().frame, text) == want
        assert _outcome(shared.frame, text) == want
        assert _outcome(shared.frame, text) == want  # again, from a warm memo
        assert _outcome(decode_private, text) == want


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(_order(), _odd),
    st.sampled_from([None, Category.LINEAR, Category.OPTION]),
)
def test_order_objects_decode_as_before(row: Any, category: Category | None) -> None:
    """The REST route (an already parsed row, `category` passed in when the row has none)."""
    want = _outcome(ref.order_view_from_wire, row, category)
    decoder = OrderDecoder(bound=2)
    assert _outcome(decoder.view, row, category) == want
    assert _outcome(decoder.view, row, category) == want
    assert _outcome(order_view_from_wire, row, category) == want


def _push(**fields: object) -> str:
    order = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderId": "o1",
        "orderLinkId": "l1",
        "side": "Buy",
        "price": "94000.10",
        "qty": "0.010",
        "leavesQty": "0.010",
        "cumExecQty": "0",
        "orderStatus": "New",
        "updatedTime": "1795460000000",
        "takeProfit": "",
        "rejectReason": "EC_NoError",
        **fields,
    }
    return json.dumps({"topic": "order", "data": [order]})


def test_equal_texts_share_one_object_and_keep_their_exponent() -> None:
    decoder = OrderDecoder()
    [a] = decoder.frame(_push(orderId="a"))  # type: ignore[misc]
    [b] = decoder.frame(_push(orderId="b"))  # type: ignore[misc]
    assert a.price is b.price and a.qty is b.qty and a.symbol is b.symbol and a.order_status is b.order_status
    [c] = decoder.frame(_push(orderId="c", qty="0.01"))  # type: ignore[misc]
    assert c.qty == a.qty and repr(c.qty) == "Decimal('0.01')" and repr(a.qty) == "Decimal('0.010')"
    assert a.cum_exec_qty == 0 and a.take_profit is None and a.side is Side.BUY


def test_memos_are_bounded() -> None:
    decoder = OrderDecoder(bound=16)
    for i in range(1000):
        [view] = decoder.frame(_push(price=f"{i}.5", symbol=f"S{i}USDT"))  # type: ignore[misc]
        assert view.price == Decimal(f"{i}.5") and view.symbol == f"S{i}USDT"
        numbers, labels = decoder.memo_sizes()
        assert numbers <= 16 and labels <= 16
    with pytest.raises(ValueError, match="at least one entry"):
        OrderDecoder(bound=0)


def test_errors_keep_their_messages() -> None:
    decoder = OrderDecoder()
    cases = {
        _push(price="abc"): "bad order object: InvalidOperation",
        _push(price="NaN"): "not a finite number: 'NaN'",
        _push(qty=[1]): "not a number: [1]",
        json.dumps(
            {"topic": "order", "data": [{"category": "linear"}]}
        ): "bad order object: KeyError: 'symbol'",
        json.dumps({"topic": "order", "data": {}}): "order push without a data list",
        "[1]": "frame is not a JSON object",
        "{oops": "undecodable frame",
    }
    for text, message in cases.items():
        with pytest.raises(DecodeError) as e:
            decoder.frame(text)
        assert str(e.value).startswith(message)
        assert str(e.value) == _outcome(ref.decode_private, text)[1]


def test_frames_outside_the_push_shape_take_the_general_route() -> None:
    decoder = OrderDecoder()
    # A number where Bybit sends text, NaN elsewhere in the push, a control reply: all as before.
    [v] = decoder.frame(_push(price=94000.1))  # type: ignore[misc]
    assert v.price == Decimal("94000.1")
    nan_elsewhere = _push(positionIdx=float("nan"))  # the stdlib's NaN literal: orjson refuses it
    assert "NaN" in nan_elsewhere
    assert repr(decoder.frame(nan_elsewhere)) == repr(ref.decode_private(nan_elsewhere)) != "[]"
    pong = decoder.frame('{"req_id":"t","op":"pong","args":["1675418560633"],"conn_id":"c"}')
    assert isinstance(pong, PrivateControl) and pong.is_pong and pong.server_time_ms == 1675418560633


_FULL = OrderView(
    category=Category.OPTION,
    symbol="BTC-26DEC25-100000-C",
    order_id="o1",
    order_link_id="l1",
    side=Side.SELL,
    price=Decimal("5"),
    qty=Decimal("0.1"),
    leaves_qty=Decimal("0.1"),
    cum_exec_qty=Decimal("0"),
    order_status="New",
    updated_time_ms=7,
    take_profit=Decimal("1"),
    stop_loss=Decimal("2"),
    tp_limit_price=Decimal("3"),
    sl_limit_price=Decimal("4"),
    trigger_price=Decimal("6"),
    order_iv=Decimal("0.5"),
    tp_trigger_by="MarkPrice",
    sl_trigger_by="LastPrice",
    trigger_by="IndexPrice",
    tpsl_mode="Full",
    reject_reason="EC_NoError",
)


def test_order_view_of_is_an_ordinary_frozen_view() -> None:
    values = [getattr(_FULL, f.name) for f in dataclasses.fields(OrderView)]
    view = OrderView.of(*values)
    assert type(view) is OrderView
    assert view == _FULL and hash(view) == hash(_FULL) and repr(view) == repr(_FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.price = Decimal(1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del view.price
    assert dataclasses.replace(view, price=Decimal(9)).price == Decimal(9)
    assert not hasattr(view, "__dict__")


def test_book_link_index_follows_forgotten_orders() -> None:
    book = OrderBook()
    done = dataclasses.replace(_FULL, order_status="Filled")
    assert book.apply(done) is ApplyResult.APPLIED
    assert book.find(Category.OPTION, _FULL.symbol, None, "l1") is done
    assert book.forget_terminal(keep_last=0) == 1
    assert book.find(Category.OPTION, _FULL.symbol, None, "l1") is None
    fresh = dataclasses.replace(_FULL, order_id="o2", updated_time_ms=9)
    book.apply(fresh)
    assert book.find(Category.OPTION, _FULL.symbol, None, "l1") is fresh
    assert book.find(Category.LINEAR, _FULL.symbol, None, "l1") is None
    # A newer updatedTime is applied even when nothing else moved; a tie with equal state is a duplicate.
    assert book.apply(dataclasses.replace(fresh, updated_time_ms=10)) is ApplyResult.APPLIED
    assert book.apply(dataclasses.replace(fresh, updated_time_ms=10)) is ApplyResult.DUPLICATE


@pytest.mark.parametrize("category", [[], {}, ["linear"], 1.5])
def test_a_non_text_category_is_a_decode_error_never_a_crash_of_the_reader(category: Any) -> None:
    # ws_private catches DecodeError (a gap: it re-reads open orders by REST); anything else would
    # end its reader task and drop the connection. An order item whose category is not text is
    # malformed, not "a category we do not model" (those are skipped).
    text = json.dumps({"topic": "order", "data": [{"category": category, "symbol": "BTCUSDT"}]})
    with pytest.raises(DecodeError, match=r"category|bad order object"):
        OrderDecoder().frame(text)
    assert _outcome(OrderDecoder().frame, text) == _outcome(ref.decode_private, text)


@pytest.mark.parametrize("name", list(AMEND_FIELDS))
def test_every_amendable_field_is_read_back_from_a_push_and_a_rest_row(name: str) -> None:
    # The push decoder lists its fields by hand (msgspec needs them): a field added to the one
    # amend-field table and not decoded would be validated and sent, then never verified.
    field = AMEND_FIELDS[name]
    sent = sorted(field.enum)[0] if field.enum is not None else "12.5"
    want: object = sent if field.enum is not None else Decimal(sent)
    [pushed] = OrderDecoder().frame(_push(**{name: sent}))  # type: ignore[misc]
    assert pushed.value_of(name) == want
    row = json.loads(_push(**{name: sent}))["data"][0]
    assert OrderDecoder().view(row).value_of(name) == want
