"""Redis in trouble: frozen (SIGSTOP), killed, back, restarted empty, restarted from its AOF.

Each test owns its redis-server process. Sends fail closed (`CoordinationUnavailable`) within the
decision timeout, a call given up on cannot take anything when it runs late, trading resumes by
itself when the state survived, and stays halted until an operator resumes when it did not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from sidecar.coordination import Admitted, CoordinationUnavailable, Halted, UnavailableKind
from sidecar.coordination.redis_backend import RedisCoordinator
from sidecar.core.policy import RateScope
from sidecar.core.ratelimit import Demand
from sidecar.core.types import TradingState
from tests.coordination.redis_testkit import RedisServer, make_redis_coordinator, small_policy

ONE = [Demand(RateScope.GLOBAL, "*", 1)]
ACTIVE, HALTED = TradingState.ACTIVE, TradingState.HALTED
TIMEOUT_MS = 200
SLACK_S = 0.3  # scheduling on a loaded 2-core machine


async def started(server: RedisServer, namespace: str, **kw: Any) -> RedisCoordinator:
    # A minute's global window: what a test counts cannot age out while a loaded machine is slow.
    policy = small_policy(global_window_ms=60_000)
    c = make_redis_coordinator(server.url, namespace, policy, timeout_ms=TIMEOUT_MS, **kw)
    await c.start()
    return c


async def admit(c: RedisCoordinator, orders: tuple[str, ...] = (), holder: str = "h") -> object:
    return await c.admit(ONE, orders, holder, validated_under=ACTIVE, lease_ttl_ms=60_000)


async def global_remaining(c: RedisCoordinator) -> int:
    views = await c.budgets()
    assert isinstance(views, list)
    return next(v.remaining for v in views if v.scope is RateScope.GLOBAL)


async def lost(c: RedisCoordinator) -> None:
    """Let the event loop see the server go (as it would while a real restart takes seconds)."""

    async def unavailable() -> bool:
        return not c.available

    await until(unavailable, "the instance to notice Redis is gone")


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10.0) -> None:
    """Poll a condition on the real server with a deadline (an external process must be awaited)."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def raw(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_frozen_redis_is_denied_within_the_timeout_then_works_again(
    own_redis: RedisServer, namespace: str
) -> None:
    c = await started(own_redis, namespace)
    try:
        assert isinstance(await admit(c), Admitted)
        own_redis.freeze()
        try:
            t0 = time.monotonic()
            decision = await admit(c, holder="h2")
            elapsed = time.monotonic() - t0
            assert isinstance(decision, CoordinationUnavailable)
            assert decision.kind is UnavailableKind.TIMEOUT
            assert "nothing was sent" in decision.message and "127.0.0.1" in decision.message
            assert elapsed < TIMEOUT_MS / 1000 + SLACK_S, elapsed
            assert not c.available
            assert not c.trading_state().fresh
        finally:
            own_redis.thaw()
        await until(lambda: _admitted(c), "admissions after the thaw")
        assert c.available
    finally:
        await c.stop()


async def _admitted(c: RedisCoordinator) -> bool:
    return isinstance(await admit(c, holder=c.next_request_id()), Admitted)


async def test_a_call_given_up_on_takes_nothing_when_it_runs_late(
    own_redis: RedisServer, raw: Redis, namespace: str
) -> None:
    c = await started(own_redis, namespace, heartbeat_s=30.0)
    clock_key = "{" + namespace + "}:clock"  # every admission writes its (Redis) time here
    try:
        assert isinstance(await admit(c, holder="warm"), Admitted)  # a pooled connection exists
        before = await raw.get(clock_key)
        own_redis.freeze()
        try:
            decision = await admit(c, ("linear:id:1",), "late")
            assert isinstance(decision, CoordinationUnavailable)
            await asyncio.sleep(2 * TIMEOUT_MS / 1000 + 0.2)  # stay frozen past the call's deadline
        finally:
            own_redis.thaw()

        async def late_call_ran() -> bool:
            return await raw.get(clock_key) != before

        await until(late_call_ran, "the late call to run")
        assert await raw.exists("{" + namespace + "}:lease:linear:id:1") == 0
        assert await global_remaining(c) == 2  # only the warm-up call counts
    finally:
        await c.stop()


