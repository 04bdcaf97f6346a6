"""Order leases on Redis live as long as their holder does: renewed each heartbeat by the instance
that holds them (even past their time to live, even after Redis lost them), released in the
background in the order they were asked for, and left to expire when their instance is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from sidecar.coordination import Admitted
from sidecar.coordination.redis_backend import RedisCoordinator
from sidecar.core.inflight import reread_holder
from sidecar.core.types import TradingState
from tests.coordination.redis_testkit import RedisServer, make_redis_coordinator

TTL_MS = 1000  # renewed every 0.1 s: only a stall of a whole second could let one lapse
HEARTBEAT_S = 0.1


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10.0) -> None:
    """Poll the real server with a deadline (an external process must be awaited)."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def started(url: str, namespace: str) -> RedisCoordinator:
    c = make_redis_coordinator(url, namespace, heartbeat_s=HEARTBEAT_S)
    await c.start()
    return c


async def admit(c: RedisCoordinator, holder: str, *orders: str) -> object:
    return await c.admit([], orders, holder, validated_under=TradingState.ACTIVE, lease_ttl_ms=TTL_MS)


async def test_a_live_instance_keeps_its_leases_past_their_time_to_live_and_a_dead_ones_expire(
    redis_server: RedisServer, raw: Redis, namespace: str
) -> None:
    key = "{" + namespace + "}:lease:o1"
    c = await started(redis_server.url, namespace)
    try:
        assert isinstance(await admit(c, "req-1", "o1"), Admitted)
        began = time.monotonic()

        async def three_ttls_passed() -> bool:
            return time.monotonic() - began > 3 * TTL_MS / 1000

        await until(three_ttls_passed, "three times the time to live")
        assert await raw.get(key) == "req-1"  # renewed by the heartbeat
        assert c.held_leases() == {"req-1": frozenset({"o1"})}
    finally:
        await c.stop()  # the instance goes away without releasing what it still holds

    async def expired() -> bool:
        return await raw.get(key) is None

    await until(expired, "the lease of a gone instance to expire", timeout_s=2 * TTL_MS / 1000 + 1)


async def test_releases_and_handovers_asked_from_synchronous_code_happen_in_order(
    redis_server: RedisServer, raw: Redis, namespace: str
) -> None:
    c = await started(redis_server.url, namespace)
    try:
        assert isinstance(await admit(c, "req-1", "o1", "o2"), Admitted)
        c.reread_later("req-1", "o1", TTL_MS)  # unverified: busy under its re-read
        c.release_later("req-1", ["o2"])  # settled
        c.release_later(reread_holder("o1"), ["o1"])  # the re-read came back

        async def all_free() -> bool:
            keys = ["{" + namespace + "}:lease:o1", "{" + namespace + "}:lease:o2"]
            return await raw.exists(*keys) == 0

        await until(all_free, "every lease to be released")
        assert c.held_leases() == {}
        assert isinstance(await admit(c, "req-2", "o1", "o2"), Admitted)
    finally:
        await c.stop()


async def test_leases_lost_with_a_restart_are_held_again_unless_someone_else_took_them(
    own_redis: RedisServer, namespace: str
) -> None:
    c = await started(own_redis.url, namespace)
    try:
        assert isinstance(await admit(c, "req-1", "o1", "o2"), Admitted)
        own_redis.stop()
        own_redis.start()  # empty: the leases are gone (and the state: it reads halted)
        raw = Redis.from_url(own_redis.url, decode_responses=True)
        try:
            await raw.set("{" + namespace + "}:lease:o2", "someone-else", px=60_000)

            async def o1_held_again() -> bool:
                return await raw.get("{" + namespace + "}:lease:o1") == "req-1"

            await until(o1_held_again, "the heartbeat to hold o1 again")
            assert await raw.get("{" + namespace + "}:lease:o2") == "someone-else"  # never overwritten
        finally:
            await raw.aclose()
    finally:
        await c.stop()


async def test_a_stop_hands_back_what_settled_requests_released(
    redis_server: RedisServer, raw: Redis, namespace: str
) -> None:
    c = await started(redis_server.url, namespace)
    assert isinstance(await admit(c, "req-1", "o1"), Admitted)
    c.release_later("req-1", ["o1"])
    await c.stop()  # at once: the release is done within the stop, not left to expire
    assert await raw.get("{" + namespace + "}:lease:o1") is None
