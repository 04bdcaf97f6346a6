"""The private `order` stream (`/v5/private`): the evidence that an amend landed.

Job: report every order event to the service (`emit`), which alone writes the `OrderBook`.

* Connect, authenticate (`success: true`), subscribe `order`, then take a REST snapshot of open
  orders for each category (every reconnect may hide a gap: the stream has no sequence numbers),
  re-read by id any order the service's book holds as open (`open_orders`, read only) that the
  snapshot no longer lists, and only then emit `PrivateReady`.
* Every push and every snapshot row is reported as an `OrderSeen` (its source named); the service
  applies it to the book (core/orders.py: monotonic `updatedTime`, duplicates/stale ignored,
  terminal states absorbing) synchronously, inside `emit`, so the book is current when the next
  frame is read.
* App ping every `ping_interval_s` with a pong deadline; reconnect with jittered backoff;
  `PrivateLost` when a ready stream goes down.

It must not decide verdicts and must never log keys, secrets or signatures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog
from websockets.asyncio.client import ClientConnection

from sidecar.bybit._ws import (
    DEFAULT_TIMING,
    STOP_REASON,
    Backoff,
    SessionEnded,
    SocketTiming,
    first_done,
    heartbeat,
    reconnect_forever,
)
from sidecar.bybit.codec import (
    DecodeError,
    OrderDecoder,
    PrivateControl,
    encode_auth,
    encode_subscribe,
)
from sidecar.bybit.exchange_clock import ExchangeClock
from sidecar.bybit.rest import RestClient, RestError
from sidecar.bybit.signing import ws_auth_args
from sidecar.clock import Clock
from sidecar.core.types import Category, OrderView
from sidecar.logs import register_secret, scrub

__all__ = [
    "OrderSeen",
    "PrivateEvent",
    "PrivateLost",
    "PrivateReady",
    "PrivateStream",
]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class OrderSeen:
    """One order event as received: a push on the stream, or a row of a REST snapshot."""

    view: OrderView
    source: Literal["stream", "snapshot"] = "stream"


@dataclass(frozen=True, slots=True)
class PrivateReady:
    """Subscribed and the gap snapshot is applied: the book is as current as we can make it."""

    conn_id: str
    snapshot_orders: int


@dataclass(frozen=True, slots=True)
class PrivateLost:
    """A ready stream went down: order events may be missed until the next `PrivateReady`."""

    reason: str


PrivateEvent = OrderSeen | PrivateReady | PrivateLost


class PrivateStream:
    """Owns the `/v5/private` socket; reports `PrivateEvent`s through `emit`."""

    # Positional order is the service's documented call shape (url, key, secret, clock, ...).
    def __init__(  # noqa: PLR0917
        self,
        url: str,
        api_key: str,
        api_secret: str,
        clock: Clock,
        open_orders: Callable[[], Iterable[OrderView]],
        rest: RestClient,
        categories: Sequence[Category],
        emit: Callable[[PrivateEvent], object],
        *,
        timing: SocketTiming = DEFAULT_TIMING,
        backoff: Backoff | None = None,
        exchange_clock: ExchangeClock | None = None,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._api_secret = api_secret
        register_secret(api_key)  # scrubbed from every frame we receive
        register_secret(api_secret)
        self._clock = clock
        # Pong `args[0]` feeds it; auth `expires` is on it.
        self.exchange_clock = exchange_clock if exchange_clock is not None else ExchangeClock(clock)
        self._ping_sent_ns = 0
        self._open_orders = open_orders
        # Shares equal prices, quantities and labels between the views it decodes (bounded memos).
        self._decoder = OrderDecoder()
        self._rest = rest
        self._categories = tuple(dict.fromkeys(categories))
        self._emit = emit
        self._timing = timing
        self._backoff = backoff if backoff is not None else Backoff()
        self._ready = False
        self._ready_event = asyncio.Event()
        self._pong = asyncio.Event()
        self._resnapshot = asyncio.Event()
        self._req_seq = 0

    def __repr__(self) -> str:  # never show credentials
        return f"PrivateStream({self._url!r}, ready={self._ready})"

    @property
    def ready(self) -> bool:
        return self._ready

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def run(self) -> None:
        """Connect, authenticate, subscribe, snapshot, stream; reconnect with backoff until cancelled."""
        await reconnect_forever(
            name="ws_private",
            url=self._url,
            open_timeout_s=self._timing.open_timeout_s,
            backoff=self._backoff,
            session=self._session,
            lost=self._lost,
            was_ready=lambda: self._ready,
            log=log,
        )

    # ------------------------------------------------------------ session

    def _next_req_id(self) -> str:
        self._req_seq += 1
        return f"p{self._req_seq}"

    async def _session(self, ws: ClientConnection) -> None:
        expires_ms = self.exchange_clock.wall_ms() + self._timing.auth_expiry_ms
        auth_id = self._next_req_id()
        await ws.send(encode_auth(ws_auth_args(self._api_key, self._api_secret, expires_ms), auth_id))
        reply = await self._await_control(ws, "auth")
        if not reply.success:
            log.error("ws_private.auth_failed", ret_msg=reply.ret_msg)
            raise SessionEnded(f"auth failed: {reply.ret_msg}")
        await ws.send(encode_subscribe(["order"], self._next_req_id()))
        sub = await self._await_control(ws, "subscribe")
        if not sub.success:
            log.error("ws_private.subscribe_failed", ret_msg=sub.ret_msg)
            raise SessionEnded(f"subscribe failed: {sub.ret_msg}")
        log.info("ws_private.subscribed", conn_id=reply.conn_id, topics=["order"])
        # Every (re)connect may have hidden order events: look before declaring the book current.
        self._resnapshot.clear()
        try:
            n = await self._snapshot()
        except RestError as e:
            log.error("ws_private.snapshot_failed", ret_code=e.ret_code, ret_msg=e.ret_msg)
            raise SessionEnded(f"snapshot failed: {e}") from None
        self._ready = True
        self._ready_event.set()
        log.info("ws_private.ready", conn_id=reply.conn_id, snapshot_orders=n)
        self._emit(PrivateReady(conn_id=reply.conn_id, snapshot_orders=n))
        await first_done(
            self._reader(ws),
            heartbeat(
                ws, self._timing.ping_interval_s, self._timing.pong_timeout_s, self._pong, self._on_ping
            ),
            self._snapshot_worker(),
        )
        raise SessionEnded("connection closed")

    async def _await_control(self, ws: ClientConnection, op: str) -> PrivateControl:
        """Read frames until the reply to `op`; order pushes that arrive first are applied."""
        try:
            async with asyncio.timeout(self._timing.reply_timeout_s):
                while True:
                    r = self._on_frame(await ws.recv())
                    if isinstance(r, PrivateControl) and r.op == op:
                        return r
        except TimeoutError:
            raise SessionEnded(f"no {op} reply") from None

    async def _reader(self, ws: ClientConnection) -> None:
        async for text in ws:
            self._on_frame(text)

    def _on_frame(self, text: str | bytes) -> PrivateControl | None:
        try:
            r = self._decoder.frame(scrub(text))
        except DecodeError as e:
            # An order event we cannot read is a gap: re-read open orders by REST.
            log.error("ws_private.undecodable", error=str(e))
            self._resnapshot.set()
            return None
        if isinstance(r, PrivateControl):
            if r.is_pong:
                if r.server_time_ms is not None and self._ping_sent_ns:
                    self.exchange_clock.observe(r.server_time_ms, self._ping_sent_ns)
                self._pong.set()
            return r
        cats = self._categories
        for view in r:
            if view.category in cats:
                self._emit(OrderSeen(view, "stream"))
        return None

    def _on_ping(self) -> None:
        self._ping_sent_ns = self._clock.monotonic_ns()

    async def _snapshot_worker(self) -> None:
        while True:
            await self._resnapshot.wait()
            self._resnapshot.clear()
            try:
                await self._snapshot()
            except RestError as e:
                log.error("ws_private.snapshot_failed", ret_code=e.ret_code, ret_msg=e.ret_msg)

    async def _snapshot(self) -> int:
        """Apply REST open orders per category, then re-read orders we hold as open that the venue
        no longer lists (they closed while we were not looking). Returns the open-order count."""
        seen: set[str] = set()
        for cat in self._categories:
            for view in await self._rest.open_orders(cat):
                seen.add(view.order_id)
                self._emit(OrderSeen(view, "snapshot"))
        rechecked = 0
        for held in list(self._open_orders()):
            if held.category in self._categories and held.order_id not in seen:
                fresh = await self._rest.get_order(held.category, held.symbol, order_id=held.order_id)
                rechecked += 1
                if fresh is not None:
                    self._emit(OrderSeen(fresh, "snapshot"))
        log.info("ws_private.gap_snapshot", open_orders=len(seen), rechecked=rechecked)
        return len(seen)

    def _lost(self, reason: str) -> None:
        was_ready = self._ready
        self._ready = False
        self._ready_event.clear()
        if was_ready:
            (log.info if reason == STOP_REASON else log.warning)("ws_private.lost", reason=reason)
            self._emit(PrivateLost(reason=reason))
