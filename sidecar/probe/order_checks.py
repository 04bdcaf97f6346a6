"""The order checks, in the order they run on the probe's own resting orders (see `orders.py`).

Five PostOnly buys rest 5 % under the bid on the linear symbol (A-E, minimum size). A is amended
(the push shape), amended to its own price (the no-op code), amended with the others in a batch
(how the budget header counts items), then amended through the ask (PostOnly: cancelled). B is
cancelled and then amended (the closed-order code). A GTC buy F is amended through the ask (the
crossing fill) and flattened at once. Then `spot_checks` (a spot buy under `minOrderQty`) and
`budget_checks` (batches of orders nobody has) run on the same desk.

One function per named check; each returns its result and never raises for what the exchange
answered (the runner turns an unexpected exception into `error`). It must not touch an order it
did not create.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sidecar.bybit.retcodes import is_unchanged
from sidecar.core.numbers import plain_decimal
from sidecar.core.types import TERMINAL_ORDER_STATUSES, Category
from sidecar.probe.budget_checks import check_batch_max_items, check_batch_rate_limit_item_code
from sidecar.probe.context import BALANCE_CODES, Probe, Rules, code_meaning, not_found_code
from sidecar.probe.orders import (
    Ledger,
    OrderDesk,
    Placed,
    crossing_buy_price,
    decodes,
    far_buy_price,
)
from sidecar.probe.report import CheckResult, differs, error, judge
from sidecar.probe.sockets import Frame, ack_of, item_codes, reply_code, reply_msg, wire_decimal
from sidecar.probe.spot_checks import check_spot_min_order_qty

__all__ = ["OrderChecks", "run_order_checks"]

_RESTING = 5  # orders A-E

Guard = Callable[[str, Callable[[], Awaitable[CheckResult]]], Awaitable[CheckResult]]


def _hint(code: int | str, msg: str) -> str:
    """What the account needs when it cannot rest the probe's orders."""
    if code in BALANCE_CODES:
        return " (the account needs margin for 5 minimum-size buys)"
    if "position idx" in msg.lower():
        return " (the account is in hedge mode; the probe's orders are one-way: switch the symbol to one-way)"
    return ""


def _limit_status(frame: Frame | None) -> int | None:
    ack = ack_of(frame)
    return ack.limit_status if ack is not None else None


