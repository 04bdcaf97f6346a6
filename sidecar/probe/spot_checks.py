"""The spot check (`--allow-orders`): is the deprecated `minOrderQty` still enforced?

It looks for a spot symbol where a buy under `minOrderQty` is still worth more than `minOrderAmt`
(the configured spot symbol first), rests one such buy 5 % under the bid with PostOnly, and cancels
it. Where no symbol allows that test it reports `skipped`. It must not touch an order it did not
create.
"""

from __future__ import annotations

from decimal import Decimal

from sidecar.core.numbers import plain_decimal
from sidecar.core.types import Category
from sidecar.probe.context import BALANCE_CODES, Probe, Rules, code_meaning
from sidecar.probe.orders import FAR_BELOW, OrderDesk
from sidecar.probe.report import CheckResult, error, judge, skipped
from sidecar.probe.sockets import reply_code, reply_msg, wire_decimal

__all__ = ["check_spot_min_order_qty"]


async def check_spot_min_order_qty(p: Probe, desk: OrderDesk) -> CheckResult:
    expected = {"belowMinOrderQty": "accepted"}
    found = await _spot_candidate(p)
    if found is None:
        return skipped(
            "spot_min_order_qty",
            expected,
            "no spot symbol here has a deprecated minOrderQty worth more than minOrderAmt, so a "
            "buy below minOrderQty would also be below the minimum order value: nothing to test",
        )
    symbol, qty, price, min_qty = found
    placed, ack, _ = await desk.create(
        Category.SPOT, symbol, side="Buy", qty=qty, price=price, tif="PostOnly"
    )
    code = reply_code(ack)
    if code in BALANCE_CODES:
        return error(
            "spot_min_order_qty", expected, f"the account has no spot balance for the test buy ({code})"
        )
    if code == 0:
        await desk.cancel(placed)
    observed = {"belowMinOrderQty": "accepted" if code == 0 else code}
    return judge(
        "spot_min_order_qty",
        expected,
        observed,
        agrees=f"a {symbol} spot buy of {plain_decimal(qty)} (under minOrderQty "
        f"{plain_decimal(min_qty)}, over minOrderAmt) was accepted: minOrderQty is no longer checked, "
        "as the sidecar assumes",
        otherwise=f"the spot buy under minOrderQty was refused ({code_meaning(code)}, "
        f"{reply_msg(ack)!r}): the sidecar lets such quantities through, so Bybit refuses them "
        "and the agent sees `rejected` (safe; keep spot quantities at or above minOrderQty)",
    )


async def _spot_candidate(p: Probe) -> tuple[str, Decimal, Decimal, Decimal] | None:
    """(symbol, qty, price, minOrderQty) for a far spot buy under `minOrderQty` that is still
    worth over `minOrderAmt`; the configured spot symbol first. None: no such symbol."""
    result = await p.rest.fetch("/v5/market/instruments-info", {"category": Category.SPOT.value})
    rows = [r for r in (result.get("list") or []) if isinstance(r, dict)] if isinstance(result, dict) else []
    tickers = {t.symbol: t for t in await p.rest.tickers(Category.SPOT)}
    _, preferred = p.symbol_of(Category.SPOT, fallback="BTCUSDT")
    rows.sort(key=lambda r: r.get("symbol") != preferred)
    for row in rows:
        lot = row.get("lotSizeFilter") or {}
        tick = wire_decimal((row.get("priceFilter") or {}).get("tickSize"))
        step, min_qty, min_amt = (
            wire_decimal(lot.get(k)) for k in ("basePrecision", "minOrderQty", "minOrderAmt")
        )
        ticker = tickers.get(str(row.get("symbol")))
        bid = ticker.bid1_price if ticker is not None else None
        if None in (tick, step, min_qty, min_amt, bid) or row.get("status") != "Trading":
            continue
        assert (
            tick is not None
            and step is not None
            and min_qty is not None
            and min_amt is not None
            and bid is not None
        )
        if step <= 0 or tick <= 0 or min_qty <= step:
            continue
        qty = ((min_qty / step).to_integral_value() - 1) * step
        price = Rules(tick, step, step, Decimal(0)).floor_price(bid * FAR_BELOW)
        if qty >= step and qty < min_qty and qty * price >= min_amt * Decimal("1.05"):
            return str(row["symbol"]), qty, price, min_qty
    return None