async def test_without_the_deadline_a_late_call_only_over_counts_and_its_lease_is_released(
    own_redis: RedisServer, raw: Redis, namespace: str
) -> None:
    c = await started(own_redis, namespace, late_guard=False)
    lease = "{" + namespace + "}:lease:linear:id:1"
    try:
        assert isinstance(await admit(c, holder="warm"), Admitted)
        own_redis.freeze()
        try:
            assert isinstance(await admit(c, ("linear:id:1",), "late"), CoordinationUnavailable)
        finally:
            own_redis.thaw()

        async def lease_taken() -> bool:
            return await raw.exists(lease) == 1

        async def lease_gone() -> bool:
            return await raw.exists(lease) == 0

        await until(lease_taken, "the late call to take its lease")
        assert 0 < await raw.pttl(lease) <= 60_000  # a safety net even if nobody released it
        assert await global_remaining(c) == 1  # over-counted: the safe direction
        # The adapter remembered the uncertain call and releases its lease once it can no longer run.
        await until(lease_gone, "the adapter to release the uncertain lease")
    finally:
        await c.stop()


async def test_killed_redis_is_refused_at_once_and_trading_resumes_when_it_is_back(
    aof_redis: RedisServer, namespace: str
) -> None:
    c = await started(aof_redis, namespace)
    try:
        assert isinstance(await admit(c), Admitted)
        aof_redis.kill()
        t0 = time.monotonic()
        decision = await admit(c, holder="h2")
        assert isinstance(decision, CoordinationUnavailable)
        assert decision.kind is UnavailableKind.UNREACHABLE
        assert time.monotonic() - t0 < TIMEOUT_MS / 1000 + SLACK_S
        aof_redis.start()  # same port, same AOF: the state survived
        assert isinstance(await admit(c, holder="h3"), Admitted)  # no operator needed
        assert c.trading_state().state is ACTIVE
    finally:
        await c.stop()


async def test_a_halt_survives_a_kill_with_aof(aof_redis: RedisServer, namespace: str) -> None:
    c = await started(aof_redis, namespace)
    try:
        await c.set_trading_state(HALTED, "before the crash", "alice")
        aof_redis.kill()
        await lost(c)
        aof_redis.start()
        assert await admit(c) == Halted("before the crash", "alice")
    finally:
        await c.stop()


async def test_redis_back_empty_keeps_trading_halted_until_an_operator_resumes(
    own_redis: RedisServer, namespace: str
) -> None:
    a = await started(own_redis, namespace, heartbeat_s=0.05)
    b: RedisCoordinator | None = None
    try:
        assert isinstance(await admit(a), Admitted)
        own_redis.kill()
        await lost(a)
        own_redis.start()  # no persistence: everything is gone
        decision = await admit(a, holder="h2")
        assert isinstance(decision, Halted | CoordinationUnavailable), decision
        assert await a.wait_for_state(HALTED, 10.0)
        assert "missing" in a.trading_state().reason
        # A new instance (no journal, no prior knowledge) does not resume trading by arriving.
        b = await started(own_redis, namespace)
        assert b.trading_state().state is HALTED
        assert isinstance(await admit(b, holder="b1"), Halted)
        # The operator resumes: every instance trades again.
        await b.set_trading_state(ACTIVE, "", "operator")
        assert isinstance(await admit(a, holder="h3"), Admitted)
        assert await a.wait_for_state(ACTIVE, 10.0)
    finally:
        await a.stop()
        if b is not None:
            await b.stop()


async def test_an_instance_started_while_redis_is_down_trades_once_it_is_up(
    aof_redis: RedisServer, namespace: str
) -> None:
    aof_redis.kill()
    c = await started(aof_redis, namespace)  # start() does not raise: it keeps trying
    try:
        assert not c.available
        assert c.trading_state().state is HALTED and not c.trading_state().fresh
        assert isinstance(await admit(c), CoordinationUnavailable)
        aof_redis.start()
        await until(lambda: _admitted(c), "admissions once Redis is up")
        assert c.instance_id and c.trading_state().state is ACTIVE
    finally:
        await c.stop()
