"""The local backend on a fake clock: leases are the core in-flight guard, trip-counter windows,
the journal as the kill switch (shared with `sidecar halt` through the file), and failing closed
when the journal cannot be read. Also the pure parts: the budget plan and the fingerprint."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from sidecar.coordination import (
    Admitted,
    Busy,
    CoordinationUnavailable,
    Halted,
    LocalCoordinator,
    budget_fingerprint,
)
from sidecar.coordination.plan import BudgetPlan, Check
from sidecar.core.inflight import InFlight
from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope, SymbolRule
from sidecar.core.ratelimit import Demand, demands_for
from sidecar.core.types import Category, TradingState
from sidecar.journal import Journal
from sidecar.testing import FakeClock

ACTIVE = TradingState.ACTIVE
ONE = [Demand(RateScope.GLOBAL, "*", 1)]
POLICY = Policy(symbols={}, rate_rules=(RateRule(RateScope.GLOBAL, 3, 1000),))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3")
    yield j
    j.close()


def local(journal: Journal, clock: FakeClock) -> LocalCoordinator:
    return LocalCoordinator(POLICY, clock=clock, store=journal, request_id_prefix="r1-abc")


async def test_leases_are_the_core_in_flight_guard_and_never_expire(journal: Journal) -> None:
    clock = FakeClock()
    guard = InFlight()  # the service's, which the validator reads for per-item ORDER_BUSY
    c = LocalCoordinator(POLICY, clock=clock, store=journal, request_id_prefix="r1-abc", in_flight=guard)
    assert c.in_flight is guard
    assert isinstance(await c.admit(ONE, ["o1"], "a", validated_under=ACTIVE, lease_ttl_ms=500), Admitted)
    assert guard.holder("o1") == "a"
    clock.advance_ms(3_600_000)  # in-process: held until released, whatever the TTL said
    assert await c.admit([], ["o1"], "b", validated_under=ACTIVE, lease_ttl_ms=500) == Busy(("o1",))
    guard.release("a", "o1")
    assert isinstance(await c.admit([], ["o1"], "b", validated_under=ACTIVE, lease_ttl_ms=500), Admitted)


async def test_trip_counters_forget_events_older_than_the_window(journal: Journal) -> None:
    clock = FakeClock()
    c = local(journal, clock)
    assert await c.count_event("unverified", 1000) == 1
    clock.advance_ms(600)
    assert await c.count_event("unverified", 1000, add=2) == 3
    clock.advance_ms(400)  # the first event is exactly one window old: it no longer counts
    assert await c.count_event("unverified", 1000, add=0) == 2
    with pytest.raises(ValueError, match="window_ms"):
        await c.count_event("unverified", 0)


async def test_the_journal_is_the_kill_switch_shared_with_other_processes(journal: Journal) -> None:
    c = local(journal, FakeClock())
    cli = Journal(journal.path)  # what `sidecar halt` opens
    try:
        cli.set_trading_state("halted", "from the CLI", "operator", 1)
        assert await c.admit(ONE, [], "a", validated_under=ACTIVE, lease_ttl_ms=1000) == Halted(
            "from the CLI", "operator"
        )
    finally:
        cli.close()


async def test_an_unreadable_journal_halts_and_a_refused_write_is_reported(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    c = local(j, FakeClock())
    j.close()
    view = c.trading_state()
    assert view.state is TradingState.HALTED and view.reason.startswith("journal unreadable")
    assert isinstance(await c.admit(ONE, [], "a", validated_under=ACTIVE, lease_ttl_ms=1000), Halted)
    refused = await c.set_trading_state(ACTIVE, "", "operator")
    assert isinstance(refused, CoordinationUnavailable)


async def test_request_ids_keep_the_local_prefix(journal: Journal) -> None:
    c = local(journal, FakeClock())
    assert [c.next_request_id() for _ in range(2)] == ["r1-abc-1", "r1-abc-2"]
    with pytest.raises(ValueError, match="holder"):
        await c.admit(ONE, ["o1"], "", validated_under=ACTIVE, lease_ttl_ms=1000)


def test_the_plan_checks_buckets_in_the_core_limiters_order() -> None:
    policy = Policy(
        symbols={},
        rate_rules=(
            RateRule(RateScope.TOOL, 5, 1000),
            RateRule(RateScope.SYMBOL, 4, 1000),
            RateRule(RateScope.SYMBOL, 9, 1000),  # same window: shares the log, its own check
            RateRule(RateScope.SYMBOL, 20, 60_000),
        ),
        exchange_budgets=(ExchangeBudget("order.amend-batch", Category.LINEAR, 10, guard_ms=100),),
    )
    demands = demands_for("wsBatchAmendOrders", Category.LINEAR, "order.amend-batch", ["BTC", "ETH", "BTC"])
    r = BudgetPlan(policy).resolve(demands)
    assert [(lg.scope, lg.key, lg.window_ns // 1_000_000) for lg in r.logs] == [
        (RateScope.TOOL, "wsBatchAmendOrders", 1000),
        (RateScope.SYMBOL, "linear:BTC", 1000),
        (RateScope.SYMBOL, "linear:BTC", 60_000),
        (RateScope.SYMBOL, "linear:ETH", 1000),
        (RateScope.SYMBOL, "linear:ETH", 60_000),
        (RateScope.EXCHANGE, "order.amend-batch:linear", 1100),  # Bybit's window + the guard
    ]
    assert r.costs == (1, 2, 2, 1, 1, 3)  # a shared log counts each demand once
    assert r.checks == (
        Check(0, 5),
        Check(1, 4),
        Check(1, 9),
        Check(2, 20),
        Check(3, 4),
        Check(3, 9),
        Check(4, 20),
        Check(5, 8),
    )


def test_the_fingerprint_names_the_shared_budgets_and_nothing_else() -> None:
    base = Policy(symbols={}, rate_rules=(RateRule(RateScope.GLOBAL, 3, 1000),))
    rule = SymbolRule(Category.LINEAR, "X", Decimal(1), Decimal(100), Decimal(50))
    other_symbols = Policy(symbols={(Category.LINEAR, "X"): rule}, rate_rules=base.rate_rules)
    assert budget_fingerprint(base) == budget_fingerprint(other_symbols)
    assert budget_fingerprint(base) != budget_fingerprint(
        Policy(symbols={}, rate_rules=(RateRule(RateScope.GLOBAL, 4, 1000),))
    )
    tighter = Policy(
        symbols={},
        rate_rules=base.rate_rules,
        exchange_budgets=(ExchangeBudget("order.amend", Category.LINEAR, 10, utilization=Decimal("0.5")),),
    )
    assert budget_fingerprint(base) != budget_fingerprint(tighter)
