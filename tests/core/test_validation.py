"""Unit tests for core/validation.py (every denial code, the check order) and core/numbers.py."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from sidecar.core import validation
from sidecar.core.inflight import InFlight, reread_holder
from sidecar.core.numbers import parse_positive_decimal, short_repr
from sidecar.core.orders import OrderBook
from sidecar.core.policy import Policy, SymbolRule
from sidecar.core.types import (
    AmendItem,
    AmendRequest,
    BatchMode,
    Category,
    DenialCode,
    Instrument,
    ItemVerdict,
    OrderView,
    Quote,
    ReferenceKind,
    Side,
    TradingState,
    Verdict,
)
from sidecar.core.validation import validate

D = Decimal
L, S, INV, OPT = Category.LINEAR, Category.SPOT, Category.INVERSE, Category.OPTION
NOW_NS = 50_000_000_000
MS = 1_000_000
OPTION_SYMBOL = "BTC-27DEC26-100000-C"


class FakeMarket:
    """A MarketLookup over plain dicts."""

    def __init__(
        self,
        instruments: Mapping[tuple[Category, str], Instrument],
        quotes: Mapping[tuple[Category, str], Quote],
    ) -> None:
        self.instruments = dict(instruments)
        self.quotes = dict(quotes)

    def instrument(self, category: Category, symbol: str) -> Instrument | None:
        return self.instruments.get((category, symbol))

    def quote(self, category: Category, symbol: str) -> Quote | None:
        return self.quotes.get((category, symbol))


def rule(
    cat: Category, sym: str, max_qty: str, max_notional: str, band: str, ref: str = "mark"
) -> SymbolRule:
    return SymbolRule(cat, sym, D(max_qty), D(max_notional), D(band), ReferenceKind(ref))


RULES = {
    (L, "BTCUSDT"): rule(L, "BTCUSDT", "5", "200000", "200"),
    (L, "ETHUSDT"): rule(L, "ETHUSDT", "100", "400000", "100"),
    (S, "BTCUSDT"): rule(S, "BTCUSDT", "1", "100000", "100", "last"),
    (INV, "BTCUSD"): rule(INV, "BTCUSD", "10000", "5000", "200"),
    (OPT, OPTION_SYMBOL): rule(OPT, OPTION_SYMBOL, "10", "100000", "5000"),
}


def make_policy(**kw: Any) -> Policy:
    kw.setdefault("symbols", MappingProxyType(dict(RULES)))
    return Policy(**kw)


def make_market() -> FakeMarket:
    fresh = NOW_NS - 5 * MS
    return FakeMarket(
        {
            (L, "BTCUSDT"): Instrument(
                L, "BTCUSDT", D("0.10"), D("0.001"), D("0.001"), D("100"), D("0.10"), D("1999999.80")
            ),
            (L, "ETHUSDT"): Instrument(L, "ETHUSDT", D("0.01"), D("0.01"), D("0.05"), D("3"), None, None),
            (S, "BTCUSDT"): Instrument(S, "BTCUSDT", D("0.01"), D("0.000001"), D("0.000048"), D("71")),
            (INV, "BTCUSD"): Instrument(INV, "BTCUSD", D("0.5"), D("1"), D("1"), D("100000")),
            (OPT, OPTION_SYMBOL): Instrument(OPT, OPTION_SYMBOL, D("5"), D("0.01"), D("0.01"), D("500")),
        },
        {
            (L, "BTCUSDT"): Quote(received_ns=fresh, mark=D("95000"), last=D("95010")),
            (L, "ETHUSDT"): Quote(received_ns=fresh, mark=D("3500")),
            (S, "BTCUSDT"): Quote(received_ns=fresh, last=D("95000.00"), bid=D("94999"), ask=D("95001")),
            (INV, "BTCUSD"): Quote(received_ns=fresh, mark=D("95000")),
            (OPT, OPTION_SYMBOL): Quote(received_ns=fresh, mark=D("3000")),
        },
    )


def order(
    cat: Category,
    sym: str,
    oid: str,
    link: str = "",
    *,
    side: Side | None = Side.BUY,
    price: str = "94000",
    qty: str = "1",
    cum: str = "0",
    status: str = "New",
) -> OrderView:
    return OrderView(cat, sym, oid, link, side, D(price), D(qty), D(qty) - D(cum), D(cum), status, 1)


def make_book(*views: OrderView) -> OrderBook:
    book = OrderBook()
    defaults = (
        order(L, "BTCUSDT", "b1", "lb1"),
        order(L, "BTCUSDT", "b2", "lb2", side=Side.SELL, price="96000"),
        order(L, "BTCUSDT", "b3", "lb3", qty="2", cum="0.5"),
        order(L, "BTCUSDT", "done", "ldone", status="Filled"),
        order(L, "BTCUSDT", "noside", "lnoside", side=None),
        order(L, "ETHUSDT", "e1", "le1", price="3490", qty="1"),
        order(S, "BTCUSDT", "s1", "ls1", price="94900.00", qty="0.01"),
        order(INV, "BTCUSD", "i1", "li1", price="94000", qty="100"),
        order(OPT, OPTION_SYMBOL, "o1", "lo1", price="3000", qty="1"),
    )
    for v in (*defaults, *views):
        book.apply(v)
    return book


def run(
    items: Any,
    category: Any = "linear",
    *,
    batch: bool = True,
    state: TradingState = TradingState.ACTIVE,
    policy: Policy | None = None,
    market: FakeMarket | None = None,
    book: OrderBook | None = None,
    now_ns: int = NOW_NS,
    in_flight: InFlight | None = None,
) -> Verdict:
    request = AmendRequest(
        category=category, items=tuple(items) if isinstance(items, list) else items, batch=batch
    )
    return validate(
        request,
        policy or make_policy(),
        market or make_market(),
        book or make_book(),
        now_ns,
        state,
        in_flight,
    )


def codes(v: Verdict, i: int = 0) -> list[DenialCode]:
    return [r.code for r in v.items[i].reasons]


def btc(**fields: Any) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "orderId": "b1", **fields}


# ------------------------------------------------------------------------------------------
# The happy path


def test_allowed_item_carries_parsed_values_order_and_notional() -> None:
    v = run([btc(price="95000.1", qty="0.5")])
    assert v.reasons == ()
    assert v.category is L
    iv = v.items[0]
    assert iv.allowed and iv.reasons == ()
    assert (iv.index, iv.symbol, iv.order_id, iv.order_link_id) == (0, "BTCUSDT", "b1", None)
    assert iv.item == AmendItem("BTCUSDT", "b1", None, {"price": D("95000.1"), "qty": D("0.5")})
    assert iv.order is not None and iv.order.order_id == "b1"
    assert iv.notional == D("47500.05")


def test_items_built_on_the_fast_path_equal_normally_constructed_ones() -> None:
    assert validation._IV_SETTERS is not None and validation._AI_SETTERS is not None
    iv = run([btc(price="95000", tpTriggerBy="MarkPrice")]).items[0]
    rebuilt = ItemVerdict(**{f.name: getattr(iv, f.name) for f in dataclasses.fields(ItemVerdict)})
    assert iv == rebuilt and hash(iv.reasons) == hash(rebuilt.reasons)
    assert iv.item is not None
    assert iv.item == AmendItem(**{f.name: getattr(iv.item, f.name) for f in dataclasses.fields(AmendItem)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        iv.index = 3  # type: ignore[misc]


def test_two_symbols_and_link_ids_in_one_allowed_batch() -> None:
    v = run(
        [
            btc(price="94500"),
            {"symbol": "ETHUSDT", "orderLinkId": "le1", "qty": "2"},
            {"symbol": "BTCUSDT", "orderLinkId": "lb2", "price": "95500", "category": "linear"},
        ]
    )
    assert [i.allowed for i in v.items] == [True, True, True]
    assert v.items[1].order_link_id == "le1" and v.items[1].order_id is None
    assert v.items[1].notional == D("6980.00")
    assert v.any_allowed and len(v.allowed_items) == 3


def test_null_fields_mean_not_given() -> None:
    v = run([btc(price="95000", qty=None, orderLinkId=None, takeProfit=None)])
    assert v.items[0].allowed
    assert v.items[0].item is not None and dict(v.items[0].item.values) == {"price": D("95000")}


# ------------------------------------------------------------------------------------------
# Batch level: state, category, shape, size


def test_halted_denies_every_item_at_batch_level() -> None:
    v = run([btc(price="95000"), btc(orderId="b2", price="95000")], state=TradingState.HALTED)
    assert [r.code for r in v.reasons] == [DenialCode.TRADING_HALTED]
    assert all(codes(v, i)[0] == DenialCode.TRADING_HALTED for i in range(2))
    assert not v.any_allowed


@pytest.mark.parametrize("category", ["futures", "LINEAR", 5, None, ["linear"], {"a": 1}, ""])
def test_unknown_category_is_denied(category: Any) -> None:
    v = run([btc(price="95000")], category)
    assert [r.code for r in v.reasons] == [DenialCode.CATEGORY_NOT_ALLOWED]
    assert codes(v) == [DenialCode.CATEGORY_NOT_ALLOWED]
    assert v.category is None


def test_category_without_configured_symbols_is_denied() -> None:
    policy = make_policy(symbols={(L, "BTCUSDT"): RULES[(L, "BTCUSDT")]})
    v = run([{"symbol": "BTCUSDT", "orderId": "s1", "qty": "0.01"}], "spot", policy=policy)
    assert codes(v) == [DenialCode.CATEGORY_NOT_ALLOWED]
    assert "configured: linear" in v.reasons[0].message


def test_empty_request_is_invalid() -> None:
    v = run([])
    assert [r.code for r in v.reasons] == [DenialCode.INVALID_REQUEST]
    assert v.items == ()


@pytest.mark.parametrize("items", [{"symbol": "BTCUSDT"}, "abc", None, 7])
def test_items_not_an_array_is_invalid(items: Any) -> None:
    v = run(items)
    assert [r.code for r in v.reasons] == [DenialCode.INVALID_REQUEST]
    assert v.items == ()


def test_single_amend_needs_exactly_one_item() -> None:
    v = run([btc(price="95000"), btc(orderId="b2", price="95000")], batch=False)
    assert [r.code for r in v.reasons] == [DenialCode.INVALID_REQUEST]
    assert codes(v, 0) == codes(v, 1) == [DenialCode.INVALID_REQUEST]
    assert run([btc(price="95000")], batch=False).items[0].allowed


@pytest.mark.parametrize(
    ("category", "count", "max_orders", "denied"),
    [
        ("linear", 20, 20, False),
        ("linear", 21, 20, True),
        ("spot", 10, 20, False),
        ("spot", 11, 20, True),
        ("linear", 6, 5, True),
        ("linear", 5, 5, False),
        ("nope", 21, 20, True),
    ],
)
def test_batch_size_limit(category: str, count: int, max_orders: int, denied: bool) -> None:
    items = [{"symbol": "BTCUSDT", "orderLinkId": f"x{i}", "qty": "1"} for i in range(count)]
    v = run(items, category, policy=make_policy(batch_max_orders=max_orders))
    has = any(r.code is DenialCode.BATCH_TOO_LARGE for r in v.reasons)
    assert has is denied
    if denied:
        assert all(DenialCode.BATCH_TOO_LARGE in codes(v, i) for i in range(len(v.items)))
        assert len(v.items) + v.items_omitted == count  # every item is denied, the answer is bounded
        assert all(i.item is None for i in v.items)  # nothing was parsed


def test_huge_batch_is_refused_without_parsing_and_fast() -> None:
    junk: dict[str, Any] = {"symbol": "x" * 10_000, "price": "1" * 10_000, "nested": [[{}]] * 100}
    items = [junk] * 10_000
    started = time.perf_counter()
    v = run(items)
    elapsed = time.perf_counter() - started
    assert len(v.items) == 20 and v.items_omitted == 9_980  # listed in bounded size
    assert all(codes(v, i) == [DenialCode.BATCH_TOO_LARGE] for i in (0, 19))
    assert v.items[5].symbol is None and v.items[5].item is None
    assert elapsed < 1.0


# ------------------------------------------------------------------------------------------
# Item shape and fields


@pytest.mark.parametrize("raw", [None, [], ["BTCUSDT"], "BTCUSDT", 5, 1.5, True])
def test_item_that_is_not_an_object_is_invalid(raw: Any) -> None:
    v = run([raw, btc(price="95000")], policy=make_policy(batch_mode=BatchMode.PER_ITEM))
    assert codes(v, 0) == [DenialCode.INVALID_REQUEST]
    assert v.items[0].item is None and v.items[0].symbol is None
    assert v.items[1].allowed


@pytest.mark.parametrize("symbol", [None, 5, "", ["BTCUSDT"], {"s": 1}])
def test_symbol_missing_or_not_a_string_is_invalid(symbol: Any) -> None:
    item = {"orderId": "b1", "price": "95000"}
    if symbol is not None:
        item["symbol"] = symbol
    v = run([item])
    assert DenialCode.INVALID_REQUEST in codes(v)
    assert v.items[0].item is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("tpTriggerBy", "Mark"), ("slTriggerBy", 1), ("tpslMode", "full"), ("tpslMode", ["Full"])],
)
def test_enum_value_outside_bybits_set_is_invalid(field: str, value: Any) -> None:
    v = run([btc(**{field: value})])
    assert codes(v)[0] == DenialCode.INVALID_REQUEST
    assert field in v.items[0].reasons[0].message


def test_enum_values_pass() -> None:
    v = run([btc(tpTriggerBy="MarkPrice", slTriggerBy="LastPrice", tpslMode="Partial")])
    assert v.items[0].allowed


@pytest.mark.parametrize(
    ("fields", "category"),
    [
        ({"colour": "red"}, "linear"),
        ({"side": "Buy"}, "linear"),
        ({"triggerPrice": "95000"}, "linear"),
        ({"triggerBy": "MarkPrice"}, "linear"),
        ({"orderIv": "0.5"}, "linear"),
        ({"category": "spot"}, "linear"),
        ({"category": 1}, "linear"),
    ],
)
def test_unsupported_fields_are_denied(fields: dict[str, Any], category: str) -> None:
    v = run([btc(price="95000", **fields)], category)
    assert DenialCode.FIELD_NOT_SUPPORTED in codes(v)


def test_unknown_field_message_names_it_and_stays_short() -> None:
    v = run([btc(price="95000", **{"x" * 5000: 1, "zeta": 2})])
    message = v.items[0].reasons[0].message
    assert "zeta" in message and len(message) < 600


def test_conditional_fields_allowed_in_a_single_amend_and_checked() -> None:
    ok = run([btc(triggerPrice="95500", triggerBy="MarkPrice")], batch=False)
    assert ok.items[0].allowed
    far = run([btc(triggerPrice="120000")], batch=False)
    assert codes(far) == [DenialCode.PRICE_OUT_OF_BAND]
    off = run([btc(triggerPrice="95000.05")], batch=False)
    assert codes(off) == [DenialCode.PRICE_NOT_ON_TICK]


IV_BAND_RULES = {
    **RULES,
    (OPT, OPTION_SYMBOL): dataclasses.replace(
        RULES[(OPT, OPTION_SYMBOL)], order_iv_min=D("0.05"), order_iv_max=D("3")
    ),
}


def test_order_iv_only_for_options_inside_the_configured_iv_band() -> None:
    policy = make_policy(symbols=MappingProxyType(IV_BAND_RULES))
    v = run([{"symbol": OPTION_SYMBOL, "orderId": "o1", "orderIv": "0.55"}], "option", policy=policy)
    assert v.items[0].allowed
    assert v.items[0].item is not None and v.items[0].item.values["orderIv"] == D("0.55")


@pytest.mark.parametrize("iv", ["1e30", "3.01", "0.01"])
def test_order_iv_outside_the_iv_band_is_out_of_band(iv: str) -> None:
    policy = make_policy(symbols=MappingProxyType(IV_BAND_RULES))
    v = run([{"symbol": OPTION_SYMBOL, "orderId": "o1", "orderIv": iv}], "option", policy=policy)
    assert codes(v) == [DenialCode.PRICE_OUT_OF_BAND]
    assert "IV band" in v.items[0].reasons[0].message


def test_order_iv_without_an_iv_band_is_not_supported() -> None:
    """Bybit prices an option order from orderIv and ignores price: without an IV band the price
    band cannot hold, so the sidecar refuses orderIv (fail closed), even "1e30"."""
    for iv in ("0.55", "1e30"):
        v = run([{"symbol": OPTION_SYMBOL, "orderId": "o1", "orderIv": iv}], "option")
        assert codes(v) == [DenialCode.FIELD_NOT_SUPPORTED]


def test_order_iv_notional_counts_at_least_the_reference_price() -> None:
    """The option's new price is unknown (Bybit derives it from the IV): the notional counts the
    higher of the order's price and the reference, so a cheap resting order cannot hide it."""
    rules = {
        **IV_BAND_RULES,
        (OPT, OPTION_SYMBOL): dataclasses.replace(
            IV_BAND_RULES[(OPT, OPTION_SYMBOL)], max_notional=D("5000")
        ),
    }
    cheap = make_book(order(OPT, OPTION_SYMBOL, "o2", "lo2", price="5", qty="2"))
    item = {"symbol": OPTION_SYMBOL, "orderId": "o2", "orderIv": "0.5"}
    v = run([item], "option", policy=make_policy(symbols=MappingProxyType(rules)), book=cheap)
    assert codes(v) == [DenialCode.NOTIONAL_ABOVE_CAP]  # 2 x mark 3000 = 6000 > 5000
    assert v.items[0].notional == D("6000")


