"""The order checks (`--allow-orders`, testnet or an emulator only): the probe rests its own
far-from-market test orders, amends them as the sidecar would, and watches the acks and the
private `order` pushes.

Its own orders carry `probe-<tag>-<n>` link ids (the tag is random per run). The ledger remembers
every one it asked for (before the request leaves, so a lost ack is covered too);
`OrderDesk.cancel_all` cancels those still open when the checks end, and `sweep` then lists the
venue's open orders and cancels any that carry the tag, over a fresh connection. Both run in
`finally` blocks, so an error, a cancelled run or Ctrl-C still leaves nothing of the probe's
resting. No order without the tag is ever touched. The one check that needs a fill
(`crossing_amend_fill`) trades the minimum size once and at once sends the opposite market order
of the same size, so the account's position ends where it began.

It must not amend or cancel an order it did not create.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from sidecar.bybit.codec import encode_amend, encode_amend_batch, order_view_from_wire
from sidecar.bybit.rest import RestError
from sidecar.core.numbers import plain_decimal
from sidecar.core.types import TERMINAL_ORDER_STATUSES, AmendItem, Category, OrderView
from sidecar.probe.context import AUTH_EXPIRY_MS, Probe, Rules
from sidecar.probe.sockets import Frame, PrivateSocket, TradeSocket, reply_code

__all__ = ["Ledger", "OrderDesk", "Placed", "order_frame"]

log = structlog.get_logger("probe")

# Resting buys 5 % under the bid: far from any fill (Bybit limits how high a buy may be priced, not
# how low: futures max buy = min(max(index, mark·(1+x)), mark·(1+y)), x typically 1 %).
FAR_BELOW = Decimal("0.95")
# A buy 0.5 % over the ask crosses it even if the market moved meanwhile, and stays under that cap.
CROSS_ABOVE = Decimal("1.005")
PUSH_TIMEOUT_S = 5.0
SETTLE_S = 0.3  # after an order's last expected push, how long to listen for more
_CLEANUP_ROUNDS = 3
_SWEEP_PAUSE_S = 0.5


def order_frame(req_id: str, op: str, args: Mapping[str, Any], ts_ms: int, recv_window_ms: int) -> str:
    """A create or cancel request (the sidecar itself never sends these; its codec encodes only
    amends): the same envelope as `codec.encode_amend`, header values as strings."""
    return json.dumps(
        {
            "reqId": req_id,
            "header": {"X-BAPI-TIMESTAMP": str(int(ts_ms)), "X-BAPI-RECV-WINDOW": str(int(recv_window_ms))},
            "op": op,
            "args": [dict(args)],
        },
        separators=(",", ":"),
    )


@dataclass
class Placed:
    """One of the probe's orders as last seen."""

    category: Category
    symbol: str
    link: str
    order_id: str = ""
    price: Decimal = Decimal(0)
    qty: Decimal = Decimal(0)
    status: str = ""
    updated_ms: int = 0


@dataclass
class Ledger:
    """Every order the probe asked for, by link id, whatever became of the request."""

    orders: dict[str, Placed] = field(default_factory=dict)

    def open_ones(self) -> list[Placed]:
        return [o for o in self.orders.values() if o.status not in TERMINAL_ORDER_STATUSES]

    def places(self) -> set[tuple[Category, str]]:
        return {(o.category, o.symbol) for o in self.orders.values()}


