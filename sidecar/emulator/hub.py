"""The emulator's live core: exchange, faults, trade desk and the connections that hear about them.

Its one job is to route: trade frames to the desk, model events to private subscribers (applying
the order-event faults), public frames to the ticker feed (`public.py`), and the control actions
shared by the HTTP control API and the Python `Emulator` object. Time is the exchange's clock
(`clock.py`, offset by `POST /emulator/clock`). All methods run on the event loop thread. It must
not parse HTTP or own the aiohttp app (see `server.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sidecar.emulator.clock import ExchangeClock
from sidecar.emulator.conns import Conn
from sidecar.emulator.faults import Fault, FaultPlan
from sidecar.emulator.instruments import CATEGORIES
from sidecar.emulator.model import Event, Exchange
from sidecar.emulator.public import PublicFeed
from sidecar.emulator.ratelimit import RateLimiter
from sidecar.emulator.trade import TradeDesk, TradeOutcome, TradeSession, check_auth
from sidecar.emulator.wire import (
    IdSource,
    private_pong,
    private_reply,
    push,
    trade_pong,
    trade_reply,
)

__all__ = ["Hub"]

log = logging.getLogger("sidecar.emulator")

_PRIVATE_BASES = ("order", "execution", "position")
_PRIVATE_TOPICS = frozenset(
    [*_PRIVATE_BASES]
    + [f"{b}.{c}" for b in ("order", "execution") for c in CATEGORIES]
    + [f"position.{c}" for c in CATEGORIES if c != "spot"]
)


def parse_frame(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Hub:
    """State shared by every socket and control call of one emulator process."""

    def __init__(
        self,
        *,
        seed: int | None,
        credentials: Mapping[str, str],
        walk: bool = True,
    ) -> None:
        self.clock = ExchangeClock()
        self.exchange = Exchange(seed=seed)
        self.exchange.market.walk_enabled = walk
        self.faults = FaultPlan()
        self.limiter = RateLimiter()
        self.credentials = dict(credentials)
        self.ids = IdSource(random.Random(None if seed is None else seed + 1))
        self.desk = TradeDesk(self.exchange, self.faults, self.limiter, self.credentials, self.ids)
        self.conns: set[Conn] = set()
        self.public_connects = 0  # public sockets opened so far
        self.public_connected = asyncio.Event()
        self.public = PublicFeed(self.exchange, self.clock, lambda: list(self.conns))
        self.public.on_stall_end = lambda: self.faults.discard("stall_public")

    def now_ms(self) -> int:
        """Wall time on the exchange's clock (host time + the `/emulator/clock` offset)."""
        return self.clock.now_ms()

    def add_conn(self, conn: Conn) -> None:
        self.conns.add(conn)
        if conn.kind == "public":
            self.public.on_connect(conn)
            self.public_connects += 1
            self.public_connected.set()  # tests wait on it (clear it first)

    # ------------------------------------------------------------------ faults

    def add_faults(self, specs: object) -> list[Fault]:
        """Validate and add faults (all or none); a `stall_public` starts its stall now."""
        added = self.faults.add(specs)
        for fault in added:
            if fault.kind == "stall_public":
                self.public.stall_for(fault.ms)
        return added

    def clear_faults(self) -> None:
        """Drop every pending fault and end a running stall (its held frames go out)."""
        self.faults.clear()
        self.public.end_stall()

    # ------------------------------------------------------------------ trade socket

    def on_trade_text(self, conn: Conn, session: TradeSession, text: str) -> None:
        now = self.now_ms()
        msg = parse_frame(text)
        self.desk.record("/v5/trade", conn.conn_id, msg, now)
        if msg is None:
            conn.send(
                trade_reply(
                    op="", conn_id=conn.conn_id, ret_code=10001, ret_msg="Params Error: not a JSON object"
                )
            )
            return
        op = msg.get("op")
        if op == "ping":
            conn.send(trade_pong(conn.conn_id, now, msg.get("reqId")))
            return
        if op == "auth":
            conn.send(self.desk.auth(session, msg, now))
            return
        outcome = self.desk.handle(session, msg, now)
        self._deliver(conn, outcome, self.exchange.drain())

    def _deliver(self, conn: Conn, outcome: TradeOutcome, events: list[Event]) -> None:
        """Ack and pushes of one trade request, shaped by the delivery faults."""
        if not outcome.valid:
            conn.send(outcome.reply)
            self.dispatch(events)
            return
        op = outcome.op
        before_ms: int | None = None
        for ev in events:
            if ev.topic == "order":
                hit = self.faults.take("order_events_before_ack", symbol=ev.symbol)
                if hit is not None:
                    before_ms = max(before_ms or 0, hit.ms)
        # One delivery fault per request, in this order; a later kind is not consumed.
        if self.faults.take("disconnect_trade", op=op) is not None:
            # Realistic "lost ack + disconnect": the op was applied, the ack never leaves.
            log.info("emulator.fault kind=disconnect_trade conn_id=%s op=%s", conn.conn_id, op)
            self.dispatch(events)
            conn.abort()
            return
        if self.faults.take("drop_ack", op=op) is not None:
            log.info("emulator.fault kind=drop_ack conn_id=%s op=%s", conn.conn_id, op)
            self.dispatch(events)
            return
        delay = self.faults.take("delay_ack", op=op)
        ack_delay_ms = max(delay.ms if delay else 0, before_ms or 0)
        if ack_delay_ms or before_ms is not None:
            self.dispatch(events)
            self._later(ack_delay_ms, conn.send, outcome.reply)
            return
        conn.send(outcome.reply)
        self.dispatch(events)

    @staticmethod
    def _later(ms: int, fn: Any, *args: Any) -> None:
        loop = asyncio.get_running_loop()
        if ms <= 0:
            loop.call_soon(fn, *args)
        else:
            loop.call_later(ms / 1000, fn, *args)

    # ------------------------------------------------------------------ private socket

    def on_private_text(self, conn: Conn, text: str) -> None:
        now = self.now_ms()
        msg = parse_frame(text)
        if msg is None:
            conn.send(
                private_reply(
                    "", conn.conn_id, success=False, ret_msg="error: not a JSON object", req_id=None
                )
            )
            return
        op = msg.get("op")
        req_id = msg.get("req_id")
        op_text = op if isinstance(op, str) else ""
        if op == "ping":
            conn.send(private_pong(conn.conn_id, now, req_id))
            return
        if op == "auth":
            if conn.uid is not None:
                conn.send(
                    private_reply("auth", conn.conn_id, success=False, ret_msg="Repeat auth", req_id=req_id)
                )
                return
            result = check_auth(self.credentials, msg, now)
            conn.uid = result.uid
            ok = result.uid is not None
            text_msg = "" if ok else f"{result.msg} (code {result.code})"
            conn.send(private_reply("auth", conn.conn_id, success=ok, ret_msg=text_msg, req_id=req_id))
            return
        if op in ("subscribe", "unsubscribe"):
            conn.send(self._private_subscribe(conn, op_text, msg.get("args"), req_id))
            return
        conn.send(
            private_reply(
                op_text, conn.conn_id, success=False, ret_msg=f"Invalid op: {op_text}", req_id=req_id
            )
        )

    def _private_subscribe(self, conn: Conn, op: str, args: object, req_id: object) -> dict[str, Any]:
        def fail(text: str) -> dict[str, Any]:
            return private_reply(op, conn.conn_id, success=False, ret_msg=text, req_id=req_id)

        if conn.uid is None:
            return fail("Request not authorized")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return fail("args must be a non-empty list of topics")
        topics = [str(a) for a in args]
        unknown = [t for t in topics if t not in _PRIVATE_TOPICS]
        if unknown:
            return fail(f"error:handler not found,topic:{unknown[0]}")
        for base in _PRIVATE_BASES:
            if base in topics and any(t.startswith(base + ".") for t in topics):
                return fail(f"the all-in-one topic '{base}' and a categorised one cannot be in one request")
        if op == "subscribe":
            conn.topics.update(topics)
        else:
            conn.topics.difference_update(topics)
        return private_reply(op, conn.conn_id, success=True, ret_msg="", req_id=req_id)

    # ------------------------------------------------------------------ public socket

    def on_public_text(self, conn: Conn, text: str) -> None:
        self.public.on_text(conn, text)

    def publish_tickers(self, now_ms: int, keys: Iterable[tuple[str, str]] | None = None) -> None:
        """Push ticker changes to the public subscribers (nothing when nothing changed)."""
        self.public.publish(now_ms, keys)

    # ------------------------------------------------------------------ pushes

    def dispatch(self, events: list[Event]) -> None:
        """Deliver model events; order updates pass through the order-event faults first."""
        for ev in events:
            if ev.topic != "order":
                self._push(ev, copies=1)
                continue
            if self.faults.take("disconnect_private", symbol=ev.symbol) is not None:
                log.info("emulator.fault kind=disconnect_private order_id=%s", ev.data.get("orderId"))
                for conn in list(self.conns):
                    if conn.kind == "private":
                        conn.abort()
                continue
            if self.faults.take("drop_order_events", symbol=ev.symbol) is not None:
                log.info("emulator.fault kind=drop_order_events order_id=%s", ev.data.get("orderId"))
                continue
            delay = self.faults.take("delay_order_events", symbol=ev.symbol)
            copies = 2 if self.faults.take("duplicate_order_events", symbol=ev.symbol) is not None else 1
            if delay is not None and delay.ms > 0:
                self._later(delay.ms, self._push, ev, copies)
            else:
                self._push(ev, copies)

    def _push(self, ev: Event, copies: int) -> None:
        now = self.now_ms()
        for conn in list(self.conns):
            if conn.kind != "private" or conn.uid is None or conn.closed:
                continue
            for topic in (ev.topic, f"{ev.topic}.{ev.category}"):
                if topic in conn.topics:
                    frame = push(self.ids.push_id(), topic, now, [ev.data])
                    for _ in range(copies):
                        conn.send(frame)

    # ------------------------------------------------------------------ market clock

    def on_tick(self) -> None:
        """One 100 ms tick: walk, match, push fills, publish what changed (a frozen price is silent)."""
        now = self.now_ms()
        self.exchange.tick(now)
        self.dispatch(self.exchange.drain())
        self.publish_tickers(now)

    # ------------------------------------------------------------------ control actions

    def set_price(
        self,
        category: str,
        symbol: str,
        *,
        mark_price: Decimal | None = None,
        last_price: Decimal | None = None,
        index_price: Decimal | None = None,
        bid_price: Decimal | None = None,
        ask_price: Decimal | None = None,
        freeze: bool = True,
    ) -> dict[str, str]:
        inst = self.exchange.instrument(category, symbol)
        if inst is None:
            raise ValueError(f"unknown instrument {category}/{symbol}")
        for name, value in (
            ("markPrice", mark_price),
            ("lastPrice", last_price),
            ("indexPrice", index_price),
            ("bid1Price", bid_price),
            ("ask1Price", ask_price),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")
        now = self.now_ms()
        self.exchange.set_price(
            category,
            symbol,
            now,
            last=last_price,
            mark=mark_price,
            index=index_price,
            bid=bid_price,
            ask=ask_price,
            freeze=freeze,
        )
        self.dispatch(self.exchange.drain())
        self.publish_tickers(now, [inst.key])
        return self.exchange.market.ticker(inst, now)

    def place_order(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Rest an order without auth (tests, demos). Raises ValueError with Bybit's code on refusal."""
        category = fields.get("category")
        if category not in CATEGORIES:
            raise ValueError(f"10001: category invalid: {category!r}")
        item = {k: v for k, v in fields.items() if k != "category"}
        item.setdefault("orderType", "Limit")
        result = self.exchange.create(str(category), item, self.now_ms())
        self.dispatch(self.exchange.drain())
        if not result.ok or result.order is None:
            raise ValueError(f"{result.code}: {result.msg}")
        return result.order.to_wire()

    def fill_order(self, order_id: str, qty: Decimal | None = None) -> dict[str, Any]:
        """Execute `qty` (default: the rest) of an open order at its price, pushing the fill events."""
        order = self.exchange.orders.get(order_id)
        if order is None:
            raise ValueError(f"110001: unknown order {order_id}")
        if not order.is_open or order.status == "Untriggered":
            raise ValueError(f"110008: order is {order.status}")
        if qty is not None and (qty <= 0 or not order.inst.on_step(qty)):
            raise ValueError(f"10001: qty must be > 0 and on the qty step {order.inst.step}")
        self.exchange.fill_now(order, self.now_ms(), qty)
        self.dispatch(self.exchange.drain())
        return order.to_wire()

    def orders(self) -> list[dict[str, Any]]:
        return [o.to_wire() for o in self.exchange.orders.values()]