@pytest.mark.parametrize("ids", [{}, {"orderId": "", "orderLinkId": ""}, {"orderId": None}])
def test_missing_order_id(ids: dict[str, Any]) -> None:
    v = run([{"symbol": "BTCUSDT", "price": "95000", **ids}])
    assert codes(v) == [DenialCode.MISSING_ORDER_ID]


@pytest.mark.parametrize(
    "ids",
    [
        {"orderId": 123},
        {"orderLinkId": "x" * 37},
        {"orderId": "y" * 65},
        {"orderId": "has space"},
        {"orderLinkId": "ünï"},
        {"orderId": "tab\there"},
        {"orderId": "ok1", "orderLinkId": 5},
    ],
)
def test_a_given_id_that_is_not_bybit_shaped_is_invalid_field(ids: dict[str, Any]) -> None:
    v = run([{"symbol": "BTCUSDT", "price": "95000", **ids}])
    assert DenialCode.INVALID_FIELD in codes(v)
    assert DenialCode.MISSING_ORDER_ID not in codes(v)


@pytest.mark.parametrize("field", ["symbol", "orderId", "orderLinkId"])
def test_a_huge_string_is_invalid_field_and_never_echoed_whole(field: str) -> None:
    item: dict[str, Any] = {"symbol": "BTCUSDT", "orderLinkId": "lb1", "price": "95000"}
    item[field] = "Z" * 1_000_000
    v = run([item])
    assert DenialCode.INVALID_FIELD in codes(v)
    iv = v.items[0]
    assert all(len(r.message) < 300 for r in iv.reasons)
    assert all(x is None or len(x) <= 64 for x in (iv.symbol, iv.order_id, iv.order_link_id))