class OrderDesk:
    """The probe's trade and private sockets while order checks run, and its ledger."""

    def __init__(self, p: Probe, trade: TradeSocket, private: PrivateSocket, ledger: Ledger) -> None:
        self.p = p
        self.trade = trade
        self.private = private
        self.ledger = ledger
        self._seq = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, p: Probe, ledger: Ledger) -> AsyncIterator[OrderDesk]:
        async with p.trade() as trade, PrivateSocket.open(p.endpoints.private_ws_url, p.clock) as private:
            problem = await private.ready(p.api_key, p.api_secret, p.xclock.wall_ms() + AUTH_EXPIRY_MS)
            if problem is not None:
                raise ConnectionError(problem)
            yield cls(p, trade, private, ledger)

    # ------------------------------------------------------------ requests

    def _next_link(self) -> str:
        self._seq += 1
        return self.p.link(str(self._seq))

    async def _send(self, op: str, args: Mapping[str, Any]) -> Frame | None:
        rid = self.p.req_id()
        frame = order_frame(rid, op, args, self.p.xclock.wall_ms(), self.p.settings.recv_window_ms)
        return await self.p.spend(self.trade, rid, frame)

    async def create(
        self,
        category: Category,
        symbol: str,
        *,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        tif: str,
        order_type: str = "Limit",
    ) -> tuple[Placed, Frame | None, dict[str, Any] | None]:
        """Place one order of the probe's; (the order, the ack, its first push or None)."""
        placed = Placed(category, symbol, self._next_link(), price=price or Decimal(0), qty=qty)
        self.ledger.orders[placed.link] = placed  # before sending: a lost ack still gets cancelled
        args: dict[str, Any] = {
            "category": category.value,
            "symbol": symbol,
            "side": side,
            "orderType": order_type,
            "qty": plain_decimal(qty),
            "timeInForce": tif,
            "orderLinkId": placed.link,
        }
        if price is not None:
            args["price"] = plain_decimal(price)
        start = self.private.log.mark()
        ack = await self._send("order.create", args)
        if reply_code(ack) != 0:
            placed.status = "Rejected" if isinstance(reply_code(ack), int) else placed.status
            return placed, ack, None
        push = await self.private.wait_order(lambda o: o.get("orderLinkId") == placed.link, start=start)
        if push is not None:
            self.note(placed, push)
        return placed, ack, push

    def note(self, placed: Placed, push: Mapping[str, Any]) -> None:
        """Take an order push's view of one of ours."""
        placed.order_id = str(push.get("orderId") or placed.order_id)
        placed.status = str(push.get("orderStatus") or placed.status)
        with contextlib.suppress(ValueError, ArithmeticError):
            placed.price = Decimal(str(push.get("price")))
        with contextlib.suppress(ValueError, TypeError):
            placed.updated_ms = int(str(push.get("updatedTime")))

    async def amend(self, placed: Placed, price: Decimal) -> tuple[Frame | None, int]:
        """Amend one of ours to `price` with the sidecar's encoder; (the ack, the push mark)."""
        rid = self.p.req_id()
        item = AmendItem(
            placed.symbol, placed.order_id or None, None if placed.order_id else placed.link, {"price": price}
        )
        frame = encode_amend(
            rid, placed.category, item, self.p.xclock.wall_ms(), self.p.settings.recv_window_ms
        )
        start = self.private.log.mark()
        return await self.p.spend(self.trade, rid, frame), start

    async def amend_batch(self, changes: list[tuple[Placed, Decimal]]) -> tuple[Frame | None, int]:
        rid = self.p.req_id()
        category = changes[0][0].category
        items = [
            AmendItem(o.symbol, o.order_id or None, None if o.order_id else o.link, {"price": price})
            for o, price in changes
        ]
        frame = encode_amend_batch(
            rid, category, items, self.p.xclock.wall_ms(), self.p.settings.recv_window_ms
        )
        start = self.private.log.mark()
        return await self.p.spend(self.trade, rid, frame), start

    async def cancel(self, placed: Placed) -> Frame | None:
        args: dict[str, Any] = {"category": placed.category.value, "symbol": placed.symbol}
        if placed.order_id:
            args["orderId"] = placed.order_id
        else:
            args["orderLinkId"] = placed.link
        start = self.private.log.mark()
        ack = await self._send("order.cancel", args)
        if reply_code(ack) == 0:
            push = await self.private.wait_order(
                lambda o: (
                    o.get("orderLinkId") == placed.link and o.get("orderStatus") in TERMINAL_ORDER_STATUSES
                ),
                start=start,
            )
            if push is not None:
                self.note(placed, push)
        return ack

    async def pushes_for(
        self, placed: Placed, start: int, done: Callable[[Mapping[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        """Every push of `placed` from `start` until one satisfies `done` (or PUSH_TIMEOUT_S), plus
        any that follow within SETTLE_S (one push is the assumption, more is an observation); the
        last one is noted."""
        first = await self.private.wait_order(
            lambda o: o.get("orderLinkId") == placed.link and done(o), start=start, timeout_s=PUSH_TIMEOUT_S
        )
        if first is not None:
            await self.private.log.wait_for(
                lambda _: False, start=self.private.log.mark(), timeout_s=SETTLE_S
            )
        items = [
            item for _, _, item in self.private.order_items(start) if item.get("orderLinkId") == placed.link
        ]
        if items:
            self.note(placed, items[-1])
        return items

    def push_sizes(self, placed: Placed, start: int) -> list[int]:
        """How many orders each push that carried `placed` (from `start` on) held."""
        return [n for _, n, item in self.private.order_items(start) if item.get("orderLinkId") == placed.link]

    # ------------------------------------------------------------ cleanup

    async def cancel_all(self) -> None:
        """Cancel every order of the ledger still open (acked or not)."""
        for placed in self.ledger.open_ones():
            try:
                await self.cancel(placed)
            except Exception as e:  # keep going: every order gets its cancel
                log.warning("probe.cancel_failed", link=placed.link, error=type(e).__name__)


async def sweep(p: Probe, ledger: Ledger) -> list[str]:
    """Cancel every open order that carries this run's tag, on every (category, symbol) the probe
    used, over a fresh connection; returns what may still be open afterwards (link ids, and any
    place whose open orders could not be listed): empty means all gone."""
    places = ledger.places()
    for _ in range(_CLEANUP_ROUNDS):
        mine, unlisted = await _tagged_open(p, places)
        if not mine and not unlisted:
            return []
        if mine:
            try:
                async with p.trade() as sock:
                    for view in mine:
                        rid = p.req_id()
                        args = {
                            "category": view.category.value,
                            "symbol": view.symbol,
                            "orderId": view.order_id,
                        }
                        frame = order_frame(
                            rid, "order.cancel", args, p.xclock.wall_ms(), p.settings.recv_window_ms
                        )
                        await sock.request(rid, frame)
            except Exception as e:  # try again next round, over a new connection
                log.warning("probe.sweep_failed", error=f"{type(e).__name__}: {e}")
        await asyncio.sleep(_SWEEP_PAUSE_S)  # let the venue's lists catch up before looking again
    mine, unlisted = await _tagged_open(p, places)
    return [o.order_link_id for o in mine] + [
        f"(the open orders of {u} could not be listed)" for u in unlisted
    ]


async def _tagged_open(p: Probe, places: set[tuple[Category, str]]) -> tuple[list[OrderView], list[str]]:
    """Open orders on the venue whose link id carries this run's tag (nobody else's), and the places
    whose open orders could not be listed."""
    out: list[OrderView] = []
    unlisted: list[str] = []
    for category, symbol in sorted(places, key=lambda k: (k[0].value, k[1])):
        try:
            views = await p.rest.open_orders(category, symbol)
        except RestError as e:
            log.warning("probe.sweep_list_failed", ret_code=e.ret_code)
            unlisted.append(f"{category.value} {symbol}")
            continue
        out.extend(v for v in views if v.order_link_id.startswith(p.link_prefix))
    return out, unlisted


def decodes(item: Mapping[str, Any]) -> bool:
    """Whether the sidecar's decoder reads this order push item."""
    try:
        order_view_from_wire(item)
    except ValueError:
        return False
    return True


def far_buy_price(rules: Rules, bid: Decimal) -> Decimal:
    return rules.floor_price(bid * FAR_BELOW)


def crossing_buy_price(rules: Rules, ask: Decimal) -> Decimal:
    return rules.ceil_price(ask * CROSS_ABOVE)
