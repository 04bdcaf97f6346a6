"""The shared (Redis) plan follows the core limiter's tables, whatever they are: which of Bybit's
budgets exist, which categories share one bucket (linear and inverse: one cell of Bybit's table),
which cap applies, and the order getSafetyPolicy lists them in.

These tests hold whether the core keeps linear and inverse apart or lets them share: they compare
the plan with `RateLimiter` itself, and the two backends with each other on real calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from sidecar.clock import SystemClock
from sidecar.coordination import Admitted, LocalCoordinator, Throttled, budget_fingerprint
from sidecar.coordination.plan import BudgetPlan
from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope, SymbolRule
from sidecar.core.ratelimit import RateLimiter, demands_for
from sidecar.core.types import Category, ReferenceKind, TradingState
from sidecar.journal import Journal
from tests.coordination.redis_testkit import RedisServer, make_redis_coordinator

BATCH = "order.amend-batch"
TOOL = "wsBatchAmendOrders"


def _rule(category: Category, symbol: str) -> SymbolRule:
    return SymbolRule(
        category=category,
        symbol=symbol,
        max_qty=Decimal(100),
        max_notional=Decimal(10**6),
        price_band_bps=Decimal(100),
        reference=ReferenceKind.MARK,
    )


def _policy(*budgets: ExchangeBudget) -> Policy:
    return Policy(
        symbols={
            (Category.LINEAR, "BTCUSDT"): _rule(Category.LINEAR, "BTCUSDT"),
            (Category.INVERSE, "BTCUSD"): _rule(Category.INVERSE, "BTCUSD"),
        },
        rate_rules=(RateRule(RateScope.GLOBAL, 1000, 1000), RateRule(RateScope.SYMBOL, 1000, 1000)),
        exchange_budgets=budgets,
    )


def _budget(category: Category, limit: int) -> ExchangeBudget:
    return ExchangeBudget(BATCH, category, limit=limit, utilization=Decimal(1))


POLICIES = {
    "defaults only": _policy(),
    "linear set": _policy(_budget(Category.LINEAR, 6)),
    "inverse set": _policy(_budget(Category.INVERSE, 6)),
    "both set, linear tighter": _policy(_budget(Category.LINEAR, 6), _budget(Category.INVERSE, 8)),
    "both set, inverse tighter": _policy(_budget(Category.LINEAR, 8), _budget(Category.INVERSE, 6)),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_the_plan_holds_the_core_limiters_budget_table_and_listing(name: str) -> None:
    policy = POLICIES[name]
    core = RateLimiter(policy)
    plan = BudgetPlan(policy)
    assert plan.budgets == core.exchange_budgets()
    listed = [(lg.scope, lg.key, lg.window_ns // 1_000_000, cap) for lg, cap in plan.view_logs()]
    assert listed == [(v.scope, v.key, v.window_ms, v.max) for v in core.snapshot(0)]


def test_the_fingerprint_names_the_budgets_as_enforced() -> None:
    # Budgets the core folds into one bucket cannot make two fleets' fingerprints differ while
    # they enforce the same thing; a different enforced cap always does.
    assert budget_fingerprint(POLICIES["linear set"]) != budget_fingerprint(POLICIES["defaults only"])
    assert budget_fingerprint(_policy(_budget(Category.LINEAR, 6))) == budget_fingerprint(
        _policy(_budget(Category.LINEAR, 6))
    )


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


@pytest.mark.parametrize("name", ["linear set", "both set, inverse tighter", "defaults only"])
async def test_both_backends_charge_linear_and_inverse_calls_to_the_same_buckets(
    name: str, redis_server: RedisServer, namespace: str, journal: Journal
) -> None:
    """Fill Bybit's linear budget with linear calls, then ask for an inverse one: both backends
    give the same answer (throttled when the core shares the bucket, admitted when it does not)."""
    policy = POLICIES[name]
    local = LocalCoordinator(policy, clock=SystemClock(), store=journal, request_id_prefix="r1")
    shared = make_redis_coordinator(redis_server.url, namespace, policy)
    await shared.start()
    try:
        linear = demands_for(TOOL, Category.LINEAR, BATCH, ["BTCUSDT"])
        inverse = demands_for(TOOL, Category.INVERSE, BATCH, ["BTCUSD"])
        answers: dict[str, list[str]] = {"local": [], "redis": []}
        for label, c in (("local", local), ("redis", shared)):
            for i in range(12):
                d = await c.admit(
                    linear, [], f"{label}-l{i}", validated_under=TradingState.ACTIVE, lease_ttl_ms=1000
                )
                answers[label].append(type(d).__name__)
            d = await c.admit(
                inverse, [], f"{label}-i", validated_under=TradingState.ACTIVE, lease_ttl_ms=1000
            )
            answers[label].append(type(d).__name__)
            if isinstance(d, Throttled):
                answers[label].append(d.throttle.key)
            else:
                assert isinstance(d, Admitted)
        assert answers["local"] == answers["redis"]
        assert "Throttled" in answers["local"]  # the linear budget did fill up
    finally:
        await shared.stop()
