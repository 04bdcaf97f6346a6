"""Rate limiting: may this call go now, and if not, exactly when could it?

One job: keep every configured budget (per tool, per symbol, global, and Bybit's per-UID budget per
op and category, inverse sharing linear's) within
"at most `max` units in ANY window of `window` length", and say exactly when
a refused call would pass. It must not read the clock (`now_ns` is passed in, monotonic ns), log,
sleep or retry; it does not validate orders and it never loosens a budget beyond the configuration.

Algorithm: an exact, cost-weighted sliding log, not a GCRA. A GCRA with emission interval
T = W/max and the burst tolerance that lets `max` units pass at once (tau = W - T) admits `max`
units at t0 and one more at t0 + T, t0 + 2T, ... - up to 2*max - 1 units inside one window of length
W. Against Bybit's rolling one-second window that is a 10006. Any tolerance that forbids this also
forbids the burst of `max`, so a single theoretical arrival time cannot be exact. The log keeps one
entry (time, units) per admission instant, at most `max` entries per key, all integers.

Definition. A key's log holds admissions (t_i, c_i). At time `now` an entry *counts* iff
t_i > now - W, i.e. it leaves the window at exactly t_i + W. A demand of c units is admitted at
`now` iff  c + sum(counting c_i) <= max  (and the key is not blocked, see below).

Claim: for every half-open window [s, s + W), the admitted units inside it are <= max.
Proof: let t be the last admission inside [s, s + W). Every earlier admission t_i in the window has
s <= t_i <= t < s + W, so t_i >= s > t - W: it still counted when t was admitted. The admission
test at t therefore bounded the units of the whole window (including t's own) by max.

Claim: `retry_after_ns` is exact. Units that count only decrease as time passes (no new entries
arrive "if nothing else happens"). With need = used + c - max > 0, walk the entries oldest first;
if the first k entries are the shortest prefix with sum >= need, the demand fits from t_k + W on
(entry k has left) and not at t_k + W - 1 (entry k still counts, and the first k - 1 entries sum to
< need). A block (from a 10006 or an exhausted header) adds "not before blocked_until". Over many
buckets, each bucket is admissible from its own earliest time onwards, so the call's earliest time
is the maximum of them; `Throttle` names the bucket that attains it.

A demand larger than a bucket's whole capacity can never pass: it is throttled with
`retry_after_ns = None` and a message saying so (split the batch). It is never admitted.

Clock: a monotonic clock never goes back. If a caller passes a `now_ns` older than one already
seen, it is treated as the latest seen `now_ns` (time stands still): that can only refuse more,
never admit more, and it keeps the log ordered.

Exchange buckets count `local_max` units over `ExchangeBudget.admission_window_ms` (Bybit's
window plus a guard), so the jitter between admission and arrival at Bybit cannot push more than
`local_max` units into one of Bybit's rolling windows (the argument is on `ExchangeBudget`).

Bybit budget resync (`observe_exchange_budget`): Bybit reports its limit L, remaining R and reset.
We keep the headroom the utilization asks for (usable = max(1, int(L x utilization)), as
`ExchangeBudget.local_max`), so we may still use R - (L - usable) units. If our bucket thinks more
remain, a phantom entry of the difference is logged at `now` (it leaves at now + W, which is no
earlier than Bybit's own units leave), and a usable capacity below the configured one is applied
until the next header says otherwise. R = 0 with a reset in the future, or a 10006, blocks the bucket
until the reset (wall ms mapped to monotonic ns through the caller's (now_ns, wall_now_ms) pair);
without a future reset it blocks for one window; a block is never longer than MAX_BLOCK_NS.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, NamedTuple

from sidecar.core.policy import (
    DEFAULT_EXCHANGE_LIMITS_PER_S,
    ExchangeBudget,
    Policy,
    RateScope,
    default_budgets,
)
from sidecar.core.types import Category

__all__ = [
    "ADMIT",
    "AMEND_TOOLS",
    "GLOBAL_KEY",
    "MAX_BLOCK_NS",
    "Admit",
    "BudgetView",
    "Demand",
    "RateLimiter",
    "Throttle",
    "WindowLimiter",
    "budget_view",
    "demands_for",
    "exchange_budgets_of",
    "exchange_key",
    "symbol_key",
    "throttle_message",
]

NS_PER_MS = 1_000_000
GLOBAL_KEY = "*"
# The tools that consume budget; their keys are listed in snapshots before first use.
AMEND_TOOLS: tuple[str, ...] = ("wsBatchAmendOrders", "wsAmendOrder")
# A reset header far in the future (bad clock, bad header) must not lock the sidecar up for good.
MAX_BLOCK_NS = 60_000 * NS_PER_MS
# Snapshot order: the order of DESIGN §4.3's scopes as an agent reads them.
_SCOPE_ORDER = (RateScope.TOOL, RateScope.SYMBOL, RateScope.GLOBAL, RateScope.EXCHANGE)


# The category whose exchange budget a category uses (see `exchange_key`).
_BUDGET_CATEGORY: dict[Category, Category] = {
    c: Category.LINEAR if c is Category.INVERSE else c for c in Category
}
_BUDGET_CATEGORY_TEXT: dict[object, str] = {
    **{c: b.value for c, b in _BUDGET_CATEGORY.items()},
    **{c.value: b.value for c, b in _BUDGET_CATEGORY.items()},
}


def symbol_key(category: Category | str, symbol: str) -> str:
    return f"{category}:{symbol}"


def exchange_key(op: str, category: Category | str) -> str:
    """The key of Bybit's per-UID budget for `op` in `category`. Inverse counts against linear's:
    Bybit's rate-limit table has one cell "inverse+linear" and the emulator shares one bucket
    (UNCONFIRMED against the real exchange; sharing can only refuse more, never send more)."""
    return f"{op}:{_BUDGET_CATEGORY_TEXT.get(category, category)}"


def _ceil_ms(ns: int) -> int:
    return -(-ns // NS_PER_MS)


class Demand(NamedTuple):
    """`cost` units against key `key` of every rule of `scope`."""

    scope: RateScope
    key: str
    cost: int


@dataclass(frozen=True, slots=True)
class Admit:
    """The call may go; its units are consumed (or, for `peek`, would be)."""


ADMIT = Admit()


@dataclass(frozen=True, slots=True)
class Throttle:
    """The call may not go now; nothing was consumed.

    `retry_after_ns` is the exact wait until the same call would be admitted if nothing else
    happened (max over the failing buckets), or None if it can never be admitted as it is (a cost
    above a bucket's capacity). `scope`/`key`/`limit`/`window_ns`/`cost` describe the bucket that
    decides.
    """

    scope: RateScope
    key: str
    cost: int
    limit: int
    window_ns: int
    retry_after_ns: int | None
    message: str

    @property
    def retry_after_ms(self) -> int | None:
        """`retry_after_ns` rounded up to whole milliseconds (what the agent sees)."""
        return None if self.retry_after_ns is None else _ceil_ms(self.retry_after_ns)


@dataclass(frozen=True, slots=True)
class BudgetView:
    """One budget as `getSafetyPolicy` shows it (`rateLimits[]`)."""

    scope: RateScope
    key: str
    max: int  # the capacity in force now (a Bybit header can lower it below the configuration)
    window_ms: int
    remaining: int  # units that would be admitted now
    retry_after_ms: int  # 0 if at least one unit is available, else the wait for one unit

    @property
    def window_s(self) -> Decimal:
        return Decimal(self.window_ms) / 1000


class _Window:
    """The log of one key under one rule. Entries are ordered by time; equal times are merged."""

    __slots__ = ("blocked_until_ns", "cap_override", "costs", "pending", "times", "used")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        self.costs: deque[int] = deque()
        self.used = 0  # sum(costs)
        self.blocked_until_ns = 0  # nothing is admitted before this (exchange buckets only)
        self.cap_override: int | None = None  # a capacity below the rule's, from Bybit's headers
        self.pending = 0  # units demanded by the call being decided (always 0 between calls)

    def copy(self) -> _Window:
        w = _Window()
        w.times = deque(self.times)
        w.costs = deque(self.costs)
        w.used = self.used
        w.blocked_until_ns = self.blocked_until_ns
        w.cap_override = self.cap_override
        return w


class WindowLimiter:
    """At most `max_units` per `window_ns` for each key of one rule (one bucket per key)."""

    __slots__ = ("_keys", "_last_ns", "max", "scope", "window_ns")

    def __init__(self, scope: RateScope, max_units: int, window_ns: int) -> None:
        if max_units < 1 or window_ns < 1:
            raise ValueError(f"rate rule {scope}: max ({max_units}) and window ({window_ns} ns) must be >= 1")
        self.scope = scope
        self.max = max_units
        self.window_ns = window_ns
        self._keys: dict[str, _Window] = {}
        self._last_ns = 0

    # -- public, single bucket ---------------------------------------------------------------

    def try_acquire(self, key: str, cost: int, now_ns: int) -> Admit | Throttle:
        """Consume `cost` units of `key` if they fit now."""
        return self._single(key, cost, now_ns, commit=True)

    def peek(self, key: str, cost: int, now_ns: int) -> Admit | Throttle:
        """The decision `try_acquire` would make, consuming nothing."""
        return self._single(key, cost, now_ns, commit=False)

    def view(self, key: str, now_ns: int) -> BudgetView:
        return self.view_at(key, self._clamp(now_ns))

    @property
    def buckets(self) -> dict[str, _Window]:
        """Every key's log (a reload hands them to the limiter of the same rule)."""
        return self._keys

    def adopt(self, buckets: dict[str, _Window]) -> None:
        """Take over `buckets` (the logs of the rule this one replaces): admissions really happened."""
        self._keys = buckets

    # -- one bucket's arithmetic, also used by RateLimiter's all-or-nothing decision ----------

    def bucket(self, key: str) -> _Window:
        """The log of `key`, created empty on first use."""
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = _Window()
        return st

    def fits(self, st: _Window, cost: int, now_ns: int) -> bool:
        """`cost` more units fit in `st` at `now_ns` (expired entries dropped first)."""
        times = st.times
        if times and times[0] <= now_ns - self.window_ns:
            self.prune(st, now_ns)
        return st.used + cost <= self.cap(st) and st.blocked_until_ns <= now_ns

    def _clamp(self, now_ns: int) -> int:
        if now_ns < self._last_ns:
            return self._last_ns
        self._last_ns = now_ns
        return now_ns

    def _single(self, key: str, cost: int, now_ns: int, *, commit: bool) -> Admit | Throttle:
        if cost < 0:
            raise ValueError(f"negative cost {cost} for {self.scope} {key}")
        now_ns = self._clamp(now_ns)
        if cost == 0:
            return ADMIT
        st = self.bucket(key)
        ready = self.ready_ns(st, cost, now_ns)
        if ready == now_ns:
            if commit:
                self.commit(st, cost, now_ns)
            return ADMIT
        return self.throttle(st, key, cost, ready, now_ns)

    def cap(self, st: _Window) -> int:
        o = st.cap_override
        return self.max if o is None or o >= self.max else o

    def prune(self, st: _Window, now_ns: int) -> None:
        cutoff = now_ns - self.window_ns
        times = st.times
        while times and times[0] <= cutoff:
            times.popleft()
            st.used -= st.costs.popleft()

    def ready_ns(self, st: _Window, cost: int, now_ns: int) -> int | None:
        """Earliest time >= now_ns at which `cost` units fit (None: never). Prunes the log."""
        self.prune(st, now_ns)
        cap = self.cap(st)
        if cost > cap:
            return None
        need = st.used + cost - cap
        ready = now_ns
        if need > 0:
            acc = 0
            for t, c in zip(st.times, st.costs, strict=True):
                acc += c
                if acc >= need:
                    ready = t + self.window_ns
                    break
        blocked = st.blocked_until_ns
        return blocked if blocked > ready else ready

    def commit(self, st: _Window, cost: int, now_ns: int) -> None:
        times = st.times
        if times and times[-1] == now_ns:
            st.costs[-1] += cost
        else:
            times.append(now_ns)
            st.costs.append(cost)
        st.used += cost

    def throttle(self, st: _Window, key: str, cost: int, ready: int | None, now_ns: int) -> Throttle:
        blocked = ready is not None and st.blocked_until_ns >= ready
        retry = None if ready is None else ready - now_ns
        cap = self.cap(st)
        msg = throttle_message(self.scope, key, cost, cap, self.window_ns, retry, st.used, blocked=blocked)
        return Throttle(self.scope, key, cost, cap, self.window_ns, retry, msg)

    def view_at(self, key: str, now_ns: int) -> BudgetView:
        """The budget of `key` at `now_ns` (already clamped), consuming nothing."""
        st = self._keys.get(key)
        if st is None:
            st = _Window()  # a key never used: full budget (not stored, a view consumes nothing)
        ready = self.ready_ns(st, 1, now_ns)
        return budget_view(self.scope, key, self.cap(st), self.window_ns, st.used, ready, now_ns)


def throttle_message(  # noqa: PLR0917  # the fields of a Throttle, in its order
    scope: RateScope,
    key: str,
    cost: int,
    cap: int,
    window_ns: int,
    retry_after_ns: int | None,
    used: int,
    *,
    blocked: bool,
) -> str:
    """The sentence of a `Throttle` (shared by every limiter backend, so agents read one wording).

    `used` is what counts in the bucket now; `blocked` says the wait is a block from Bybit's
    headers or a 10006, not the units in the log."""
    per = f"{cap} per {_fmt_window(window_ns)}"
    if retry_after_ns is None:
        return (
            f"{scope} rate limit {key}: the call needs {cost} units but the limit is {per}; "
            "it can never pass as it is (split it into smaller calls)"
        )
    why = "blocked until Bybit's budget resets" if blocked else f"{used} used"
    return (
        f"{scope} rate limit {key}: {per}, {why}, the call needs {cost}; "
        f"retry in {_ceil_ms(retry_after_ns)} ms"
    )


def budget_view(  # noqa: PLR0917  # the fields of a BudgetView, in its order
    scope: RateScope, key: str, cap: int, window_ns: int, used: int, ready_ns: int | None, now_ns: int
) -> BudgetView:
    """A `BudgetView` from a bucket's state: `used` units counting now, `ready_ns` the earliest time
    one unit fits (None: never)."""
    if ready_ns is None:  # cannot happen (cap >= 1); keep the view honest anyway
        remaining, retry_ms = 0, 0
    elif ready_ns > now_ns:
        remaining, retry_ms = 0, _ceil_ms(ready_ns - now_ns)
    else:
        remaining, retry_ms = max(0, cap - used), 0
    return BudgetView(scope, key, cap, window_ns // NS_PER_MS, remaining, retry_ms)


def _fmt_window(window_ns: int) -> str:
    if window_ns % (1000 * NS_PER_MS) == 0:
        return f"{window_ns // (1000 * NS_PER_MS)} s"
    if window_ns % NS_PER_MS == 0:
        return f"{window_ns // NS_PER_MS} ms"
    return f"{window_ns} ns"


_new_demand = tuple.__new__  # Demand(...) goes through a Python-level __new__; this is the C one
_GLOBAL_DEMAND = Demand(RateScope.GLOBAL, GLOBAL_KEY, 1)
# The amend tools' demands, built once (a Demand is an immutable tuple); any other tool gets its own.
_TOOL_DEMANDS: Final[Mapping[str, Demand]] = {t: Demand(RateScope.TOOL, t, 1) for t in AMEND_TOOLS}
_CATEGORY_TEXT: dict[Category, str] = {c: c.value for c in Category}


def demands_for(tool: str, category: Category, op: str, symbols_per_item: Sequence[str]) -> list[Demand]:
    """The demands of one amend call: tool and global cost 1 per call; each symbol costs its item
    count; Bybit's budget `op:category` costs the item count, except option (1 per request)."""
    cat = _CATEGORY_TEXT.get(category) or category.value
    budget_cat = _BUDGET_CATEGORY_TEXT[category]
    demands = [_TOOL_DEMANDS.get(tool) or Demand(RateScope.TOOL, tool, 1), _GLOBAL_DEMAND]
    scope = RateScope.SYMBOL
    # A dict keeps first-seen order, so the demands are in item order (a plain count: Counter's
    # constructor costs more than the counting for a 20-item batch).
    items_per_symbol: dict[str, int] = {}
    for s in symbols_per_item:
        items_per_symbol[s] = items_per_symbol.get(s, 0) + 1
    demands += [_new_demand(Demand, (scope, f"{cat}:{s}", n)) for s, n in items_per_symbol.items()]
    n_items = len(symbols_per_item)
    if n_items:
        # Mirrors ExchangeBudget.counts_items: option batches count per request (bybit-v5.md §5).
        cost = 1 if category is Category.OPTION else n_items
        demands.append(_new_demand(Demand, (RateScope.EXCHANGE, f"{op}:{budget_cat}", cost)))
    return demands


def exchange_budgets_of(policy: Policy) -> list[ExchangeBudget]:
    """The budget of every exchange key (`exchange_key`), one each: the policy's budgets, then
    Bybit's documented defaults for every key the policy leaves out (the exchange budget is never
    unlimited for the ops the sidecar sends). A budget the policy names beats a default; where two
    of the policy's share a key (linear and inverse), `_replaces` picks. Every limiter backend
    builds its buckets from this list."""
    chosen: dict[str, ExchangeBudget] = {}
    for b in policy.exchange_budgets:
        key = exchange_key(b.op, b.category)
        if key not in chosen or _replaces(b, chosen[key]):
            chosen[key] = b
    defaults: dict[str, ExchangeBudget] = {}
    for b in default_budgets(guard_ms=0):
        key = exchange_key(b.op, b.category)
        if key in chosen:
            continue
        if key not in defaults or _replaces(b, defaults[key]):
            defaults[key] = b
    return [*chosen.values(), *defaults.values()]


def _replaces(new: ExchangeBudget, held: ExchangeBudget) -> bool:
    """Linear and inverse share one budget per op: which of the two applies? One set away from
    Bybit's default (the account's tier, written in the config) beats one left at the default; if
    both or neither were set, the tighter one applies (sharing may only refuse more)."""

    def tuned(b: ExchangeBudget) -> bool:
        return b.limit != DEFAULT_EXCHANGE_LIMITS_PER_S.get((b.op, b.category), b.limit)

    if tuned(new) != tuned(held):
        return tuned(new)
    return new.local_max < held.local_max


class RateLimiter:
    """All budgets of a `Policy`. Decisions are atomic over every bucket a call touches."""

    def __init__(self, policy: Policy) -> None:
        self._last_ns = 0
        self._scoped: dict[RateScope, tuple[WindowLimiter, ...]] = {}
        self._exchange: dict[str, WindowLimiter] = {}
        self._budgets: dict[str, ExchangeBudget] = {}
        self._policy = policy
        self._build(policy, {}, {})

    @property
    def policy(self) -> Policy:
        return self._policy

    def exchange_budgets(self) -> dict[str, ExchangeBudget]:
        """Bybit's budgets as this limiter enforces them, by bucket key (`exchange_key`): after
        defaults are filled in and budgets that share one bucket are resolved. The shared (Redis)
        plan reads this table, so both backends count the same buckets against the same caps."""
        return dict(self._budgets)

    # -- decisions ----------------------------------------------------------------------------

    def check(self, demands: Iterable[Demand], now_ns: int) -> Admit | Throttle:
        """Admit the call and consume every demand, or throttle it and consume nothing."""
        return self._decide(demands, now_ns, commit=True)

    def peek(self, demands: Iterable[Demand], now_ns: int) -> Admit | Throttle:
        """The decision `check` would make now, consuming nothing (for previews)."""
        return self._decide(demands, now_ns, commit=False)

    def _clamp(self, now_ns: int) -> int:
        if now_ns < self._last_ns:
            return self._last_ns
        self._last_ns = now_ns
        return now_ns

    def _decide(self, demands: Iterable[Demand], now_ns: int, *, commit: bool) -> Admit | Throttle:
        now_ns = self._clamp(now_ns)
        touched: list[tuple[WindowLimiter, str, _Window]] = []
        scoped = self._scoped
        exchange = self._exchange
        exchange_scope = RateScope.EXCHANGE
        committed = False
        try:
            # Phase 1: sum the demand per bucket (two demands on one bucket must add up).
            for scope, key, cost in demands:
                if cost <= 0:
                    if cost < 0:
                        raise ValueError(f"negative cost {cost} for {scope} {key}")
                    continue
                if scope is exchange_scope:
                    lim = exchange.get(key)
                    limiters: tuple[WindowLimiter, ...] = () if lim is None else (lim,)
                else:
                    limiters = scoped.get(scope, ())
                for lim in limiters:
                    st = lim.bucket(key)
                    if not st.pending:
                        touched.append((lim, key, st))
                    st.pending += cost
            # Phase 2: decide every bucket before touching any.
            worst: tuple[WindowLimiter, str, _Window] | None = None
            worst_ready = now_ns
            for lim, key, st in touched:
                if lim.fits(st, st.pending, now_ns):
                    continue
                ready = lim.ready_ns(st, st.pending, now_ns)
                if ready is None:  # can never pass: that decides, whatever the others say
                    return lim.throttle(st, key, st.pending, None, now_ns)
                if ready > worst_ready:
                    worst, worst_ready = (lim, key, st), ready
            if worst is not None:
                lim, key, st = worst
                return lim.throttle(st, key, st.pending, worst_ready, now_ns)
            # Phase 3: all fit - commit all and clear `pending`.
            if commit:
                for lim, _, st in touched:
                    lim.commit(st, st.pending, now_ns)
                    st.pending = 0
                committed = True
            return ADMIT
        finally:
            if not committed:
                for _, _, st in touched:
                    st.pending = 0

    # -- Bybit's view of its budget -----------------------------------------------------------

    def observe_exchange_budget(  # noqa: PLR0917  # the positional order the service calls with (ack fields)
        self,
        op: str,
        category: Category,
        limit: int,
        remaining: int,
        reset_ms: int | None,
        now_ns: int,
        wall_now_ms: int,
    ) -> bool:
        """Resync the `op:category` bucket from an ack's X-Bapi-Limit / -Status / -Reset-Timestamp.

        Returns True if the bucket was tightened or blocked. A header may lift an earlier lowered
        capacity back up to the configured one, never beyond. Unknown op/category or nonsense
        values (limit < 1, remaining < 0) change nothing.
        """
        key = exchange_key(op, category)
        lim = self._exchange.get(key)
        budget = self._budgets.get(key)
        if lim is None or budget is None or limit < 1 or remaining < 0:
            return False
        now_ns = self._clamp(now_ns)
        st = lim.bucket(key)
        usable = max(1, int(limit * budget.utilization))
        cap_before = lim.cap(st)
        st.cap_override = usable if usable < lim.max else None
        tightened = lim.cap(st) < cap_before
        lim.prune(st, now_ns)
        local_remaining = max(0, lim.cap(st) - st.used)
        allowed = max(0, remaining - (limit - usable))
        if allowed < local_remaining:
            lim.commit(st, local_remaining - allowed, now_ns)
            tightened = True
        if remaining == 0 and reset_ms is not None and reset_ms > wall_now_ms:
            tightened = self._block(lim, st, reset_ms, now_ns, wall_now_ms) or tightened
        return tightened

    def on_exchange_rate_limited(
        self, op: str, category: Category, reset_ms: int | None, now_ns: int, wall_now_ms: int
    ) -> bool:
        """Bybit answered 10006 for `op:category`: block that bucket until its reset (or one window)."""
        key = exchange_key(op, category)
        lim = self._exchange.get(key)
        if lim is None:
            return False
        now_ns = self._clamp(now_ns)
        st = lim.bucket(key)
        return self._block(lim, st, reset_ms, now_ns, wall_now_ms)

    @staticmethod
    def _block(lim: WindowLimiter, st: _Window, reset_ms: int | None, now_ns: int, wall_now_ms: int) -> bool:
        if reset_ms is not None and reset_ms > wall_now_ms:
            wait_ns = (reset_ms - wall_now_ms) * NS_PER_MS
        else:
            wait_ns = lim.window_ns
        until = now_ns + min(wait_ns, MAX_BLOCK_NS)
        if until > st.blocked_until_ns:
            st.blocked_until_ns = until
            return True
        return False

    # -- views and reload ---------------------------------------------------------------------

    def snapshot(self, now_ns: int) -> list[BudgetView]:
        """Every budget: configured keys (even unused), then any other key seen, in scope order.

        Exchange budgets are listed for the policy's categories, when configured explicitly, or once
        used; Bybit's defaults for categories the policy does not trade stay out of the way."""
        now_ns = self._clamp(now_ns)
        policy = self._policy
        known: dict[RateScope, list[str]] = {
            RateScope.TOOL: list(AMEND_TOOLS),
            RateScope.SYMBOL: [symbol_key(c, s) for c, s in policy.symbols],
            RateScope.GLOBAL: [GLOBAL_KEY],
        }
        out: list[BudgetView] = []
        for scope in _SCOPE_ORDER:
            if scope is RateScope.EXCHANGE:
                cats = {_BUDGET_CATEGORY[c] for c in policy.categories}
                explicit = {exchange_key(b.op, b.category) for b in policy.exchange_budgets}
                for key, lim in self._exchange.items():
                    if (
                        _BUDGET_CATEGORY[self._budgets[key].category] in cats
                        or key in explicit
                        or key in lim.buckets
                    ):
                        out.append(lim.view_at(key, now_ns))
                continue
            for lim in self._scoped.get(scope, ()):
                keys = known[scope]
                configured = set(keys)
                keys = keys + sorted(k for k in lim.buckets if k not in configured)
                out.extend(lim.view_at(k, now_ns) for k in keys)
        return out

    def replace_policy(self, policy: Policy) -> None:
        """Hot reload. A bucket whose rule keeps its scope and window (or, for Bybit's budget, its op,
        category and window) keeps its log - the admissions in it really happened - under the new
        max; other buckets start empty."""
        old_scoped: dict[tuple[RateScope, int], dict[str, _Window]] = {}
        for lims in self._scoped.values():
            for lim in lims:
                old_scoped.setdefault((lim.scope, lim.window_ns), lim.buckets)
        old_exchange = {(key, lim.window_ns): lim.buckets for key, lim in self._exchange.items()}
        self._build(policy, old_scoped, old_exchange)
        self._policy = policy

    def _build(
        self,
        policy: Policy,
        old_scoped: dict[tuple[RateScope, int], dict[str, _Window]],
        old_exchange: dict[tuple[str, int], dict[str, _Window]],
    ) -> None:
        scoped: dict[RateScope, list[WindowLimiter]] = {}
        taken: set[tuple[RateScope, int]] = set()
        for rule in policy.rate_rules:
            if rule.scope is RateScope.EXCHANGE:
                raise ValueError("exchange budgets are configured as ExchangeBudget, not RateRule")
            lim = WindowLimiter(rule.scope, rule.max, rule.window_ms * NS_PER_MS)
            ident = (lim.scope, lim.window_ns)
            old = old_scoped.get(ident)
            if old is not None:
                # Two rules of one scope and window see the same admissions; each needs its own copy.
                lim.adopt(old if ident not in taken else {k: w.copy() for k, w in old.items()})
                taken.add(ident)
            scoped.setdefault(rule.scope, []).append(lim)
        exchange: dict[str, WindowLimiter] = {}
        budgets: dict[str, ExchangeBudget] = {}
        for b in exchange_budgets_of(policy):
            key = exchange_key(b.op, b.category)
            lim = WindowLimiter(RateScope.EXCHANGE, b.local_max, b.admission_window_ms * NS_PER_MS)
            old = old_exchange.get((key, lim.window_ns))
            if old is not None:
                lim.adopt(old)
            exchange[key] = lim
            budgets[key] = b
        self._scoped = {s: tuple(v) for s, v in scoped.items()}
        self._exchange = exchange
        self._budgets = budgets