def test_id_limits_are_inclusive() -> None:
    link = "L" * 36
    book = make_book(order(L, "BTCUSDT", "o" * 64, link))
    assert run([{"symbol": "BTCUSDT", "orderId": "o" * 64, "qty": "2"}], book=book).items[0].allowed
    assert run([{"symbol": "BTCUSDT", "orderLinkId": link, "qty": "2"}], book=book).items[0].allowed


@pytest.mark.parametrize("extra", [{}, {"price": None, "qty": None}])
def test_nothing_to_amend(extra: dict[str, Any]) -> None:
    v = run([btc(**extra)])
    assert codes(v) == [DenialCode.NOTHING_TO_AMEND]


def test_duplicates_by_id_by_link_and_by_resolved_order() -> None:
    v = run(
        [
            btc(price="95000"),
            btc(price="95100"),
            {"symbol": "BTCUSDT", "orderLinkId": "lb2", "qty": "2"},
            {"symbol": "BTCUSDT", "orderLinkId": "lb2", "qty": "2.05"},
            {"symbol": "BTCUSDT", "orderLinkId": "lb1", "qty": "2"},
        ],
        policy=make_policy(batch_mode=BatchMode.PER_ITEM),
    )
    assert codes(v, 0) == []
    assert codes(v, 1) == [DenialCode.DUPLICATE_ORDER_IN_BATCH]
    assert codes(v, 2) == []
    assert codes(v, 3) == [DenialCode.DUPLICATE_ORDER_IN_BATCH]
    # lb1 is order b1 (item 0): the same order under its other id is also ORDER_BUSY.
    assert codes(v, 4) == [DenialCode.DUPLICATE_ORDER_IN_BATCH, DenialCode.ORDER_BUSY]
    assert "item 0" in v.items[4].reasons[0].message


