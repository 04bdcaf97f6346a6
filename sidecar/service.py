"""The orchestrator: owns the core objects and the exchange adapters, runs their tasks, and turns
one amend request into one honest result.

Pipeline of `submit` (each step journaled): validate → rate-limit → journal the intent (committed
before anything leaves) → track in the reconciler → send over the trade socket → wait until every
sent item has a verdict (verified, rejected, not_applied, superseded) or the verification deadline
passes (unverified; reconciliation continues in the background and the journal records late verdicts).

Single ownership (as in NautilusTrader): validation, rate limiting and tracking run synchronously
on the event loop without awaiting in between, so no locks are needed. Exchange events arrive on
one queue and are applied by one task (`_event_loop`), which drains the reconciler's effects and
finished verdicts after every event, the way websockets' I/O layer drains `data_to_send()`.

This module must not contain validation, rate-limit or reconciliation rules (they live in
`sidecar/core/`), nor speak the wire format (that is `sidecar/bybit/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from sidecar.bybit.codec import encode_amend, encode_amend_batch
from sidecar.bybit.endpoints import Endpoints
from sidecar.bybit.ids import ReqIdFactory, make_boot_token
from sidecar.bybit.market import MarketData
from sidecar.bybit.rest import RestClient, RestError
from sidecar.bybit.ws_private import OrderUpdate, PrivateLost, PrivateReady, PrivateStream
from sidecar.bybit.ws_trade import (
    AckTimeout,
    ConnectionLost,
    NotConnected,
    TradeConnection,
    TradeError,
    TradeReady,
)
from sidecar.clock import Clock
from sidecar.config import SidecarConfig
from sidecar.core.orders import OrderBook
from sidecar.core.policy import Policy
from sidecar.core.ratelimit import RateLimiter, Throttle, demands_for
from sidecar.core.reconcile import (
    ItemResult,
    QueryOrder,
    Reconciler,
    ReconcileSettings,
    TrackedItem,
)
from sidecar.core.types import (
    Ack,
    AmendRequest,
    Category,
    CodeClass,
    DenialCode,
    ItemVerdict,
    OrderView,
    Outcome,
    Reason,
    TradingState,
    Verdict,
)
from sidecar.core.validation import validate
from sidecar.journal import Journal, JournalError, to_jsonable
from sidecar.results import ItemOutcome, is_error, observed_body, result_body

__all__ = ["AmendResult", "Credentials", "Service"]

log = structlog.get_logger("service")


@dataclass(frozen=True, slots=True)
class Credentials:
    """API key and secret. The repr never shows them."""

    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return "Credentials(api_key='[redacted]', api_secret='[redacted]')"


@dataclass(frozen=True, slots=True)
class AmendResult:
    """What the agent gets back: the structured body and whether it is an error result."""

    body: dict[str, Any]
    is_error: bool


@dataclass(frozen=True, slots=True)
class _RestResult:
    query: QueryOrder
    view: OrderView | None
    error: str | None = None


@dataclass
class _Pending:
    """One sent request waiting for its item verdicts."""

    request_id: str
    req_id: str
    verdict: Verdict
    started_ns: int
    sent: tuple[ItemVerdict, ...]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    results: dict[int, ItemResult] = field(default_factory=dict)
    ack: Ack | None = None
    answered: bool = False


class Service:
    """The sidecar's public API: `preview`, `submit`, `outcome`, `order_state`, `policy_view`,
    `halt`/`resume`. Use as an async context manager: entering starts the adapters' tasks and waits
    until the exchange connections are ready."""

    def __init__(
        self,
        config: SidecarConfig,
        *,
        clock: Clock,
        endpoints: Endpoints,
        credentials: Credentials,
        journal: Journal,
        policy: Policy | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.endpoints = endpoints
        self.journal = journal
        self.policy = policy if policy is not None else config.to_policy()
        self.book = OrderBook()
        self.limiter = RateLimiter(self.policy)
        v = config.verification
        self.reconciler = Reconciler(
            ReconcileSettings(
                ack_timeout_ms=v.ack_timeout_ms,
                verify_timeout_ms=v.timeout_ms,
                not_applied_margin_ms=v.not_applied_margin_ms,
                background_timeout_ms=v.background_timeout_ms,
                rest_fallback=v.rest_fallback,
            )
        )
        self.recv_window_ms = config.exchange.recv_window_ms
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self.rest = RestClient(
            endpoints.rest_url, credentials.api_key, credentials.api_secret, clock, self.recv_window_ms
        )
        self.market = MarketData(endpoints, self.rest, sorted(self.policy.symbols), clock)
        self.trade = TradeConnection(
            endpoints.trade_ws_url,
            credentials.api_key,
            credentials.api_secret,
            clock,
            self._events,
            ack_timeout_ms=v.ack_timeout_ms,
        )
        self.private = PrivateStream(
            endpoints.private_ws_url,
            credentials.api_key,
            credentials.api_secret,
            clock,
            self.book,
            self.rest,
            sorted(self.policy.categories),
            self._events,
        )
        boot = journal.next_boot()
        token = make_boot_token(clock.wall_ms(), os.urandom(3))
        self._req_ids = ReqIdFactory(token)
        self._request_seq = 0
        self._request_prefix = f"r{boot:x}-{token}"
        self._pending: dict[str, _Pending] = {}
        self._tracked_orders: dict[str, int] = {}  # orderId/orderLinkId -> in-flight item count
        self._tasks: list[asyncio.Task[Any]] = []
        self._rest_tasks: set[asyncio.Task[None]] = set()
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, ready_timeout_s: float = 15.0) -> None:
        await self.market.load_instruments()
        self._tasks = [
            asyncio.create_task(self.market.run(), name="market"),
            asyncio.create_task(self.trade.run(), name="ws_trade"),
            asyncio.create_task(self.private.run(), name="ws_private"),
            asyncio.create_task(self._event_loop(), name="events"),
        ]
        async with asyncio.timeout(ready_timeout_s):
            await self.trade.wait_ready()
            await self.private.wait_ready()
        await self._wait_for_quotes(ready_timeout_s)
        log.info("service.started", trade=self.endpoints.trade_ws_url, policy_version=self.policy.version)

    async def _wait_for_quotes(self, timeout_s: float) -> None:
        """Give the ticker streams a moment to deliver a first price for every symbol.

        Not fatal: a symbol without a fresh price is simply denied (fail closed) until one arrives.
        """
        missing = set(self.policy.symbols)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while missing:
                    missing = {k for k in missing if self.market.quote(*k) is None}
                    if missing:
                        await asyncio.sleep(0.01)  # startup only; ticker pushes arrive every ~100 ms
        if missing:
            log.warning("service.quotes_missing", symbols=sorted(f"{c}:{s}" for c, s in missing))

    async def stop(self) -> None:
        for task in [*self._tasks, *self._rest_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._rest_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.rest.close()
        log.info("service.stopped")

    # ------------------------------------------------------------------ public API

    def trading_state(self) -> tuple[TradingState, str]:
        """The kill switch as the journal database holds it (shared with `sidecar halt`)."""
        try:
            state, reason, _who, _ts = self.journal.trading_state()
            return TradingState(state), reason
        except (JournalError, ValueError) as exc:
            return TradingState.HALTED, f"journal unreadable: {exc}"

    def halt(self, reason: str, who: str = "operator") -> None:
        self.journal.set_trading_state(TradingState.HALTED, reason, who, self.clock.wall_ms())
        log.warning("safety.halted", reason=reason, who=who)

    def resume(self, who: str = "operator") -> None:
        self.journal.set_trading_state(TradingState.ACTIVE, "", who, self.clock.wall_ms())
        log.info("safety.resumed", who=who)

    def _trip(self, reason: str) -> None:
        """Automatic halt (fail closed). Tries the journal; the in-memory halt holds regardless."""
        self._forced_halt = reason
        with contextlib.suppress(JournalError):
            self.journal.set_trading_state(TradingState.HALTED, reason, "sidecar", self.clock.wall_ms())
        log.error("safety.tripped", reason=reason)

    _forced_halt: str | None = None

    def _effective_state(self) -> TradingState:
        if self._forced_halt is not None:
            return TradingState.HALTED
        return self.trading_state()[0]

    def preview(self, request: AmendRequest) -> AmendResult:
        """The verdicts a submit would get now. Sends nothing, consumes no budget, journals nothing."""
        now_ns = self.clock.monotonic_ns()
        verdict = validate(request, self.policy, self.market, self.book, now_ns, self._effective_state())
        request_id = "preview"
        retry_after: int | None = None
        outcomes: list[ItemOutcome] = []
        throttle = None
        if verdict.any_allowed:
            decision = self.limiter.peek(self._demands(request, verdict), now_ns)
            if isinstance(decision, Throttle):
                throttle = decision
                retry_after = decision.retry_after_ms
        for iv in verdict.items:
            if not iv.allowed:
                outcomes.append(ItemOutcome(iv, Outcome.DENIED, iv.reasons))
            elif throttle is not None:
                outcomes.append(ItemOutcome(iv, Outcome.THROTTLED, (self._rate_reason(throttle),)))
            else:
                outcomes.append(ItemOutcome(iv, Outcome.ALLOWED))
        reasons = list(verdict.reasons)
        if throttle is not None:
            reasons.append(self._rate_reason(throttle))
        body = result_body(
            request_id=request_id,
            items=outcomes,
            reasons=reasons,
            retry_after_ms=retry_after,
            latency_ms=(self.clock.monotonic_ns() - now_ns) / 1e6,
        )
        return AmendResult(body, is_error(outcomes))

    async def submit(self, request: AmendRequest) -> AmendResult:
        """Validate, rate-limit, journal, send and verify one amend request."""
        started_ns = self.clock.monotonic_ns()
        request_id = self._next_request_id()
        try:
            self.journal.record_request(
                request_id, request.tool, _request_args(request), self.clock.wall_ms()
            )
        except JournalError as exc:
            self._trip(f"journal write failed: {exc}")
            return self._finish_unsent(
                request_id,
                request=request,
                started_ns=started_ns,
                code=DenialCode.INTERNAL_ERROR,
                detail=str(exc),
            )

        verdict = validate(request, self.policy, self.market, self.book, started_ns, self._effective_state())
        if not verdict.any_allowed:
            return self._finish_denied(request_id, verdict, started_ns)

        decision = self.limiter.check(self._demands(request, verdict), started_ns)
        if isinstance(decision, Throttle):
            return self._finish_throttled(request_id, verdict, decision, started_ns)

        category = verdict.category
        assert category is not None  # an allowed item implies a valid category
        to_send = verdict.allowed_items
        req_id = self._req_ids.next()
        ts_ms = self.clock.wall_ms()
        items = [iv.item for iv in to_send if iv.item is not None]
        if request.batch:
            op = "order.amend-batch"
            frame = encode_amend_batch(req_id, category, items, ts_ms, self.recv_window_ms)
        else:
            op = "order.amend"
            frame = encode_amend(req_id, category, items[0], ts_ms, self.recv_window_ms)
        try:
            self.journal.record_intent(
                request_id,
                req_id,
                op,
                str(category),
                [_intent_item(iv) for iv in to_send],
                ts_ms,
                self.recv_window_ms,
                self.policy.version,
                ts_ms,
            )
        except JournalError as exc:
            # Write-ahead: an intent that is not durable is never sent.
            self._trip(f"journal write failed: {exc}")
            return self._finish_unsent(
                request_id,
                request=request,
                started_ns=started_ns,
                code=DenialCode.INTERNAL_ERROR,
                detail=str(exc),
            )

        pending = _Pending(request_id, req_id, verdict, started_ns, to_send)
        self._pending[request_id] = pending
        for iv in to_send:
            for key in _order_keys(iv):
                self._tracked_orders[key] = self._tracked_orders.get(key, 0) + 1
        self.reconciler.track(
            request_id,
            req_id,
            [TrackedItem(iv.index, category, iv.item, iv.order) for iv in to_send if iv.item is not None],
            ts_ms,
            self.recv_window_ms,
            started_ns,
        )
        try:
            await self.trade.send(req_id, frame, items=len(to_send) if request.batch else None)
        except NotConnected as exc:
            self.reconciler.forget(request_id)
            self._release(pending)
            del self._pending[request_id]
            self._journal_quiet("not_sent", request_id, {"reason": str(exc)}, req_id=req_id)
            return self._finish_unsent(
                request_id,
                request=request,
                started_ns=started_ns,
                code=DenialCode.EXCHANGE_UNAVAILABLE,
                detail=str(exc),
                verdict=verdict,
            )
        self._journal_quiet("sent", request_id, {"op": op, "items": len(to_send)}, req_id=req_id)
        log.info("amend.sent", request_id=request_id, req_id=req_id, items=len(to_send), op=op)
        self._wake.set()

        await pending.done.wait()
        return self._answer(pending)

    def outcome(self, request_id: str) -> dict[str, Any] | None:
        """The journaled result of a request, including later reconciliation."""
        record = self.journal.get_request(request_id)
        if record is None:
            return None
        result = record.result
        if result is None:
            return {"requestId": request_id, "outcome": "pending", "status": record.status}
        return dict(result)

    def order_state(
        self, category: str, symbol: str, order_id: str | None, order_link_id: str | None
    ) -> dict[str, Any] | None:
        try:
            cat = Category(category)
        except ValueError:
            return None
        view = self.book.find(cat, symbol, order_id, order_link_id)
        return order_body(view) if view is not None else None

    def policy_view(self, category: str | None = None, symbol: str | None = None) -> dict[str, Any]:
        now_ns = self.clock.monotonic_ns()
        state, reason = self.trading_state()
        if self._forced_halt is not None:
            state, reason = TradingState.HALTED, self._forced_halt
        symbols: list[dict[str, Any]] = []
        for (cat, sym), rule in sorted(self.policy.symbols.items()):
            if category is not None and str(cat) != category:
                continue
            if symbol is not None and sym != symbol:
                continue
            quote = self.market.quote(cat, sym)
            inst = self.market.instrument(cat, sym)
            ref = quote.reference(rule.reference) if quote is not None else None
            band = rule.price_band_bps / Decimal(10_000)
            max_qty = rule.max_qty if inst is None else min(rule.max_qty, inst.max_qty)
            symbols.append(
                {
                    "category": str(cat),
                    "symbol": sym,
                    "reference": str(rule.reference),
                    "referencePrice": _s(ref),
                    "referenceAgeMs": None if quote is None else (now_ns - quote.received_ns) // 1_000_000,
                    "priceBandBps": _s(rule.price_band_bps),
                    "minPrice": _s(ref * (1 - band)) if ref is not None else None,
                    "maxPrice": _s(ref * (1 + band)) if ref is not None else None,
                    "tickSize": _s(inst.tick_size) if inst else None,
                    "qtyStep": _s(inst.qty_step) if inst else None,
                    "minQty": _s(inst.min_qty) if inst else None,
                    "maxQty": _s(max_qty),
                    "maxNotional": _s(rule.max_notional),
                }
            )
        return {
            "tradingState": str(state),
            "haltReason": reason or None,
            "policyVersion": self.policy.version,
            "batch": {
                "maxOrders": self.policy.batch_max_orders,
                "mode": str(self.policy.batch_mode),
                "maxNotional": _s(self.policy.batch_max_notional),
            },
            "referenceMaxAgeMs": self.policy.reference_max_age_ms,
            "symbols": symbols,
            "rateLimits": [
                {
                    "scope": b.scope,
                    "key": b.key,
                    "max": b.max,
                    "windowS": float(b.window_s),
                    "remaining": b.remaining,
                    "retryAfterMs": b.retry_after_ms,
                }
                for b in self.limiter.snapshot(now_ns)
            ],
        }

    # ------------------------------------------------------------------ results

    def _next_request_id(self) -> str:
        self._request_seq += 1
        return f"{self._request_prefix}-{self._request_seq}"

    def _demands(self, request: AmendRequest, verdict: Verdict) -> Any:
        assert verdict.category is not None
        op = "order.amend-batch" if request.batch else "order.amend"
        return demands_for(
            request.tool,
            verdict.category,
            op,
            [iv.item.symbol for iv in verdict.allowed_items if iv.item is not None],
        )

    @staticmethod
    def _rate_reason(throttle: Throttle) -> Reason:
        return Reason(DenialCode.RATE_LIMITED, throttle.message)

    def _count(self, outcome: Outcome) -> None:
        self.counts[str(outcome)] = self.counts.get(str(outcome), 0) + 1

    def _store(self, request_id: str, outcomes: Sequence[ItemOutcome], body: dict[str, Any]) -> AmendResult:
        for o in outcomes:
            self._count(o.outcome)
        self._journal_quiet("final", request_id, body, final=True)
        return AmendResult(body, is_error(outcomes))

    def _finish_denied(self, request_id: str, verdict: Verdict, started_ns: int) -> AmendResult:
        outcomes = [ItemOutcome(iv, Outcome.DENIED, iv.reasons) for iv in verdict.items]
        if not outcomes:  # an empty or unusable request still gets an answer
            outcomes = [
                ItemOutcome(
                    ItemVerdict(0, None, None, None, verdict.reasons), Outcome.DENIED, verdict.reasons
                )
            ]
        self._journal_quiet("verdict", request_id, {"items": [_verdict_json(iv) for iv in verdict.items]})
        body = result_body(
            request_id=request_id,
            items=outcomes,
            reasons=verdict.reasons,
            latency_ms=self._ms_since(started_ns),
        )
        log.info(
            "amend.denied", request_id=request_id, codes=sorted({r.code for o in outcomes for r in o.reasons})
        )
        return self._store(request_id, outcomes, body)

    def _finish_throttled(
        self, request_id: str, verdict: Verdict, throttle: Throttle, started_ns: int
    ) -> AmendResult:
        reason = self._rate_reason(throttle)
        outcomes = [
            ItemOutcome(iv, Outcome.THROTTLED, (reason,))
            if iv.allowed
            else ItemOutcome(iv, Outcome.DENIED, iv.reasons)
            for iv in verdict.items
        ]
        body = result_body(
            request_id=request_id,
            items=outcomes,
            reasons=[*verdict.reasons, reason],
            retry_after_ms=throttle.retry_after_ms,
            latency_ms=self._ms_since(started_ns),
        )
        log.info(
            "amend.throttled", request_id=request_id, key=throttle.key, retry_after_ms=throttle.retry_after_ms
        )
        return self._store(request_id, outcomes, body)

    def _finish_unsent(
        self,
        request_id: str,
        *,
        request: AmendRequest,
        started_ns: int,
        code: DenialCode,
        detail: str,
        verdict: Verdict | None = None,
    ) -> AmendResult:
        """Nothing was sent: every item is denied with `code` (fail closed)."""
        messages = {
            DenialCode.INTERNAL_ERROR: "the sidecar could not journal the request, so nothing was sent and "
            "trading is halted",
            DenialCode.EXCHANGE_UNAVAILABLE: "the exchange connection is not ready, so nothing was sent; "
            "retry when getSafetyPolicy shows the connection is back",
        }
        reason = Reason(code, f"{messages.get(code, 'nothing was sent')} ({detail})")
        if verdict is None:
            verdict = Verdict(
                None, tuple(ItemVerdict(i, None, None, None) for i in range(len(request.items)))
            )
        outcomes = [ItemOutcome(iv, Outcome.DENIED, (*iv.reasons, reason)) for iv in verdict.items] or [
            ItemOutcome(ItemVerdict(0, None, None, None), Outcome.DENIED, (reason,))
        ]
        body = result_body(
            request_id=request_id, items=outcomes, reasons=[reason], latency_ms=self._ms_since(started_ns)
        )
        return self._store(request_id, outcomes, body)

    def _answer(self, pending: _Pending) -> AmendResult:
        pending.answered = True
        outcomes = self._outcomes(pending)
        body = result_body(
            request_id=pending.request_id,
            items=outcomes,
            reasons=pending.verdict.reasons,
            ack=pending.ack,
            latency_ms=self._ms_since(pending.started_ns),
            extra={"policyVersion": self.policy.version},
        )
        log.info(
            "amend.answered",
            request_id=pending.request_id,
            req_id=pending.req_id,
            outcome=body["outcome"],
            latency_ms=body["latencyMs"],
        )
        result = self._store(pending.request_id, outcomes, body)
        if all(r.late is False and r.outcome is not Outcome.UNVERIFIED for r in pending.results.values()):
            self._forget(pending)
        return result

    def _outcomes(self, pending: _Pending) -> list[ItemOutcome]:
        outcomes: list[ItemOutcome] = []
        sent_index = {iv.index for iv in pending.sent}
        for iv in pending.verdict.items:
            if iv.index not in sent_index:
                outcomes.append(ItemOutcome(iv, Outcome.DENIED, iv.reasons))
                continue
            r = pending.results.get(iv.index)
            if r is None:  # defensive: the reconciler always answers by the verify deadline
                outcomes.append(ItemOutcome(iv, Outcome.UNVERIFIED))
                continue
            outcomes.append(ItemOutcome(iv, r.outcome, (), r.exchange_code, r.exchange_msg, r.observed))
        return outcomes

    def _release(self, pending: _Pending) -> None:
        for iv in pending.sent:
            for key in _order_keys(iv):
                left = self._tracked_orders.get(key, 0) - 1
                if left <= 0:
                    self._tracked_orders.pop(key, None)
                else:
                    self._tracked_orders[key] = left

    def _forget(self, pending: _Pending) -> None:
        if self._pending.pop(pending.request_id, None) is not None:
            self._release(pending)

    @staticmethod
    def _ms_since_ns(clock: Clock, started_ns: int) -> float:
        return (clock.monotonic_ns() - started_ns) / 1e6

    def _ms_since(self, started_ns: int) -> float:
        return self._ms_since_ns(self.clock, started_ns)

    def _journal_quiet(
        self,
        kind: str,
        request_id: str | None,
        body: Mapping[str, Any],
        *,
        req_id: str | None = None,
        item_idx: int | None = None,
        final: bool = False,
    ) -> None:
        """Append evidence; a failure halts trading (fail closed) but never loses the answer in hand."""
        try:
            if final and request_id is not None:
                self.journal.record_final(request_id, body, self.clock.wall_ms())
            else:
                self.journal.record(
                    kind, request_id, to_jsonable(body), self.clock.wall_ms(), req_id, item_idx
                )
        except JournalError as exc:
            self._trip(f"journal write failed: {exc}")

    # ------------------------------------------------------------------ exchange events

    _wake: asyncio.Event

    async def _event_loop(self) -> None:
        self._wake = asyncio.Event()
        while True:
            deadline = self.reconciler.next_deadline_ns()
            now = self.clock.monotonic_ns()
            timeout_s = 0.25 if deadline is None else min(0.25, max(0.0, (deadline - now) / 1e9))
            event: object | None = None
            try:
                async with asyncio.timeout(timeout_s):
                    event = await self._events.get()
            except TimeoutError:
                event = None
            now = self.clock.monotonic_ns()
            wall = self.clock.wall_ms()
            try:
                if event is not None:
                    self._apply_event(event, now, wall)
                    # Apply whatever else is already queued before draining: fewer drains under load.
                    while not self._events.empty():
                        self._apply_event(self._events.get_nowait(), now, wall)
                self.reconciler.tick(now, wall)
                self._drain(now)
            except Exception:  # a supervisor: log, keep the loop alive, never turn an error into a send
                log.exception("service.event_failed")

    def _apply_event(self, event: object, now: int, wall: int) -> None:
        if isinstance(event, OrderUpdate):
            view = event.view
            if view.order_id in self._tracked_orders or view.order_link_id in self._tracked_orders:
                self._journal_quiet(
                    "order_event",
                    None,
                    {"view": order_body(view), "result": str(event.result)},
                )
            self.reconciler.on_order_update(view, now)
        elif isinstance(event, Ack):
            self._on_ack(event, now, wall)
        elif isinstance(event, AckTimeout):
            self._journal_quiet("ack_timeout", None, {}, req_id=event.req_id)
            self.reconciler.on_ack_missing(event.req_id, now)
        elif isinstance(event, ConnectionLost):
            for req_id in event.pending_req_ids:
                self._journal_quiet("connection_lost", None, {}, req_id=req_id)
                self.reconciler.on_ack_missing(req_id, now)
        elif isinstance(event, _RestResult):
            body: dict[str, Any] = {
                "query": _query_json(event.query),
                "view": order_body(event.view) if event.view else None,
            }
            if event.error is not None:
                body["error"] = event.error
                self._journal_quiet("rest", event.query.request_id, body)
                self.reconciler.on_rest_error(event.query, now)
            else:
                if event.view is not None:
                    self.book.apply(event.view)
                self._journal_quiet("rest", event.query.request_id, body)
                self.reconciler.on_rest_result(event.query, event.view, now, wall)
        elif isinstance(event, TradeError):
            log.warning("ws_trade.error_frame", ret_code=event.ret_code, ret_msg=event.ret_msg)
        elif isinstance(event, TradeReady | PrivateReady | PrivateLost):
            log.info("exchange.connection", change=type(event).__name__)

    def _on_ack(self, ack: Ack, now: int, wall: int) -> None:
        request_id = None
        for p in self._pending.values():
            if p.req_id == ack.req_id:
                p.ack = ack
                request_id = p.request_id
                break
        self._journal_quiet(
            "ack",
            request_id,
            {
                "retCode": ack.ret_code,
                "retMsg": ack.ret_msg,
                "items": [{"code": i.code, "msg": i.msg, "orderId": i.order_id} for i in ack.items],
                "limit": ack.limit,
                "limitStatus": ack.limit_status,
                "limitResetMs": ack.limit_reset_ms,
            },
            req_id=ack.req_id,
        )
        if ack.limit is not None and ack.limit_status is not None and ack.limit_reset_ms is not None:
            category = self._category_of(request_id)
            if category is not None:
                self.limiter.observe_exchange_budget(
                    ack.op, category, ack.limit, ack.limit_status, ack.limit_reset_ms, now, wall
                )
        if ack.cls is CodeClass.RATE_LIMITED or any(i.cls is CodeClass.RATE_LIMITED for i in ack.items):
            category = self._category_of(request_id)
            if category is not None:
                self.limiter.on_exchange_rate_limited(ack.op, category, ack.limit_reset_ms, now, wall)
        self.reconciler.on_ack(ack, now)

    def _category_of(self, request_id: str | None) -> Category | None:
        if request_id is None or request_id not in self._pending:
            return None
        return self._pending[request_id].verdict.category

    def _drain(self, now: int) -> None:
        for effect in self.reconciler.effects():
            if isinstance(effect, QueryOrder):
                task = asyncio.create_task(self._query(effect))
                self._rest_tasks.add(task)
                task.add_done_callback(self._rest_tasks.discard)
        for result in self.reconciler.finished():
            self._on_result(result)

    async def _query(self, query: QueryOrder) -> None:
        try:
            view = await self.rest.get_order(
                query.category, query.symbol, query.order_id, query.order_link_id
            )
            await self._events.put(_RestResult(query, view))
        except (RestError, OSError, TimeoutError) as exc:
            await self._events.put(_RestResult(query, None, error=f"{type(exc).__name__}: {exc}"))

    def _on_result(self, result: ItemResult) -> None:
        self._journal_quiet(
            "late_outcome" if result.late else "item_outcome",
            result.request_id,
            {
                "outcome": str(result.outcome),
                "exchangeCode": result.exchange_code,
                "exchangeMsg": result.exchange_msg,
                "evidence": result.evidence,
                "observed": observed_body(result.observed),
            },
            req_id=result.req_id,
            item_idx=result.index,
        )
        pending = self._pending.get(result.request_id)
        if pending is None:
            return
        pending.results[result.index] = result
        if result.late:
            self._count(result.outcome)
            body = result_body(
                request_id=pending.request_id,
                items=self._outcomes(pending),
                reasons=pending.verdict.reasons,
                ack=pending.ack,
                latency_ms=self._ms_since(pending.started_ns),
                extra={"policyVersion": self.policy.version, "reconciledLate": True},
            )
            try:
                self.journal.update_result(pending.request_id, body, self.clock.wall_ms())
            except JournalError as exc:
                self._trip(f"journal write failed: {exc}")
            log.info(
                "amend.reconciled_late",
                request_id=pending.request_id,
                index=result.index,
                outcome=str(result.outcome),
            )
            if self.reconciler.is_request_done(pending.request_id):
                self._forget(pending)
            return
        if not pending.done.is_set() and len(pending.results) >= len(pending.sent):
            pending.done.set()
        if pending.answered and self.reconciler.is_request_done(pending.request_id):
            self._forget(pending)


# ---------------------------------------------------------------------- helpers


def _s(d: Decimal | None) -> str | None:
    if d is None:
        return None
    text = format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def order_body(view: OrderView) -> dict[str, Any]:
    """The sidecar's view of an order, JSON-ready (getOrderState)."""
    return {
        "category": str(view.category),
        "symbol": view.symbol,
        "orderId": view.order_id,
        "orderLinkId": view.order_link_id,
        "side": str(view.side) if view.side else None,
        "price": _s(view.price),
        "qty": _s(view.qty),
        "leavesQty": _s(view.leaves_qty),
        "cumExecQty": _s(view.cum_exec_qty),
        "orderStatus": view.order_status,
        "updatedTime": str(view.updated_time_ms),
        "takeProfit": _s(view.take_profit),
        "stopLoss": _s(view.stop_loss),
    }


