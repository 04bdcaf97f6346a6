"""Linear and inverse share one Bybit budget per op (issue 11, audit row 12): consistent with the
emulator, which counts one "inverse+linear" bucket per UID as Bybit's rate-limit table shows."""

from __future__ import annotations

from decimal import Decimal

from sidecar.core.policy import ExchangeBudget, Policy, RateScope, SymbolRule
from sidecar.core.ratelimit import ADMIT, Demand, RateLimiter, Throttle, demands_for, exchange_key
from sidecar.core.types import Category

S = 1_000_000_000
T0 = 5 * S
AMEND = "order.amend"
TOOL = "wsAmendOrder"


def _policy(*budgets: ExchangeBudget) -> Policy:
    rules = {
        (Category.LINEAR, "BTCUSDT"): SymbolRule(
            Category.LINEAR, "BTCUSDT", Decimal(1), Decimal(10**6), Decimal(100)
        ),
        (Category.INVERSE, "BTCUSD"): SymbolRule(
            Category.INVERSE, "BTCUSD", Decimal(10**4), Decimal(10**6), Decimal(100)
        ),
    }
    return Policy(symbols=rules, exchange_budgets=budgets)


def _amend(category: Category, symbol: str) -> list[Demand]:
    return demands_for(TOOL, category, AMEND, [symbol])


def test_inverse_counts_against_linears_budget() -> None:
    assert (
        exchange_key(AMEND, Category.INVERSE) == exchange_key(AMEND, Category.LINEAR) == "order.amend:linear"
    )
    assert exchange_key(AMEND, "inverse") == "order.amend:linear"
    rl = RateLimiter(_policy(ExchangeBudget(AMEND, Category.LINEAR, limit=5, utilization=Decimal(1))))
    for _ in range(3):
        assert rl.check(_amend(Category.LINEAR, "BTCUSDT"), T0) is ADMIT
    for _ in range(2):
        assert rl.check(_amend(Category.INVERSE, "BTCUSD"), T0) is ADMIT
    refused = rl.check(_amend(Category.INVERSE, "BTCUSD"), T0)
    assert isinstance(refused, Throttle) and refused.key == "order.amend:linear"
    assert isinstance(rl.check(_amend(Category.LINEAR, "BTCUSDT"), T0), Throttle)
    exchange_keys = [v.key for v in rl.snapshot(T0) if v.scope is RateScope.EXCHANGE]
    assert "order.amend:inverse" not in exchange_keys and exchange_keys.count("order.amend:linear") == 1


def test_a_configured_tier_beats_the_default_of_the_other_category() -> None:
    # linear set to the account's tier, inverse left at Bybit's default 10: the tier applies to both
    rl = RateLimiter(
        _policy(
            ExchangeBudget(AMEND, Category.LINEAR, limit=50),
            ExchangeBudget(AMEND, Category.INVERSE, limit=10),
        )
    )
    for _ in range(40):  # 80 % of 50
        assert rl.check(_amend(Category.INVERSE, "BTCUSD"), T0) is ADMIT
    assert isinstance(rl.check(_amend(Category.LINEAR, "BTCUSDT"), T0), Throttle)
    # only inverse set: the inverse one applies
    rl = RateLimiter(
        _policy(
            ExchangeBudget(AMEND, Category.LINEAR, limit=10),
            ExchangeBudget(AMEND, Category.INVERSE, limit=30),
        )
    )
    assert [v.max for v in rl.snapshot(T0) if v.key == "order.amend:linear"] == [24]


def test_both_tuned_the_tighter_applies() -> None:
    rl = RateLimiter(
        _policy(
            ExchangeBudget(AMEND, Category.LINEAR, limit=40),
            ExchangeBudget(AMEND, Category.INVERSE, limit=20),
        )
    )
    assert [v.max for v in rl.snapshot(T0) if v.key == "order.amend:linear"] == [16]


def test_a_10006_on_inverse_blocks_linear_too() -> None:
    rl = RateLimiter(_policy())
    assert rl.on_exchange_rate_limited(
        AMEND, Category.INVERSE, reset_ms=1_000_500, now_ns=T0, wall_now_ms=1_000_000
    )
    refused = rl.check(_amend(Category.LINEAR, "BTCUSDT"), T0)
    assert isinstance(refused, Throttle) and refused.retry_after_ns == 500_000_000