def test_same_id_on_another_symbol_is_not_a_duplicate() -> None:
    v = run(
        [
            {"symbol": "ETHUSDT", "orderLinkId": "x", "qty": "1"},
            {"symbol": "BTCUSDT", "orderLinkId": "x", "qty": "1"},
        ]
    )
    assert DenialCode.DUPLICATE_ORDER_IN_BATCH not in codes(v, 1)


# ------------------------------------------------------------------------------------------
# Numbers


BAD_NUMBERS = [
    True,
    False,
    None,
    "",
    " ",
    " 1",
    "1 ",
    "+1",
    "-1",
    "0",
    "0.0",
    "-0",
    0,
    -5,
    0.0,
    -0.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "1e309",
    "1e31",
    "1e-31",
    "1_000",
    "0x10",
    "١٢٣",
    "１２３",
    "1.",
    ".5",
    "1,5",
    "1.2.3",
    "1e",
    "e5",
    "12345678901234567890123456789012",
    "0." + "0" * 40 + "1",
    "1" * 65,
    [1],
    {"v": 1},
    10**40 + 1,
    10**100,
]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=[short_repr(v, 20) for v in BAD_NUMBERS])
def test_invalid_numbers_are_refused(value: Any) -> None:
    assert not isinstance(parse_positive_decimal(value), Decimal)
    if value is not None:  # null means "not given" for an item field
        v = run([btc(price=value)])
        assert DenialCode.INVALID_NUMBER in codes(v)
        assert "price" in v.items[0].reasons[0].message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("95000", D("95000")),
        ("95000.10", D("95000.10")),
        ("0.1", D("0.1")),
        (0.1, D("0.1")),
        (95000, D("95000")),
        (95000.5, D("95000.5")),
        ("9.5e4", D("9.5e4")),
        ("9.5E+4", D("95000")),
        ("1e-30", D("1e-30")),
        ("000123", D("123")),
        ("1." + "0" * 40, D("1")),
        (D("2.50"), D("2.50")),
        (10**40, D("1e40")),
        ("1" * 30, D("1" * 30)),
        (1e-5, D("0.00001")),
    ],
)
def test_valid_numbers_parse_exactly(value: Any, expected: Decimal) -> None:
    parsed = parse_positive_decimal(value)
    if expected.adjusted() > 30:
        assert not isinstance(parsed, Decimal)  # 1e40: more than 30 digits before the point
        return
    assert isinstance(parsed, Decimal)
    assert parsed == expected


