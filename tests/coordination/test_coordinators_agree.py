"""The two backends behave alike through the `Coordinator` interface: leases, the kill switch and
its reducing rule, all-or-nothing admission, previews, trip counters, request ids.

Each test runs twice: on `LocalCoordinator` (a real journal as its state store) and on
`RedisCoordinator` (a real redis-server, a fresh namespace).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.clock import SystemClock
from sidecar.coordination import (
    Admitted,
    Busy,
    Coordinator,
    Halted,
    LocalCoordinator,
    Reducing,
    StateView,
    Throttled,
)
from sidecar.core.inflight import reread_holder
from sidecar.core.policy import RateScope
from sidecar.core.ratelimit import Demand
from sidecar.core.types import Category, TradingState
from sidecar.journal import Journal
from tests.coordination.redis_testkit import make_redis_coordinator, small_policy

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
ONE = [Demand(RateScope.GLOBAL, "*", 1)]
TTL_MS = 60_000


@pytest.fixture(params=["local", "redis"])
async def coord(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Coordinator]:
    c: Coordinator
    if request.param == "local":
        journal = Journal(tmp_path / "journal.sqlite3")
        c = LocalCoordinator(small_policy(), clock=SystemClock(), store=journal, request_id_prefix="r1-abc")
    else:
        server = request.getfixturevalue("redis_server")
        c = make_redis_coordinator(server.url, request.getfixturevalue("namespace"))
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
        if request.param == "local":
            journal.close()


async def admit(c: Coordinator, orders: list[str], holder: str, demands: list[Demand] = ONE) -> object:
    return await c.admit(demands, orders, holder, validated_under=ACTIVE, lease_ttl_ms=TTL_MS)


async def remaining(c: Coordinator) -> int:
    views = await c.budgets()
    assert isinstance(views, list)
    return next(v.remaining for v in views if v.scope is RateScope.GLOBAL)


async def test_a_lease_excludes_other_holders_until_its_holder_releases_it(coord: Coordinator) -> None:
    assert await admit(coord, ["linear:id:1"], "req-a") == Admitted(("linear:id:1",), ACTIVE)
    assert await admit(coord, ["linear:id:1"], "req-b") == Busy(("linear:id:1",))
    assert await coord.release("req-b", ["linear:id:1"]) == 0  # not its lease: it stays
    assert await admit(coord, ["linear:id:1"], "req-c") == Busy(("linear:id:1",))
    assert await coord.release("req-a", ["linear:id:1"]) == 1
    assert await admit(coord, ["linear:id:1"], "req-c") == Admitted(("linear:id:1",), ACTIVE)


async def test_leases_are_all_or_nothing_and_a_busy_call_costs_no_budget(coord: Coordinator) -> None:
    assert isinstance(await admit(coord, ["linear:id:1"], "req-a"), Admitted)
    assert await remaining(coord) == 2
    # One of two orders is busy: neither is leased, no budget is taken.
    assert await admit(coord, ["linear:id:2", "linear:id:1"], "req-b") == Busy(("linear:id:1",))
    assert await remaining(coord) == 2
    assert await admit(coord, ["linear:id:2"], "req-c") == Admitted(("linear:id:2",), ACTIVE)


async def test_a_throttled_call_takes_no_lease(coord: Coordinator) -> None:
    for i in range(3):
        assert isinstance(await admit(coord, [f"linear:id:{i}"], f"req-{i}"), Admitted)
    throttled = await admit(coord, ["linear:id:9"], "req-9")
    assert isinstance(throttled, Throttled)
    assert throttled.throttle.scope is RateScope.GLOBAL
    assert throttled.throttle.message.startswith("global rate limit *: 3 per 1 s, 3 used, the call needs 1;")
    preview = await coord.preview([], ["linear:id:9"], validated_under=ACTIVE)
    assert preview == Admitted((), ACTIVE)  # the throttled call left no lease behind


async def test_the_same_holder_may_ask_again(coord: Coordinator) -> None:
    assert isinstance(await admit(coord, ["linear:id:1"], "req-a"), Admitted)
    assert await admit(coord, ["linear:id:1"], "req-a") == Admitted(("linear:id:1",), ACTIVE)


async def test_a_preview_takes_nothing_but_sees_leases(coord: Coordinator) -> None:
    assert isinstance(await admit(coord, ["linear:id:1"], "req-a"), Admitted)
    for _ in range(5):
        assert await coord.preview(ONE, ["linear:id:2"], validated_under=ACTIVE) == Admitted((), ACTIVE)
    assert await remaining(coord) == 2
    assert await coord.preview(ONE, ["linear:id:1"], validated_under=ACTIVE) == Busy(("linear:id:1",))
    assert await admit(coord, ["linear:id:2"], "req-b") == Admitted(("linear:id:2",), ACTIVE)


async def test_halted_denies_everything_until_resumed(coord: Coordinator) -> None:
    view = await coord.set_trading_state(HALTED, "maintenance", "operator")
    assert isinstance(view, StateView)
    assert coord.trading_state().state is HALTED
    assert coord.trading_state().reason == "maintenance"
    read = await coord.read_trading_state()
    assert isinstance(read, StateView) and (read.state, read.who) == (HALTED, "operator")
    assert await admit(coord, ["linear:id:1"], "req-a") == Halted("maintenance", "operator")
    assert await coord.preview(ONE, [], validated_under=ACTIVE) == Halted("maintenance", "operator")
    assert await remaining(coord) == 3  # nothing taken
    await coord.set_trading_state(ACTIVE, "", "operator")
    assert coord.trading_state().state is ACTIVE
    assert isinstance(await admit(coord, ["linear:id:1"], "req-a"), Admitted)


async def test_reducing_asks_for_the_reducing_rule(coord: Coordinator) -> None:
    await coord.set_trading_state(REDUCING, "Bybit rate-limited us", "sidecar")
    assert await admit(coord, ["linear:id:1"], "req-a") == Reducing("Bybit rate-limited us")
    assert await remaining(coord) == 3
    decision = await coord.admit(ONE, ["linear:id:1"], "req-a", validated_under=REDUCING, lease_ttl_ms=TTL_MS)
    assert decision == Admitted(("linear:id:1",), REDUCING)


async def test_an_automatic_trip_only_ever_tightens(coord: Coordinator) -> None:
    view = await coord.trip(REDUCING, "10006 storm")
    assert isinstance(view, StateView) and view.state is REDUCING
    view = await coord.trip(REDUCING, "again")
    assert isinstance(view, StateView) and (view.state, view.reason) == (REDUCING, "10006 storm")
    view = await coord.trip(HALTED, "socket down")
    assert isinstance(view, StateView) and (view.state, view.reason, view.who) == (
        HALTED,
        "socket down",
        "sidecar",
    )
    view = await coord.trip(REDUCING, "10006 storm")
    assert isinstance(view, StateView) and (view.state, view.reason) == (HALTED, "socket down")


async def test_trip_counters_add_up_and_can_be_read(coord: Coordinator) -> None:
    assert await coord.count_event("unverified", 60_000) == 1
    assert await coord.count_event("unverified", 60_000, add=2) == 3
    assert await coord.count_event("unverified", 60_000, add=0) == 3
    assert await coord.count_event("rate_limited", 60_000, add=0) == 0


async def test_bybit_headers_and_10006_tighten_the_exchange_budget(coord: Coordinator) -> None:
    key = "order.amend-batch:linear"
    batch = [Demand(RateScope.EXCHANGE, key, 4)]
    assert isinstance(await admit(coord, [], "req-a", batch), Admitted)
    # Bybit says 2 of its 10 remain (another client used some): only 2 more fit now.
    tightened = await coord.observe_exchange_budget("order.amend-batch", Category.LINEAR, 10, 2, None, 0)
    assert tightened is True
    views = await coord.budgets()
    assert isinstance(views, list)
    assert next(v.remaining for v in views if v.key == key) == 2
    blocked = await coord.on_exchange_rate_limited("order.amend-batch", Category.LINEAR, None, 0)
    assert blocked is True
    decision = await admit(coord, [], "req-b", [Demand(RateScope.EXCHANGE, key, 1)])
    assert isinstance(decision, Throttled)
    assert "blocked until Bybit's budget resets" in decision.throttle.message
    # An op the sidecar does not budget changes nothing.
    assert await coord.on_exchange_rate_limited("order.create", Category.LINEAR, None, 0) is False


async def test_an_unverified_order_stays_busy_under_its_reread_until_released(coord: Coordinator) -> None:
    assert isinstance(await admit(coord, ["o1"], "req-a"), Admitted)
    assert await coord.move_to_reread("req-b", "o1", TTL_MS) is False  # not b's to hand over
    assert await coord.move_to_reread("req-a", "o1", TTL_MS) is True
    assert await coord.release("req-a", ["o1"]) == 0  # a holds it no longer
    assert await admit(coord, ["o1"], "req-c") == Busy(("o1",))
    assert await coord.release(reread_holder("o1"), ["o1"]) == 1  # the fresh read came back
    assert await admit(coord, ["o1"], "req-c") == Admitted(("o1",), ACTIVE)


async def test_an_order_named_twice_is_leased_once(coord: Coordinator) -> None:
    assert await admit(coord, ["o1", "o1"], "req-a") == Admitted(("o1",), ACTIVE)
    assert await coord.release("req-a", ["o1", "o1"]) == 1


async def test_request_ids_are_unique(coord: Coordinator) -> None:
    ids = {coord.next_request_id() for _ in range(1000)}
    assert len(ids) == 1000
