"""The pool of resting orders the soaks amend, and valid amends of them (in policy, on tick and step,
under the notional caps). Shared by the bad-input soak (reliability/bad_input.py) and the
concurrent soak (reliability/concurrent.py). It must not send anything itself.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reliability.stack import INSTRUMENTS, PRICES, RULES, Stack

__all__ = ["POOL_SPEC", "Pool", "PoolOrder", "number_json", "valid_item", "valid_price", "valid_qty"]


@dataclass
class PoolOrder:
    category: str
    symbol: str
    side: str
    order_id: str
    link: str
    price: Decimal
    qty: Decimal


# (category, symbol, side, qty, price, how many): resting orders the valid items amend.
POOL_SPEC = [
    ("linear", "BTCUSDT", "Buy", "0.01", "94000.0", 3),
    ("linear", "BTCUSDT", "Sell", "0.01", "96000.0", 2),
    ("linear", "ETHUSDT", "Buy", "0.1", "3450.00", 2),
    ("linear", "ETHUSDT", "Sell", "0.1", "3550.00", 1),
    ("linear", "SOLUSDT", "Buy", "1.0", "178.000", 2),
    ("linear", "SOLUSDT", "Sell", "1.0", "182.000", 1),
    ("spot", "BTCUSDT", "Buy", "0.001", "94000.00", 2),
    ("spot", "BTCUSDT", "Sell", "0.001", "96000.00", 1),
]


class Pool:
    """The resting orders valid items amend; closed ones are replaced by fresh orders."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.orders: list[PoolOrder] = []
        self.placed = 0
        self.replaced = 0

    async def fill(self) -> None:
        for category, symbol, side, qty, price, n in POOL_SPEC:
            for _ in range(n):
                await self._place(category, symbol, side, qty, price)

    async def _place(self, category: str, symbol: str, side: str, qty: str, price: str) -> PoolOrder:
        self.placed += 1
        link = f"bi-{category[0]}{symbol[:3].lower()}-{side[0]}{self.placed}"
        o = await self.stack.place(category, symbol, side, qty, price, link)
        po = PoolOrder(category, symbol, side, o["orderId"], link, Decimal(price), Decimal(qty))
        self.orders.append(po)
        return po

    async def refresh(self) -> None:
        """Read back every pool order from the emulator's ledger; replace closed ones."""
        for po in list(self.orders):
            o = self.stack.exchange_order(po.category, po.order_id)
            if o is not None and o.is_open:
                po.price, po.qty = o.price, o.qty
                continue
            self.orders.remove(po)
            self.replaced += 1
            ref = PRICES[(po.category, po.symbol)]
            inst = INSTRUMENTS[(po.category, po.symbol)]
            off = ref * Decimal("0.01")
            price = (ref - off) if po.side == "Buy" else (ref + off)
            price = (price / inst.tick).to_integral_value() * inst.tick
            await self._place(po.category, po.symbol, po.side, str(po.qty), str(price))

    def of(self, category: str) -> list[PoolOrder]:
        return [o for o in self.orders if o.category == category]


# ---------------------------------------------------------------------------------- generation


def _ticks(lo: Decimal, hi: Decimal, tick: Decimal) -> tuple[int, int]:
    return math.ceil(lo / tick), math.floor(hi / tick)


def valid_price(rng: random.Random, po: PoolOrder) -> Decimal:
    """A price inside the band, on the tick, on the order's passive side (so it never fills)."""
    ref = PRICES[(po.category, po.symbol)]
    rule, inst = RULES[(po.category, po.symbol)], INSTRUMENTS[(po.category, po.symbol)]
    band = ref * rule.band_bps / Decimal(10_000)
    if po.side == "Buy":
        lo, hi = _ticks(ref - band, ref - inst.tick, inst.tick)
    else:
        lo, hi = _ticks(ref + inst.tick, ref + band, inst.tick)
    for _ in range(4):
        price = rng.randint(lo, hi) * inst.tick
        if price != po.price:
            return price
    return price


def valid_qty(rng: random.Random, po: PoolOrder, price: Decimal, notional_cap: Decimal) -> Decimal:
    """A qty on the step, within caps, with notional between 10 and `notional_cap` at `price`."""
    rule, inst = RULES[(po.category, po.symbol)], INSTRUMENTS[(po.category, po.symbol)]
    top = min(rule.max_qty, inst.max_qty, min(rule.max_notional, notional_cap) / price)
    bottom = max(inst.min_qty, Decimal(10) / price)
    lo, hi = _ticks(bottom, top, inst.step)
    hi = max(lo, hi)
    for _ in range(4):
        qty = rng.randint(lo, hi) * inst.step
        if qty != po.qty:
            return qty
    return qty


def number_json(rng: random.Random, value: Decimal) -> object:
    """Mostly a decimal string; sometimes a JSON number (int or float) of the same value."""
    r = rng.random()
    if r < 0.1 and value == value.to_integral_value():
        return int(value)
    if r < 0.2:
        as_float = float(value)
        if Decimal(repr(as_float)) == value:
            return as_float
    return format(value.normalize(), "f") if r < 0.6 else str(value)


def valid_item(rng: random.Random, po: PoolOrder, notional_cap: Decimal) -> dict[str, Any]:
    """An in-policy amend of `po`: notional (with the order's current values for what the item
    leaves out) at most min(the symbol's cap, `notional_cap`)."""
    item: dict[str, Any] = {"symbol": po.symbol}
    r = rng.random()
    if r < 0.5:
        item["orderId"] = po.order_id
    elif r < 0.9:
        item["orderLinkId"] = po.link
    else:
        item["orderId"], item["orderLinkId"] = po.order_id, po.link
    what = rng.random()
    price = po.price
    if what < 0.8:
        price = valid_price(rng, po)
        item["price"] = number_json(rng, price)
    cap = min(RULES[(po.category, po.symbol)].max_notional, notional_cap)
    if what >= 0.5 or price * po.qty > cap:
        item["qty"] = number_json(rng, valid_qty(rng, po, price, notional_cap))
    return item
