"""Admission: may this amend request be sent now, and which of its items?

One job: take a request from "validated" to "cleared to send" or "stopped" (nothing is sent), in
this order:
1. validation against the local state (prices, the order view, the policy) and the local in-flight
   guard, synchronously, so "not busy, then hold" is atomic inside one instance (`hold`);
2. the coordinator (`sidecar/coordination`): the trading state, the order leases across instances
   and every rate budget, all or nothing. The local backend answers synchronously (`admit_now`: no
   await on the one-sidecar path); the shared one is awaited (`admit`).
The coordinator's answers map to the agent's codes: `Busy` → per-item `ORDER_BUSY` (the items are
validated again with those orders busy, so the batch rules stay the validator's), `Reducing` →
validated again under `reducing` and asked again, `Halted` → `TRADING_HALTED`, `Throttled` →
`RATE_LIMITED` with the exact wait, `CoordinationUnavailable` → `COORDINATION_UNAVAILABLE`.

`Leases` releases what a request holds, locally and (redis) in the shared store, at the points where
an item settles. This module journals nothing, sends nothing and answers nobody: the service does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from sidecar.coordination import (
    Admitted,
    Busy,
    CoordinationUnavailable,
    Coordinator,
    Decision,
    Halted,
    Reducing,
    Throttled,
)
from sidecar.core.inflight import InFlight
from sidecar.core.ratelimit import Demand, Throttle, demands_for
from sidecar.core.types import (
    AmendRequest,
    DenialCode,
    ItemVerdict,
    MarketLookup,
    OrderLookup,
    Reason,
    TradingState,
    Verdict,
)
from sidecar.core.validation import PreparedPolicy, validate

__all__ = ["MAX_ROUNDS", "Cleared", "Gate", "Leases", "Stopped", "demands_of", "orders_of"]

# Rounds of "validate again, ask again" after Busy or Reducing before giving up (each Busy adds at
# least one order to the busy set; the bound keeps a decision within a few store timeouts).
MAX_ROUNDS: Final = 4
# The holder the validator is shown for an order another sidecar has in flight: it names no request
# of this instance (its journal does not have it), so the reason is reworded (`_elsewhere_reason`).
_ELSEWHERE: Final = "held by another sidecar"


@dataclass(frozen=True, slots=True)
class Cleared:
    """Send the allowed items of `verdict`: `orders` (item index → orderId) are held by the request,
    locally and, with a shared store, as leases there."""

    verdict: Verdict
    orders: dict[int, str]


@dataclass(frozen=True, slots=True)
class Stopped:
    """Nothing is sent. With `reason`, every item is denied with it added; with `throttle`, the
    allowed items are throttled; with neither, `verdict` itself denies every item."""

    verdict: Verdict
    reason: Reason | None = None
    throttle: Throttle | None = None


Outcome = Cleared | Stopped


def demands_of(request: AmendRequest, verdict: Verdict) -> list[Demand]:
    """The rate-limit demands of sending `verdict`'s allowed items."""
    assert verdict.category is not None  # an allowed item implies a valid category
    op = "order.amend-batch" if request.batch else "order.amend"
    symbols = [iv.item.symbol for iv in verdict.items if iv.allowed and iv.item is not None]
    return demands_for(request.tool, verdict.category, op, symbols)


def orders_of(verdict: Verdict) -> dict[int, str]:
    """Item index → the Bybit orderId each allowed item amends (the order view resolved it)."""
    return {iv.index: iv.order.order_id for iv in verdict.items if iv.allowed and iv.order is not None}


class _BusyView:
    """The in-flight lookup for validating again: the local guard without this request's own holds,
    plus the orders another sidecar holds."""

    __slots__ = ("_elsewhere", "_in_flight", "_own")

    def __init__(self, in_flight: InFlight, own: str, elsewhere: Collection[str]) -> None:
        self._in_flight = in_flight
        self._own = own
        self._elsewhere = elsewhere

    def holder(self, order_id: str) -> str | None:
        if order_id in self._elsewhere:
            return _ELSEWHERE
        held = self._in_flight.holder(order_id)
        return None if held == self._own else held


@dataclass(frozen=True, slots=True)
class _Attempt:
    verdict: Verdict
    state: TradingState  # what the verdict was validated under
    elsewhere: frozenset[str]  # orders another sidecar holds, learnt from Busy answers
    round: int
    orders: dict[int, str]  # orders_of(verdict)
    demands: list[Demand]  # demands_of(request, verdict)


def _attempt(
    request: AmendRequest,
    verdict: Verdict,
    state: TradingState,
    elsewhere: frozenset[str] = frozenset(),
    n: int = 1,
    *,
    orders: dict[int, str] | None = None,
) -> _Attempt:
    if orders is None:
        orders = orders_of(verdict)
    return _Attempt(verdict, state, elsewhere, n, orders, demands_of(request, verdict))