def test_float_input_means_its_shortest_decimal() -> None:
    v = run([btc(price=95000.1, qty=0.1)])
    assert v.items[0].allowed
    assert v.items[0].item is not None
    assert v.items[0].item.values == {"price": D("95000.1"), "qty": D("0.1")}


def test_parse_memo_returns_the_same_answers() -> None:
    for _ in range(2):
        assert parse_positive_decimal("95000.10") == D("95000.10")
        assert parse_positive_decimal("1_0") == "contains '_' (write 1000, not 1_000)"


# ------------------------------------------------------------------------------------------
# Allowlist, instrument, reference


@pytest.mark.parametrize("symbol", ["btcusdt", "DOGEUSDT", "BTCUSDT ", "BTCUSD"])
def test_symbol_not_on_the_allowlist(symbol: str) -> None:
    v = run([{"symbol": symbol, "orderId": "b1", "price": "95000"}])
    assert codes(v) == [DenialCode.SYMBOL_NOT_ALLOWED]
    assert v.items[0].symbol == symbol


def test_missing_or_unusable_instrument() -> None:
    market = make_market()
    del market.instruments[(L, "BTCUSDT")]
    assert codes(run([btc(price="95000")], market=market)) == [DenialCode.INSTRUMENT_UNKNOWN]
    market.instruments[(L, "BTCUSDT")] = Instrument(L, "BTCUSDT", D("0"), D("0.001"), D("0.001"), D("100"))
    assert codes(run([btc(price="95000")], market=market)) == [DenialCode.INSTRUMENT_UNKNOWN]


@pytest.mark.parametrize(
    "quote",
    [
        None,
        Quote(received_ns=NOW_NS),
        Quote(received_ns=NOW_NS, mark=D("0")),
        Quote(received_ns=NOW_NS, mark=D("NaN")),
    ],
)
def test_reference_price_missing(quote: Quote | None) -> None:
    market = make_market()
    if quote is None:
        del market.quotes[(L, "BTCUSDT")]
    else:
        market.quotes[(L, "BTCUSDT")] = quote
    v = run([btc(qty="0.5")], market=market)
    assert codes(v) == [DenialCode.REFERENCE_PRICE_MISSING]


def test_mid_reference_needs_bid_and_ask() -> None:
    policy = make_policy(symbols={(S, "BTCUSDT"): rule(S, "BTCUSDT", "1", "100000", "100", "mid")})
    item = {"symbol": "BTCUSDT", "orderId": "s1", "price": "95900.00"}
    assert run([item], "spot", policy=policy).items[0].allowed  # mid 95000 ± 1 %
    market = make_market()
    market.quotes[(S, "BTCUSDT")] = Quote(received_ns=NOW_NS, last=D("95000"), bid=D("94999"))
    assert codes(run([item], "spot", policy=policy, market=market)) == [DenialCode.REFERENCE_PRICE_MISSING]


def test_reference_price_age_limit_is_inclusive() -> None:
    market = make_market()
    market.quotes[(L, "BTCUSDT")] = Quote(received_ns=NOW_NS - 2000 * MS, mark=D("95000"))
    assert run([btc(price="95000")], market=market).items[0].allowed
    v = run([btc(price="95000")], market=market, now_ns=NOW_NS + 1)
    assert codes(v) == [DenialCode.REFERENCE_PRICE_STALE]
    assert "2000 ms" in v.items[0].reasons[0].message


def test_stale_reference_skips_the_band_but_not_the_tick() -> None:
    market = make_market()
    market.quotes[(L, "BTCUSDT")] = Quote(received_ns=NOW_NS - 3000 * MS, mark=D("95000"))
    v = run([btc(price="150000.05")], market=market)
    assert codes(v) == [DenialCode.REFERENCE_PRICE_STALE, DenialCode.PRICE_NOT_ON_TICK]


