"""Property tests for sidecar.core.ratelimit.

Times are cumulative sums of non-negative steps (a monotonic clock). Checked:
(a) in ANY window of length W, admitted units <= max;
(b) every decision and every retry-after equals a naive sliding-log reference model;
(c) after Throttle(retry_after) the same demand is admitted at now + retry_after, not one ns before;
(d) a throttled multi-key call consumes nothing in any bucket; an admitted one consumes exactly
    its cost in each;
(e) Bybit header resyncs never allow more than Bybit (less headroom) or the configuration allows,
    and never break (a).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope
from sidecar.core.ratelimit import ADMIT, Demand, RateLimiter, Throttle, WindowLimiter
from sidecar.core.types import Category

MS = 1_000_000
BATCH = "order.amend-batch"
SINGLE = "order.amend"
EX_KEYS = (f"{BATCH}:linear", f"{SINGLE}:linear")

Log = list[tuple[int, int]]


def ref_ready(log: Log, cost: int, max_units: int, window_ns: int, now: int) -> int | None:
    """Naive model: the first instant >= now at which cost + units admitted in (t - W, t] <= max."""
    if cost > max_units:
        return None
    candidates = sorted({now} | {t + window_ns for t, _ in log if t + window_ns > now})
    for cand in candidates:
        used = sum(c for t, c in log if t > cand - window_ns)
        if used + cost <= max_units:
            return cand
    raise AssertionError("unreachable: the log empties after one window")


def times_from(start: int, steps: list[int]) -> list[int]:
    out, now = [], start
    for s in steps:
        now += s
        out.append(now)
    return out


def assert_any_window_within_max(admitted: Log, max_units: int, window_ns: int) -> None:
    # The fullest window of length W can be taken to start at an admission.
    for s, _ in admitted:
        inside = sum(c for t, c in admitted if s <= t < s + window_ns)
        assert inside <= max_units, (s, inside, admitted)


single_ops = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 7)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    max_units=st.integers(1, 6),
    window_ns=st.integers(1, 30),
    start=st.integers(0, 50),
    ops=single_ops,
)
def test_single_bucket_matches_reference_and_is_exact(
    max_units: int, window_ns: int, start: int, ops: list[tuple[int, int]]
) -> None:
    lim = WindowLimiter(RateScope.GLOBAL, max_units, window_ns)
    admitted: Log = []
    for now, (_, cost) in zip(times_from(start, [dt for dt, _ in ops]), ops, strict=True):
        expected = ref_ready(admitted, cost, max_units, window_ns, now) if cost else now
        probe = copy.deepcopy(lim)
        result = lim.try_acquire("*", cost, now)
        if expected == now:  # (b)
            assert result is ADMIT
            if cost:
                admitted.append((now, cost))
            continue
        assert isinstance(result, Throttle)
        if expected is None:
            assert result.retry_after_ns is None
            assert cost > max_units
            continue
        assert result.retry_after_ns == expected - now
        # (c): exactly at the retry time it passes; one ns earlier it does not.
        assert isinstance(copy.deepcopy(probe).try_acquire("*", cost, expected - 1), Throttle)
        assert probe.try_acquire("*", cost, expected) is ADMIT
    assert_any_window_within_max(admitted, max_units, window_ns)  # (a)


# -- many buckets ----------------------------------------------------------------------------------

step_ns = st.tuples(st.integers(0, 6), st.integers(0, 1)).map(lambda ab: ab[0] * MS // 2 + ab[1])
scope_rule = st.tuples(st.integers(1, 5), st.integers(1, 4))  # (max, window_ms)


@st.composite
def limiter_setups(draw: st.DrawFn) -> Policy:
    rules: list[RateRule] = []
    for scope in (RateScope.TOOL, RateScope.SYMBOL, RateScope.GLOBAL):
        # Up to two rules per scope, with different windows.
        specs = draw(st.lists(scope_rule, max_size=2, unique_by=lambda r: r[1]))
        rules += [RateRule(scope, m, w) for m, w in specs]
    budgets = []
    for op in (BATCH, SINGLE):
        m, w = draw(scope_rule)
        budgets.append(ExchangeBudget(op, Category.LINEAR, limit=m, window_ms=w, utilization=Decimal(1)))
    return Policy(symbols={}, rate_rules=tuple(rules), exchange_budgets=tuple(budgets))


demand_st = st.one_of(
    st.builds(Demand, st.just(RateScope.TOOL), st.sampled_from(["a", "b"]), st.integers(0, 3)),
    st.builds(
        Demand, st.just(RateScope.SYMBOL), st.sampled_from(["linear:X", "linear:Y"]), st.integers(0, 6)
    ),
    st.builds(Demand, st.just(RateScope.GLOBAL), st.just("*"), st.integers(0, 3)),
    st.builds(Demand, st.just(RateScope.EXCHANGE), st.sampled_from(EX_KEYS), st.integers(0, 6)),
)
calls_st = st.lists(st.tuples(step_ns, st.lists(demand_st, max_size=5)), min_size=1, max_size=25)


class RefLimiter:
    """The reference: one naive log per (rule, key); a call passes iff every bucket passes."""

    def __init__(self, policy: Policy) -> None:
        self.rules: dict[RateScope, list[tuple[str, int, int]]] = defaultdict(list)
        self.exchange: dict[str, tuple[str, int, int]] = {}
        for i, r in enumerate(policy.rate_rules):
            self.rules[r.scope].append((f"r{i}", r.max, r.window_ms * MS))
        for b in policy.exchange_budgets:
            key = f"{b.op}:{b.category}"
            self.exchange[key] = (f"x:{key}", b.local_max, b.window_ms * MS)
        self.logs: dict[tuple[str, str], Log] = defaultdict(list)

    def buckets(self, d: Demand) -> list[tuple[str, int, int]]:
        if d.scope is RateScope.EXCHANGE:
            return [self.exchange[d.key]] if d.key in self.exchange else []
        return self.rules.get(d.scope, [])

    def costs(self, demands: list[Demand]) -> dict[tuple[str, str, int, int], int]:
        out: dict[tuple[str, str, int, int], int] = defaultdict(int)
        for d in demands:
            for rid, m, w in self.buckets(d):
                out[(rid, d.key, m, w)] += d.cost
        return {k: c for k, c in out.items() if c > 0}

    def decide(self, demands: list[Demand], now: int) -> int | None:
        readies = [
            ref_ready(self.logs[(rid, key)], c, m, w, now)
            for (rid, key, m, w), c in self.costs(demands).items()
        ]
        if any(r is None for r in readies):
            return None
        ready = max([now, *(r for r in readies if r is not None)])
        if ready == now:
            for (rid, key, _, _), c in self.costs(demands).items():
                self.logs[(rid, key)].append((now, c))
        return ready


def views_by_bucket(rl: RateLimiter, now: int) -> dict[tuple[RateScope, str, int, int], int]:
    # (scope, key, window, max) identifies a bucket here: windows are distinct within a scope.
    return {(v.scope, v.key, v.window_ms, v.max): v.remaining for v in rl.snapshot(now)}


@settings(max_examples=150, deadline=None)
@given(policy=limiter_setups(), start=st.integers(0, 10 * MS), calls=calls_st)
def test_many_buckets_are_atomic_and_match_reference(
    policy: Policy, start: int, calls: list[tuple[int, list[Demand]]]
) -> None:
    rl = RateLimiter(policy)
    ref = RefLimiter(policy)
    for now, (_, demands) in zip(times_from(start, [s for s, _ in calls]), calls, strict=True):
        before = views_by_bucket(rl, now)
        probe = copy.deepcopy(rl)
        expected = ref.decide(demands, now)  # (b)
        result = rl.check(demands, now)
        after = views_by_bucket(rl, now)
        if expected == now:
            assert result is ADMIT
            # (d) an admitted call consumes exactly its cost in each of its buckets, nothing elsewhere.
            for ident, remaining in after.items():
                scope, key, _, full = ident
                cost = sum(d.cost for d in demands if (d.scope, d.key) == (scope, key))
                assert remaining == before.get(ident, full) - cost
            continue
        assert isinstance(result, Throttle)
        # (d) a throttled call consumes nothing anywhere (new keys show up untouched).
        for ident, remaining in after.items():
            assert remaining == before.get(ident, ident[3])
        if expected is None:
            assert result.retry_after_ns is None
            continue
        assert result.retry_after_ns == expected - now
        # (c) exactly at the retry time the same call passes; one ns earlier it does not.
        assert isinstance(copy.deepcopy(probe).peek(demands, expected - 1), Throttle)
        assert probe.peek(demands, expected) is ADMIT
        assert probe.check(demands, expected) is ADMIT


# -- Bybit resync ----------------------------------------------------------------------------------

resync_ops = st.lists(
    st.one_of(
        st.tuples(st.just("check"), step_ns, st.integers(0, 8)),
        st.tuples(st.just("observe"), st.integers(1, 20), st.integers(0, 20)),
        st.tuples(st.just("limited"), st.integers(-500, 3000), st.just(0)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(1, 12), ops=resync_ops)
def test_header_resync_never_loosens_and_keeps_windows_exact(
    limit: int, ops: list[tuple[str, int, int]]
) -> None:
    budget = ExchangeBudget(BATCH, Category.LINEAR, limit=limit)
    rl = RateLimiter(Policy(symbols={}, exchange_budgets=(budget,)))
    key = f"{BATCH}:linear"
    now, wall = 0, 1_700_000_000_000
    admitted: Log = []

    def remaining() -> int:
        return next(v.remaining for v in rl.snapshot(now) if v.key == key)

    for kind, a, b in ops:
        if kind == "check":
            now += a
            wall += a // MS
            if rl.check([Demand(RateScope.EXCHANGE, key, b)], now) is ADMIT and b:
                admitted.append((now, b))
            continue
        if kind == "observe":
            bybit_remaining = min(a, b)
            rl.observe_exchange_budget(
                BATCH,
                Category.LINEAR,
                limit=a,
                remaining=bybit_remaining,
                reset_ms=wall + 200,
                now_ns=now,
                wall_now_ms=wall,
            )
            # (e) what we may still use never exceeds what Bybit says, less the headroom we keep ...
            usable = max(1, int(a * budget.utilization))
            assert remaining() <= max(0, bybit_remaining - (a - usable))
        else:
            rl.on_exchange_rate_limited(
                BATCH, Category.LINEAR, reset_ms=wall + a, now_ns=now, wall_now_ms=wall
            )
            assert remaining() == 0
        # ... nor what our own configuration leaves.
        in_window = sum(c for t, c in admitted if t > now - budget.window_ms * MS)
        assert remaining() <= budget.local_max - in_window
        assert all(v.max <= budget.local_max for v in rl.snapshot(now))
    assert_any_window_within_max(admitted, budget.local_max, budget.window_ms * MS)
