"""Unit tests for sidecar.core.ratelimit: exact windows, atomicity, Bybit resync, views, reload."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sidecar.core.policy import (
    DEFAULT_EXCHANGE_LIMITS_PER_S,
    ExchangeBudget,
    Policy,
    RateRule,
    RateScope,
    SymbolRule,
)
from sidecar.core.ratelimit import (
    ADMIT,
    MAX_BLOCK_NS,
    Admit,
    BudgetView,
    Demand,
    RateLimiter,
    Throttle,
    WindowLimiter,
    demands_for,
    exchange_key,
    symbol_key,
)
from sidecar.core.types import Category

S = 1_000_000_000
MS = 1_000_000
T0 = 5 * S  # an arbitrary monotonic origin
BATCH = "order.amend-batch"
TOOL = "wsBatchAmendOrders"


def _rule(symbol: str, category: Category = Category.LINEAR) -> SymbolRule:
    return SymbolRule(category, symbol, Decimal(1), Decimal(1000), Decimal(100))


def make_policy(
    *rules: RateRule, budgets: tuple[ExchangeBudget, ...] = (), symbols: tuple[str, ...] = ("BTCUSDT",)
) -> Policy:
    return Policy(
        symbols={(Category.LINEAR, s): _rule(s) for s in symbols},
        rate_rules=rules,
        exchange_budgets=budgets,
    )


def view(rl: RateLimiter, scope: RateScope, key: str, now_ns: int) -> BudgetView:
    found = [v for v in rl.snapshot(now_ns) if v.scope is scope and v.key == key]
    assert len(found) == 1, found
    return found[0]


def throttled(result: Admit | Throttle) -> Throttle:
    assert isinstance(result, Throttle), result
    return result


# -- single bucket ---------------------------------------------------------------------------------


def test_ten_per_minute_admits_exactly_ten_then_throttles_with_exact_retry() -> None:
    lim = WindowLimiter(RateScope.TOOL, 10, 60 * S)
    for i in range(10):
        assert lim.try_acquire("t", 1, T0 + i * S) is ADMIT
    t = throttled(lim.try_acquire("t", 1, T0 + 10 * S))
    # The first admission (at T0) leaves the window at T0 + 60 s: 50 s from now, exactly.
    assert t.retry_after_ns == 50 * S
    assert t.retry_after_ms == 50_000
    assert (t.scope, t.key, t.limit, t.cost) == (RateScope.TOOL, "t", 10, 1)
    assert "retry in 50000 ms" in t.message
    assert isinstance(lim.try_acquire("t", 1, T0 + 60 * S - 1), Throttle)
    assert lim.try_acquire("t", 1, T0 + 60 * S) is ADMIT
    # Only one unit came free: the next one waits for the admission at T0 + 1 s to leave.
    assert throttled(lim.try_acquire("t", 1, T0 + 60 * S)).retry_after_ns == 1 * S


def test_burst_of_max_is_admitted_at_once_and_retry_is_a_full_window() -> None:
    lim = WindowLimiter(RateScope.GLOBAL, 5, 1 * S)
    assert lim.try_acquire("*", 5, T0) is ADMIT
    t = throttled(lim.try_acquire("*", 1, T0 + 1))
    assert t.retry_after_ns == S - 1
    assert t.retry_after_ms == 1000  # ceil(999.999999 ms)


def test_retry_after_ms_rounds_up() -> None:
    lim = WindowLimiter(RateScope.GLOBAL, 1, 10 * MS)
    assert lim.try_acquire("*", 1, T0) is ADMIT
    t = throttled(lim.try_acquire("*", 1, T0 + 10 * MS - 1))
    assert t.retry_after_ns == 1
    assert t.retry_after_ms == 1


def test_cost_over_capacity_is_never_admitted() -> None:
    lim = WindowLimiter(RateScope.SYMBOL, 8, 1 * S)
    for now in (T0, T0 + 10 * S, T0 + 10_000 * S):
        t = throttled(lim.try_acquire("linear:BTCUSDT", 9, now))
        assert t.retry_after_ns is None
        assert t.retry_after_ms is None
        assert "never" in t.message
    # ... and it consumed nothing.
    assert lim.try_acquire("linear:BTCUSDT", 8, T0 + 10_000 * S) is ADMIT


def test_costs_are_weighted_and_retry_waits_for_enough_units() -> None:
    lim = WindowLimiter(RateScope.SYMBOL, 10, 1 * S)
    assert lim.try_acquire("k", 3, T0) is ADMIT
    assert lim.try_acquire("k", 3, T0 + 100 * MS) is ADMIT
    assert lim.try_acquire("k", 3, T0 + 200 * MS) is ADMIT
    # 9 used; 7 more need 6 units to leave: the entries at T0 and T0 + 100 ms.
    t = throttled(lim.try_acquire("k", 7, T0 + 300 * MS))
    assert t.retry_after_ns == (T0 + 100 * MS + S) - (T0 + 300 * MS)
    assert lim.try_acquire("k", 1, T0 + 300 * MS) is ADMIT


def test_zero_cost_is_admitted_and_negative_cost_is_a_bug() -> None:
    lim = WindowLimiter(RateScope.TOOL, 1, S)
    assert lim.try_acquire("t", 1, T0) is ADMIT
    assert lim.try_acquire("t", 0, T0) is ADMIT
    with pytest.raises(ValueError, match="negative cost"):
        lim.try_acquire("t", -1, T0)


def test_invalid_rule_is_refused() -> None:
    with pytest.raises(ValueError):
        WindowLimiter(RateScope.TOOL, 0, S)
    with pytest.raises(ValueError):
        WindowLimiter(RateScope.TOOL, 1, 0)
    with pytest.raises(ValueError, match="ExchangeBudget"):
        RateLimiter(make_policy(RateRule(RateScope.EXCHANGE, 1, 1000)))


def test_keys_are_independent() -> None:
    lim = WindowLimiter(RateScope.SYMBOL, 1, S)
    assert lim.try_acquire("linear:A", 1, T0) is ADMIT
    assert lim.try_acquire("linear:B", 1, T0) is ADMIT
    assert isinstance(lim.try_acquire("linear:A", 1, T0), Throttle)


def test_clock_going_back_is_treated_as_the_latest_time_seen() -> None:
    lim = WindowLimiter(RateScope.TOOL, 1, 10 * S)
    assert lim.try_acquire("t", 1, T0 + 5 * S) is ADMIT
    # 3 s "earlier": time stands still at T0 + 5 s, so the wait is a full window, not 13 s.
    t = throttled(lim.try_acquire("t", 1, T0 + 2 * S))
    assert t.retry_after_ns == 10 * S
    assert lim.try_acquire("t", 1, T0 + 15 * S) is ADMIT


def test_peek_on_a_bucket_consumes_nothing() -> None:
    lim = WindowLimiter(RateScope.TOOL, 2, S)
    for _ in range(5):
        assert lim.peek("t", 2, T0) is ADMIT
    assert lim.try_acquire("t", 2, T0) is ADMIT
    assert isinstance(lim.peek("t", 1, T0), Throttle)


# -- demands ---------------------------------------------------------------------------------------


def test_demands_for_linear_batch_counts_items() -> None:
    d = demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT", "ETHUSDT", "BTCUSDT"])
    assert d == [
        Demand(RateScope.TOOL, TOOL, 1),
        Demand(RateScope.GLOBAL, "*", 1),
        Demand(RateScope.SYMBOL, "linear:BTCUSDT", 2),
        Demand(RateScope.SYMBOL, "linear:ETHUSDT", 1),
        Demand(RateScope.EXCHANGE, "order.amend-batch:linear", 3),
    ]
    assert symbol_key(Category.LINEAR, "BTCUSDT") == "linear:BTCUSDT"
    assert exchange_key(BATCH, Category.LINEAR) == "order.amend-batch:linear"


def test_demands_for_option_batch_counts_one_per_request() -> None:
    syms = ["BTC-30JUN26-60000-C"] * 20
    d = demands_for(TOOL, Category.OPTION, BATCH, syms)
    assert d[-1] == Demand(RateScope.EXCHANGE, "order.amend-batch:option", 1)
    assert d[2] == Demand(RateScope.SYMBOL, "option:BTC-30JUN26-60000-C", 20)
    assert demands_for(TOOL, Category.SPOT, BATCH, ["BTCUSDT"] * 10)[-1].cost == 10
    # No items: no exchange demand (nothing would be sent), but the call still costs tool and global.
    assert demands_for(TOOL, Category.OPTION, BATCH, []) == [
        Demand(RateScope.TOOL, TOOL, 1),
        Demand(RateScope.GLOBAL, "*", 1),
    ]


# -- RateLimiter -----------------------------------------------------------------------------------


def test_atomic_a_failing_symbol_bucket_leaves_the_others_untouched() -> None:
    rl = RateLimiter(
        make_policy(
            RateRule(RateScope.TOOL, 100, 1000),
            RateRule(RateScope.GLOBAL, 100, 1000),
            RateRule(RateScope.SYMBOL, 3, 1000),
        )
    )
    ok = demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"] * 3)
    assert rl.check(ok, T0) is ADMIT
    before = rl.snapshot(T0 + 1)
    t = throttled(rl.check(demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"]), T0 + 1))
    assert (t.scope, t.key) == (RateScope.SYMBOL, "linear:BTCUSDT")
    assert t.retry_after_ns == S - 1
    assert rl.snapshot(T0 + 1) == before
    assert view(rl, RateScope.TOOL, TOOL, T0 + 1).remaining == 99
    assert view(rl, RateScope.GLOBAL, "*", T0 + 1).remaining == 99
    assert view(rl, RateScope.EXCHANGE, "order.amend-batch:linear", T0 + 1).remaining == 5


def test_throttle_reports_the_bucket_with_the_longest_wait() -> None:
    rl = RateLimiter(
        make_policy(RateRule(RateScope.TOOL, 1, 1000), RateRule(RateScope.GLOBAL, 1, 5000)),
    )
    assert rl.check([Demand(RateScope.TOOL, "a", 1), Demand(RateScope.GLOBAL, "*", 1)], T0) is ADMIT
    t = throttled(rl.check([Demand(RateScope.TOOL, "a", 1), Demand(RateScope.GLOBAL, "*", 1)], T0 + 1))
    assert (t.scope, t.key, t.retry_after_ns) == (RateScope.GLOBAL, "*", 5 * S - 1)


def test_two_rules_of_one_scope_both_apply() -> None:
    rl = RateLimiter(make_policy(RateRule(RateScope.TOOL, 2, 1000), RateRule(RateScope.TOOL, 3, 60_000)))
    d = [Demand(RateScope.TOOL, TOOL, 1)]
    assert rl.check(d, T0) is ADMIT
    assert rl.check(d, T0) is ADMIT
    assert throttled(rl.check(d, T0)).retry_after_ns == S
    assert rl.check(d, T0 + S) is ADMIT
    t = throttled(rl.check(d, T0 + 2 * S))
    assert (t.limit, t.retry_after_ns) == (3, 58 * S)


def test_duplicate_demands_on_one_bucket_add_up() -> None:
    rl = RateLimiter(make_policy(RateRule(RateScope.SYMBOL, 3, 1000)))
    d = [Demand(RateScope.SYMBOL, "linear:BTCUSDT", 2), Demand(RateScope.SYMBOL, "linear:BTCUSDT", 2)]
    t = throttled(rl.check(d, T0))
    assert (t.cost, t.retry_after_ns) == (4, None)
    assert view(rl, RateScope.SYMBOL, "linear:BTCUSDT", T0).remaining == 3


def test_unconfigured_scopes_do_not_limit() -> None:
    rl = RateLimiter(make_policy())
    d = [Demand(RateScope.TOOL, TOOL, 1), Demand(RateScope.SYMBOL, "linear:X", 1000)]
    for _ in range(100):
        assert rl.check(d, T0) is ADMIT
    assert rl.check([Demand(RateScope.EXCHANGE, "order.create:linear", 10**6)], T0) is ADMIT


def test_default_exchange_budget_is_eighty_percent_of_bybit() -> None:
    rl = RateLimiter(make_policy())
    key = "order.amend-batch:linear"
    assert DEFAULT_EXCHANGE_LIMITS_PER_S[(BATCH, Category.LINEAR)] == 10
    assert rl.check(demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"] * 8), T0) is ADMIT
    t = throttled(rl.check(demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"]), T0))
    assert (t.scope, t.key, t.limit, t.retry_after_ns) == (RateScope.EXCHANGE, key, 8, S)
    # A full 20-item linear batch can never fit the default tier's budget: say so, never admit it.
    t = throttled(rl.check(demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"] * 20), T0 + 10 * S))
    assert t.retry_after_ns is None
    assert "split" in t.message


def test_option_batch_of_twenty_costs_one_exchange_unit() -> None:
    rl = RateLimiter(make_policy())
    d = demands_for(TOOL, Category.OPTION, BATCH, ["BTC-1JAN27-1-C"] * 20)
    for _ in range(8):
        assert rl.check(d, T0) is ADMIT
    t = throttled(rl.check(d, T0))
    assert (t.key, t.limit) == ("order.amend-batch:option", 8)


def test_configured_exchange_budget_overrides_the_default() -> None:
    b = ExchangeBudget(BATCH, Category.LINEAR, limit=40, utilization=Decimal("0.5"))
    rl = RateLimiter(make_policy(budgets=(b,)))
    assert rl.check(demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"] * 20), T0) is ADMIT
    assert isinstance(rl.check(demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"]), T0), Throttle)


def test_peek_consumes_nothing() -> None:
    rl = RateLimiter(make_policy(RateRule(RateScope.TOOL, 2, 1000), RateRule(RateScope.SYMBOL, 4, 1000)))
    d = demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"] * 4)
    before = rl.snapshot(T0)
    for _ in range(10):
        assert rl.peek(d, T0) is ADMIT
    assert rl.snapshot(T0) == before
    assert rl.check(d, T0) is ADMIT
    t = throttled(rl.peek(d, T0 + 1))
    assert t.retry_after_ns == S - 1
    assert throttled(rl.check(d, T0 + 1)) == t


def test_negative_cost_leaves_no_pending_state_behind() -> None:
    rl = RateLimiter(make_policy(RateRule(RateScope.TOOL, 1, 1000)))
    with pytest.raises(ValueError):
        rl.check([Demand(RateScope.TOOL, TOOL, 1), Demand(RateScope.GLOBAL, "*", -1)], T0)
    assert rl.check([Demand(RateScope.TOOL, TOOL, 1)], T0) is ADMIT


def test_clock_going_back_on_the_limiter() -> None:
    rl = RateLimiter(make_policy(RateRule(RateScope.TOOL, 1, 1000)))
    d = [Demand(RateScope.TOOL, TOOL, 1)]
    assert rl.check(d, T0 + S) is ADMIT
    assert throttled(rl.check(d, T0)).retry_after_ns == S
    assert rl.check(d, T0 + 2 * S) is ADMIT


# -- Bybit's headers -------------------------------------------------------------------------------

WALL = 1_700_000_000_000  # wall ms paired with T0
KEY = "order.amend-batch:linear"


def linear(n: int) -> list[Demand]:
    return demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"] * n)


def test_headers_showing_less_remaining_tighten_the_bucket() -> None:
    rl = RateLimiter(make_policy())  # default: Bybit 10/s, local 8/s
    assert rl.check(linear(2), T0) is ADMIT
    # Bybit counts 5 used (another client shares the UID): keep 2 units of headroom -> 3 more.
    tightened = rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=10, remaining=5, reset_ms=WALL, now_ns=T0 + 10 * MS, wall_now_ms=WALL
    )
    assert tightened
    assert view(rl, RateScope.EXCHANGE, KEY, T0 + 10 * MS).remaining == 3
    assert rl.check(linear(3), T0 + 10 * MS) is ADMIT
    t = throttled(rl.check(linear(1), T0 + 10 * MS))
    assert t.retry_after_ns == S - 10 * MS  # our own 2 units (at T0) leave first
    # One window after the resync everything has left.
    assert view(rl, RateScope.EXCHANGE, KEY, T0 + 10 * MS + S).remaining == 8


def test_headers_never_loosen_the_bucket() -> None:
    rl = RateLimiter(make_policy())
    assert rl.check(linear(6), T0) is ADMIT
    assert not rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=100, remaining=100, reset_ms=WALL, now_ns=T0, wall_now_ms=WALL
    )
    v = view(rl, RateScope.EXCHANGE, KEY, T0)
    assert (v.max, v.remaining) == (8, 2)


def test_headers_with_a_lower_account_limit_lower_the_capacity_until_told_otherwise() -> None:
    rl = RateLimiter(make_policy())
    assert rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=5, remaining=5, reset_ms=WALL, now_ns=T0, wall_now_ms=WALL
    )
    v = view(rl, RateScope.EXCHANGE, KEY, T0)
    assert (v.max, v.remaining) == (4, 4)  # 80 % of 5
    assert throttled(rl.check(linear(5), T0)).retry_after_ns is None
    rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=10, remaining=10, reset_ms=WALL, now_ns=T0, wall_now_ms=WALL
    )
    assert view(rl, RateScope.EXCHANGE, KEY, T0).max == 8


def test_exhausted_headers_block_until_the_reset() -> None:
    rl = RateLimiter(make_policy())
    # Reset 3 s away (longer than the window): blocked until exactly then.
    assert rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=10, remaining=0, reset_ms=WALL + 3000, now_ns=T0, wall_now_ms=WALL
    )
    t = throttled(rl.check(linear(1), T0))
    assert t.retry_after_ns == 3 * S
    assert "Bybit" in t.message
    assert isinstance(rl.check(linear(1), T0 + 3 * S - 1), Throttle)
    assert rl.check(linear(8), T0 + 3 * S) is ADMIT
    v = view(rl, RateScope.EXCHANGE, KEY, T0 + 3 * S)
    assert (v.remaining, v.retry_after_ms) == (0, 1000)


def test_exhausted_headers_with_a_near_reset_still_wait_out_the_window() -> None:
    rl = RateLimiter(make_policy())
    rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=10, remaining=0, reset_ms=WALL + 300, now_ns=T0, wall_now_ms=WALL
    )
    # Bybit does not say how many units come back at the reset: stay conservative for one window.
    assert throttled(rl.check(linear(1), T0)).retry_after_ns == S


def test_rate_limited_blocks_until_reset_or_one_window() -> None:
    rl = RateLimiter(make_policy())
    assert rl.on_exchange_rate_limited(
        BATCH, Category.LINEAR, reset_ms=WALL + 250, now_ns=T0, wall_now_ms=WALL
    )
    assert throttled(rl.check(linear(1), T0)).retry_after_ns == 250 * MS
    assert rl.check(linear(1), T0 + 250 * MS) is ADMIT
    # A reset not in the future (or missing): block one window.
    assert rl.on_exchange_rate_limited(
        BATCH, Category.LINEAR, reset_ms=WALL, now_ns=T0 + S, wall_now_ms=WALL + 1000
    )
    assert throttled(rl.check(linear(1), T0 + S)).retry_after_ns == S
    rl.on_exchange_rate_limited(BATCH, Category.SPOT, reset_ms=None, now_ns=T0 + S, wall_now_ms=WALL)
    t = throttled(rl.check(demands_for(TOOL, Category.SPOT, BATCH, ["BTCUSDT"]), T0 + S))
    assert (t.key, t.retry_after_ns) == ("order.amend-batch:spot", S)
    # Inverse shares linear's budget (one "inverse+linear" cell in Bybit's table): blocked with it.
    t = throttled(rl.check(demands_for(TOOL, Category.INVERSE, BATCH, ["BTCUSD"]), T0 + S))
    assert t.key == "order.amend-batch:linear"
    # The other categories are untouched.
    assert rl.check(demands_for(TOOL, Category.OPTION, BATCH, ["BTC-26JUN26-100000-C"]), T0 + S) is ADMIT


def test_a_wild_reset_blocks_at_most_max_block() -> None:
    rl = RateLimiter(make_policy())
    rl.on_exchange_rate_limited(BATCH, Category.LINEAR, reset_ms=WALL + 10**12, now_ns=T0, wall_now_ms=WALL)
    assert throttled(rl.check(linear(1), T0)).retry_after_ns == MAX_BLOCK_NS


def test_an_earlier_block_does_not_shorten_a_later_one() -> None:
    rl = RateLimiter(make_policy())
    rl.on_exchange_rate_limited(BATCH, Category.LINEAR, reset_ms=WALL + 5000, now_ns=T0, wall_now_ms=WALL)
    assert not rl.on_exchange_rate_limited(
        BATCH, Category.LINEAR, reset_ms=WALL + 100, now_ns=T0, wall_now_ms=WALL
    )
    assert throttled(rl.check(linear(1), T0)).retry_after_ns == 5 * S


def test_headers_for_unknown_ops_or_nonsense_change_nothing() -> None:
    rl = RateLimiter(make_policy())
    before = rl.snapshot(T0)
    assert not rl.observe_exchange_budget(
        "order.create", Category.LINEAR, limit=10, remaining=0, reset_ms=WALL + 9, now_ns=T0, wall_now_ms=WALL
    )
    assert not rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=0, remaining=0, reset_ms=WALL + 9, now_ns=T0, wall_now_ms=WALL
    )
    assert not rl.observe_exchange_budget(
        BATCH, Category.LINEAR, limit=10, remaining=-1, reset_ms=WALL + 9, now_ns=T0, wall_now_ms=WALL
    )
    assert not rl.on_exchange_rate_limited(
        "order.create", Category.LINEAR, reset_ms=None, now_ns=T0, wall_now_ms=WALL
    )
    assert rl.snapshot(T0) == before


# -- snapshot and reload ---------------------------------------------------------------------------


def test_snapshot_lists_configured_keys_before_first_use() -> None:
    rl = RateLimiter(
        make_policy(
            RateRule(RateScope.TOOL, 10, 1000),
            RateRule(RateScope.SYMBOL, 5, 500),
            RateRule(RateScope.GLOBAL, 20, 60_000),
            symbols=("BTCUSDT", "ETHUSDT"),
        )
    )
    snap = rl.snapshot(T0)
    assert snap == [
        BudgetView(RateScope.TOOL, "wsBatchAmendOrders", 10, 1000, 10, 0),
        BudgetView(RateScope.TOOL, "wsAmendOrder", 10, 1000, 10, 0),
        BudgetView(RateScope.SYMBOL, "linear:BTCUSDT", 5, 500, 5, 0),
        BudgetView(RateScope.SYMBOL, "linear:ETHUSDT", 5, 500, 5, 0),
        BudgetView(RateScope.GLOBAL, "*", 20, 60_000, 20, 0),
        BudgetView(RateScope.EXCHANGE, "order.amend-batch:linear", 8, 1000, 8, 0),
        BudgetView(RateScope.EXCHANGE, "order.amend:linear", 8, 1000, 8, 0),
    ]
    assert snap[2].window_s == Decimal("0.5")
    assert snap[4].window_s == Decimal(60)


def test_snapshot_after_use() -> None:
    rl = RateLimiter(make_policy(RateRule(RateScope.SYMBOL, 5, 1000)))
    assert rl.check(linear(5), T0) is ADMIT
    now = T0 + 250 * MS + 1
    assert view(rl, RateScope.SYMBOL, "linear:BTCUSDT", now) == BudgetView(
        RateScope.SYMBOL, "linear:BTCUSDT", 5, 1000, 0, 750
    )
    assert view(rl, RateScope.EXCHANGE, KEY, now).remaining == 3
    # A key seen but not configured shows up after the configured ones.
    assert rl.check([Demand(RateScope.SYMBOL, "linear:XRPUSDT", 2)], now) is ADMIT
    assert view(rl, RateScope.SYMBOL, "linear:XRPUSDT", now).remaining == 3
    assert view(rl, RateScope.SYMBOL, "linear:BTCUSDT", T0 + S).remaining == 5


def test_replace_policy_keeps_state_of_unchanged_windows() -> None:
    tool = RateRule(RateScope.TOOL, 3, 1000)
    sym = RateRule(RateScope.SYMBOL, 5, 1000)
    rl = RateLimiter(make_policy(tool, sym))
    assert rl.check(linear(3), T0) is ADMIT
    # Same tool rule; symbol max lowered (same window: the 3 units admitted still count);
    # global rule new.
    rl.replace_policy(
        make_policy(tool, RateRule(RateScope.SYMBOL, 4, 1000), RateRule(RateScope.GLOBAL, 9, 1000))
    )
    assert view(rl, RateScope.TOOL, TOOL, T0).remaining == 2
    assert view(rl, RateScope.SYMBOL, "linear:BTCUSDT", T0).remaining == 1
    assert view(rl, RateScope.GLOBAL, "*", T0).remaining == 9
    assert view(rl, RateScope.EXCHANGE, KEY, T0).remaining == 5
    # A changed window starts empty.
    rl.replace_policy(make_policy(RateRule(RateScope.TOOL, 3, 2000)))
    assert view(rl, RateScope.TOOL, TOOL, T0).remaining == 3
    # A changed exchange limit keeps the log (same op, category and window).
    rl.replace_policy(make_policy(budgets=(ExchangeBudget(BATCH, Category.LINEAR, limit=20),)))
    assert view(rl, RateScope.EXCHANGE, KEY, T0) == BudgetView(RateScope.EXCHANGE, KEY, 16, 1000, 13, 0)
    assert rl.policy.exchange_budgets[0].limit == 20


def test_replace_policy_with_two_rules_on_one_window_gives_each_its_own_copy() -> None:
    rl = RateLimiter(make_policy(RateRule(RateScope.TOOL, 5, 1000)))
    assert rl.check([Demand(RateScope.TOOL, TOOL, 1)], T0) is ADMIT
    rl.replace_policy(make_policy(RateRule(RateScope.TOOL, 5, 1000), RateRule(RateScope.TOOL, 2, 1000)))
    assert rl.check([Demand(RateScope.TOOL, TOOL, 1)], T0) is ADMIT
    t = throttled(rl.check([Demand(RateScope.TOOL, TOOL, 1)], T0))
    assert t.limit == 2
    tool_views = [v for v in rl.snapshot(T0) if v.scope is RateScope.TOOL and v.key == TOOL]
    assert [v.remaining for v in tool_views] == [3, 0]
