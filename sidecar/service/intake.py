"""Event intake: everything the exchange adapters report, applied in one place, in order.

One job: receive the adapters' events and apply them. The market adapter's events go into the
`MarketState` at once, an order the private stream saw goes into the `OrderBook` at once
(`adapter_sinks`): this module is the only writer of both. Everything else, and every order update with what
applying it did, goes through one queue to one task (`run`), which feeds the reconciler and the
pending registry, then drains the reconciler's effects (REST read-backs to ask) and finished
verdicts after every batch of events, the way websockets' I/O layer drains `data_to_send()`.

A watchdog restarts that task if it ever dies: trading halts, every waiting call is answered
(unverified: nothing is lost, the journal keeps looking), and reconciliation goes on.

It decides no verdict (core/reconcile.py does) and settles nothing (the pending registry does).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from sidecar.bybit.exchange_clock import ExchangeClock
from sidecar.bybit.rest import RestError
from sidecar.bybit.ws_private import OrderSeen, PrivateEvent, PrivateLost, PrivateReady
from sidecar.bybit.ws_trade import AckTimeout, ConnectionLost, TradeError, TradeReady
from sidecar.clock import Clock
from sidecar.coordination import Coordinator
from sidecar.core.inflight import reread_holder
from sidecar.core.market_state import MarketEvent, MarketState
from sidecar.core.orders import OrderBook, OrderUpdate
from sidecar.core.ratelimit import RateLimiter
from sidecar.core.reconcile import QueryOrder, Reconciler
from sidecar.core.trips import Trip, TripReason
from sidecar.core.types import Ack, Category, CodeClass, TradingState
from sidecar.service.admission import Leases
from sidecar.service.entries import Reread, RestResult
from sidecar.service.pending import PendingRegistry
from sidecar.service.ports import AdapterSinks, RestPort
from sidecar.service.recorder import Recorder
from sidecar.service.safety import KillSwitch
from sidecar.service.tasks import TaskSet
from sidecar.service.views import event_json, order_body, query_json

__all__ = ["Intake", "adapter_sinks"]

log = structlog.get_logger("service")

# The watchdog restarts a dead event task this often at most (then it stays halted and says so).
_MAX_EVENT_TASK_RESTARTS = 3
# The loop wakes at least this often (s) to let the reconciler's deadlines pass.
_IDLE_TICK_S = 0.25

BudgetHeader = tuple[str, Category, int, int, int]


def adapter_sinks(queue: asyncio.Queue[Any], book: OrderBook, market: MarketState) -> AdapterSinks:
    """Where the adapters report. The market adapter's events are applied to the market state at
    once; an order the private stream saw is applied to the book at once and goes to the event
    task with what applying it did; everything else goes to the event task as it is."""

    def on_private(event: PrivateEvent) -> None:
        if isinstance(event, OrderSeen):
            queue.put_nowait(OrderUpdate(event.view, book.apply(event.view), event.source))
        else:
            queue.put_nowait(event)

    def on_market(event: MarketEvent) -> None:
        market.apply(event)

    return AdapterSinks(queue, on_private, on_market, book.open_orders)


class Intake:
    """The adapters' events, applied; the event task and its watchdog."""

    def __init__(
        self,
        *,
        queue: asyncio.Queue[Any],
        book: OrderBook,
        market: MarketState,
        reconciler: Reconciler,
        registry: PendingRegistry,
        recorder: Recorder,
        leases: Leases,
        safety: KillSwitch,
        coordination: Coordinator,
        limiter: RateLimiter | None,
        clock: Clock,
        exchange_clock: ExchangeClock,
        rest: RestPort,
        lookups: TaskSet,
        background: TaskSet,
    ) -> None:
        self.queue = queue
        self._book = book
        self._reconciler = reconciler
        self._registry = registry
        self._recorder = recorder
        self._leases = leases
        self._safety = safety
        self._coordination = coordination
        self._limiter = limiter
        self._clock = clock
        self._exchange_clock = exchange_clock
        self._lookups = lookups  # REST read-backs and re-reads: cancelled at stop
        self._background = background  # shared-store calls off the event path
        self._rest = rest
        self.task: asyncio.Task[None] | None = None
        # Set after each pass of the event task (events applied, deadlines, drain); for tests.
        self.pass_done = asyncio.Event()
        self.stopping = False
        self.restarts = 0
        # Redis: the latest budget header per (op, category) not yet passed on.
        self._headers: dict[tuple[str, Category], tuple[BudgetHeader, int]] = {}
        self._feeding = False

    def wake(self) -> None:
        """Let the event task look at the reconciler now (new tracking, a fake clock moved)."""
        self.queue.put_nowait(None)

    # ------------------------------------------------------------------ the event task

    def start(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self.run(), name="events")
        task.add_done_callback(self._on_task_done)
        self.task = task
        return task

    async def run(self) -> None:
        while True:
            deadline = self._reconciler.next_deadline_ns()
            now = self._clock.monotonic_ns()
            timeout_s = (
                _IDLE_TICK_S if deadline is None else min(_IDLE_TICK_S, max(0.0, (deadline - now) / 1e9))
            )
            event: object | None = None
            try:
                async with asyncio.timeout(timeout_s):
                    event = await self.queue.get()
            except TimeoutError:
                event = None
            now = self._clock.monotonic_ns()
            wall = self._exchange_clock.wall_ms()  # exchange time: not_applied timing, budget resets
            try:
                if event is not None:
                    self.apply(event, now, wall)
                    # Apply whatever else is already queued before draining: fewer drains under load.
                    while not self.queue.empty():
                        self.apply(self.queue.get_nowait(), now, wall)
                self._reconciler.tick(now, wall)
                self.drain()
                self.pass_done.set()
            except Exception:  # a supervisor: log, keep the loop alive, never turn an error into a send
                log.exception("service.event_failed")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """The watchdog: the task that applies exchange events must never die silently."""
        if self.stopping:
            return
        error = "cancelled" if task.cancelled() else repr(task.exception())
        log.error("service.event_task_died", error=error, restarts=self.restarts)
        self._safety.trip(
            Trip(
                TripReason.EVENT_TASK_DIED,
                TradingState.HALTED,
                f"the exchange-event task stopped ({error}); pending amends were answered unverified",
            )
        )
        try:
            self._reconciler.answer_now()
            self.drain()
        except Exception:  # the answers above matter more than a clean log
            log.exception("service.watchdog_failed")
            self._registry.release_waiters()
        if self.restarts < _MAX_EVENT_TASK_RESTARTS:
            self.restarts += 1
            self.start()

    # ------------------------------------------------------------------ applying events

    def apply(self, event: object, now: int, wall: int) -> None:
        if isinstance(event, OrderUpdate):
            self._registry.order_event(event.view, str(event.result))
            self._reconciler.on_order_update(event.view, now)
        elif isinstance(event, Ack):
            self._on_ack(event, now, wall)
        elif isinstance(event, AckTimeout):
            self._registry.trade_step("ack_timeout", event.req_id)
            self._reconciler.on_ack_missing(event.req_id, now)
        elif isinstance(event, ConnectionLost):
            for req_id in event.pending_req_ids:
                self._registry.trade_step("connection_lost", req_id)
                self._reconciler.on_ack_missing(req_id, now)
        elif isinstance(event, RestResult):
            self._rest_step(event)
            if event.error is not None:
                self._reconciler.on_rest_error(event.query, now)
            else:
                if event.view is not None:
                    self._book.apply(event.view)
                self._reconciler.on_rest_result(event.query, event.view, now, wall)
        elif isinstance(event, Reread):
            if event.view is not None:
                self._book.apply(event.view)
            self._recorder.record(
                "reread",
                None,
                {"orderId": event.order_id, "view": event_json(event.view) if event.view else None},
            )
            self._leases.release(reread_holder(event.order_id), event.order_id)
            log.info("amend.reread_done", order_id=event.order_id, found=event.view is not None)
        elif isinstance(event, TradeError):
            log.warning("ws_trade.error_frame", ret_code=event.ret_code, ret_msg=event.ret_msg)
        elif isinstance(event, TradeReady | PrivateReady | PrivateLost):
            log.info("exchange.connection", change=type(event).__name__)

    def _rest_step(self, event: RestResult) -> None:
        q = event.query
        if self._registry.rest_step(q.request_id, q.index, event.view, event.error):
            return
        body: dict[str, Any] = {
            "query": query_json(q),
            "view": order_body(event.view) if event.view else None,
        }
        if event.error is not None:
            body["error"] = event.error
        self._recorder.record("rest", q.request_id, body)

    def _on_ack(self, ack: Ack, now: int, wall: int) -> None:
        pending = self._registry.ack(ack)
        category = self._registry.category_of(pending)
        limit, status, reset_ms = ack.limit, ack.limit_status, ack.limit_reset_ms
        if category is not None and limit is not None and status is not None and reset_ms is not None:
            header = (ack.op, category, limit, status, reset_ms)
            if self._limiter is not None:
                self._limiter.observe_exchange_budget(*header, now, wall)
            else:
                self._feed_header(header, wall)
        self._registry.checkpoint("after_ack")
        if ack.cls is CodeClass.RATE_LIMITED or any(i.cls is CodeClass.RATE_LIMITED for i in ack.items):
            self._safety.count("rate_limited", now)
            if category is not None:
                if self._limiter is not None:
                    self._limiter.on_exchange_rate_limited(ack.op, category, ack.limit_reset_ms, now, wall)
                else:
                    self._background.spawn(
                        self._coordination.on_exchange_rate_limited(
                            ack.op, category, ack.limit_reset_ms, wall
                        )
                    )
        self._reconciler.on_ack(ack, now)

    def _feed_header(self, header: BudgetHeader, wall_ms: int) -> None:
        """Redis: pass Bybit's budget headers on to the shared budget, off the event path. Only the
        latest header per budget is sent (it is the freshest view; a burst of acks costs one call)."""
        self._headers[(header[0], header[1])] = (header, wall_ms)
        if not self._feeding:
            self._feeding = True
            self._background.spawn(self._feed_headers())

    async def _feed_headers(self) -> None:
        try:
            while self._headers:
                key = next(iter(self._headers))
                (op, category, limit, remaining, reset_ms), wall_ms = self._headers.pop(key)
                await self._coordination.observe_exchange_budget(
                    op, category, limit, remaining, reset_ms, wall_ms
                )
        finally:
            self._feeding = False

    # ------------------------------------------------------------------ the reconciler's output

    def drain(self) -> None:
        """Start the REST read-backs the reconciler asks for, settle finished verdicts, re-read the
        orders of items it gave up on, and let the registry forget what is done."""
        for effect in self._reconciler.effects():
            if isinstance(effect, QueryOrder):
                self._lookups.spawn(self._query(effect), name="rest-query")
        for result in self._reconciler.finished():
            self._registry.result(result)
        for expired in self._reconciler.expired():
            order_id = self._registry.expired(expired)
            if order_id is not None:
                self._lookups.spawn(self._reread(expired.category, expired.symbol, order_id), name="reread")
        self._registry.settle()

    async def _query(self, query: QueryOrder) -> None:
        try:
            view = await self._rest.get_order(
                query.category, query.symbol, query.order_id, query.order_link_id
            )
            await self.queue.put(RestResult(query, view))
        except (RestError, OSError, TimeoutError) as exc:
            await self.queue.put(RestResult(query, None, error=f"{type(exc).__name__}: {exc}"))

    async def _reread(self, category: Category, symbol: str, order_id: str) -> None:
        """Read one order until the exchange answers (backing off); the event task applies it."""
        delay_s = 0.5
        while True:
            try:
                view = await self._rest.get_order(category, symbol, order_id, None)
            except (RestError, OSError, TimeoutError) as exc:
                log.warning("amend.reread_failed", order_id=order_id, error=type(exc).__name__)
                await asyncio.sleep(delay_s)  # back-off between REST attempts, not a wait for a condition
                delay_s = min(delay_s * 2, 30.0)
                continue
            await self.queue.put(Reread(order_id, view))
            return
