"""Property: whatever an agent sends through `wsBatchAmendOrders`, no out-of-policy item ever
reaches the exchange, and every `verified` item really is at its target on the exchange.

Random batches (valid and invalid: symbols in and out of the allowlist, prices inside and outside
the band, on and off the tick, quantities on and off the step and above the caps, unknown orders,
junk values) go through the real MCP server against ONE real emulator + service per test. The
policy is recomputed here, independently of `sidecar/core`, from this file's own limits and the
emulator's instrument rules, and checked against what the emulator captured (`frames()`) and the
state it holds (`orders()`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp import Client

from sidecar.mcp_server import build_server
from tests.e2e.e2e_kit import PRICES, Stack, start_stack, stop_stack

pytestmark = pytest.mark.slow

# The policy under test, written out here so the check below does not borrow the sidecar's.
# Notional caps are tight enough that random quantities hit them.
RULES: dict[tuple[str, str], dict[str, Any]] = {
    ("linear", "BTCUSDT"): {
        "max_qty": "0.5",
        "max_notional": "30000",
        "price_band_bps": "150",
        "reference": "mark",
    },
    ("linear", "ETHUSDT"): {
        "max_qty": "10",
        "max_notional": "20000",
        "price_band_bps": "150",
        "reference": "mark",
    },
    ("linear", "SOLUSDT"): {
        "max_qty": "200",
        "max_notional": "20000",
        "price_band_bps": "200",
        "reference": "mark",
    },
    ("spot", "BTCUSDT"): {
        "max_qty": "0.1",
        "max_notional": "5000",
        "price_band_bps": "100",
        "reference": "last",
    },
}
BATCH_MAX_NOTIONAL = Decimal(60000)
BYBIT_BATCH_MAX = {"linear": 20, "spot": 10}
AMEND_FIELDS = {"symbol", "orderId", "orderLinkId", "price", "qty"}  # all this test ever lets through
PLAIN_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
OPEN = {"New", "PartiallyFilled"}
ALLOWED_OUTCOMES = {"verified", "denied", "rejected", "throttled"}  # no fault is injected here

# Resting orders of e2e_kit (orderLinkId -> (category, symbol, side)).
ORDERS = {
    "btc-b1": ("linear", "BTCUSDT", "Buy"),
    "btc-b2": ("linear", "BTCUSDT", "Buy"),
    "btc-s1": ("linear", "BTCUSDT", "Sell"),
    "eth-b1": ("linear", "ETHUSDT", "Buy"),
    "eth-s1": ("linear", "ETHUSDT", "Sell"),
    "sol-b1": ("linear", "SOLUSDT", "Buy"),
    "spot-b1": ("spot", "BTCUSDT", "Buy"),
}
# Instrument rules as docs/emulator.md lists them: (tick, step, min qty, max qty).
INSTRUMENTS = {
    ("linear", "BTCUSDT"): ("0.1", "0.001", "0.001", "1190"),
    ("linear", "ETHUSDT"): ("0.01", "0.01", "0.01", "7240"),
    ("linear", "SOLUSDT"): ("0.01", "0.1", "0.1", "79770"),
    # Spot's minOrderQty is deprecated by Bybit (issue 11): the smallest qty is one step; the
    # order-value floor (minOrderAmt) is the exchange's to enforce.
    ("spot", "BTCUSDT"): ("0.01", "0.000001", "0.000001", "71.73956243"),
}


def config_overrides(mode: str) -> dict[str, Any]:
    symbols = [{"category": c, "symbol": s, **rule} for (c, s), rule in RULES.items()]
    return {
        "symbols": symbols,
        "batch": {"mode": mode, "max_notional": str(BATCH_MAX_NOTIONAL)},
        # Generous local limits: the property is about policy, and throttling would hide sends.
        "rate_limits": [
            {"scope": "tool", "max": 10_000, "window_s": "1"},
            {"scope": "global", "max": 10_000, "window_s": "1"},
            {"scope": "symbol", "max": 10_000, "window_s": "1"},
            {
                "scope": "exchange",
                "op": "order.amend-batch",
                "category": "linear",
                "max": 1000,
                "window_s": "1",
            },
            {
                "scope": "exchange",
                "op": "order.amend-batch",
                "category": "spot",
                "max": 1000,
                "window_s": "1",
            },
            {"scope": "exchange", "op": "order.amend", "category": "linear", "max": 1000, "window_s": "1"},
            {"scope": "exchange", "op": "order.amend", "category": "spot", "max": 1000, "window_s": "1"},
        ],
    }


class PropStack(Stack):
    """A Stack with a short repr (Hypothesis prints the fixture value in every failure report)."""

    def __repr__(self) -> str:
        return f"PropStack(mode={self.config.batch.mode}, emulator={self.emu.url})"


@pytest.fixture(params=["per_item", "all_or_nothing"])
async def prop_stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """One emulator + service for all examples of a test (rebuilding per example would be slow)."""
    emu, service, config, orders = await start_stack(tmp_path, **config_overrides(request.param))
    try:
        yield PropStack(emu, service, config, orders)
    finally:
        await stop_stack(emu, service)


# ---------------------------------------------------------------------------------- strategies


def _floor_ticks(price: Decimal, tick: Decimal) -> int:
    return int((price / tick).to_integral_value(rounding=ROUND_FLOOR))


def _ceil_ticks(price: Decimal, tick: Decimal) -> int:
    return int((price / tick).to_integral_value(rounding=ROUND_CEILING))


JUNK = st.sampled_from(
    ["abc", "", "NaN", "Infinity", "-1", "0", "1e3", "1E-2", " 94000", "٩٤", True, {}, [1]]
)
# Ways to break an otherwise valid item (0, 1 or 2 are applied to each item).
BREAKS = (
    "symbol_not_allowed",
    "symbol_lowercase",
    "symbol_of_another_order",
    "unknown_order",
    "missing_id",
    "price_out_of_band",
    "price_off_tick",
    "price_junk",
    "qty_off_step",
    "qty_above_cap",
    "qty_above_notional_cap",
    "qty_junk",
    "unsupported_field",
)


def _band(category: str, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
    ref = Decimal(PRICES[(category, symbol)])
    band = Decimal(RULES[(category, symbol)]["price_band_bps"]) / 10_000
    return ref, ref * (1 - band), ref * (1 + band)


@st.composite
def passive_prices(draw: st.DrawFn, category: str, symbol: str, side: str) -> Decimal:
    """On the tick, inside the band (edges included), and never crossing the frozen market (a
    crossing order would fill and leave the test with fewer open orders)."""
    tick = Decimal(INSTRUMENTS[(category, symbol)][0])
    ref, low, high = _band(category, symbol)
    if side == "Buy":
        lo_t, hi_t = _ceil_ticks(low, tick), _floor_ticks(ref * Decimal("0.995"), tick)
    else:
        lo_t, hi_t = _ceil_ticks(ref * Decimal("1.005"), tick), _floor_ticks(high, tick)
    if draw(st.integers(0, 9)) == 0:
        return Decimal(draw(st.sampled_from([lo_t, hi_t]))) * tick  # a band edge (or the passive limit)
    return Decimal(draw(st.integers(lo_t, hi_t))) * tick


def _qty_cap_steps(category: str, symbol: str) -> int:
    """The largest qty (in steps) within max_qty and within max_notional at any in-band price."""
    step = Decimal(INSTRUMENTS[(category, symbol)][1])
    rule = RULES[(category, symbol)]
    _ref, _low, high = _band(category, symbol)
    cap = min(Decimal(rule["max_qty"]), Decimal(rule["max_notional"]) / high)
    return _floor_ticks(cap, step)


@st.composite
def items(draw: st.DrawFn, category: str) -> dict[str, Any]:
    links = [k for k, v in ORDERS.items() if v[0] == category]
    link = draw(st.sampled_from(links))
    _cat, symbol, side = ORDERS[link]
    tick, step, _min_qty, _max = (Decimal(x) for x in INSTRUMENTS[(category, symbol)])
    _ref, low, high = _band(category, symbol)
    item: dict[str, Any] = {"symbol": symbol}
    if draw(st.integers(0, 3)) == 0:
        item["orderId"] = f"id-of:{link}"  # resolved to the real orderId at run time
    else:
        item["orderLinkId"] = link
    fields = draw(st.sampled_from(["price", "qty", "both"]))
    if fields in ("price", "both"):
        price = draw(passive_prices(category, symbol, side))
        item["price"] = draw(st.sampled_from([format(price, "f"), float(price)]))  # string or JSON number
    if fields in ("qty", "both"):
        qty = draw(st.integers(1, _qty_cap_steps(category, symbol))) * step
        item["qty"] = format(qty, "f")
    breaks = draw(st.lists(st.sampled_from(BREAKS), max_size=2, unique=True))
    if draw(st.integers(0, 2)) > 0:
        breaks = []  # about two thirds of the items are meant to pass
    for kind in breaks:
        if kind == "symbol_not_allowed":
            item["symbol"] = "DOGEUSDT"
        elif kind == "symbol_lowercase":
            item["symbol"] = symbol.lower()
        elif kind == "symbol_of_another_order":
            item["symbol"] = draw(
                st.sampled_from([s for c, s in RULES if c == category and s != symbol] or ["X"])
            )
        elif kind == "unknown_order":
            item.pop("orderId", None)
            item["orderLinkId"] = "no-such-order"
        elif kind == "missing_id":
            item.pop("orderId", None)
            item.pop("orderLinkId", None)
        elif kind == "price_out_of_band":
            k = draw(st.integers(1, 2000))
            value = (
                (_ceil_ticks(low, tick) - k) * tick
                if draw(st.booleans())
                else (_floor_ticks(high, tick) + k) * tick
            )
            item["price"] = format(value, "f")
        elif kind == "price_off_tick":
            item["price"] = format(draw(passive_prices(category, symbol, side)) + tick / 2, "f")
        elif kind == "price_junk":
            item["price"] = draw(JUNK)
        elif kind == "qty_off_step":
            item["qty"] = format(
                draw(st.integers(1, _qty_cap_steps(category, symbol))) * step + step / 2, "f"
            )
        elif kind == "qty_above_cap":
            cap = Decimal(RULES[(category, symbol)]["max_qty"])
            item["qty"] = format(cap + draw(st.integers(1, 100)) * step, "f")
        elif kind == "qty_above_notional_cap":
            rule = RULES[(category, symbol)]
            over = Decimal(rule["max_notional"]) / low  # above the cap even at the lowest in-band price
            item["qty"] = format((_floor_ticks(over, step) + draw(st.integers(1, 50))) * step, "f")
            item["price"] = format(_ceil_ticks(low, tick) * tick, "f")
        elif kind == "qty_junk":
            item["qty"] = draw(JUNK)
        elif kind == "unsupported_field":
            item["leverage"] = "10"
    return item


@st.composite
def batches(draw: st.DrawFn) -> tuple[Any, list[Any]]:
    category = draw(st.sampled_from(["linear"] * 8 + ["spot", "option", 7]))
    cat_for_items = category if category in ("linear", "spot") else "linear"
    n = draw(st.sampled_from([1, 1, 2, 2, 3, 4, 21]))
    if n > 4:  # over every limit: must be refused without looking at an item
        one = draw(items(cat_for_items))
        return category, [dict(one) for _ in range(n)]
    return category, [draw(items(cat_for_items)) for _ in range(n)]


# ---------------------------------------------------------------------------------- the check


def resolve_ids(stack: Stack, request: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the `id-of:<link>` placeholder with the real orderId (unknown only at run time)."""
    out = []
    for item in request:
        oid = item.get("orderId")
        if isinstance(oid, str) and oid.startswith("id-of:"):
            out.append({**item, "orderId": stack.orders[oid.removeprefix("id-of:")]["orderId"]})
        else:
            out.append(item)
    return out