def test_new_quote_object_moves_the_band() -> None:
    market = make_market()
    assert run([btc(price="96900")], market=market).items[0].allowed
    market.quotes[(L, "BTCUSDT")] = Quote(received_ns=NOW_NS, mark=D("90000"))
    assert codes(run([btc(price="96900")], market=market)) == [DenialCode.PRICE_OUT_OF_BAND]


# ------------------------------------------------------------------------------------------
# Band, tick, step, caps


@pytest.mark.parametrize(
    ("price", "allowed"),
    [("93100", True), ("93099.9", False), ("96900", True), ("96900.1", False), ("95000", True), ("1", False)],
)
def test_band_is_inclusive_and_symmetric(price: str, allowed: bool) -> None:
    # BTCUSDT: mark 95000 ± 200 bps = [93100, 96900]
    for oid in ("b1", "b2"):  # a Buy and a Sell get the same band
        v = run([btc(orderId=oid, price=price)])
        assert v.items[0].allowed is allowed, (oid, price, v.items[0].reasons)


def test_band_message_names_field_value_interval_and_reference() -> None:
    v = run([btc(takeProfit="120000")])
    reason = v.items[0].reasons[0]
    assert reason.code is DenialCode.PRICE_OUT_OF_BAND
    for part in ("takeProfit", "120000", "93100", "96900", "mark 95000", "200 bps"):
        assert part in reason.message


@pytest.mark.parametrize("field", ["price", "takeProfit", "stopLoss", "tpLimitPrice", "slLimitPrice"])
def test_every_price_field_is_banded_and_ticked(field: str) -> None:
    assert codes(run([btc(**{field: "50000"})])) == [DenialCode.PRICE_OUT_OF_BAND]
    assert codes(run([btc(**{field: "95000.01"})])) == [DenialCode.PRICE_NOT_ON_TICK]
    assert run([btc(**{field: "95000.20"})]).items[0].allowed


def test_instrument_price_limits() -> None:
    policy = make_policy(symbols={(L, "BTCUSDT"): rule(L, "BTCUSDT", "5", "1e12", "10000")})
    market = make_market()
    market.quotes[(L, "BTCUSDT")] = Quote(received_ns=NOW_NS, mark=D("1500000"))
    v = run([btc(price="2000000")], policy=policy, market=market)
    assert codes(v) == [DenialCode.PRICE_OUT_OF_BAND]
    assert "maxPrice" in v.items[0].reasons[0].message


def test_qty_step_caps_and_minimum() -> None:
    assert codes(run([btc(qty="0.0015")])) == [DenialCode.QTY_NOT_ON_STEP]
    roomy = make_policy(symbols={**RULES, (L, "BTCUSDT"): rule(L, "BTCUSDT", "5", "1e12", "200")})
    v = run([btc(qty="5.001")], policy=roomy)
    assert codes(v) == [DenialCode.QTY_ABOVE_CAP]
    assert "configured max_qty" in v.items[0].reasons[0].message
    assert run([btc(qty="5")], policy=roomy).items[0].allowed
    eth = {"symbol": "ETHUSDT", "orderId": "e1"}
    v = run([{**eth, "qty": "3.01"}])  # instrument max 3 < configured 100
    assert codes(v) == [DenialCode.QTY_ABOVE_CAP]
    assert "maxOrderQty" in v.items[0].reasons[0].message
    assert codes(run([{**eth, "qty": "0.04"}])) == [DenialCode.QTY_BELOW_MIN]


def test_new_qty_must_exceed_filled_qty() -> None:
    v = run([btc(orderId="b3", qty="0.5")])
    assert codes(v) == [DenialCode.QTY_BELOW_MIN]
    assert "filled qty 0.5" in v.items[0].reasons[0].message
    assert run([btc(orderId="b3", qty="0.501")]).items[0].allowed


def test_unknown_closed_and_mismatched_orders() -> None:
    unknown = run([btc(orderId="nope", qty="1")])
    assert codes(unknown) == [DenialCode.UNKNOWN_ORDER]
    assert unknown.items[0].order is None
    closed = run([btc(orderId="done", qty="1")])
    assert codes(closed) == [DenialCode.UNKNOWN_ORDER]
    assert "Filled" in closed.items[0].reasons[0].message
    assert closed.items[0].order is not None
    mismatch = run([btc(orderLinkId="lb2", qty="0.5")])
    assert codes(mismatch) == [DenialCode.UNKNOWN_ORDER]


def test_notional_cap_uses_current_values_for_missing_fields() -> None:
    # b1: price 94000 qty 1. Cap 200000.
    assert run([btc(qty="2")]).items[0].notional == D("188000")
    v = run([btc(qty="2.2")])  # 94000 * 2.2 = 206800
    assert codes(v) == [DenialCode.NOTIONAL_ABOVE_CAP]
    assert "206800" in v.items[0].reasons[0].message and "200000" in v.items[0].reasons[0].message


def test_notional_of_unknown_order_needs_both_fields() -> None:
    assert run([btc(orderId="nope", qty="3")]).items[0].notional is None
    v = run([btc(orderId="nope", qty="3", price="95000")])
    assert codes(v) == [DenialCode.UNKNOWN_ORDER, DenialCode.NOTIONAL_ABOVE_CAP]