def _order_keys(iv: ItemVerdict) -> list[str]:
    keys = [k for k in (iv.order_id, iv.order_link_id) if k]
    if iv.order is not None:
        keys.extend(k for k in (iv.order.order_id, iv.order.order_link_id) if k)
    return keys


def _intent_item(iv: ItemVerdict) -> dict[str, Any]:
    item = iv.item
    return {
        "index": iv.index,
        "symbol": iv.symbol,
        "orderId": iv.order_id or (iv.order.order_id if iv.order else None),
        "orderLinkId": iv.order_link_id or (iv.order.order_link_id if iv.order else None),
        "targets": {k: str(v) for k, v in item.targets().items()} if item else {},
        "before": order_body(iv.order) if iv.order else None,
    }


def _verdict_json(iv: ItemVerdict) -> dict[str, Any]:
    return {"index": iv.index, "reasons": [{"code": str(r.code), "message": r.message} for r in iv.reasons]}


def _query_json(q: QueryOrder) -> dict[str, Any]:
    return {
        "category": str(q.category),
        "symbol": q.symbol,
        "orderId": q.order_id,
        "orderLinkId": q.order_link_id,
        "index": q.index,
    }


def _request_args(request: AmendRequest) -> dict[str, Any]:
    """The agent's arguments as received, JSON-safe and bounded (a hostile request can be huge)."""
    items = list(request.items[:50])
    args: dict[str, Any] = {"category": request.category, "request": items}
    if len(request.items) > 50:
        args["truncatedItems"] = len(request.items) - 50
    try:
        safe: dict[str, Any] = to_jsonable(args)
    except (TypeError, ValueError, RecursionError):
        # Non-finite floats or exotic values: keep a bounded printable form instead of failing.
        safe = {"unserialisable": repr(args)[:4000]}
    return safe
