"""Several instances on one Redis: what they share (budgets, leases, the kill switch and its
pub/sub view, trip counters), who they are (fleet-unique ids), and what they must agree on (the
budget fingerprint). A real redis-server; every test has its own namespace."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from sidecar.coordination import (
    Admitted,
    Busy,
    CoordinationUnavailable,
    Halted,
    StateView,
    Throttled,
    UnavailableKind,
)
from sidecar.coordination.redis_backend import MISSING_STATE_REASON, RedisCoordinator
from sidecar.core.policy import RateScope
from sidecar.core.ratelimit import Demand
from sidecar.core.types import TradingState
from tests.coordination.redis_testkit import RedisServer, make_redis_coordinator, small_policy

ONE = [Demand(RateScope.GLOBAL, "*", 1)]
ACTIVE, HALTED = TradingState.ACTIVE, TradingState.HALTED

Fleet = Callable[..., Awaitable[RedisCoordinator]]


@pytest.fixture
async def fleet(redis_server: RedisServer, namespace: str) -> AsyncIterator[Fleet]:
    """`await fleet(**kw)` starts one more instance on this test's namespace."""
    async with AsyncExitStack() as stack:

        async def start(**kw: Any) -> RedisCoordinator:
            c = make_redis_coordinator(redis_server.url, namespace, **kw)
            await c.start()
            stack.push_async_callback(c.stop)
            return c

        yield start


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def admit(c: RedisCoordinator, orders: list[str], holder: str, ttl_ms: int = 60_000) -> object:
    return await c.admit(ONE, orders, holder, validated_under=ACTIVE, lease_ttl_ms=ttl_ms)


async def test_instances_share_one_budget(fleet: Fleet) -> None:
    a, b = await fleet(), await fleet()
    assert isinstance(await admit(a, [], "a1"), Admitted)
    assert isinstance(await admit(a, [], "a2"), Admitted)
    assert isinstance(await admit(b, [], "b1"), Admitted)
    decision = await admit(b, [], "b2")
    assert isinstance(decision, Throttled) and decision.throttle.key == "*"
    assert isinstance(await admit(a, [], "a3"), Throttled)


async def test_an_order_leased_on_one_instance_is_busy_on_the_other(fleet: Fleet) -> None:
    a, b = await fleet(), await fleet()
    assert isinstance(await admit(a, ["linear:id:7", "linear:link:x7"], a.next_request_id()), Admitted)
    assert await admit(b, ["linear:link:x7"], b.next_request_id()) == Busy(("linear:link:x7",))


async def test_a_halt_through_one_instance_denies_the_next_call_on_every_other(
    fleet: Fleet,
) -> None:
    a, b, c = await fleet(), await fleet(), await fleet()
    assert isinstance(await admit(b, [], "b1"), Admitted)
    await a.set_trading_state(HALTED, "operator halt", "alice")
    # No waiting: the admission script reads the state itself.
    assert await admit(b, [], "b2") == Halted("operator halt", "alice")
    assert await admit(c, [], "c1") == Halted("operator halt", "alice")
    # And pub/sub brings every instance's own view up to date within moments.
    started = time.monotonic()
    assert await b.wait_for_state(HALTED, 5.0)
    assert await c.wait_for_state(HALTED, 5.0)
    assert b.trading_state().reason == "operator halt"
    assert time.monotonic() - started < 5.0
    await c.set_trading_state(ACTIVE, "", "bob")
    assert await a.wait_for_state(ACTIVE, 5.0)
    assert isinstance(await admit(a, [], "a1"), Admitted)


async def test_each_instance_has_a_fleet_unique_id(fleet: Fleet) -> None:
    instances = [await fleet() for _ in range(3)]
    ids = {c.instance_id for c in instances}
    assert len(ids) == 3 and all(ids)
    request_ids = {c.next_request_id() for c in instances for _ in range(100)}
    assert len(request_ids) == 300
    assert all(r.startswith("c") for r in request_ids)


async def test_trip_counters_add_up_across_instances(fleet: Fleet) -> None:
    a, b = await fleet(), await fleet()
    assert await a.count_event("rate_limited", 60_000) == 1
    assert await b.count_event("rate_limited", 60_000) == 2
    assert await a.count_event("rate_limited", 60_000, add=0) == 2


async def test_instances_whose_budgets_differ_refuse_to_send(fleet: Fleet) -> None:
    a = await fleet(policy=small_policy(global_max=3))
    assert isinstance(await admit(a, [], "a1"), Admitted)
    b = await fleet(policy=small_policy(global_max=5))
    for c in (a, b):
        decision = await admit(c, [], c.next_request_id())
        assert isinstance(decision, CoordinationUnavailable)
        assert decision.kind is UnavailableKind.POLICY_MISMATCH
        assert "several different fingerprints" in decision.message
    # The operator gives b the fleet's rate limits and reloads it: both send again.
    await b.replace_policy(small_policy(global_max=3))
    assert isinstance(await admit(a, [], "a2"), Admitted)
    assert isinstance(await admit(b, [], "b2"), Admitted)