def out_of_policy(category: str, item: Mapping[str, Any], orders: Mapping[str, dict[str, Any]]) -> list[str]:
    """Why this sent item breaks the policy (empty: it is within policy). Independent of sidecar.core."""
    problems = []
    symbol = item.get("symbol")
    rule = RULES.get((category, symbol))  # type: ignore[arg-type]
    if rule is None:
        return [f"{category}:{symbol} is not allowed"]
    tick, step, min_qty, inst_max = (Decimal(x) for x in INSTRUMENTS[(category, str(symbol))])
    extra = set(item) - AMEND_FIELDS
    if extra:
        problems.append(f"fields {sorted(extra)} were sent")
    for key in ("price", "qty"):
        if key in item and not (isinstance(item[key], str) and PLAIN_DECIMAL.match(item[key])):
            problems.append(f"{key} {item[key]!r} is not a plain decimal string")
    if problems:
        return problems
    order = None
    if item.get("orderId"):
        order = next((o for o in orders.values() if o["orderId"] == item["orderId"]), None)
    elif item.get("orderLinkId"):
        order = orders.get(item["orderLinkId"])
    if order is None or order["category"] != category or order["symbol"] != symbol:
        return [f"order {item.get('orderId') or item.get('orderLinkId')} unknown for {category}:{symbol}"]
    if order["orderStatus"] not in OPEN:
        problems.append(f"order is {order['orderStatus']}")
    price = Decimal(item["price"]) if "price" in item else Decimal(order["price"])
    qty = Decimal(item["qty"]) if "qty" in item else Decimal(order["qty"])
    ref = Decimal(PRICES[(category, str(symbol))])
    band = Decimal(rule["price_band_bps"]) / 10_000
    if "price" in item:
        if not ref * (1 - band) <= price <= ref * (1 + band):
            problems.append(f"price {price} outside the band around {ref}")
        if price % tick:
            problems.append(f"price {price} off the tick {tick}")
    if "qty" in item:
        if qty % step:
            problems.append(f"qty {qty} off the step {step}")
        if qty > min(Decimal(rule["max_qty"]), inst_max):
            problems.append(f"qty {qty} above the cap")
        if qty < min_qty:
            problems.append(f"qty {qty} below the minimum")
    if price * qty > Decimal(rule["max_notional"]):
        problems.append(f"notional {price * qty} above the cap")
    return problems