@dataclass
class OrderChecks:
    """One run of the order checks; `own_closed` is an order it cancelled (for the look-up checks)."""

    p: Probe
    desk: OrderDesk
    category: Category
    symbol: str
    rules: Rules
    resting: list[Placed] = field(default_factory=list)
    closed_codes: dict[str, int | str] = field(default_factory=dict)
    closed_msgs: dict[str, str] = field(default_factory=dict)
    own_closed: tuple[str, str] | None = None

    # ------------------------------------------------------------ set-up

    async def rest_orders(self) -> str | None:
        """Rest A-E; None when all rest, else why not."""
        touch = await self.p.touch(self.category, self.symbol)
        bid = touch.bid1_price or touch.last_price
        assert bid is not None
        base = far_buy_price(self.rules, bid)
        qty = self.rules.qty_for(base)
        for i in range(_RESTING):
            placed, ack, push = await self.desk.create(
                self.category,
                self.symbol,
                side="Buy",
                qty=qty,
                price=base - i * self.rules.tick,
                tif="PostOnly",
            )
            if reply_code(ack) != 0 or push is None or placed.status != "New":
                hint = _hint(reply_code(ack), reply_msg(ack))
                return (
                    f"could not rest test order {placed.link} (Buy {plain_decimal(qty)} {self.symbol} @ "
                    f"{plain_decimal(placed.price)}): ack {reply_code(ack)} {reply_msg(ack)!r}, push "
                    f"{placed.status or 'none'}{hint}"
                )
            self.resting.append(placed)
        return None

    async def _settle(self, orders: list[Placed], start: int, targets: Mapping[str, Decimal]) -> None:
        """Wait until each order's push shows its target price (bounded), noting each."""
        for o in orders:
            target = targets.get(o.link)
            if target is not None:
                await self.desk.pushes_for(o, start, _shows_price(target))

    # ------------------------------------------------------------ checks

    async def amend_push_shape(self) -> CheckResult:
        a = self.resting[0]
        before, new = a.updated_ms, a.price - self.rules.tick
        ack, start = await self.desk.amend(a, new)
        expected = {
            "ack": 0,
            "pushes": 1,
            "ordersPerPush": [1],
            "orderStatus": "New",
            "priceShown": "amended",
            "updatedTimeAdvanced": True,
            "decodes": True,
        }
        if reply_code(ack) != 0:
            return differs(
                "amend_push_shape",
                expected,
                {"ack": reply_code(ack)},
                f"a plain price amend was refused: {reply_msg(ack)!r}",
            )
        items = await self.desk.pushes_for(a, start, lambda o: wire_decimal(o.get("price")) == new)
        last = items[-1] if items else {}
        observed = {
            "ack": 0,
            "pushes": len(items),
            "ordersPerPush": sorted(set(self.desk.push_sizes(a, start))),
            "orderStatus": last.get("orderStatus"),
            "priceShown": "amended" if wire_decimal(last.get("price")) == new else last.get("price"),
            "updatedTimeAdvanced": a.updated_ms > before,
            "decodes": all(decodes(i) for i in items),
        }
        return judge(
            "amend_push_shape",
            expected,
            observed,
            agrees="an amend shows up as one ordinary order push: same status, the new price, a later "
            "updatedTime (what the sidecar's verifier matches)",
            otherwise="the push after an amend looks otherwise: if `decodes` is false or the new price "
            "never shows, the sidecar cannot verify amends (they end `unverified`); extra pushes or "
            "several orders per push are harmless",
        )

    async def noop_amend_code(self) -> CheckResult:
        a = self.resting[0]
        single, _ = await self.desk.amend(a, a.price)
        batch, _ = await self.desk.amend_batch([(a, a.price)])
        item = (item_codes(batch, 1) or [(-1, "")])[0]
        observed = {
            "single": {
                "retCode": reply_code(single),
                "unchanged": is_unchanged(_as_int(reply_code(single)), reply_msg(single)),
            },
            "batchItem": {"retCode": item[0], "unchanged": is_unchanged(item[0], item[1])},
        }
        expected = {
            "single": {"retCode": 10001, "unchanged": True},
            "batchItem": {"retCode": 10001, "unchanged": True},
        }
        return judge(
            "noop_amend_code",
            expected,
            observed,
            agrees=f"an amend that changes nothing is refused with 10001 {reply_msg(single)!r}; the sidecar "
            "denies such amends before sending (NO_CHANGE) and reads this answer as NO_CHANGE in a race",
            otherwise="a no-op amend is answered otherwise: the sidecar still denies no-ops before "
            "sending; in a race the exchange's answer is reported `rejected` without the NO_CHANGE "
            "reason (report the observed code)",
        )

    async def batch_limit_status_units(self) -> CheckResult:
        tick = self.rules.tick
        await self.p.fresh_window()
        e = self.resting[-1]
        one, start1 = await self.desk.amend_batch([(e, e.price - tick)])
        await self._settle([e], start1, {e.link: e.price - tick})
        targets = {o.link: o.price - tick for o in self.resting}
        five, start5 = await self.desk.amend_batch([(o, targets[o.link]) for o in self.resting])
        await self._settle(self.resting, start5, targets)
        s1, s5 = _limit_status(one), _limit_status(five)
        expected = {"statusDropFor5Items": 5}
        if s1 is None or s5 is None:
            return error(
                "batch_limit_status_units",
                expected,
                "a batch ack carried no X-Bapi-Limit-Status (see ack_rate_limit_headers)",
                {"after1Item": s1, "after5Items": s5},
            )
        observed = {"statusDropFor5Items": s1 - s5}
        return judge(
            "batch_limit_status_units",
            expected,
            observed,
            agrees=f"X-Bapi-Limit-Status fell by 5 for a 5-item batch ({s1} → {s5}): one unit per "
            "order, as the sidecar counts linear batches",
            otherwise=f"the budget header fell by {s1 - s5} for 5 items ({s1} → {s5}): if it counts "
            "per request, the sidecar's per-item count is stricter than needed (safe); any other "
            "figure may be another client trading meanwhile: run it again while nothing else trades",
        )

    async def postonly_cross_cancel(self) -> CheckResult:
        a = self.resting[0]
        touch = await self.p.touch(self.category, self.symbol)
        ask = touch.ask1_price or touch.last_price
        assert ask is not None
        cross = crossing_buy_price(self.rules, ask)
        ack, start = await self.desk.amend(a, cross)
        expected = {
            "ack": 0,
            "pushes": 1,
            "orderStatus": "Cancelled",
            "rejectReason": "EC_PostOnlyWillTakeLiquidity",
            "priceShown": "amended",
        }
        if reply_code(ack) != 0:
            return differs(
                "postonly_cross_cancel",
                expected,
                {"ack": reply_code(ack)},
                f"the crossing PostOnly amend was refused in the ack ({code_meaning(reply_code(ack))}, "
                f"{reply_msg(ack)!r}) instead of cancelling the order",
            )
        items = await self.desk.pushes_for(
            a, start, lambda o: o.get("orderStatus") in TERMINAL_ORDER_STATUSES
        )
        last = items[-1] if items else {}
        observed = {
            "ack": 0,
            "pushes": len(items),
            "orderStatus": last.get("orderStatus"),
            "rejectReason": last.get("rejectReason"),
            "priceShown": "amended" if wire_decimal(last.get("price")) == cross else last.get("price"),
        }
        return judge(
            "postonly_cross_cancel",
            expected,
            observed,
            agrees=f"a PostOnly amend through the ask ({plain_decimal(cross)} vs ask {plain_decimal(ask)}) "
            "is acked, then the order is cancelled in one push with EC_PostOnlyWillTakeLiquidity at the "
            "amended price: the sidecar reports that item `superseded` with the cancel observed",
            otherwise="a crossing PostOnly amend ends otherwise; if the order still rests at the crossing "
            "price it may fill as a taker; the sidecar verifies by what the order shows, so verdicts "
            "stay correct (report the observed values)",
        )

    async def cancelled_codes(self) -> None:
        """Cancel B, then amend it and A (cancelled by the PostOnly cross): record the codes."""
        a, b = self.resting[0], self.resting[1]
        await self.desk.cancel(b)
        if b.status == "Cancelled":
            self.own_closed = (b.symbol, b.order_id)
        for label, order in (("cancelledByUser", b), ("cancelledPostOnly", a)):
            if order.status != "Cancelled":
                self.closed_codes[label] = f"not exercised (order is {order.status or 'unknown'})"
                continue
            ack, _ = await self.desk.amend(order, order.price - self.rules.tick)
            self.closed_codes[label] = reply_code(ack)
            self.closed_msgs[label] = reply_msg(ack)

    async def crossing_amend_fill(self) -> CheckResult:
        touch = await self.p.touch(self.category, self.symbol)
        bid, ask = touch.bid1_price or touch.last_price, touch.ask1_price or touch.last_price
        assert bid is not None and ask is not None
        far = far_buy_price(self.rules, bid)
        expected = {
            "ack": 0,
            "pushes": 1,
            "orderStatus": "Filled",
            "priceShown": "amended",
            "filledAtOrBetterThanLimit": True,
        }
        f, ack, push = await self.desk.create(
            self.category, self.symbol, side="Buy", qty=self.rules.qty_for(far), price=far, tif="GTC"
        )
        if reply_code(ack) != 0 or push is None:
            return error(
                "crossing_amend_fill",
                expected,
                f"could not rest the GTC test order: {reply_code(ack)} {reply_msg(ack)!r}",
            )
        cross = crossing_buy_price(self.rules, ask)
        amend_ack, start = await self.desk.amend(f, cross)
        if reply_code(amend_ack) != 0:
            return differs(
                "crossing_amend_fill",
                expected,
                {"ack": reply_code(amend_ack)},
                f"the crossing amend was refused in the ack ({code_meaning(reply_code(amend_ack))}, "
                f"{reply_msg(amend_ack)!r})",
            )
        items = await self.desk.pushes_for(
            f, start, lambda o: o.get("orderStatus") in TERMINAL_ORDER_STATUSES
        )
        last = items[-1] if items else {}
        avg = wire_decimal(last.get("avgPrice"))
        observed = {
            "ack": 0,
            "pushes": len(items),
            "orderStatus": last.get("orderStatus"),
            "priceShown": "amended" if wire_decimal(last.get("price")) == cross else last.get("price"),
            "filledAtOrBetterThanLimit": avg is not None and avg <= cross,
        }
        flat = await self._flatten(f, start)
        if f.status == "Filled":
            ack2, _ = await self.desk.amend(f, far)
            self.closed_codes["filled"] = reply_code(ack2)
            self.closed_msgs["filled"] = reply_msg(ack2)
        else:
            self.closed_codes["filled"] = f"not exercised (order is {f.status or 'unknown'})"
        if flat is not None:
            return error("crossing_amend_fill", expected, flat, observed)
        return judge(
            "crossing_amend_fill",
            expected,
            observed,
            agrees=f"an amend through the ask ({plain_decimal(cross)}) filled at once as a taker at "
            f"{last.get('avgPrice')} in one push showing the amended price; the probe sold the same size "
            "back at once; the sidecar reports `verified` with observed.orderStatus Filled",
            otherwise="a crossing amend fills otherwise (several pushes, partial fills, the old price "
            "shown); the sidecar verifies by what the order shows and reports the fill in "
            "observed.orderStatus, so verdicts stay correct (report the observed values)",
        )

    async def _flatten(self, f: Placed, start: int) -> str | None:
        """Sell back what the crossing amend bought (None when done or nothing was bought): cancel
        what still rests, then sell what the order's latest push says it filled."""
        if f.status not in TERMINAL_ORDER_STATUSES:
            await self.desk.cancel(f)
        pushes = [
            item for _, _, item in self.desk.private.order_items(start) if item.get("orderLinkId") == f.link
        ]
        bought = (wire_decimal(pushes[-1].get("cumExecQty")) if pushes else None) or Decimal(0)
        if bought <= 0:
            return None
        _, ack, _ = await self.desk.create(
            self.category, self.symbol, side="Sell", qty=bought, price=None, tif="IOC", order_type="Market"
        )
        if reply_code(ack) != 0:
            return (
                f"the probe bought {plain_decimal(bought)} {self.symbol} and could not sell it back "
                f"({reply_code(ack)} {reply_msg(ack)!r}): close that position by hand"
            )
        return None

    def amend_closed_order_code(self) -> CheckResult:
        code = not_found_code(self.category)
        expected = {"cancelledByUser": code, "cancelledPostOnly": code, "filled": code}
        observed = {k: self.closed_codes.get(k, "not exercised") for k in expected}
        missing = [k for k, v in observed.items() if not isinstance(v, int)]
        if missing:
            return error(
                "amend_closed_order_code",
                expected,
                f"{', '.join(missing)} not exercised (an earlier step did not close the order)",
                observed,
            )
        return judge(
            "amend_closed_order_code",
            expected,
            observed,
            agrees=f"amending a cancelled or filled order answers {code} "
            f"{self.closed_msgs.get('filled', '')!r}; the sidecar looks at the order on that code and "
            "reports `superseded`, not `rejected`",
            otherwise="; ".join(f"{k}: {code_meaning(v)}" for k, v in observed.items())
            + ". A code the sidecar treats as rejected would tell an agent that a filled order was "
            "refused (report it); order_closed or ambiguous codes still end `superseded`",
        )


