"""Differential test: the single-path validator gives exactly what the previous validator gave.

`validation_reference` is the validator as it was before issue 12 (inline fast path + detailed
path, itself checked fast-vs-detailed by this test before). Same input, same policy, same market,
same order view, same orders in flight: equal verdicts, reasons and value order.
"""

from __future__ import annotations

import re
from decimal import Decimal as D
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core.inflight import InFlight
from sidecar.core.types import AmendRequest, BatchMode, Quote, TradingState
from sidecar.core.validation import validate
from tests.core import validation_reference as reference
from tests.core.test_validation_props import (
    BOOK,
    MARKET,
    MARKS,
    NOW_NS,
    json_values,
    junk_items,
    near_valid_items,
    policy,
)


def extra(item: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    out = dict(item)
    r = draw(st.integers(0, 9))
    if r == 0:
        out["category"] = draw(st.sampled_from(["linear", "spot", None, 5]))
    if r == 1:
        out["orderLinkId"] = draw(st.sampled_from([None, "", "lb1", "le1", "x y"]))
    if r == 2:
        out["orderId"] = draw(st.sampled_from([None, "", "b1", "e1", 7]))
    if r == 3:
        out["price"] = None
    if r == 4:
        out["qty"] = None
    if r == 5 and "qty" in out and "price" in out:  # qty before price
        q = out.pop("qty")
        p = out.pop("price")
        out["qty"] = q
        out["price"] = p
    if r == 6:
        out["symbol"] = draw(st.sampled_from(["", None, "BTCUSDT", 3]))
    return out


@st.composite
def items_st(draw: st.DrawFn) -> list[object]:
    base = draw(st.lists(near_valid_items() | junk_items | json_values, max_size=22))
    return [extra(x, draw) if isinstance(x, dict) else x for x in base]


_TRAILING_ZEROS = re.compile(r"(\d+\.\d*?)0+\b")


_SUPPORTED = re.compile(r"supported: (.*)$")


def _text(message: str) -> str:
    """A message up to what changed on purpose: numbers in the one Decimal text form (the previous
    validator wrote '94000.10', the current one '94000.1'), and the list of supported fields in
    any order (it now follows the one field table, core.types.AMEND_FIELDS)."""
    message = _SUPPORTED.sub(lambda m: "supported: " + ", ".join(sorted(m.group(1).split(", "))), message)
    return _TRAILING_ZEROS.sub(lambda m: m.group(1).rstrip("."), message)


def reasons(iv: Any) -> list[tuple[Any, str]]:
    return [(r.code, _text(r.message)) for r in iv.reasons]


def same(v: Any) -> Any:
    """A verdict as comparable data: everything equal, messages up to number formatting."""
    return (
        v.category,
        [(r.code, _text(r.message)) for r in v.reasons],
        [
            (iv.index, iv.symbol, iv.order_id, iv.order_link_id, iv.item, iv.order, iv.notional, reasons(iv))
            for iv in v.items
        ],
        v.items_omitted,
    )


MARKET_STALE = type(MARKET)({s: Quote(received_ns=NOW_NS - 3_000_000_000, mark=m) for s, m in MARKS.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    items=items_st(),
    state=st.sampled_from(list(TradingState)),
    mode=st.sampled_from(list(BatchMode)),
    cat=st.sampled_from(["linear", "linear", "inverse", "spot", None]),
    batch=st.booleans(),
    stale=st.integers(0, 5),
    scale=st.sampled_from(["1", "0.5", "2"]),
)
def test_same(
    items: list[object],
    state: TradingState,
    mode: BatchMode,
    cat: str | None,
    batch: bool,
    stale: int,
    scale: str,
) -> None:
    pol = policy(mode=mode, band_scale=D(scale), notional_scale=D(scale))
    market = MARKET_STALE if stale == 0 else MARKET
    fast = validate(AmendRequest(cat, tuple(items), batch), pol, market, BOOK, NOW_NS, state)
    slow = reference.validate(AmendRequest(cat, tuple(items), batch), pol, market, BOOK, NOW_NS, state)
    assert same(fast) == same(slow)
    for a, b in zip(fast.items, slow.items, strict=True):
        if a.item is not None:
            assert b.item is not None
            assert list(a.item.values) == list(b.item.values)
            assert type(a.item).__name__ == "AmendItem"
    assert all(r.code.value != "INTERNAL_ERROR" for r in fast.reasons)


IDS = {
    "BTCUSDT": [
        ("orderId", "b1"),
        ("orderId", "b2"),
        ("orderLinkId", "lb1"),
        ("orderLinkId", "lb2"),
        ("orderId", "b3"),
        ("orderId", "e1"),
    ],
    "ETHUSDT": [
        ("orderId", "e1"),
        ("orderId", "e2"),
        ("orderLinkId", "le1"),
        ("orderLinkId", "le2"),
        ("orderId", "b1"),
    ],
}


@st.composite
def good_item(draw: st.DrawFn) -> dict[str, Any]:
    sym = draw(st.sampled_from(["BTCUSDT", "ETHUSDT", "ETHUSDT", "DOGEUSDT"]))
    base = "ETHUSDT" if sym != "BTCUSDT" else "BTCUSDT"
    k, v = draw(st.sampled_from(IDS[base]))
    item: dict[str, Any] = {}
    order = draw(st.permutations(["symbol", "id", "price", "qty"]))
    tick = D("0.10") if base == "BTCUSDT" else D("0.01")
    step = D("0.001") if base == "BTCUSDT" else D("0.01")
    for f in order:
        if f == "symbol":
            item["symbol"] = sym
        elif f == "id":
            item[k] = v
        elif f == "price" and draw(st.integers(0, 3)):
            n = draw(st.integers(-300, 300))
            off = draw(st.sampled_from([D(0)] * 8 + [tick / 2]))
            item["price"] = (
                format(MARKS[base] + n * tick * 5 + off, "f")
                if draw(st.integers(0, 5))
                else float(MARKS[base] + n * tick * 5)
            )
        elif f == "qty" and draw(st.integers(0, 3)):
            q = draw(st.integers(1, 4000)) * step + draw(st.sampled_from([D(0)] * 8 + [step / 2]))
            item["qty"] = format(q, "f") if draw(st.integers(0, 9)) else str(q) + "00"
    if draw(st.integers(0, 12)) == 0:
        item["category"] = draw(st.sampled_from(["linear", None, "spot"]))
    return item


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    items=st.lists(good_item(), min_size=1, max_size=20),
    state=st.sampled_from(list(TradingState)),
    mode=st.sampled_from(list(BatchMode)),
    stale=st.integers(0, 9),
    scale=st.sampled_from(["1", "0.5", "3"]),
    busy=st.sets(st.sampled_from(["b1", "b2", "b3", "e1", "e2"]), max_size=2),
)
def test_good_same(
    items: list[dict[str, Any]],
    state: TradingState,
    mode: BatchMode,
    stale: int,
    scale: str,
    busy: set[str],
) -> None:
    pol = policy(mode=mode, band_scale=D(scale), notional_scale=D(scale), qty_scale=D(scale))
    market = MARKET_STALE if stale == 0 else MARKET
    guard = InFlight()
    guard.try_acquire("r-other", busy)
    fast = validate(AmendRequest("linear", tuple(items), True), pol, market, BOOK, NOW_NS, state, guard)
    slow = reference.validate(
        AmendRequest("linear", tuple(items), True), pol, market, BOOK, NOW_NS, state, guard
    )
    assert same(fast) == same(slow)
    for a, b in zip(fast.items, slow.items, strict=True):
        if a.item is not None:
            assert b.item is not None
            assert list(a.item.values) == list(b.item.values)