def test_inverse_notional_is_the_qty() -> None:
    ok = run([{"symbol": "BTCUSD", "orderId": "i1", "qty": "5000"}], "inverse")
    assert ok.items[0].allowed and ok.items[0].notional == D("5000")
    over = run([{"symbol": "BTCUSD", "orderId": "i1", "qty": "5001"}], "inverse")
    assert codes(over) == [DenialCode.NOTIONAL_ABOVE_CAP]


def test_batch_notional_cap_is_batch_level() -> None:
    policy = make_policy(batch_max_notional=D("150000"))
    v = run([btc(price="94000.1"), btc(orderId="b2", price="96000.1")], policy=policy)  # 94000 + 96000
    assert [r.code for r in v.reasons] == [DenialCode.BATCH_NOTIONAL_ABOVE_CAP]
    assert codes(v, 0) == codes(v, 1) == [DenialCode.BATCH_NOTIONAL_ABOVE_CAP]
    assert run([btc(price="94000.1")], policy=policy).items[0].allowed


# ------------------------------------------------------------------------------------------
# Reducing


@pytest.mark.parametrize(
    ("oid", "fields", "allowed"),
    [
        ("b1", {"qty": "0.5"}, True),
        ("b1", {"qty": "1"}, True),
        ("b1", {"qty": "1.5"}, False),
        ("b1", {"price": "93900"}, True),  # Buy moves down: away from the market
        ("b1", {"price": "94100"}, False),
        ("b2", {"price": "96100"}, True),  # Sell moves up
        ("b2", {"price": "95900"}, False),
        ("b1", {"takeProfit": "95000"}, False),
        ("b1", {"tpslMode": "Full"}, False),
        ("noside", {"qty": "0.5"}, False),
        ("nope", {"qty": "0.5"}, False),
    ],
)
def test_reducing_only_lets_risk_lowering_amends_through(
    oid: str, fields: dict[str, str], allowed: bool
) -> None:
    v = run([btc(orderId=oid, **fields)], state=TradingState.REDUCING)
    assert (DenialCode.RISK_INCREASING not in codes(v)) is allowed, v.items[0].reasons


def test_reducing_allows_what_active_allows_when_it_lowers_risk() -> None:
    v = run([btc(qty="0.5", price="93900")], state=TradingState.REDUCING)
    assert v.items[0].allowed


# ------------------------------------------------------------------------------------------
# Batch mode and the check order


def test_all_or_nothing_denies_the_clean_items() -> None:
    v = run([btc(price="95000"), btc(orderId="b2", price="1")])
    assert codes(v, 0) == [DenialCode.BATCH_DENIED]
    assert codes(v, 1) == [DenialCode.PRICE_OUT_OF_BAND]
    assert "all_or_nothing" in v.items[0].reasons[0].message
    assert not v.any_allowed


def test_per_item_keeps_the_clean_items() -> None:
    v = run(
        [btc(price="95000"), btc(orderId="b2", price="1")], policy=make_policy(batch_mode=BatchMode.PER_ITEM)
    )
    assert codes(v, 0) == []
    assert codes(v, 1) == [DenialCode.PRICE_OUT_OF_BAND]
    assert [i.index for i in v.allowed_items] == [0]


def test_every_reason_of_an_item_in_the_documented_order() -> None:
    item = {
        "symbol": "BTCUSDT",
        "orderId": "nope",
        "zzz": 1,  # FIELD_NOT_SUPPORTED
        "tpTriggerBy": "x",  # INVALID_REQUEST (shape)
        "stopLoss": "abc",  # INVALID_NUMBER
        "price": "200000.05",  # band + tick + notional
        "qty": "7.0005",  # step + cap
    }
    v = run([item], state=TradingState.HALTED, policy=make_policy(batch_max_notional=D("1")))
    assert codes(v) == [
        DenialCode.TRADING_HALTED,
        DenialCode.INVALID_REQUEST,
        DenialCode.FIELD_NOT_SUPPORTED,
        DenialCode.INVALID_NUMBER,
        DenialCode.PRICE_OUT_OF_BAND,
        DenialCode.PRICE_NOT_ON_TICK,
        DenialCode.QTY_NOT_ON_STEP,
        DenialCode.QTY_ABOVE_CAP,
        DenialCode.UNKNOWN_ORDER,
        DenialCode.NOTIONAL_ABOVE_CAP,
        DenialCode.BATCH_NOTIONAL_ABOVE_CAP,
    ]
    assert [r.code for r in v.reasons] == [DenialCode.TRADING_HALTED, DenialCode.BATCH_NOTIONAL_ABOVE_CAP]


def test_order_of_early_checks() -> None:
    v = run(
        [{"symbol": "BTCUSDT", "orderLinkId": "x" * 40, "price": "-1", "foo": 1}], state=TradingState.REDUCING
    )
    assert codes(v) == [
        DenialCode.FIELD_NOT_SUPPORTED,
        DenialCode.INVALID_FIELD,
        DenialCode.INVALID_NUMBER,
        DenialCode.RISK_INCREASING,
    ]


# ------------------------------------------------------------------------------------------
# Totality


class ExplodingMarket(FakeMarket):
    def quote(self, category: Category, symbol: str) -> Quote | None:
        raise RuntimeError("market adapter bug")


def test_an_internal_failure_denies_everything() -> None:
    market = ExplodingMarket({}, {})
    v = run([btc(price="95000"), btc(orderId="b2", price="95000")], market=market)
    assert [r.code for r in v.reasons] == [DenialCode.INTERNAL_ERROR]
    assert all(codes(v, i) == [DenialCode.INTERNAL_ERROR] for i in range(2))
    assert "RuntimeError" in v.reasons[0].message


