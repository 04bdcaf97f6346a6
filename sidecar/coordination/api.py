"""The coordination interface: what a sidecar asks the state it may share with other sidecars.

One job: name the questions (admit a call, release its order leases, learn from Bybit's budget
headers, read and set the kill switch, count trip events, hand out request ids) and the typed
answers, so the service uses one interface whether the state lives in-process (`local`) or in
Redis (`redis`). It does no I/O and decides nothing; the backends do. A backend never raises for
a failure of its store: it answers `CoordinationUnavailable` (fail closed: nothing is sent).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from sidecar.core.policy import Policy
from sidecar.core.ratelimit import BudgetView, Demand, RateLimiter, Throttle
from sidecar.core.types import Category, TradingState

__all__ = [
    "Admitted",
    "Busy",
    "CoordinationUnavailable",
    "Coordinator",
    "Decision",
    "Halted",
    "Reducing",
    "StateView",
    "Throttled",
    "UnavailableKind",
    "budget_fingerprint",
    "describe_url",
]


@dataclass(frozen=True, slots=True)
class StateView:
    """The kill switch as this instance knows it."""

    state: TradingState
    reason: str
    who: str
    epoch: int  # grows with every change (redis); 0 for local
    updated_ms: int  # wall ms of the last change (Redis's clock for redis), 0 if never set
    fresh: bool = True  # False: the last view known, the store cannot be reached now
    known: bool = True  # False: never read yet (the store has not been reached since start)


@dataclass(frozen=True, slots=True)
class Admitted:
    """The call may go: its units are taken and `leases` (order keys) are held by its holder.

    Release the leases when the request settles. For a preview nothing is taken (`leases` empty)."""

    leases: tuple[str, ...]
    state: TradingState  # active, or reducing (when the call was validated under reducing)


@dataclass(frozen=True, slots=True)
class Throttled:
    """A budget is full: nothing was taken (`throttle` is the core's, with the exact wait)."""

    throttle: Throttle


@dataclass(frozen=True, slots=True)
class Busy:
    """Orders whose lease another request holds (an earlier amend has not settled): nothing taken."""

    orders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Halted:
    """Trading is halted: nothing taken."""

    reason: str
    who: str


@dataclass(frozen=True, slots=True)
class Reducing:
    """Trading is `reducing` but the call was validated under `active`: validate it again under
    `reducing` and ask again. Nothing taken."""

    reason: str


class UnavailableKind(StrEnum):
    UNREACHABLE = "unreachable"  # refused, reset, DNS: no answer at all
    TIMEOUT = "timeout"  # no answer within the configured timeout
    ERROR = "error"  # an answer that makes no sense (script error, bad reply)
    POLICY_MISMATCH = "policy_mismatch"  # this instance's budgets differ from the fleet's
    NOT_READY = "not_ready"  # not connected yet, or the instance has not registered


@dataclass(frozen=True, slots=True)
class CoordinationUnavailable:
    """The shared state cannot be used now: deny sends (`COORDINATION_UNAVAILABLE`)."""

    kind: UnavailableKind
    message: str  # a sentence for the agent and the log; never holds a URL or a password


Decision = Admitted | Throttled | Busy | Halted | Reducing | CoordinationUnavailable


class Coordinator(Protocol):
    """What the service asks of the shared (or in-process) state. Every method is safe to call
    concurrently; none raises for a failure of the store."""

    @property
    def backend(self) -> str:
        """'local' or 'redis'."""
        ...

    @property
    def available(self) -> bool:
        """False while the store cannot be reached (sends are denied meanwhile)."""
        ...

    async def start(self) -> None:
        """Connect and register. Never raises for an unreachable store (it keeps trying)."""
        ...

    async def stop(self) -> None: ...

    def next_request_id(self) -> str:
        """A request id unique across the fleet (also used as the holder of its order leases)."""
        ...

    @property
    def seen_state(self) -> tuple[str, int]:
        """The life of the shared state this instance vouches for and the latest epoch it saw in it
        (kept in its journal for a restart); ('', 0) for local, or before any hello."""
        ...

    @property
    def id_token(self) -> str:
        """Letters and digits naming this instance uniquely in the fleet, for Bybit reqIds ('' when
        the backend has none: local, or not registered yet)."""
        ...

    def admit_now(
        self, demands: Sequence[Demand], orders: Sequence[str], holder: str, *, validated_under: TradingState
    ) -> Decision | None:
        """`admit` without awaiting, when this backend decides in-process (local); None when the
        decision needs the shared store (then await `admit`). Local leases need no time to live."""
        ...

    def preview_now(
        self, demands: Sequence[Demand], orders: Sequence[str], *, validated_under: TradingState
    ) -> Decision | None:
        """`preview` without awaiting (local), or None (await `preview`)."""
        ...

    async def admit(
        self,
        demands: Sequence[Demand],
        orders: Sequence[str],
        holder: str,
        *,
        validated_under: TradingState,
        lease_ttl_ms: int,
    ) -> Decision:
        """Atomically: the trading state allows it, no other holder leases one of `orders` (Bybit
        orderIds: the order view resolves an orderLinkId first, as core/inflight.py), and every
        budget has room; then take the units and lease `orders` to `holder`. Release each order
        when its item settles (core/inflight.py rules). Redis leases also expire after
        `lease_ttl_ms`, a safety net for an instance that dies holding them."""
        ...

    async def preview(
        self, demands: Sequence[Demand], orders: Sequence[str], *, validated_under: TradingState
    ) -> Decision:
        """The decision `admit` would make now; takes nothing."""
        ...

    async def release(self, holder: str, orders: Sequence[str]) -> int | CoordinationUnavailable:
        """Release the leases `holder` holds on `orders` (others' stay). Returns how many."""
        ...

    async def move_to_reread(
        self, holder: str, order_id: str, lease_ttl_ms: int
    ) -> bool | CoordinationUnavailable:
        """core/inflight.py Rule 3: `holder` gave up looking; the order stays busy under
        `reread_holder(order_id)` until a fresh read releases it. False if `holder` did not hold it."""
        ...

    def release_later(self, holder: str, orders: Sequence[str]) -> None:
        """`release` from synchronous code (an item settled): done in the background, in order with
        the other lease changes, retried while the store is unreachable (leases expire regardless)."""
        ...

    def reread_later(self, holder: str, order_id: str, lease_ttl_ms: int) -> None:
        """`move_to_reread` from synchronous code, like `release_later`."""
        ...

    def adopt_later(self, holder: str, orders: Sequence[str], lease_ttl_ms: int) -> None:
        """Crash recovery: `holder` (a request this instance journaled before it stopped) holds
        `orders` again, kept like every lease this instance holds; a lease another holder has
        taken meanwhile stays theirs (and is logged)."""
        ...

    async def observe_exchange_budget(  # noqa: PLR0917  # the order of the ack's header fields
        self, op: str, category: Category, limit: int, remaining: int, reset_ms: int | None, wall_now_ms: int
    ) -> bool | CoordinationUnavailable:
        """Resync Bybit's budget from an ack's X-Bapi-Limit* headers (only ever tightens)."""
        ...

    async def on_exchange_rate_limited(
        self, op: str, category: Category, reset_ms: int | None, wall_now_ms: int
    ) -> bool | CoordinationUnavailable:
        """Bybit answered 10006: block that budget until its reset (or one window)."""
        ...

    async def budgets(self) -> list[BudgetView] | CoordinationUnavailable:
        """Every configured budget as getSafetyPolicy shows it."""
        ...

    def trading_state(self) -> StateView:
        """The kill switch as this instance knows it now (no I/O for redis: the pub/sub view)."""
        ...

    async def read_trading_state(self) -> StateView | CoordinationUnavailable:
        """The kill switch as the store holds it now (for operator commands; needs no start())."""
        ...

    async def set_trading_state(
        self, state: TradingState, reason: str, who: str
    ) -> StateView | CoordinationUnavailable:
        """The operator's halt/resume: takes effect for every later admission before it returns."""
        ...

    async def trip(self, state: TradingState, reason: str) -> StateView | CoordinationUnavailable:
        """An automatic trip: only ever makes the state stricter (active < reducing < halted)."""
        ...

    async def count_event(self, name: str, window_ms: int, *, add: int = 1) -> int | CoordinationUnavailable:
        """Record `add` events named `name` now and return how many fall in the last `window_ms`
        (account-wide for redis: the trip counters of every instance add up)."""
        ...

    async def replace_policy(self, policy: Policy) -> None:
        """Hot reload: later decisions use `policy`'s budgets."""
        ...


def describe_url(url: str) -> str:
    """host:port/db (or the socket path) of a Redis URL, never its user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def budget_fingerprint(policy: Policy) -> str:
    """12 hex digits naming the budgets a fleet shares: every rate rule and every exchange budget
    as enforced (share and admission window). Symbol rules, bands and caps are local checks and
    may differ between instances; budgets may not (a sidecar whose fingerprint differs from the
    fleet's does not send)."""
    rules = sorted((r.scope.value, r.max, r.window_ms) for r in policy.rate_rules)
    budgets = sorted(
        (key, b.local_max, b.admission_window_ms) for key, b in RateLimiter(policy).exchange_budgets().items()
    )
    canonical = json.dumps([rules, budgets], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