def _shows_price(price: Decimal) -> Callable[[Mapping[str, Any]], bool]:
    def shows(item: Mapping[str, Any]) -> bool:
        return wire_decimal(item.get("price")) == price

    return shows


def _as_int(code: int | str) -> int | None:
    return code if isinstance(code, int) else None


async def run_order_checks(
    p: Probe, ledger: Ledger, guard: Guard
) -> tuple[dict[str, CheckResult], tuple[str, str] | None]:
    """Every order check, in order, on a desk of the probe's own orders; each check guarded by
    `guard` (an exception becomes that check's `error`). The desk cancels what it created on the
    way out; the caller sweeps after that."""
    category, symbol = p.linear_symbol()
    _, rules = await p.rules(category, symbol)
    results: dict[str, CheckResult] = {}
    async with OrderDesk.open(p, ledger) as desk:
        run = OrderChecks(p, desk, category, symbol, rules)
        try:
            problem = await run.rest_orders()
            needs_resting = (
                "amend_push_shape",
                "noop_amend_code",
                "batch_limit_status_units",
                "postonly_cross_cancel",
            )
            if problem is not None:
                for name in (*needs_resting, "amend_closed_order_code"):
                    results[name] = error(name, None, problem)
            else:
                results["amend_push_shape"] = await guard("amend_push_shape", run.amend_push_shape)
                results["noop_amend_code"] = await guard("noop_amend_code", run.noop_amend_code)
                results["batch_limit_status_units"] = await guard(
                    "batch_limit_status_units", run.batch_limit_status_units
                )
                results["postonly_cross_cancel"] = await guard(
                    "postonly_cross_cancel", run.postonly_cross_cancel
                )
                try:
                    await run.cancelled_codes()
                except Exception as e:  # the closed-order check then reports what it lacks
                    run.closed_codes.setdefault("cancelledByUser", f"not exercised ({type(e).__name__})")
            results["crossing_amend_fill"] = await guard("crossing_amend_fill", run.crossing_amend_fill)
            if problem is None:
                results["amend_closed_order_code"] = run.amend_closed_order_code()
            results["spot_min_order_qty"] = await guard(
                "spot_min_order_qty", functools.partial(check_spot_min_order_qty, p, desk)
            )
            trade = desk.trade
            results["batch_max_items"] = await guard(
                "batch_max_items", functools.partial(check_batch_max_items, p, trade, category, symbol)
            )
            results["batch_rate_limit_item_code"] = await guard(
                "batch_rate_limit_item_code",
                functools.partial(check_batch_rate_limit_item_code, p, trade, category, symbol),
            )
        finally:
            await desk.cancel_all()
    return results, run.own_closed