class Gate:
    """Admission for one service. `prepared` follows the policy (the service swaps it on reload)."""

    def __init__(
        self,
        coordinator: Coordinator,
        in_flight: InFlight,
        market: MarketLookup,
        book: OrderLookup,
        prepared: PreparedPolicy,
        *,
        now_ns: Callable[[], int],
        lease_ttl_ms: int,
    ) -> None:
        self.coordinator = coordinator
        self.in_flight = in_flight
        self.market = market
        self.book = book
        self.prepared = prepared
        self._now_ns = now_ns
        self.lease_ttl_ms = lease_ttl_ms
        self._held: tuple[Verdict, dict[int, str]] | None = None

    # -- 1: local, synchronous ---------------------------------------------------------------

    def validate(self, request: AmendRequest, now_ns: int, state: TradingState) -> Verdict:
        """Every item against the local state; orders with an unsettled amend here are ORDER_BUSY."""
        return validate(request, self.prepared, self.market, self.book, now_ns, state, self.in_flight)

    def hold(self, holder: str, verdict: Verdict) -> Stopped | None:
        """Hold the allowed items' orders locally (call right after `validate`, with no await between:
        validation saw them free, so this cannot fail; were it ever to, nothing is sent)."""
        orders = orders_of(verdict)
        busy = self.in_flight.try_acquire(holder, orders.values())
        if not busy:
            self._held = (verdict, orders)  # admit_now/admit reuse it for the same verdict
            return None
        return Stopped(
            verdict, Reason(DenialCode.ORDER_BUSY, f"orders {', '.join(busy)} have an amend in flight")
        )

    def _orders_held(self, verdict: Verdict) -> dict[int, str] | None:
        held, self._held = self._held, None
        return held[1] if held is not None and held[0] is verdict else None

    # -- 2: the coordinator --------------------------------------------------------------------

    def admit_now(
        self, request: AmendRequest, holder: str, verdict: Verdict, state: TradingState
    ) -> Outcome | None:
        """The whole decision without awaiting when the backend decides in-process; None when the
        shared store must be asked (then `await admit(...)` with the same arguments)."""

        def ask(a: _Attempt) -> Decision | None:
            return self.coordinator.admit_now(
                a.demands, list(a.orders.values()), holder, validated_under=a.state
            )

        return self._decide_now(request, holder, verdict, state, ask)

    async def admit(
        self, request: AmendRequest, holder: str, verdict: Verdict, state: TradingState
    ) -> Outcome:
        """The decision by the shared store (one round trip, more only after Busy or Reducing)."""

        async def ask(a: _Attempt) -> Decision:
            orders = list(a.orders.values())
            return await self.coordinator.admit(
                a.demands, orders, holder, validated_under=a.state, lease_ttl_ms=self.lease_ttl_ms
            )

        return await self._decide(request, holder, verdict, state, ask)

    def preview_now(self, request: AmendRequest, verdict: Verdict, state: TradingState) -> Outcome | None:
        """What `admit` would answer now, taking nothing (None: await `preview`)."""

        def ask(a: _Attempt) -> Decision | None:
            return self.coordinator.preview_now(a.demands, list(a.orders.values()), validated_under=a.state)

        return self._decide_now(request, "", verdict, state, ask)

    async def preview(self, request: AmendRequest, verdict: Verdict, state: TradingState) -> Outcome:
        async def ask(a: _Attempt) -> Decision:
            return await self.coordinator.preview(a.demands, list(a.orders.values()), validated_under=a.state)

        return await self._decide(request, "", verdict, state, ask)

    # One loop each way (in-process, awaited): ask the coordinator, and after Busy or Reducing
    # validate again and ask again (`_next`).

    def _decide_now(
        self,
        request: AmendRequest,
        holder: str,
        verdict: Verdict,
        state: TradingState,
        ask: Callable[[_Attempt], Decision | None],
    ) -> Outcome | None:
        attempt = _attempt(request, verdict, state, orders=self._orders_held(verdict))
        while True:
            decision = ask(attempt)
            if decision is None:
                return None
            step = self._next(request, holder, attempt, decision)
            if not isinstance(step, _Attempt):
                return step
            attempt = step

    async def _decide(
        self,
        request: AmendRequest,
        holder: str,
        verdict: Verdict,
        state: TradingState,
        ask: Callable[[_Attempt], Awaitable[Decision]],
    ) -> Outcome:
        attempt = _attempt(request, verdict, state, orders=self._orders_held(verdict))
        while True:
            step = self._next(request, holder, attempt, await ask(attempt))
            if not isinstance(step, _Attempt):
                return step
            attempt = step

    def _next(
        self, request: AmendRequest, holder: str, attempt: _Attempt, decision: Decision
    ) -> Outcome | _Attempt:
        """One answer of the coordinator: the outcome, or the next attempt (validated again)."""
        verdict = attempt.verdict
        if isinstance(decision, Admitted):
            return Cleared(verdict, attempt.orders)
        if isinstance(decision, Busy | Reducing):
            elsewhere = (
                attempt.elsewhere | set(decision.orders) if isinstance(decision, Busy) else attempt.elsewhere
            )
            state = TradingState.REDUCING if isinstance(decision, Reducing) else attempt.state
            if attempt.round >= MAX_ROUNDS:
                self._let_go(holder)
                return Stopped(
                    verdict,
                    Reason(
                        DenialCode.ORDER_BUSY,
                        "other sidecars on this account kept taking this request's orders while it was "
                        "being admitted; nothing was sent, retry shortly",
                    ),
                )
            again = self._revalidate(request, holder, state, elsewhere)
            if holder:
                self._keep_only(holder, again)
            if not again.any_allowed:
                self._let_go(holder)
                return Stopped(again)
            return _attempt(request, again, state, frozenset(elsewhere), attempt.round + 1)
        self._let_go(holder)
        if isinstance(decision, Throttled):
            return Stopped(verdict, throttle=decision.throttle)
        if isinstance(decision, Halted):
            by = f", by {decision.who}" if decision.who else ""
            why = decision.reason or "no reason given"
            return Stopped(
                verdict,
                Reason(
                    DenialCode.TRADING_HALTED,
                    f"trading is halted ({why}{by}); no amend is sent until `sidecar resume`",
                ),
            )
        assert isinstance(decision, CoordinationUnavailable)
        return Stopped(verdict, Reason(DenialCode.COORDINATION_UNAVAILABLE, decision.message))

    def _revalidate(
        self, request: AmendRequest, holder: str, state: TradingState, elsewhere: Collection[str]
    ) -> Verdict:
        lookup = _BusyView(self.in_flight, holder, elsewhere)
        verdict = validate(request, self.prepared, self.market, self.book, self._now_ns(), state, lookup)
        if not elsewhere:
            return verdict
        items = tuple(_reworded(iv) for iv in verdict.items)
        return dataclasses.replace(verdict, items=items)

    def _keep_only(self, holder: str, verdict: Verdict) -> None:
        """After validating again: hold only the orders still to be sent."""
        keep = set(orders_of(verdict).values())
        for order_id in self.in_flight.held_by(holder) - keep:
            self.in_flight.release(holder, order_id)

    def _let_go(self, holder: str) -> None:
        """Nothing is sent: drop the local holds (the store took no lease: it answered no)."""
        if holder:
            self.in_flight.release_all(holder)