def test_same_input_same_verdict() -> None:
    items = [btc(price="95000"), btc(orderId="b2", price="1", colour="x"), "junk"]
    assert run(items) == run(items)


# ------------------------------------------------------------------------------------------
# Issue 9: one amend in flight per order, no-op amends, fail-closed notional and mid


def busy_with(*order_ids: str, holder: str = "r1-x-1") -> InFlight:
    guard = InFlight()
    assert guard.try_acquire(holder, order_ids) == ()
    return guard


@pytest.mark.parametrize("fields", [{"price": "95000"}, {"qty": "0.5"}, {"takeProfit": "96000"}])
def test_an_order_with_an_amend_in_flight_is_order_busy(fields: dict[str, str]) -> None:
    """Every path (the inline happy path included) sees the in-flight amend."""
    v = run([btc(**fields)], in_flight=busy_with("b1"))
    assert codes(v) == [DenialCode.ORDER_BUSY]
    assert "r1-x-1" in v.items[0].reasons[0].message
    # Named by its orderLinkId, it is the same order.
    v = run([{"symbol": "BTCUSDT", "orderLinkId": "lb1", **fields}], in_flight=busy_with("b1"))
    assert codes(v) == [DenialCode.ORDER_BUSY]
    assert run([btc(**fields)], in_flight=busy_with("b2")).items[0].allowed


def test_an_order_being_re_read_is_order_busy_with_a_reason_that_says_so() -> None:
    guard = InFlight()
    guard.try_acquire("r1-x-1", ["b1"])
    guard.move_to_reread("r1-x-1", "b1")
    assert guard.holder("b1") == reread_holder("b1")
    v = run([btc(price="95000")], in_flight=guard)
    assert codes(v) == [DenialCode.ORDER_BUSY]
    assert "re-reading" in v.items[0].reasons[0].message


def test_order_busy_denies_the_whole_batch_in_all_or_nothing() -> None:
    v = run([btc(price="95000"), btc(orderId="b2", price="96100")], in_flight=busy_with("b1"))
    assert codes(v, 0) == [DenialCode.ORDER_BUSY]
    assert codes(v, 1) == [DenialCode.BATCH_DENIED]


@pytest.mark.parametrize(
    "fields",
    [
        {"price": "94000"},
        {"price": "94000.000"},  # the same Decimal value
        {"qty": "1"},
        {"price": "94000", "qty": "1.0"},
    ],
)
def test_an_amend_that_changes_nothing_is_no_change(fields: dict[str, str]) -> None:
    v = run([btc(**fields)])  # b1: price 94000, qty 1
    assert codes(v) == [DenialCode.NO_CHANGE]
    assert "already holds" in v.items[0].reasons[0].message


def test_no_change_reads_enum_fields_too() -> None:
    held = dataclasses.replace(order(L, "BTCUSDT", "t1", "lt1"), tp_trigger_by="MarkPrice", tpsl_mode="Full")
    book = make_book(held)
    same = {"symbol": "BTCUSDT", "orderId": "t1", "tpTriggerBy": "MarkPrice", "tpslMode": "Full"}
    assert codes(run([same], book=book)) == [DenialCode.NO_CHANGE]
    other = {**same, "tpTriggerBy": "LastPrice"}
    assert run([other], book=book).items[0].allowed


def test_one_changed_field_is_enough() -> None:
    assert run([btc(price="94000", qty="0.5")]).items[0].allowed


def test_notional_of_an_order_without_a_price_counts_at_the_reference() -> None:
    """A view price of 0 (a market or conditional order) must not make the notional 0."""
    book = make_book(order(L, "BTCUSDT", "z1", "lz1", price="0", qty="1"))
    v = run([{"symbol": "BTCUSDT", "orderId": "z1", "qty": "2.5"}], book=book)
    assert codes(v) == [DenialCode.NOTIONAL_ABOVE_CAP]  # 2.5 x mark 95000 = 237500 > 200000
    assert v.items[0].notional == D("237500")
    ok = run([{"symbol": "BTCUSDT", "orderId": "z1", "qty": "2"}], book=book)
    assert ok.items[0].allowed and ok.items[0].notional == D("190000")


MID_POLICY = make_policy(symbols={(S, "BTCUSDT"): rule(S, "BTCUSDT", "1", "100000", "100", "mid")})
MID_ITEM = {"symbol": "BTCUSDT", "orderId": "s1", "price": "95100.00"}


@pytest.mark.parametrize(
    ("bid", "ask", "why"),
    [
        ("0", "95001", "zero bid"),
        ("94999", "0", "zero ask"),
        ("95002", "95001", "crossed book"),
        ("93000", "97000", "spread wider than the 1 % band"),
    ],
)
def test_a_mid_needs_a_sane_two_sided_book(bid: str, ask: str, why: str) -> None:
    market = make_market()
    market.quotes[(S, "BTCUSDT")] = Quote(received_ns=NOW_NS, last=D("95000"), bid=D(bid), ask=D(ask))
    v = run([MID_ITEM], "spot", policy=MID_POLICY, market=market)
    assert codes(v) == [DenialCode.REFERENCE_PRICE_MISSING], why


def test_a_mid_inside_the_band_is_usable() -> None:
    market = make_market()
    market.quotes[(S, "BTCUSDT")] = Quote(received_ns=NOW_NS, last=D("95000"), bid=D("94500"), ask=D("95500"))
    assert run([MID_ITEM], "spot", policy=MID_POLICY, market=market).items[0].allowed