def notional(item: Mapping[str, Any], orders: Mapping[str, dict[str, Any]]) -> Decimal:
    order = orders[item["orderLinkId"]] if item.get("orderLinkId") else None
    if order is None:
        order = next(o for o in orders.values() if o["orderId"] == item["orderId"])
    price = Decimal(item["price"]) if "price" in item else Decimal(order["price"])
    qty = Decimal(item["qty"]) if "qty" in item else Decimal(order["qty"])
    return price * qty


def order_of(orders: Mapping[str, dict[str, Any]], result_item: Mapping[str, Any]) -> dict[str, Any]:
    if result_item.get("orderLinkId") in orders:
        return orders[result_item["orderLinkId"]]
    return next(o for o in orders.values() if o["orderId"] == result_item["orderId"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches())
async def test_no_out_of_policy_item_is_ever_sent_and_verified_means_at_target(
    prop_stack: Stack, batch: tuple[Any, list[Any]]
) -> None:
    stack = prop_stack
    mode = stack.config.batch.mode
    category, raw = batch
    request = resolve_ids(stack, raw)
    before = {o["orderLinkId"]: o for o in stack.emu.orders()}
    frames_before = len(stack.emu.frames())
    async with asyncio.timeout(10), Client(build_server(stack.service)) as client:
        result = await client.call_tool("wsBatchAmendOrders", {"category": category, "request": request})
    body = result.structured_content
    assert body is not None, result.content
    after = {o["orderLinkId"]: o for o in stack.emu.orders()}
    new_frames = [
        f for f in stack.emu.frames()[frames_before:] if f.get("op") in ("order.amend", "order.amend-batch")
    ]

    # 1. What reached the exchange is within policy, checked independently.
    assert len(new_frames) <= 1
    sent: list[dict[str, Any]] = []
    for frame in new_frames:
        assert frame["op"] == "order.amend-batch"
        args = frame["args"][0]
        sent_category = args["category"]
        assert sent_category == category
        sent = args["request"]
        assert 1 <= len(sent) <= BYBIT_BATCH_MAX[sent_category]
        for item in sent:
            problems = out_of_policy(sent_category, item, before)
            assert not problems, (item, problems)
        keys = [(i.get("orderId") or before[i["orderLinkId"]]["orderId"]) for i in sent]
        assert len(set(keys)) == len(keys), "one order twice in a batch"
        assert sum(notional(i, before) for i in sent) <= BATCH_MAX_NOTIONAL
    # 2. Sent items are exactly the items not denied/throttled, in order.
    # Every item is answered: listed, or counted in itemsOmitted when the request is refused whole.
    assert len(body["items"]) + body.get("itemsOmitted", 0) == max(1, len(request))
    outcomes = [it["outcome"] for it in body["items"]]
    assert set(outcomes) <= ALLOWED_OUTCOMES, body
    for it in body["items"]:  # coverage, shown by --hypothesis-show-statistics
        event(f"{it['outcome']} {it['exchangeMsg'] if it['outcome'] == 'rejected' else ''}".strip())
    passed = [it for it in body["items"] if it["outcome"] not in ("denied", "throttled")]
    assert len(passed) == len(sent)
    for it, item in zip(passed, sent, strict=True):
        assert it["orderLinkId"] == item.get("orderLinkId") or it["orderId"] == item.get("orderId")
    if mode == "all_or_nothing" and "denied" in outcomes:
        assert sent == []
    if sent:
        assert body["ack"] is not None
    else:
        assert body["ack"] is None
    # 3. Verified means the exchange shows the target, exactly as observed; other items unchanged.
    for it in body["items"]:
        if it["outcome"] != "verified":
            continue
        index = it["index"]
        wanted = request[index]
        order = order_of(after, it)
        for key in ("price", "qty"):
            if wanted.get(key) is not None:  # JSON null means "not given" (validation.py)
                assert Decimal(order[key]) == Decimal(str(wanted[key])), (key, order, wanted)
        assert Decimal(it["observed"]["price"]) == Decimal(order["price"])
        assert Decimal(it["observed"]["qty"]) == Decimal(order["qty"])
        assert it["observed"]["updatedTime"] == order["updatedTime"]
    changed = {link for link in after if after[link] != before.get(link)}
    verified_links = {
        order_of(after, it)["orderLinkId"] for it in body["items"] if it["outcome"] == "verified"
    }
    assert changed <= verified_links, (changed, body)