def _reworded(iv: ItemVerdict) -> ItemVerdict:
    marker = f"(request {_ELSEWHERE})"
    if not any(r.code is DenialCode.ORDER_BUSY and marker in r.message for r in iv.reasons):
        return iv
    order_id = iv.order.order_id if iv.order is not None else iv.order_id
    reasons = tuple(
        _elsewhere_reason(order_id) if r.code is DenialCode.ORDER_BUSY and marker in r.message else r
        for r in iv.reasons
    )
    return iv._replace(reasons=reasons)


def _elsewhere_reason(order_id: str | None) -> Reason:
    return Reason(
        DenialCode.ORDER_BUSY,
        f"an earlier amend of order {order_id} by another sidecar on this account has not settled yet; "
        "nothing was sent. Retry once it has (getOrderState shows the order's state)",
    )


class Leases:
    """What a request holds: the local in-flight guard (always) and, with a shared store, the same
    orders as leases there. Released where an item settles (core/inflight.py rules 2 and 3)."""

    def __init__(
        self, in_flight: InFlight, coordinator: Coordinator, *, shared: bool, lease_ttl_ms: int
    ) -> None:
        self.in_flight = in_flight
        self.coordinator = coordinator
        self.shared = shared
        self.lease_ttl_ms = lease_ttl_ms

    def release(self, holder: str, order_id: str) -> bool:
        released = self.in_flight.release(holder, order_id)
        if released and self.shared:
            self.coordinator.release_later(holder, (order_id,))
        return released

    def release_all(self, holder: str) -> tuple[str, ...]:
        released = self.in_flight.release_all(holder)
        if released and self.shared:
            self.coordinator.release_later(holder, released)
        return released

    def move_to_reread(self, holder: str, order_id: str) -> bool:
        moved = self.in_flight.move_to_reread(holder, order_id)
        if moved and self.shared:
            self.coordinator.reread_later(holder, order_id, self.lease_ttl_ms)
        return moved

    def adopt(self, holder: str, orders: Sequence[str]) -> None:
        """Crash recovery: hold again the orders of an intent this instance journaled before it
        stopped (its leases in the store are kept if still its own or free)."""
        self.in_flight.try_acquire(holder, orders)
        if self.shared and orders:
            self.coordinator.adopt_later(holder, orders, self.lease_ttl_ms)
