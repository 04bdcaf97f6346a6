"""Property tests for core/validation.py: total, exact against an independent oracle, monotone.

The oracle below is written from the rules in docs/configuration.md, not from the validator's code.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sidecar.core.orders import OrderBook
from sidecar.core.policy import Policy, SymbolRule
from sidecar.core.types import (
    AMEND_PRICE_FIELDS,
    AmendRequest,
    BatchMode,
    Category,
    DenialCode,
    Instrument,
    OrderView,
    Quote,
    ReferenceKind,
    Side,
    TradingState,
    Verdict,
)
from sidecar.core.validation import validate

D = Decimal
ONE = D(1)
L = Category.LINEAR
NOW_NS = 100_000_000_000
FRESH_NS = NOW_NS - 1_000_000

INSTRUMENTS = {
    "BTCUSDT": Instrument(L, "BTCUSDT", D("0.10"), D("0.001"), D("0.001"), D("100")),
    "ETHUSDT": Instrument(L, "ETHUSDT", D("0.01"), D("0.01"), D("0.05"), D("3")),
}
MARKS = {"BTCUSDT": D("95000"), "ETHUSDT": D("3500")}
RULES = {
    "BTCUSDT": SymbolRule(L, "BTCUSDT", D("5"), D("200000"), D("200"), ReferenceKind.MARK),
    "ETHUSDT": SymbolRule(L, "ETHUSDT", D("100"), D("5000"), D("100"), ReferenceKind.MARK),
}
ORDERS = (
    OrderView(L, "BTCUSDT", "b1", "lb1", Side.BUY, D("94000"), D("1"), D("1"), D("0"), "New", 1),
    OrderView(
        L, "BTCUSDT", "b2", "lb2", Side.SELL, D("96000"), D("2"), D("1.5"), D("0.5"), "PartiallyFilled", 1
    ),
    OrderView(L, "BTCUSDT", "b3", "lb3", Side.BUY, D("93000"), D("1"), D("0"), D("1"), "Filled", 1),
    OrderView(L, "ETHUSDT", "e1", "le1", Side.BUY, D("3490"), D("1"), D("1"), D("0"), "New", 1),
    OrderView(L, "ETHUSDT", "e2", "le2", None, D("3510"), D("0.5"), D("0.5"), D("0"), "New", 1),
)
OPEN = {"New", "PartiallyFilled", "Untriggered"}


class Market:
    def __init__(self, quotes: dict[str, Quote]) -> None:
        self.quotes = quotes

    def instrument(self, category: Category, symbol: str) -> Instrument | None:
        return INSTRUMENTS.get(symbol) if category is L else None

    def quote(self, category: Category, symbol: str) -> Quote | None:
        return self.quotes.get(symbol) if category is L else None


MARKET = Market({s: Quote(received_ns=FRESH_NS, mark=m) for s, m in MARKS.items()})


def book() -> OrderBook:
    b = OrderBook()
    for v in ORDERS:
        b.apply(v)
    return b


BOOK = book()


def policy(
    mode: BatchMode = BatchMode.PER_ITEM,
    band_scale: Decimal = ONE,
    qty_scale: Decimal = ONE,
    notional_scale: Decimal = ONE,
    max_orders: int = 20,
    max_age_ms: int = 2000,
) -> Policy:
    rules = {
        (L, s): SymbolRule(
            L,
            s,
            r.max_qty * qty_scale,
            r.max_notional * notional_scale,
            r.price_band_bps * band_scale,
            r.reference,
        )
        for s, r in RULES.items()
    }
    return Policy(
        symbols=MappingProxyType(rules),
        batch_max_orders=max_orders,
        batch_mode=mode,
        reference_max_age_ms=max_age_ms,
    )


def run(
    items: Any, pol: Policy, *, category: Any = "linear", batch: bool = True, state: Any = None
) -> Verdict:
    request = AmendRequest(
        category=category, items=tuple(items) if isinstance(items, list) else items, batch=batch
    )
    return validate(request, pol, MARKET, BOOK, NOW_NS, state or TradingState.ACTIVE)


# ------------------------------------------------------------------------------------------
# Strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        ["NaN", "Infinity", "-inf", "1e309", "١٢٣", "１２３", "1_000", " 1", "+1", "0x1A", "", "0", "-0"]
    )
    | st.decimals(allow_nan=True, allow_infinity=True, places=None)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = [
    "symbol",
    "orderId",
    "orderLinkId",
    "category",
    "qty",
    "price",
    "takeProfit",
    "stopLoss",
    "tpLimitPrice",
    "slLimitPrice",
    "triggerPrice",
    "orderIv",
    "tpTriggerBy",
    "slTriggerBy",
    "triggerBy",
    "tpslMode",
    "side",
    "",
]
junk_items = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), json_values, max_size=8)

SYMBOLS = st.sampled_from(["BTCUSDT", "BTCUSDT", "ETHUSDT", "ETHUSDT", "DOGEUSDT", "btcusdt"])
ALL_KEYS = [("orderId", o.order_id) for o in ORDERS] + [("orderLinkId", o.order_link_id) for o in ORDERS]
ALL_KEYS += [("orderId", "nope"), ("orderLinkId", "nope")]


def order_keys(symbol: str) -> st.SearchStrategy[tuple[str, str]]:
    own = [
        (k, v)
        for k, v in ALL_KEYS
        if any(o.symbol == symbol and v in (o.order_id, o.order_link_id) for o in ORDERS)
    ]
    return st.sampled_from(own) | st.sampled_from(ALL_KEYS) if own else st.sampled_from(ALL_KEYS)


# Price steps per symbol: half a tick (on and off the tick), and coarser ones that leave the band.
PRICE_STEPS = {"BTCUSDT": [D("0.05"), D("1"), D("5")], "ETHUSDT": [D("0.005"), D("0.05"), D("0.5")]}


@st.composite
def prices(draw: st.DrawFn, symbol: str) -> Decimal:
    base = symbol if symbol in MARKS else "BTCUSDT"
    k = draw(st.integers(min_value=-2_000, max_value=2_000))
    return MARKS[base] + k * draw(st.sampled_from(PRICE_STEPS[base]))


@st.composite
def near_valid_items(draw: st.DrawFn) -> dict[str, Any]:
    symbol = draw(SYMBOLS)
    key, value = draw(order_keys(symbol))
    item: dict[str, Any] = {"symbol": symbol, key: value}
    if draw(st.booleans()):
        price = draw(prices(symbol))
        item["price"] = format(price, "f") if draw(st.booleans()) else _as_number(price)
    if draw(st.booleans()):
        half_step = D("0.005") if symbol == "ETHUSDT" else D("0.0005")  # half a qty step: on and off
        qty = draw(st.integers(min_value=0, max_value=600 if symbol == "ETHUSDT" else 6_000)) * half_step
        item["qty"] = format(qty, "f")
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        item["takeProfit"] = format(draw(prices(symbol)), "f")
    return item


def _as_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


# ------------------------------------------------------------------------------------------
# The oracle


def to_decimal(value: Any) -> Decimal | None:
    """Only the shapes near_valid_items produces."""
    if value is None:
        return None
    if isinstance(value, float):
        return D(repr(value))
    return D(value) if isinstance(value, (int, str)) else None


def oracle(items: list[dict[str, Any]], pol: Policy) -> list[bool]:
    """Which items of a per_item batch must be allowed (state active, no batch notional cap)."""
    if not items or len(items) > min(pol.batch_max_orders, 20):
        return [False] * len(items)
    seen_keys: set[tuple[str, str, str]] = set()
    seen_orders: set[str] = set()
    out = []
    for item in items:
        ok = True
        symbol = item["symbol"]
        price, qty, tp = (to_decimal(item.get(k)) for k in ("price", "qty", "takeProfit"))
        if price is None and qty is None and tp is None:
            ok = False
        if (qty is not None and qty <= 0) or (price is not None and price <= 0):
            ok = False
        ids = [(k, item[k]) for k in ("orderId", "orderLinkId") if k in item]
        duplicate = False
        for k, v in ids:
            if (symbol, k, v) in seen_keys:
                duplicate = True
            seen_keys.add((symbol, k, v))
        rule = pol.symbols.get((L, symbol))
        if rule is None:
            out.append(False)
            continue
        inst = INSTRUMENTS[symbol]
        mark = MARKS[symbol]
        with localcontext() as ctx:
            ctx.prec = 100
            low = mark * (1 - rule.price_band_bps / 10000)
            high = mark * (1 + rule.price_band_bps / 10000)
            for p in (price, tp):
                if p is not None and (not low <= p <= high or p % inst.tick_size != 0):
                    ok = False
            if qty is not None and (
                qty % inst.qty_step != 0 or qty > min(rule.max_qty, inst.max_qty) or qty < inst.min_qty
            ):
                ok = False
            view = None
            for o in ORDERS:
                key, value = ids[0]
                if o.symbol == symbol and (o.order_id if key == "orderId" else o.order_link_id) == value:
                    view = o
            if view is None or view.order_status not in OPEN:
                ok = False
            if view is not None and not duplicate:
                if view.order_id in seen_orders:
                    duplicate = True
                seen_orders.add(view.order_id)
            if view is not None and qty is not None and qty <= view.cum_exec_qty:
                ok = False
            if view is not None and all(  # NO_CHANGE: every requested value is already the order's
                given is None or given == held
                for given, held in ((price, view.price), (qty, view.qty), (tp, view.take_profit))
            ):
                ok = False
            eff_price = price if price is not None else (view.price if view else None)
            eff_qty = qty if qty is not None else (view.qty if view else None)
            if eff_price is not None and eff_qty is not None and eff_price * eff_qty > rule.max_notional:
                ok = False
        out.append(ok and not duplicate)
    return out


def assert_allowed_items_within_limits(verdict: Verdict, pol: Policy, state: TradingState) -> None:
    """Whatever the input: an allowed item is inside every limit."""
    if verdict.any_allowed:
        assert verdict.category is L
        assert state is not TradingState.HALTED
        assert len(verdict.items) <= pol.batch_max_orders
    for iv in verdict.items:
        if not iv.allowed:
            continue
        item = iv.item
        assert item is not None
        rule = pol.symbols[(L, item.symbol)]
        inst = INSTRUMENTS[item.symbol]
        mark = MARKS[item.symbol]
        assert item.order_id or item.order_link_id
        assert any(k not in ("symbol",) for k in item.values)
        for name in (*AMEND_PRICE_FIELDS, "triggerPrice"):
            p = item.values.get(name)
            if p is None:
                continue
            assert isinstance(p, Decimal) and p.is_finite() and p > 0
            with localcontext() as ctx:
                ctx.prec = 100
                assert (
                    mark * (1 - rule.price_band_bps / 10000) <= p <= mark * (1 + rule.price_band_bps / 10000)
                )
                assert p % inst.tick_size == 0
        qty = item.qty
        if qty is not None:
            with localcontext() as ctx:
                ctx.prec = 100
                assert qty % inst.qty_step == 0
            assert inst.min_qty <= qty <= min(rule.max_qty, inst.max_qty)
        assert iv.order is not None and iv.order.order_status in OPEN
        assert iv.notional is not None and iv.notional <= rule.max_notional


# ------------------------------------------------------------------------------------------
# Properties

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(
    items=st.lists(junk_items | near_valid_items() | json_values, max_size=25),
    category=st.sampled_from(["linear", "spot", "LINEAR", None, 3, ["linear"]]) | json_values,
    batch=st.booleans(),
    state=st.sampled_from(list(TradingState)),
    mode=st.sampled_from(list(BatchMode)),
)
def test_total_deterministic_and_never_passes_anything_outside_the_limits(
    items: list[Any], category: Any, batch: bool, state: TradingState, mode: BatchMode
) -> None:
    pol = policy(mode=mode)
    first = run(items, pol, category=category, batch=batch, state=state)
    assert isinstance(first, Verdict)
    assert len(first.items) + first.items_omitted == len(items)  # every item, listed or counted
    assert len(first.items) <= 20
    assert all(r.code is not DenialCode.INTERNAL_ERROR for r in first.reasons)
    assert all(r.code is not DenialCode.INTERNAL_ERROR for iv in first.items for r in iv.reasons)
    assert [iv.index for iv in first.items] == list(range(len(first.items)))
    for r in first.reasons:  # batch-level reasons are repeated on every item
        assert all(r in iv.reasons for iv in first.items)
    assert_allowed_items_within_limits(first, pol, state)
    assert run(items, pol, category=category, batch=batch, state=state) == first


@PROPS
@given(items=st.lists(near_valid_items(), min_size=1, max_size=20))
def test_matches_the_oracle_exactly(items: list[dict[str, Any]]) -> None:
    pol = policy()
    verdict = run(items, pol)
    expected = oracle(items, pol)
    got = [iv.allowed for iv in verdict.items]
    event(f"allowed items: {'some' if any(got) else 'none'}")
    event(f"denied items: {'some' if not all(got) else 'none'}")
    assert got == expected, [
        (i, item, verdict.items[i].reasons) for i, item in enumerate(items) if got[i] != expected[i]
    ]


@PROPS
@given(
    items=st.lists(near_valid_items(), min_size=1, max_size=20),
    mode=st.sampled_from(list(BatchMode)),
    band=st.sampled_from([D("1"), D("0.5"), D("0.1")]),
    qty=st.sampled_from([D("1"), D("0.5"), D("0.2")]),
    notional=st.sampled_from([D("1"), D("0.5"), D("0.1")]),
    max_orders=st.integers(min_value=1, max_value=20),
    max_age_ms=st.sampled_from([2000, 1, 0]),
)
def test_tightening_a_limit_never_turns_a_denial_into_a_pass(
    items: list[dict[str, Any]],
    mode: BatchMode,
    band: Decimal,
    qty: Decimal,
    notional: Decimal,
    max_orders: int,
    max_age_ms: int,
) -> None:
    loose = run(items, policy(mode=mode))
    tight = run(
        items,
        policy(
            mode=mode,
            band_scale=band,
            qty_scale=qty,
            notional_scale=notional,
            max_orders=max_orders,
            max_age_ms=max_age_ms,
        ),
    )
    for before, after in zip(loose.items, tight.items, strict=True):
        if not before.allowed:
            assert not after.allowed


@settings(max_examples=5, deadline=None)
@given(item=junk_items | near_valid_items() | json_values)
def test_ten_thousand_items_are_refused_as_a_batch(item: Any) -> None:
    verdict = run([item] * 10_000, policy())
    assert [r.code for r in verdict.reasons] == [DenialCode.BATCH_TOO_LARGE]
    assert len(verdict.items) + verdict.items_omitted == 10_000 and not verdict.any_allowed
