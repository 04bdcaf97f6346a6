"""The emulated exchange: instruments, orders, fills and positions, driven by an injected `now_ms`.

Its one job is exchange state and the per-item rules of create / amend / cancel (codes from
reference §2 and §6), plus matching: resting limit orders fill as makers when the walk crosses
them; a new order or an amend that crosses the touch takes liquidity at once (PostOnly: cancelled
with `EC_PostOnlyWillTakeLiquidity`). Every state change
appends an `Event` to an outbox the server drains. It does no I/O, reads no clock, knows nothing
about sockets, envelopes, rate limits or faults (those are `trade.py`, `server.py`, `faults.py`).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sidecar.emulator.fills import Positions, execution_record, fee_for
from sidecar.emulator.instruments import Instrument, default_instruments, plain
from sidecar.emulator.market import Market, Quote
from sidecar.emulator.orders import Order

__all__ = ["REALTIME_CLOSED_KEPT", "Event", "Exchange", "ItemResult", "Race"]

REALTIME_CLOSED_KEPT = 500  # recent closed orders per account and category on order/realtime

_NUMBER = re.compile(r"^\d+(\.\d+)?$")  # plain decimal strings only: no sign, no exponent
_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_TRIGGER_BY = frozenset({"LastPrice", "IndexPrice", "MarkPrice"})
_TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "PostOnly"})
_MARKET_SLIPPAGE = Decimal("0.03")  # protective price of a derivatives market order, as Bybit shows

# failure kind -> (derivatives code, spot code). Choices are documented in docs/emulator.md.
_CODES: dict[str, tuple[int, int]] = {
    "param": (10001, 10001),
    "symbol": (10001, 170121),
    "side": (10001, 170117),
    "order_type": (10001, 170116),
    "tif": (10001, 170115),
    "price_missing": (10001, 170105),
    "price_tick": (10001, 170134),
    "price_range": (110003, 170132),
    "qty_step": (10001, 170137),
    "qty_min": (10001, 170136),
    "qty_max": (10001, 170381),
    "notional": (110094, 170140),
    "not_found": (110001, 170213),
    # Amending a filled or cancelled order: derivatives answer 110001 "order not exists or too late
    # to replace" (SIEBLY-289's text; the code is UNCONFIRMED, probe check amend_closed_order_code),
    # spot its documented 170139 / 170142.
    "closed_filled": (110001, 170139),
    "closed_cancelled": (110001, 170142),
    "dup_link": (110072, 170141),
    "qty_le_filled": (110064, 110064),
    "tpsl_partial": (110059, 110059),
    "unchanged": (10001, 10001),
}

_CLOSED_MSG = "order not exists or too late to replace"
_SPOT_MSGS = {"closed_filled": "Order has been filled.", "closed_cancelled": "Order has been cancelled"}
# The refused request of a cancel/amend that lost the race with a fill: Bybit's second `Filled` push.
_LOST_RACE_REASON = "EC_OrigClOrdIDDoesNotExist"

_AMEND_PRICE_FIELDS = ("takeProfit", "stopLoss", "tpLimitPrice", "slLimitPrice", "orderIv")
_AMEND_ENUM_FIELDS = ("tpTriggerBy", "slTriggerBy")


@dataclass(frozen=True)
class Event:
    """One push for the private streams: `topic` is `order`, `execution` or `position`."""

    topic: str
    category: str
    symbol: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Race:
    """What happens right after the ack of an applied amend (or cancel): the `fill_after_ack` /
    `cancel_after_ack` faults. `amended` False: the fill/cancel wins and the request never lands
    (a lost fill race ends in Bybit's documented double `Filled` push); True: the amend lands
    first and the order fills / is cancelled right after."""

    outcome: str  # "fill" or "cancel"
    amended: bool = False


@dataclass(frozen=True)
class ItemResult:
    """Outcome of one create/amend/cancel item: code 0 or a Bybit error code, and identifiers."""

    code: int
    msg: str
    symbol: str
    order_id: str
    order_link_id: str
    order: Order | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0


class _Reject(Exception):  # internal control flow; never escapes this module
    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind
        self.msg = msg


def _text(item: Mapping[str, Any], key: str) -> str:
    """A string field; absent, null and "" all read as ""; any other type is a parameter error."""
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Reject("param", f"params error: {key} must be a string")
    return value


def _number(item: Mapping[str, Any], key: str) -> Decimal | None:
    """A plain decimal string, or None when absent/null/"". JSON numbers are refused on purpose."""
    text = _text(item, key)
    if text == "":
        return None
    if not _NUMBER.match(text):
        raise _Reject("param", f"params error: {key} invalid")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise _Reject("param", f"params error: {key} invalid") from None


class Exchange:
    """All exchange state for one account (UID). Methods take `now_ms`; events go to the outbox."""

    def __init__(
        self,
        instruments: list[Instrument] | None = None,
        *,
        seed: int | None = None,
        partial_fill_pct: int = 30,
    ) -> None:
        root = random.Random(seed)
        self._walk_rng = random.Random(root.getrandbits(64))
        self._fill_rng = random.Random(root.getrandbits(64))
        self._id_rng = random.Random(root.getrandbits(64))
        insts = instruments if instruments is not None else default_instruments()
        self.instruments: dict[tuple[str, str], Instrument] = {i.key: i for i in insts}
        self.market = Market(insts, self._walk_rng)
        self.partial_fill_pct = partial_fill_pct
        self.orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        self._by_link: dict[tuple[str, str], list[Order]] = {}
        self._positions = Positions()
        self._outbox: list[Event] = []
        self._seq = 0
        # Closed orders per category in the order they closed: `order/realtime` shows only the
        # newest `realtime_closed_kept` of them (Bybit: 500, cleared by a release); history shows all.
        self._closed: dict[str, list[Order]] = {}
        self.realtime_closed_kept = REALTIME_CLOSED_KEPT

    # ------------------------------------------------------------------ outbox and ids

    def drain(self) -> list[Event]:
        """Events produced since the last drain, in order."""
        events, self._outbox = self._outbox, []
        return events

    def new_id(self) -> str:
        """A uuid4-shaped id drawn from the seeded generator (repeatable with `--seed`)."""
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def instrument(self, category: str, symbol: str) -> Instrument | None:
        return self.instruments.get((category, symbol))

    # ------------------------------------------------------------------ operations

    def create(self, category: str, item: Mapping[str, Any], now_ms: int) -> ItemResult:
        """`order.create` (one item). Limit orders rest; Market orders and crossing limits fill."""
        link = item.get("orderLinkId") if isinstance(item.get("orderLinkId"), str) else ""
        symbol = item.get("symbol") if isinstance(item.get("symbol"), str) else ""
        try:
            return self._create(category, item, now_ms)
        except _Reject as r:
            return self._fail(category, r, str(symbol), "", str(link))

    def amend(
        self,
        category: str,
        item: Mapping[str, Any],
        now_ms: int,
        *,
        batch: bool = False,
        fill_first: Callable[[], bool] | None = None,
        race: Callable[[], Race | None] | None = None,
    ) -> ItemResult:
        """`order.amend` (or one item of a batch). `fill_first` is the fill-before-amend fault;
        `race` is asked once the amend would apply (the after-ack faults)."""
        ids = self._ids(item)
        try:
            return self._amend(category, item, now_ms, batch=batch, fill_first=fill_first, race=race)
        except _Reject as r:
            return self._fail(category, r, *ids)

    def cancel(
        self,
        category: str,
        item: Mapping[str, Any],
        now_ms: int,
        *,
        race: Callable[[], Race | None] | None = None,
    ) -> ItemResult:
        """`order.cancel` (or one item of a batch). `race` may make a fill win (ack 0, then the
        order is `Filled` and the refused cancel shows as a second `Filled` push)."""
        ids = self._ids(item)
        try:
            order = self._lookup(category, item)
            if not order.is_open:
                raise _Reject("not_found", "order not exists or too late to cancel")
            hit = race() if race is not None and order.status != "Untriggered" else None
            if hit is not None and hit.outcome == "fill":
                self._lose_race(order, "fill", now_ms, refused_cancel=True)
                return self._ok(order)
            filled_some = order.cum_exec_qty > 0
            order.status = "PartiallyFilledCanceled" if filled_some and category == "spot" else "Cancelled"
            order.cancel_type = "CancelByUser"
            self._close(order, now_ms)
            return self._ok(order)
        except _Reject as r:
            return self._fail(category, r, *ids)

    def set_price(
        self,
        category: str,
        symbol: str,
        now_ms: int,
        *,
        last: Decimal | None = None,
        mark: Decimal | None = None,
        index: Decimal | None = None,
        bid: Decimal | None = None,
        ask: Decimal | None = None,
        freeze: bool = True,
    ) -> Quote:
        """Set (and by default freeze) one instrument's prices, then fill what they cross."""
        inst = self.instruments[(category, symbol)]
        q = self.market.set_price(
            inst, last=last, mark=mark, index=index, bid=bid, ask=ask, freeze=freeze, now_ms=now_ms
        )
        self.match(now_ms)
        return q

    def tick(self, now_ms: int) -> list[tuple[str, str]]:
        """One market tick: walk the unfrozen prices, then match resting orders."""
        moved = self.market.step(now_ms)
        self.match(now_ms)
        return moved

    def match(self, now_ms: int) -> None:
        """Fill resting limit orders the market crosses (buy: last <= price; sell: last >= price).

        With probability `partial_fill_pct` % a fill takes only a seeded number of qty steps, so
        partial fills happen; the rest fills on later ticks while the price stays crossed.
        """
        for order in list(self._open.values()):
            if order.status == "Untriggered" or order.order_type != "Limit":
                continue
            q = self.market.quote(order.category, order.symbol)
            if q is None:  # pragma: no cover - every order has an instrument with a quote
                continue
            crossed = q.last <= order.price if order.side == "Buy" else q.last >= order.price
            if not crossed:
                continue
            leaves = order.leaves_qty
            steps = int(leaves / order.inst.step)
            qty = leaves
            if steps > 1 and self._fill_rng.randrange(100) < self.partial_fill_pct:
                qty = order.inst.step * self._fill_rng.randint(1, steps - 1)
            self._fill(order, qty, order.price, now_ms, maker=True)

    def fill_now(self, order: Order, now_ms: int, qty: Decimal | None = None) -> None:
        """Fill `qty` (default: all that is left) of an open order at its own price (faults, tests)."""
        if order.is_open and order.status != "Untriggered" and order.leaves_qty > 0:
            take = order.leaves_qty if qty is None else min(qty, order.leaves_qty)
            if take > 0:
                self._fill(order, take, order.price, now_ms, maker=True)

    # ------------------------------------------------------------------ queries

    def open_orders(self) -> list[Order]:
        return list(self._open.values())

    def recent_closed(self, category: str) -> list[Order]:
        """The closed orders `order/realtime` still shows for a category (newest close last)."""
        closed = self._closed.get(category, [])
        kept = self.realtime_closed_kept
        return closed[len(closed) - kept :] if kept else []

    def on_realtime(self, order: Order) -> bool:
        """Whether `order/realtime` (by id) still knows the order: open, or a recent closed one."""
        return order.is_open or any(o is order for o in self.recent_closed(order.category))

    def find(self, category: str, order_id: str = "", order_link_id: str = "") -> list[Order]:
        """Orders by id (exact) or by link id (every order that used it, oldest first)."""
        if order_id:
            o = self.orders.get(order_id)
            return [o] if o is not None and o.category == category else []
        if order_link_id:
            return list(self._by_link.get((category, order_link_id), []))
        return []

    # ------------------------------------------------------------------ internals

    def _ids(self, item: Mapping[str, Any]) -> tuple[str, str, str]:
        def s(key: str) -> str:
            v = item.get(key)
            return v if isinstance(v, str) else ""

        return s("symbol"), s("orderId"), s("orderLinkId")

    def _ok(self, order: Order) -> ItemResult:
        return ItemResult(0, "OK", order.symbol, order.order_id, order.order_link_id, order)

    def _fail(self, category: str, r: _Reject, symbol: str, order_id: str, link: str) -> ItemResult:
        deriv, spot = _CODES[r.kind]
        if category == "spot":
            return ItemResult(spot, _SPOT_MSGS.get(r.kind, r.msg), symbol, order_id, link)
        return ItemResult(deriv, r.msg, symbol, order_id, link)

    def _inst(self, category: str, item: Mapping[str, Any]) -> Instrument:
        symbol = _text(item, "symbol")
        if not symbol:
            raise _Reject("param", "params error: symbol is missing")
        inst = self.instruments.get((category, symbol))
        if inst is None:
            raise _Reject("symbol", f"params error: symbol invalid: {symbol}")
        return inst

    def _lookup(self, category: str, item: Mapping[str, Any]) -> Order:
        inst = self._inst(category, item)
        order_id = _text(item, "orderId")
        link = _text(item, "orderLinkId")
        if not order_id and not link:
            raise _Reject("param", "params error: orderId or orderLinkId is required")
        if order_id:  # orderId wins over orderLinkId when both are given
            found = self.find(category, order_id=order_id)
        else:
            candidates = self.find(category, order_link_id=link)
            open_ = [o for o in candidates if o.is_open]
            found = open_[-1:] or candidates[-1:]
        if not found or found[0].symbol != inst.symbol:
            raise _Reject("not_found", "order not exists or too late to replace")
        return found[0]

    def _check_price(self, inst: Instrument, price: Decimal) -> None:
        if price <= 0:
            raise _Reject("param", "params error: price invalid")
        if not inst.on_tick(price):
            raise _Reject("price_tick", f"price {plain(price)} is not a multiple of tickSize {inst.tick}")
        if (inst.min_price is not None and price < inst.min_price) or (
            inst.max_price is not None and price > inst.max_price
        ):
            raise _Reject("price_range", "order price is out of permissible range")

    def _check_qty(self, inst: Instrument, qty: Decimal, max_qty: Decimal) -> None:
        if qty <= 0:
            raise _Reject("param", "params error: qty invalid")
        if not inst.on_step(qty):
            raise _Reject("qty_step", f"qty {plain(qty)} is not a multiple of qtyStep {inst.step}")
        if qty < inst.min_qty:
            raise _Reject("qty_min", f"order qty below the minimum allowed ({inst.min_qty})")
        if qty > max_qty:
            raise _Reject("qty_max", f"order qty exceeds the maximum allowed ({max_qty})")

    def _check_notional(self, inst: Instrument, qty: Decimal, price: Decimal) -> None:
        if qty * price < inst.min_notional:
            raise _Reject("notional", f"order value below the minimum ({inst.min_notional} USDT)")

    def _create(self, category: str, item: Mapping[str, Any], now_ms: int) -> ItemResult:
        inst = self._inst(category, item)
        side = _text(item, "side")
        if side not in ("Buy", "Sell"):
            raise _Reject("side", "params error: side invalid")
        order_type = _text(item, "orderType")
        if order_type not in ("Market", "Limit"):
            raise _Reject("order_type", "params error: orderType invalid")
        qty = _number(item, "qty")
        if qty is None:
            raise _Reject("param", "params error: qty is missing")
        tif = _text(item, "timeInForce") or ("IOC" if order_type == "Market" else "GTC")
        if tif not in _TIME_IN_FORCE:
            raise _Reject("tif", "params error: timeInForce invalid")
        quote = self.market.quote(inst.category, inst.symbol)
        assert quote is not None
        price = _number(item, "price")
        if order_type == "Limit":
            if price is None:
                raise _Reject("price_missing", "params error: price is missing for a Limit order")
            self._check_price(inst, price)
        else:
            ref = quote.ask if side == "Buy" else quote.bid
            slip = 1 + _MARKET_SLIPPAGE if side == "Buy" else 1 - _MARKET_SLIPPAGE
            price = inst.round_price(ref * slip)
        link = _text(item, "orderLinkId")
        if link and not _LINK_ID.match(link):
            raise _Reject("param", "params error: orderLinkId invalid")
        if link and any(o.is_open for o in self._by_link.get((category, link), [])):
            raise _Reject("dup_link", "OrderLinkedID is duplicate")
        position_idx = item.get("positionIdx", 0)
        if isinstance(position_idx, str) and position_idx.isdigit():
            position_idx = int(position_idx)
        if category != "spot" and position_idx != 0:
            raise _Reject("param", "position idx not match position mode")
        self._check_qty(inst, qty, inst.max_qty if order_type == "Limit" else inst.max_mkt_qty)
        self._check_notional(inst, qty, price if order_type == "Limit" else quote.last)
        trigger = _number(item, "triggerPrice")
        if trigger is not None:
            self._check_price(inst, trigger)
        opt: dict[str, str] = {}
        for key in ("takeProfit", "stopLoss", "tpLimitPrice", "slLimitPrice"):
            value = _number(item, key)
            if value is not None:
                opt[key] = inst.fmt_price(value)
        for key in ("tpTriggerBy", "slTriggerBy", "triggerBy"):
            text = _text(item, key)
            if text and text not in _TRIGGER_BY:
                raise _Reject("param", f"params error: {key} invalid")
            if text:
                opt[key] = text
        tpsl_mode = _text(item, "tpslMode")
        if tpsl_mode:
            opt["tpslMode"] = tpsl_mode
        order = Order(
            inst=inst,
            order_id=self.new_id(),
            order_link_id=link,
            side=side,
            order_type=order_type,
            price=price,
            qty=qty,
            time_in_force=tif,
            created_ms=now_ms,
            updated_ms=now_ms,
            last_price_on_created=quote.last,
            position_idx=int(position_idx) if isinstance(position_idx, int) else 0,
            reduce_only=item.get("reduceOnly") is True,
            close_on_trigger=item.get("closeOnTrigger") is True,
            opt=opt,
        )
        if trigger is not None:
            order.status = "Untriggered"
            order.trigger_price = trigger
            order.stop_order_type = "Stop"
            direction = item.get("triggerDirection")
            order.trigger_direction = direction if direction in (1, 2) else (1 if trigger > quote.last else 2)
        self.orders[order.order_id] = order
        self._open[order.order_id] = order
        if link:
            self._by_link.setdefault((category, link), []).append(order)
        self._emit_order(order)
        if order.status == "New":
            self._after_create(order, quote, now_ms)
        return self._ok(order)

    def _after_create(self, order: Order, quote: Quote, now_ms: int) -> None:
        """Market orders and limits that cross the touch take liquidity at once (depth is unlimited)."""
        if order.order_type == "Market" or self._crosses(order, quote):
            self._take(order, quote, now_ms)
        elif order.time_in_force in ("IOC", "FOK"):
            order.status = "Cancelled"
            order.cancel_type = "CancelByUser"
            self._close(order, now_ms)

    @staticmethod
    def _crosses(order: Order, quote: Quote) -> bool:
        """A limit price at or through the opposite touch would take liquidity."""
        return order.price >= quote.ask if order.side == "Buy" else order.price <= quote.bid

    def _take(self, order: Order, quote: Quote, now_ms: int) -> None:
        """Take liquidity now: fill what is left at the touch as a taker (one push, `Filled`), or
        cancel a PostOnly order with `EC_PostOnlyWillTakeLiquidity` (reference D-ENUM)."""
        if order.time_in_force == "PostOnly":
            order.status = "Cancelled"
            order.reject_reason = "EC_PostOnlyWillTakeLiquidity"
            self._close(order, now_ms)
            return
        touch = quote.ask if order.side == "Buy" else quote.bid
        self._fill(order, order.leaves_qty, touch, now_ms, maker=False)

    def _lose_race(self, order: Order, outcome: str, now_ms: int, *, refused_cancel: bool = False) -> None:
        """The order fills (or is cancelled) before an acked request reaches it; the request never
        lands. A lost fill race is followed by a second `Filled` push for the refused request
        (rejectReason `EC_OrigClOrdIDDoesNotExist`; `cancelType` `CancelByUser` for a cancel),
        as Bybit documents for a cancel that crosses a fill (reference §3.2)."""
        if outcome == "cancel":
            order.status = "Cancelled"
            order.cancel_type = "CancelByUser"
            self._close(order, now_ms)
            return
        self._fill(order, order.leaves_qty, order.price, now_ms, maker=True)
        echo = order.to_wire()
        echo["rejectReason"] = _LOST_RACE_REASON
        if refused_cancel:
            echo["cancelType"] = "CancelByUser"
        self._outbox.append(Event("order", order.category, order.symbol, echo))

    def _amend(
        self,
        category: str,
        item: Mapping[str, Any],
        now_ms: int,
        *,
        batch: bool,
        fill_first: Callable[[], bool] | None,
        race: Callable[[], Race | None] | None,
    ) -> ItemResult:
        if batch and (_text(item, "triggerPrice") or _text(item, "triggerBy")):
            raise _Reject("param", "conditional orders are not supported by batch amend")
        order = self._lookup(category, item)
        if not order.is_open:
            raise _Reject("closed_filled" if order.status == "Filled" else "closed_cancelled", _CLOSED_MSG)
        if batch and order.status == "Untriggered":
            raise _Reject("param", "conditional orders are not supported by batch amend")
        if fill_first is not None and order.status != "Untriggered" and fill_first():
            self.fill_now(order, now_ms)
            raise _Reject("closed_filled", _CLOSED_MSG)
        inst = order.inst
        qty = _number(item, "qty")
        price = _number(item, "price")
        trigger = _number(item, "triggerPrice")
        if qty is not None:
            self._check_qty(inst, qty, inst.max_qty)
            if qty <= order.cum_exec_qty:
                raise _Reject("qty_le_filled", "the modified qty must be greater than the filled qty")
        if price is not None:
            self._check_price(inst, price)
        if trigger is not None:
            if order.status != "Untriggered":
                raise _Reject("param", "params error: triggerPrice is only for conditional orders")
            self._check_price(inst, trigger)
        opt = dict(order.opt)
        for key in _AMEND_PRICE_FIELDS:
            value = _number(item, key)
            if value is not None:
                opt[key] = "" if value == 0 else inst.fmt_price(value)
        for key in (*_AMEND_ENUM_FIELDS, "triggerBy"):
            text = _text(item, key)
            if text and text not in _TRIGGER_BY:
                raise _Reject("param", f"params error: {key} invalid")
            if text:
                opt[key] = text
        tpsl_mode = _text(item, "tpslMode")
        if tpsl_mode:
            if tpsl_mode not in ("Full", "Partial"):
                raise _Reject("param", "params error: tpslMode invalid")
            opt["tpslMode"] = tpsl_mode
        touches_tpsl = any(_text(item, k) for k in ("takeProfit", "stopLoss"))
        if touches_tpsl and order.status == "PartiallyFilled":
            raise _Reject("tpsl_partial", "cannot modify TP/SL of a partially filled open order")
        new_qty = qty if qty is not None else order.qty
        new_price = price if price is not None else order.price
        new_trigger = trigger if trigger is not None else order.trigger_price
        if (new_qty, new_price, new_trigger, opt) == (order.qty, order.price, order.trigger_price, order.opt):
            raise _Reject(
                "unchanged", "The order remains unchanged as the parameters entered match the existing ones."
            )
        self._check_notional(inst, new_qty, new_price)
        hit = race() if race is not None and order.status != "Untriggered" else None
        if hit is not None and not hit.amended:
            self._lose_race(order, hit.outcome, now_ms)
            return self._ok(order)
        order.qty, order.price, order.trigger_price, order.opt = new_qty, new_price, new_trigger, opt
        quote = self.market.quote(inst.category, inst.symbol)
        assert quote is not None
        if order.status != "Untriggered" and order.order_type == "Limit" and self._crosses(order, quote):
            # A crossing amend takes liquidity at once, like a crossing new order: one push.
            self._take(order, quote, now_ms)
        else:
            order.touch(now_ms)
            self._emit_order(order)
        if hit is not None and order.is_open:  # amended first; the fill/cancel comes right after
            if hit.outcome == "fill":
                self.fill_now(order, now_ms)
            else:
                order.status, order.cancel_type = "Cancelled", "CancelByUser"
                self._close(order, now_ms)
        return self._ok(order)

    def _close(self, order: Order, now_ms: int) -> None:
        order.touch(now_ms)
        self._open.pop(order.order_id, None)
        closed = self._closed.setdefault(order.category, [])
        closed.append(order)
        keep = max(self.realtime_closed_kept, REALTIME_CLOSED_KEPT)
        if len(closed) > 2 * keep:  # bounded; history (`self.orders`) still has every order
            del closed[: len(closed) - keep]
        self._emit_order(order)

    def _fill(self, order: Order, qty: Decimal, price: Decimal, now_ms: int, *, maker: bool) -> None:
        inst = order.inst
        fee, rate, fee_coin = fee_for(order, qty, price, maker=maker)
        order.fee_coin = fee_coin
        order.cum_exec_qty += qty
        order.cum_exec_value += inst.value(qty, price)
        order.cum_exec_fee += fee
        order.status = "Filled" if order.cum_exec_qty >= order.qty else "PartiallyFilled"
        self.market.add_volume(inst, qty)
        self._seq += 1
        if order.status == "Filled":
            self._close(order, now_ms)
        else:
            order.touch(now_ms)
            self._emit_order(order)
        quote = self.market.quote(inst.category, inst.symbol)
        assert quote is not None
        execution = execution_record(
            order, qty, price, fee, rate, maker=maker, quote=quote, exec_id=self.new_id(), seq=self._seq
        )
        self._outbox.append(Event("execution", inst.category, inst.symbol, execution))
        if inst.category != "spot":
            data = self._positions.apply(order, qty, price, quote, now_ms=now_ms, seq=self._seq)
            self._outbox.append(Event("position", inst.category, inst.symbol, data))

    def _emit_order(self, order: Order) -> None:
        self._outbox.append(Event("order", order.category, order.symbol, order.to_wire()))