async def test_a_stopped_instance_leaves_the_fleet_after_its_heartbeats_stop(
    fleet: Fleet,
) -> None:
    a = await fleet(policy=small_policy(global_max=3), heartbeat_s=0.05)
    b = await fleet(policy=small_policy(global_max=5), heartbeat_s=0.05)
    assert isinstance(await admit(a, [], "a1"), CoordinationUnavailable)
    await b.stop()
    # b's entry expires 5 heartbeats (0.25 s) after its last one; a's heartbeat then drops it.
    deadline = time.monotonic() + 5.0
    while not isinstance(decision := await admit(a, [], a.next_request_id()), Admitted):
        assert time.monotonic() < deadline, decision
        await asyncio.sleep(0.05)


async def test_a_lease_carries_its_time_to_live(fleet: Fleet, raw: Redis, namespace: str) -> None:
    a = await fleet()
    assert isinstance(await admit(a, ["linear:id:1"], "a1", ttl_ms=30_000), Admitted)
    ttl = await raw.pttl("{" + namespace + "}:lease:linear:id:1")
    assert 0 < ttl <= 30_000
    # Everything else but the control state expires too.
    for key in await raw.keys("{" + namespace + "}:*"):
        if key != "{" + namespace + "}:state":
            assert await raw.pttl(key) > 0, key
    assert await raw.pttl("{" + namespace + "}:state") == -1


async def test_pubsub_ignores_garbage_and_keeps_listening(fleet: Fleet, raw: Redis, namespace: str) -> None:
    a, b = await fleet(), await fleet()
    channel = "{" + namespace + "}:state-changed"
    await raw.publish(channel, "not json")
    await raw.publish(channel, json.dumps({"state": "bogus"}))
    await raw.publish(channel, "x" * 10_000)
    await a.set_trading_state(HALTED, "after garbage", "alice")
    assert await b.wait_for_state(HALTED, 5.0)
    assert b.trading_state().reason == "after garbage"


async def test_a_known_namespace_found_empty_is_halted_not_initialised(fleet: Fleet, namespace: str) -> None:
    a = await fleet(known_namespace=True)
    view = a.trading_state()
    assert (view.state, view.reason) == (HALTED, MISSING_STATE_REASON)  # Lua and Python say the same
    assert isinstance(await admit(a, [], "a1"), Halted)
    # A brand-new instance arriving now sees the halt instead of initialising the namespace.
    b = await fleet()
    assert b.trading_state().state is HALTED
    assert isinstance(await admit(b, [], "b1"), Halted)
    await b.set_trading_state(ACTIVE, "", "operator")
    assert isinstance(await admit(a, [], "a2"), Admitted)


async def test_a_state_older_than_seen_is_a_rollback_and_halts(
    fleet: Fleet, raw: Redis, namespace: str
) -> None:
    a = await fleet(heartbeat_s=0.05)
    await a.set_trading_state(HALTED, "halt 1", "alice")
    await a.set_trading_state(ACTIVE, "", "alice")
    assert a.trading_state().epoch == 3
    # Redis comes back without its latest writes (e.g. AOF with fsync everysec and a crash).
    await raw.hset("{" + namespace + "}:state", mapping={"epoch": "1", "state": "active"})
    assert await a.wait_for_state(HALTED, 5.0)
    assert "older version" in a.trading_state().reason
    assert isinstance(await admit(a, [], "a1"), Halted)


async def test_an_operator_reads_and_sets_the_state_without_joining_the_fleet(
    fleet: Fleet, redis_server: RedisServer, namespace: str, raw: Redis
) -> None:
    operator = make_redis_coordinator(redis_server.url, namespace)  # never start()ed: no hello
    try:
        empty = await operator.read_trading_state()
        assert isinstance(empty, StateView) and empty.state is HALTED and "missing" in empty.reason
        assert await raw.exists("{" + namespace + "}:state") == 0  # reading created nothing
        a = await fleet()
        seen = await operator.read_trading_state()
        assert isinstance(seen, StateView) and seen.state is ACTIVE
        await operator.set_trading_state(HALTED, "from the CLI", "operator")
        assert await a.wait_for_state(HALTED, 5.0)
        assert await raw.hkeys("{" + namespace + "}:fleet") == [a.instance_id]  # only a registered
    finally:
        await operator.stop()
