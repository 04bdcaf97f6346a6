"""The local backend: one sidecar per account, everything in-process (the default; no server).

One job: answer the `Coordinator` questions from the core `RateLimiter`, the core in-flight guard
(`core/inflight.py`: one amend in flight per order) and the journal's kill switch (shared with
`sidecar halt/resume` through the journal file), so the service uses one interface for both
backends. In-process leases need no time to live: they die with the process, and crash recovery
re-acquires the orders of unfinished intents. It does no network I/O; the only I/O is the
store's (the journal's SQLite `control` table). A store failure fails closed: `Halted` on reads,
`CoordinationUnavailable` on writes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from sidecar.clock import Clock
from sidecar.coordination.api import (
    Admitted,
    Busy,
    CoordinationUnavailable,
    Decision,
    Halted,
    Reducing,
    StateView,
    Throttled,
    UnavailableKind,
)
from sidecar.core.inflight import InFlight
from sidecar.core.policy import Policy
from sidecar.core.ratelimit import BudgetView, Demand, RateLimiter, Throttle
from sidecar.core.types import Category, TradingState

__all__ = ["LocalCoordinator", "StateStore"]

NS_PER_MS = 1_000_000
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class StateStore(Protocol):
    """Where the local kill switch lives (the journal: `Journal` has exactly these two methods)."""

    def trading_state(self) -> tuple[str, str, str, int]:
        """(state, reason, who, ts_wall_ms)."""
        ...

    def set_trading_state(self, state: str, reason: str, who: str, wall_ms: int) -> object:
        """Store the state (the journal returns its new state epoch; the answer is not used)."""
        ...


class LocalCoordinator:
    """`Coordinator` for one process. Decisions are synchronous inside; the methods are async only
    to share the interface with the Redis backend (nothing is awaited)."""

    def __init__(
        self,
        policy: Policy,
        *,
        clock: Clock,
        store: StateStore,
        request_id_prefix: str,
        in_flight: InFlight | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self._limiter = RateLimiter(policy)
        self._in_flight = in_flight if in_flight is not None else InFlight()
        self._events: dict[str, deque[tuple[int, int]]] = {}  # name -> (time, count)
        self._prefix = request_id_prefix
        self._seq = 0

    @property
    def backend(self) -> str:
        return "local"

    @property
    def available(self) -> bool:
        return True

    @property
    def limiter(self) -> RateLimiter:
        """The in-process limiter (for views that predate this interface)."""
        return self._limiter

    @property
    def in_flight(self) -> InFlight:
        """The in-flight guard (the validator's `InFlightLookup`, for per-item ORDER_BUSY)."""
        return self._in_flight

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def next_request_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}-{self._seq}"

    @property
    def seen_state(self) -> tuple[str, int]:
        return "", 0

    @property
    def id_token(self) -> str:
        return ""

    # -- decisions --------------------------------------------------------------------------

    async def admit(
        self,
        demands: Sequence[Demand],
        orders: Sequence[str],
        holder: str,
        *,
        validated_under: TradingState,
        lease_ttl_ms: int,
    ) -> Decision:
        if not holder:
            raise ValueError("admit needs a holder (the request id)")
        return self._decide(demands, orders, holder, validated_under, lease_ttl_ms)

    async def preview(
        self, demands: Sequence[Demand], orders: Sequence[str], *, validated_under: TradingState
    ) -> Decision:
        return self._decide(demands, orders, "", validated_under, None)

    def admit_now(
        self, demands: Sequence[Demand], orders: Sequence[str], holder: str, *, validated_under: TradingState
    ) -> Decision:
        """`admit` for a caller that read the state (`trading_state()`) and validated under it in
        this same synchronous step, with no await since (the service): the state is not read a
        second time, so the one-sidecar path costs what it did before there was a coordinator."""
        if not holder:
            raise ValueError("admit needs a holder (the request id)")
        return self._decide(demands, orders, holder, validated_under, 0, read_state=False)

    def preview_now(
        self, demands: Sequence[Demand], orders: Sequence[str], *, validated_under: TradingState
    ) -> Decision:
        return self._decide(demands, orders, "", validated_under, None)

    def _decide(
        self,
        demands: Sequence[Demand],
        orders: Sequence[str],
        holder: str,
        validated_under: TradingState,
        lease_ttl_ms: int | None,
        *,
        read_state: bool = True,
    ) -> Decision:
        state = validated_under
        if read_state or validated_under is TradingState.HALTED:
            view = self.trading_state()
            if view.state is TradingState.HALTED:
                return Halted(view.reason, view.who)
            if view.state is TradingState.REDUCING and validated_under is not TradingState.REDUCING:
                return Reducing(view.reason)
            state = view.state
        wanted = tuple(dict.fromkeys(orders))
        holder_of = self._in_flight.holder
        held = all(holder_of(o) == holder for o in wanted) if holder else False
        if not held:  # the service holds its orders before it asks; others may not
            busy = tuple(o for o in wanted if holder_of(o) not in (None, holder or None))
            if busy:
                return Busy(busy)
        now_ns = self._clock.monotonic_ns()
        if lease_ttl_ms is None:
            decision = self._limiter.peek(demands, now_ns)
        else:
            decision = self._limiter.check(demands, now_ns)
        if isinstance(decision, Throttle):
            return Throttled(decision)
        if lease_ttl_ms is None:
            return Admitted((), state)
        if not held:  # cannot be busy: checked above, and nothing ran in between (no await)
            self._in_flight.try_acquire(holder, wanted)
        return Admitted(wanted, state)

    async def release(self, holder: str, orders: Sequence[str]) -> int | CoordinationUnavailable:
        return sum(self._in_flight.release(holder, o) for o in dict.fromkeys(orders))

    async def move_to_reread(
        self, holder: str, order_id: str, lease_ttl_ms: int
    ) -> bool | CoordinationUnavailable:
        return self._in_flight.move_to_reread(holder, order_id)

    def release_later(self, holder: str, orders: Sequence[str]) -> None:
        for order_id in dict.fromkeys(orders):
            self._in_flight.release(holder, order_id)

    def reread_later(self, holder: str, order_id: str, lease_ttl_ms: int) -> None:
        self._in_flight.move_to_reread(holder, order_id)

    def adopt_later(self, holder: str, orders: Sequence[str], lease_ttl_ms: int) -> None:
        self._in_flight.try_acquire(holder, orders)

    # -- Bybit's view of its budget ---------------------------------------------------------

    async def observe_exchange_budget(  # noqa: PLR0917  # the Coordinator signature
        self, op: str, category: Category, limit: int, remaining: int, reset_ms: int | None, wall_now_ms: int
    ) -> bool | CoordinationUnavailable:
        return self._limiter.observe_exchange_budget(
            op, category, limit, remaining, reset_ms, self._clock.monotonic_ns(), wall_now_ms
        )

    async def on_exchange_rate_limited(
        self, op: str, category: Category, reset_ms: int | None, wall_now_ms: int
    ) -> bool | CoordinationUnavailable:
        return self._limiter.on_exchange_rate_limited(
            op, category, reset_ms, self._clock.monotonic_ns(), wall_now_ms
        )

    async def budgets(self) -> list[BudgetView] | CoordinationUnavailable:
        return self._limiter.snapshot(self._clock.monotonic_ns())

    # -- the kill switch --------------------------------------------------------------------

    def trading_state(self) -> StateView:
        try:
            state, reason, who, ts_ms = self._store.trading_state()
            return StateView(TradingState(state), reason, who, 0, ts_ms)
        except Exception as exc:  # any store failure: fail closed
            return StateView(TradingState.HALTED, f"journal unreadable: {exc}", "", 0, 0, fresh=False)

    async def read_trading_state(self) -> StateView | CoordinationUnavailable:
        return self.trading_state()

    async def set_trading_state(
        self, state: TradingState, reason: str, who: str
    ) -> StateView | CoordinationUnavailable:
        try:
            self._store.set_trading_state(state.value, reason, who, self._clock.wall_ms())
        except Exception as exc:
            return CoordinationUnavailable(
                UnavailableKind.ERROR, f"the journal refused the state change: {exc}"
            )
        return self.trading_state()

    async def trip(self, state: TradingState, reason: str) -> StateView | CoordinationUnavailable:
        view = self.trading_state()
        if _SEVERITY[state] <= _SEVERITY[view.state]:
            return view
        return await self.set_trading_state(state, reason, "sidecar")

    async def count_event(self, name: str, window_ms: int, *, add: int = 1) -> int | CoordinationUnavailable:
        if window_ms < 1 or add < 0:
            raise ValueError("count_event needs window_ms >= 1 and add >= 0")
        now_ns = self._clock.monotonic_ns()
        log = self._events.setdefault(name, deque())
        cutoff = now_ns - window_ms * NS_PER_MS
        while log and log[0][0] <= cutoff:
            log.popleft()
        if add:
            log.append((now_ns, add))
        return sum(n for _, n in log)

    async def replace_policy(self, policy: Policy) -> None:
        self._limiter.replace_policy(policy)
