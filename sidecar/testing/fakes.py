"""In-memory fakes of the exchange ports (sidecar/service/ports.py), so a test can run the real
`Service` on a `FakeClock` and script the exchange by hand.

One job: stand where the Bybit adapters stand and report what the test says happened, through the
same sinks and with the same events as the real adapters (sidecar/bybit/): nothing reaches the
service's state except by those sinks. The fakes decide nothing the service decides (no
validation, no verdict, no freshness) and have no timing of their own (no timers, no sleeps): an
ack, an ack timeout, a lost connection, an order push, a quote happen when the test calls for them.

Contracts kept from the real adapters:
- trade (ws_trade.TradeConnection): `send` raises `NotConnected` before writing when not ready,
  raises ValueError for a reqId already in flight, and records the reqId as pending before the
  frame counts as written; every pending request ends in one `Ack`, `AckTimeout` or a place in a
  `ConnectionLost` (a late ack after a timeout is still an `Ack`); acks are decoded from Bybit's
  wire shape by the real codec, so their classes and items are the real ones.
- private (ws_private.PrivateStream): on connect, a snapshot of the open orders (REST table), a
  re-read of the orders the service holds as open that the snapshot no longer lists, then
  `PrivateReady`; pushes are `OrderSeen(view, "stream")`; `PrivateLost` when a ready stream drops.
- market (market.MarketData): `load_instruments` reports `InstrumentsLoaded`; each connection
  reports `Connected(category)` before its tickers; tickers are `TickerSeen` stamped with the
  clock's monotonic time at arrival; `PongSeen` carries the send time of the ping it answers.
- REST (rest.RestClient): looks only; answers order queries from the table the test keeps.

Nothing in the product may import this module (tests/test_architecture.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sidecar.bybit.codec import decode_trade_obj
from sidecar.bybit.exchange_clock import ExchangeClock
from sidecar.bybit.ws_private import OrderSeen, PrivateEvent, PrivateLost, PrivateReady
from sidecar.bybit.ws_trade import AckTimeout, ConnectionLost, TradeReady
from sidecar.clock import Clock
from sidecar.config import SidecarConfig
from sidecar.core.market_state import Connected, InstrumentsLoaded, MarketEvent, PongSeen, TickerSeen
from sidecar.core.policy import Policy
from sidecar.core.types import Ack, Category, Instrument, OrderView
from sidecar.errors import NotConnected
from sidecar.service.ports import Adapters, AdapterSinks

__all__ = [
    "FakeAdapters",
    "FakeMarket",
    "FakePrivate",
    "FakeRest",
    "FakeTrade",
    "OrderQuery",
    "SentFrame",
]

SymbolKey = tuple[Category, str]


async def _forever() -> None:
    """A connection that stays up until its task is cancelled (the service's stop)."""
    await asyncio.Event().wait()


# ---------------------------------------------------------------------------------------- REST


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """One `get_order` call, as the service made it."""

    category: Category
    symbol: str
    order_id: str | None
    order_link_id: str | None


class FakeRest:
    """The exchange's orders as REST shows them (`orders`, by orderId), and every query asked."""

    def __init__(self, clock: Clock, recv_window_ms: int) -> None:
        self._clock = clock
        self.recv_window_ms = recv_window_ms
        self.orders: dict[str, OrderView] = {}
        self.queries: list[OrderQuery] = []
        self._asked: asyncio.Queue[OrderQuery] = asyncio.Queue()
        # While set, every `get_order` raises it (after being recorded): a failing exchange.
        self.error: BaseException | None = None
        self.closed = False

    def put(self, *views: OrderView) -> None:
        """The exchange now holds these views (nothing is pushed: see FakeAdapters.change)."""
        for view in views:
            self.orders[view.order_id] = view

    def find(self, order_id: str | None, order_link_id: str | None) -> OrderView | None:
        if order_id:
            return self.orders.get(order_id)
        if order_link_id:
            return next((v for v in self.orders.values() if v.order_link_id == order_link_id), None)
        return None

    async def next_query(self) -> OrderQuery:
        """The next `get_order` the service makes (in order; already-made ones first)."""
        return await self._asked.get()

    async def get_order(
        self,
        category: Category,
        symbol: str,
        order_id: str | None = None,
        order_link_id: str | None = None,
    ) -> OrderView | None:
        query = OrderQuery(category, symbol, order_id, order_link_id)
        self.queries.append(query)
        self._asked.put_nowait(query)
        if self.error is not None:
            raise self.error
        view = self.find(order_id, order_link_id)
        if view is None or view.category is not category or view.symbol != symbol:
            return None
        return view

    async def open_orders(self, category: Category) -> list[OrderView]:
        held = self.orders.values()
        return [v for v in held if v.category is category and v.is_open]

    async def server_time_ms(self) -> int:
        return self._clock.wall_ms()  # the exchange's clock is this host's

    async def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------------------- trade


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One frame handed to the trade socket."""

    req_id: str
    frame: str
    items: int | None  # the batch size the service declared (None: a single amend)
    message: dict[str, Any] = field(compare=False)

    @classmethod
    def of(cls, req_id: str, frame: str, items: int | None) -> SentFrame:
        return cls(req_id, frame, items, json.loads(frame))

    @property
    def op(self) -> str:
        return str(self.message.get("op", ""))

    @property
    def amend_items(self) -> list[dict[str, Any]]:
        """The amend items of the frame, each as Bybit reads it (symbol, orderId|orderLinkId, fields)."""
        arg = self.message["args"][0]
        if self.op == "order.amend-batch":
            return list(arg["request"])
        return [{k: v for k, v in arg.items() if k != "category"}]


class FakeTrade:
    """The trade socket. Frames the service sends are kept (`calls`: every `send`; `sent`: those
    written); the test answers them with `ack`, `time_out` or `lose_connection`."""

    def __init__(self, clock: Clock, events: asyncio.Queue[Any], ack_timeout_ms: int) -> None:
        self._clock = clock
        self._events = events
        self.ack_timeout_ms = ack_timeout_ms
        self.auth_failed = asyncio.Event()
        self.auth_error_code: int | None = None
        self._ready = False
        self._ready_event = asyncio.Event()
        self.calls: list[SentFrame] = []
        self.sent: list[SentFrame] = []
        self._written: asyncio.Queue[SentFrame] = asyncio.Queue()
        self._pending: dict[str, SentFrame] = {}
        self._fail_next: BaseException | None = None
        # When set to an Event, `send` waits on it after writing (a slow socket write).
        self.stall: asyncio.Event | None = None
        # Called with each frame just before it counts as written (it may raise: the write failed).
        self.before_write: Callable[[SentFrame], None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def pending_req_ids(self) -> tuple[str, ...]:
        return tuple(self._pending)

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def run(self) -> None:
        self.connect()
        await _forever()

    def connect(self) -> None:
        """Connected and authenticated: `send` works from now on."""
        self._ready = True
        self._ready_event.set()
        self._events.put_nowait(TradeReady(conn_id="fake-trade"))

    def fail_next_send(self, exc: BaseException) -> None:
        """The next `send` raises `exc` instead of writing (NotConnected: as the real one does when
        the socket is not ready; anything else: a bug or an I/O error at the adapter's edge)."""
        self._fail_next = exc

    async def send(self, req_id: str, frame: str, *, items: int | None = None) -> None:
        sent = SentFrame.of(req_id, frame, items)
        self.calls.append(sent)
        if self._fail_next is not None:
            exc, self._fail_next = self._fail_next, None
            raise exc
        if not self._ready:
            raise NotConnected("trade connection not ready")
        if req_id in self._pending:
            raise ValueError(f"reqId {req_id!r} is already in flight")
        self._pending[req_id] = sent  # before the write, as the real adapter (its ack deadline)
        if self.before_write is not None:
            self.before_write(sent)
        self.sent.append(sent)
        self._written.put_nowait(sent)
        if self.stall is not None:
            await self.stall.wait()

    async def next_sent(self) -> SentFrame:
        """The next frame written (in order; already-written ones first)."""
        return await self._written.get()

    def ack(
        self,
        req_id: str,
        codes: Sequence[int] | None = None,
        *,
        ret_code: int = 0,
        ret_msg: str = "OK",
        header: Mapping[str, str] | None = None,
    ) -> Ack:
        """Bybit's answer to a written frame: `codes` per item (default all 0) for a batch, or
        `ret_code` for the whole request. Decoded by the real codec; reported on the event queue."""
        sent = self._pending.pop(req_id, None)
        if sent is None:  # a late ack (after a timeout or a lost connection) is still reported
            sent = next((s for s in self.sent if s.req_id == req_id), None)
            if sent is None:
                raise ValueError(f"no frame with reqId {req_id!r} was written")
        items = sent.amend_items
        echo = [{"orderId": it.get("orderId", ""), "orderLinkId": it.get("orderLinkId", "")} for it in items]
        msg: dict[str, Any] = {"reqId": req_id, "retCode": ret_code, "retMsg": ret_msg, "op": sent.op}
        if sent.op == "order.amend-batch":
            item_codes = list(codes) if codes is not None else [0] * len(items)
            msg["data"] = {"list": echo}
            msg["retExtInfo"] = {
                "list": [{"code": c, "msg": "OK" if c == 0 else "refused"} for c in item_codes]
            }
        else:
            msg["data"] = echo[0]
            msg["retExtInfo"] = {}
        msg["header"] = dict(header or {"Timenow": str(self._clock.wall_ms())})
        decoded = decode_trade_obj(msg, sent.items)
        if not isinstance(decoded, Ack):
            raise TypeError(f"the codec did not read an ack: {decoded!r}")
        self._events.put_nowait(decoded)
        return decoded

    def time_out(self, req_id: str) -> None:
        """No ack within the deadline: `AckTimeout` (the test plays the adapter's timer)."""
        if self._pending.pop(req_id, None) is None:
            raise ValueError(f"reqId {req_id!r} is not pending")
        self._events.put_nowait(AckTimeout(req_id=req_id, timeout_ms=self.ack_timeout_ms))

    def lose_connection(self, reason: str = "lost (test)") -> tuple[str, ...]:
        """The socket drops: every pending request is listed in one `ConnectionLost`; `send`
        raises NotConnected until `connect()`. Returns the reqIds listed."""
        pending = tuple(self._pending)
        self._pending.clear()
        self._ready = False
        self._ready_event.clear()
        self._events.put_nowait(ConnectionLost(pending_req_ids=pending, reason=reason))
        return pending


# ------------------------------------------------------------------------------------- private


class FakePrivate:
    """The private order stream: snapshots from the REST table on connect, pushes on demand."""

    def __init__(
        self,
        rest: FakeRest,
        categories: Iterable[Category],
        emit: Callable[[PrivateEvent], object],
        open_orders: Callable[[], Iterable[OrderView]],
    ) -> None:
        self._rest = rest
        self._categories = tuple(dict.fromkeys(categories))
        self._emit = emit
        self._open_orders = open_orders  # the service's book: read, never written
        self._ready = False
        self._ready_event = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._ready

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def run(self) -> None:
        await self.connect()
        await _forever()

    async def connect(self) -> None:
        """Subscribe: snapshot the open orders, re-read held orders the snapshot misses, ready."""
        seen: set[str] = set()
        for category in self._categories:
            for view in await self._rest.open_orders(category):
                seen.add(view.order_id)
                self._emit(OrderSeen(view, "snapshot"))
        for held in list(self._open_orders()):
            if held.category in self._categories and held.order_id not in seen:
                fresh = await self._rest.get_order(held.category, held.symbol, order_id=held.order_id)
                if fresh is not None:
                    self._emit(OrderSeen(fresh, "snapshot"))
        self._ready = True
        self._ready_event.set()
        self._emit(PrivateReady(conn_id="fake-private", snapshot_orders=len(seen)))

    def push(self, *views: OrderView) -> None:
        """Order events on the stream, in this order (categories not subscribed are dropped)."""
        for view in views:
            if view.category in self._categories:
                self._emit(OrderSeen(view, "stream"))

    def lose(self, reason: str = "lost (test)") -> None:
        was_ready = self._ready
        self._ready = False
        self._ready_event.clear()
        if was_ready:
            self._emit(PrivateLost(reason=reason))


# -------------------------------------------------------------------------------------- market


class FakeMarket:
    """The public feeds: instruments and the tickers the test sets."""

    def __init__(
        self,
        clock: Clock,
        emit: Callable[[MarketEvent], object],
        instruments: Mapping[SymbolKey, Instrument],
        prices: Mapping[SymbolKey, Decimal],
    ) -> None:
        self._clock = clock
        self._emit = emit
        self.instruments = dict(instruments)  # what the venue lists (load_instruments reports it)
        self.prices = dict(prices)  # the snapshot each connection delivers first

    async def load_instruments(self) -> int:
        self._emit(InstrumentsLoaded(dict(self.instruments)))
        return len(self.instruments)

    async def run(self) -> None:
        for category in dict.fromkeys(c for c, _ in self.prices):
            self.connect(category)
        await _forever()

    def connect(self, category: Category) -> None:
        """A new connection of `category`: `Connected`, then a snapshot of each of its prices."""
        self._emit(Connected(category))
        for (cat, symbol), price in self.prices.items():
            if cat is category:
                self.ticker(cat, symbol, price)

    def ticker(self, category: Category, symbol: str, price: Decimal, *, snapshot: bool = True) -> None:
        """A ticker push with mark = last = index = `price`, arriving now."""
        self.prices[(category, symbol)] = price
        values: dict[str, Decimal | None] = {"mark": price, "last": price, "index": price}
        self._emit(TickerSeen(category, symbol, snapshot, values, self._clock.monotonic_ns()))

    def pong(self, category: Category, ping_sent_ns: int | None = None) -> None:
        """A pong on `category`'s connection answering a ping sent at `ping_sent_ns` (default: now)."""
        sent_ns = self._clock.monotonic_ns() if ping_sent_ns is None else ping_sent_ns
        self._emit(PongSeen(category, sent_ns))


# ------------------------------------------------------------------------------------- factory


class FakeAdapters:
    """An `AdapterFactory`: set the exchange's starting world (`instruments`, `prices`, `orders`),
    pass it to `Service(adapters=...)`, then script the exchange through `rest`, `trade`, `private`
    and `market` (built when the service is)."""

    def __init__(
        self,
        *,
        instruments: Iterable[Instrument] = (),
        prices: Mapping[SymbolKey, Decimal] | None = None,
        orders: Iterable[OrderView] = (),
    ) -> None:
        self.instruments = {(i.category, i.symbol): i for i in instruments}
        self.prices = dict(prices or {})
        self.orders = list(orders)
        self._built: tuple[FakeRest, FakeTrade, FakePrivate, FakeMarket] | None = None

    def __call__(self, config: SidecarConfig, policy: Policy, clock: Clock, sinks: AdapterSinks) -> Adapters:
        if self._built is not None:
            raise RuntimeError("a FakeAdapters serves one Service")
        rest = FakeRest(clock, config.exchange.recv_window_ms)
        rest.put(*self.orders)
        trade = FakeTrade(clock, sinks.events, config.verification.ack_timeout_ms)
        private = FakePrivate(rest, sorted(policy.categories), sinks.on_private, sinks.open_orders)
        market = FakeMarket(clock, sinks.on_market, self.instruments, self.prices)
        self._built = (rest, trade, private, market)
        return Adapters(ExchangeClock(clock), rest, market, trade, private)

    def _parts(self) -> tuple[FakeRest, FakeTrade, FakePrivate, FakeMarket]:
        if self._built is None:
            raise RuntimeError("no Service has built these adapters yet")
        return self._built

    @property
    def rest(self) -> FakeRest:
        return self._parts()[0]

    @property
    def trade(self) -> FakeTrade:
        return self._parts()[1]

    @property
    def private(self) -> FakePrivate:
        return self._parts()[2]

    @property
    def market(self) -> FakeMarket:
        return self._parts()[3]

    def change(self, *views: OrderView, push: bool = True) -> None:
        """The exchange changed these orders: REST shows them from now on, and (unless `push` is
        False: the push was lost) the private stream reports them."""
        self.rest.put(*views)
        if push:
            self.private.push(*views)
