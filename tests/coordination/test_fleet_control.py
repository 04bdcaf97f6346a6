"""The account's one kill switch and its one-amend-per-order rule hold across `Service` instances,
and Redis in trouble fails closed, end to end (real emulator, real redis-server, real journals).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sidecar.core.types import TradingState
from sidecar.journal import Journal
from sidecar.service import CoordinationError, Service
from tests.coordination.fleet_kit import (
    Fleet,
    add_instance,
    fleet_config,
    item_codes,
    item_outcomes,
    on_amend_frame,
    order_amend_frames,
    running_fleet,
    stop_instance,
)
from tests.coordination.redis_testkit import RedisServer

pytestmark = pytest.mark.slow

TIMEOUT_MS = 100
SLACK_MS = 400  # scheduling on a loaded 2-core machine


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10.0) -> None:
    """Poll with a deadline: a real redis-server (or a heartbeat) must be awaited."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def ids(fleet: Fleet) -> list[str]:
    return [o["orderId"] for o in fleet.orders]


async def verified(fleet: Fleet, service: Service, order_id: str) -> bool:
    result = await service.submit(fleet.amend([order_id]))
    ok = item_outcomes([result]) == ["verified"]
    if not ok:
        print("not verified:", result.body["items"])  # shown by pytest when the test fails
    return ok


# ------------------------------------------------------------------------------ the kill switch


async def test_a_halt_through_one_instance_denies_the_next_call_on_every_other(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 3, redis_url=redis_server.url, namespace=namespace) as fleet:
        a, b, c = fleet.services
        order = ids(fleet)
        assert await verified(fleet, b, order[0])
        await a.halt("maintenance window", who="test")
        sent = len(fleet.amend_frames())
        for i, other in enumerate((b, c)):
            result = await other.submit(fleet.amend([order[1 + i]]))  # at once: no wait for pub/sub
            assert item_outcomes([result]) == ["denied"]
            assert item_codes([result]) == ["TRADING_HALTED"]
            assert (await other.policy_view())["haltReason"] == "maintenance window"
        assert len(fleet.amend_frames()) == sent  # nothing reached the exchange
        preview = await c.preview(fleet.amend([order[3]]))
        assert item_outcomes([preview]) == ["denied"]

        await c.resume(who="test")  # any instance's resume resumes all of them
        assert await verified(fleet, a, order[4])
        assert await verified(fleet, b, order[5])


async def test_a_trip_on_one_instance_halts_the_fleet_and_the_operator_resumes_it(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 2, redis_url=redis_server.url, namespace=namespace) as fleet:
        a, b = fleet.services
        # Seen from a, every reference price is far too old (a's clock passed in, an hour on).
        a.check_trips(a.clock.monotonic_ns() + 3600 * 10**9)
        assert a.trading_state()[0] is TradingState.HALTED  # in force here at once

        async def b_halted() -> bool:
            return b.trading_state()[0] is TradingState.HALTED

        await until(b_halted, "the trip to reach the other instance")
        result = await b.submit(fleet.amend([ids(fleet)[0]]))
        assert item_codes([result]) == ["TRADING_HALTED"]
        assert "reference prices stale" in b.trading_state()[1]
        await b.resume(who="test")
        assert await verified(fleet, a, ids(fleet)[1])


async def test_10006_answers_trip_reducing_when_the_account_counts_too_many(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    """One 10006 answer on each of two instances: neither alone is above max_exchange_rate_limited
    (1), the account is (2): the fleet goes reducing."""
    async with running_fleet(
        tmp_path, 2, redis_url=redis_server.url, namespace=namespace, safety={"max_exchange_rate_limited": 1}
    ) as fleet:
        order = ids(fleet)
        fleet.emu.add_faults([{"kind": "rate_limit", "count": 2}])
        # One batch and one single amend: a 10006 blocks the shared budget of its own op only.
        a, b = fleet.services
        results = [
            await a.submit(fleet.amend([order[0]])),
            await b.submit(fleet.amend([order[1]], single=True)),
        ]
        for result in results:
            assert (result.body.get("ack") or {}).get("retCode") == 10006 or 10006 in [
                item.get("exchangeCode") for item in result.body["items"]
            ], result.body
        for service in fleet.services:
            await service.check_shared_trips()
        for service in fleet.services:

            async def reducing(s: Service = service) -> bool:
                return s.trading_state()[0] is TradingState.REDUCING

            await until(reducing, "reducing on every instance")
        assert "every sidecar on this account" in fleet.services[0].trading_state()[1]
        # Counted in Redis only: nothing accumulates in the instances' local trip windows.
        now_ns = fleet.services[0].clock.monotonic_ns()
        for s in fleet.services:
            assert (
                s.safety.rules.counted("rate_limited", now_ns)
                == s.safety.rules.counted("unverified", now_ns)
                == 0
            )


# ------------------------------------------------------------------------------ one amend per order


@pytest.mark.parametrize("mode", ["per_item", "all_or_nothing"])
async def test_an_order_another_instance_is_amending_is_order_busy(
    tmp_path: Path, redis_server: RedisServer, namespace: str, mode: str
) -> None:
    async with running_fleet(
        tmp_path, 2, redis_url=redis_server.url, namespace=namespace, batch_mode=mode
    ) as fleet:
        a, b = fleet.services
        x, y = ids(fleet)[:2]
        fleet.emu.add_faults([{"kind": "delay_order_events", "ms": 400, "count": 1}])
        at_exchange = on_amend_frame(fleet.emu)
        first = asyncio.create_task(a.submit(fleet.amend([x])))
        async with asyncio.timeout(10):
            await at_exchange.wait()
        second = await b.submit(fleet.amend([x, y]))
        assert item_outcomes([await first]) == ["verified"]
        busy, other = second.body["items"]
        assert busy["outcome"] == "denied"
        assert [r["code"] for r in busy["reasons"]] == ["ORDER_BUSY"]
        assert "another sidecar" in busy["reasons"][0]["message"]
        assert len(order_amend_frames(fleet, x)) == 1  # b's amend of x never left
        if mode == "per_item":
            assert other["outcome"] == "verified"
        else:
            assert other["outcome"] == "denied"
            assert [r["code"] for r in other["reasons"]] == ["BATCH_DENIED"]
            assert order_amend_frames(fleet, y) == []
        # Once a's amend has settled, b may amend x.
        assert await verified(fleet, b, x)


async def test_concurrent_amends_of_one_order_from_two_instances_send_one(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 2, redis_url=redis_server.url, namespace=namespace) as fleet:
        a, b = fleet.services
        for order_id in ids(fleet)[:5]:
            fleet.emu.add_faults([{"kind": "delay_order_events", "ms": 300, "count": 1}])
            results = await asyncio.gather(
                a.submit(fleet.amend([order_id])), b.submit(fleet.amend([order_id]))
            )
            assert sorted(item_outcomes(results)) == ["denied", "verified"], [r.body for r in results]
            assert "ORDER_BUSY" in item_codes(results)
            assert len(order_amend_frames(fleet, order_id)) == 1


# ------------------------------------------------------------------------------ Redis in trouble


async def test_redis_killed_denies_sends_and_keeps_reads_then_trading_resumes_when_it_is_back(
    tmp_path: Path, aof_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 2, redis_url=aof_redis.url, namespace=namespace) as fleet:
        a, b = fleet.services
        order = ids(fleet)
        before = await a.submit(fleet.amend([order[0]]))
        assert item_outcomes([before]) == ["verified"]
        aof_redis.kill()
        sent = len(fleet.amend_frames())
        for service in (a, b):
            t0 = time.monotonic()
            result = await service.submit(fleet.amend([order[1]]))
            assert (time.monotonic() - t0) * 1000 < TIMEOUT_MS + SLACK_MS
            assert item_codes([result]) == ["COORDINATION_UNAVAILABLE"]
            assert "nothing was sent" in result.body["items"][0]["reasons"][0]["message"]
        assert len(fleet.amend_frames()) == sent
        # Reads and verification do not need Redis.
        stored = a.outcome(before.body["requestId"])
        assert stored is not None and stored["outcome"] == "verified"
        assert a.order_state("linear", "BTCUSDT", order[0], None) is not None
        view = await a.policy_view()
        assert view["coordination"] == {**view["coordination"], "backend": "redis", "available": False}
        assert all(limit["remaining"] == 0 for limit in view["rateLimits"])
        preview = await b.preview(fleet.amend([order[2]]))
        assert item_codes([preview]) == ["COORDINATION_UNAVAILABLE"]
        assert a.health()["coordination"]["available"] is False

        aof_redis.start()  # same port, same append-only file: the state survived
        assert await verified(fleet, a, order[3])  # the next call works, no operator needed
        assert await verified(fleet, b, order[4])


async def test_redis_frozen_denies_within_the_timeout_and_sends_nothing(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(
        tmp_path, 1, redis_url=own_redis.url, namespace=namespace, timeout_ms=TIMEOUT_MS
    ) as fleet:
        [a] = fleet.services
        order = ids(fleet)
        assert await verified(fleet, a, order[0])
        sent = len(fleet.amend_frames())
        own_redis.freeze()
        try:
            t0 = time.monotonic()
            result = await a.submit(fleet.amend([order[1]]))
            elapsed_ms = (time.monotonic() - t0) * 1000
        finally:
            own_redis.thaw()
        assert item_codes([result]) == ["COORDINATION_UNAVAILABLE"]
        assert elapsed_ms < TIMEOUT_MS + SLACK_MS, elapsed_ms
        assert len(fleet.amend_frames()) == sent

        async def works() -> bool:
            return await verified(fleet, a, order[2])

        await until(works, "a send after the thaw")


async def test_redis_back_empty_keeps_the_fleet_halted_until_an_operator_resumes(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """No persistence: a restart loses the control state. That reads as halted (never as a fresh
    start), for the instances that ran before and for one that arrives afterwards."""
    async with running_fleet(tmp_path, 2, redis_url=own_redis.url, namespace=namespace) as fleet:
        a, b = fleet.services
        order = ids(fleet)
        assert await verified(fleet, a, order[0])
        own_redis.stop()
        own_redis.start()  # same port, nothing kept
        result = await b.submit(fleet.amend([order[1]]))
        assert item_codes([result]) == ["TRADING_HALTED"]
        assert "missing" in result.body["items"][0]["reasons"][0]["message"]

        # A new instance with a fresh journal must not take the empty store for a first start.
        c = await add_instance(
            fleet, fleet_config(tmp_path, "new", redis_url=own_redis.url, namespace=namespace)
        )

        async def all_halted() -> bool:
            return all(s.trading_state()[0] is TradingState.HALTED for s in fleet.services)

        await until(all_halted, "every instance to show the state halted")
        assert item_codes([await c.submit(fleet.amend([order[2]]))]) == ["TRADING_HALTED"]

        await a.resume(who="operator")
        for i, service in enumerate(fleet.services):
            assert await verified(fleet, service, order[3 + i])


async def test_a_store_recreated_by_a_newcomer_is_halted_by_an_instance_that_knew_it(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """Redis comes back empty and a brand-new sidecar (fresh journal) initialises the state before
    any old one has looked: the old one's next heartbeat sees another life of the state that nobody
    decided on, and halts it. A sidecar restarted from its journal remembers the state too."""
    async with running_fleet(tmp_path, 1, redis_url=own_redis.url, namespace=namespace) as fleet:
        [old] = fleet.services
        assert await verified(fleet, old, ids(fleet)[0])
        journal_cfg = old.config
        await stop_instance(fleet, old)  # its journal remembers the state it saw
        own_redis.stop()
        own_redis.start()
        newcomer = await add_instance(
            fleet, fleet_config(tmp_path, "new", redis_url=own_redis.url, namespace=namespace)
        )
        assert newcomer.trading_state()[0] is TradingState.ACTIVE  # a first start, as far as it knows
        restarted = await add_instance(fleet, journal_cfg)
        assert restarted.trading_state()[0] is TradingState.HALTED
        assert "re-created" in restarted.trading_state()[1]

        async def newcomer_halted() -> bool:
            return newcomer.trading_state()[0] is TradingState.HALTED

        await until(newcomer_halted, "the newcomer to see the halt")
        assert item_codes([await newcomer.submit(fleet.amend([ids(fleet)[1]]))]) == ["TRADING_HALTED"]


async def test_with_the_append_only_file_the_state_survives_and_trading_resumes_by_itself(
    tmp_path: Path, aof_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 2, redis_url=aof_redis.url, namespace=namespace) as fleet:
        a, b = fleet.services
        order = ids(fleet)
        await a.halt("before the crash", who="test")
        aof_redis.kill()  # kill -9: no clean shutdown
        aof_redis.start()
        result = await b.submit(fleet.amend([order[0]]))
        assert item_codes([result]) == ["TRADING_HALTED"]  # the halt survived
        assert "before the crash" in result.body["items"][0]["reasons"][0]["message"]
        await b.resume(who="test")
        aof_redis.kill()
        aof_redis.start()
        assert await verified(fleet, a, order[1])  # active survived too: no operator needed


async def test_halt_through_an_unreachable_store_says_it_was_not_stored(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 1, redis_url=own_redis.url, namespace=namespace) as fleet:
        [a] = fleet.services
        own_redis.kill()
        with pytest.raises(CoordinationError, match="was not stored"):
            await a.halt("cannot", who="test")


# ------------------------------------------------------------------------------ failures mid-admission


async def _waiting_on_redis(service: Service) -> None:
    """Until the call has been validated, holds its order here, and waits for the (frozen) store."""

    async def holding() -> bool:
        return len(service.in_flight) == 1

    await until(holding, "the call to wait on Redis")


async def test_a_call_cancelled_while_redis_decides_is_settled_and_frees_its_order(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(
        tmp_path, 2, redis_url=own_redis.url, namespace=namespace, timeout_ms=2500
    ) as fleet:
        a, b = fleet.services
        x = ids(fleet)[0]
        own_redis.freeze()
        try:
            task = asyncio.create_task(a.submit(fleet.amend([x])))
            await _waiting_on_redis(a)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(a.in_flight) == 0  # nothing held here any more
        finally:
            own_redis.thaw()
        [summary] = a.journal.last_requests(1)
        stored = a.outcome(summary.request_id)
        assert stored is not None and stored["outcome"] == "denied"
        assert item_codes_of(stored) == ["CANCELLED"]
        assert fleet.amend_frames() == []

        # The admission was sent before the cancel and may still run on Redis after the thaw: the
        # lease it takes is handed back, and the order can be amended again (here, from b).
        async def b_amends_x() -> bool:
            return await verified(fleet, b, x)

        await until(b_amends_x, "the order to be free again", timeout_s=15)


async def test_a_journal_failure_after_redis_admitted_sends_nothing_and_hands_the_lease_back(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(
        tmp_path, 2, redis_url=own_redis.url, namespace=namespace, timeout_ms=3000
    ) as fleet:
        a, b = fleet.services
        x, y = ids(fleet)[:2]
        raw = Redis.from_url(own_redis.url, decode_responses=True)
        try:
            own_redis.freeze()
            try:
                task = asyncio.create_task(a.submit(fleet.amend([x])))
                await _waiting_on_redis(a)
                a.journal._conn.close()  # the disk goes away while Redis decides: the intent cannot be kept
            finally:
                own_redis.thaw()
            result = await task
            assert item_outcomes([result]) == ["denied"]
            # The intent's write fails (INTERNAL_ERROR), or the safety loop's health write failed
            # first and the halt it took stops the call after Redis answered (TRADING_HALTED).
            assert {"INTERNAL_ERROR", "TRADING_HALTED"} & set(item_codes([result])), result.body
            assert fleet.amend_frames() == []  # write-ahead: no intent, no send

            async def lease_gone() -> bool:
                return await raw.get("{" + namespace + "}:lease:" + x) is None

            await until(lease_gone, "the lease to be handed back")

            async def b_halted() -> bool:  # the trip is the account's
                return b.trading_state()[0] is TradingState.HALTED

            await until(b_halted, "the fleet to be halted")
            await b.resume(who="operator")

            async def a_works() -> bool:  # once its journal reopens and it sees the resume
                return await verified(fleet, a, y)

            await until(a_works, "a to trade again", timeout_s=15)
        finally:
            await raw.aclose()


def item_codes_of(body: dict[str, object]) -> list[str]:
    items = body["items"]
    assert isinstance(items, list)
    return [r["code"] for i in items for r in i["reasons"]]


# ------------------------------------------------------------------------------ crash recovery


async def test_recovery_holds_the_orders_of_unfinished_intents_across_the_fleet(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    """A sidecar restarts with an intent its last life journaled and may have sent: while it looks
    (never resends), no other sidecar may amend that order; once it has decided, the order is free."""
    async with running_fleet(tmp_path, 1, redis_url=redis_server.url, namespace=namespace) as fleet:
        [b] = fleet.services
        order = fleet.orders[0]
        x = order["orderId"]
        config = fleet_config(tmp_path, "a", redis_url=redis_server.url, namespace=namespace)
        journal = Journal(config.journal.path)
        now_ms = int(time.time() * 1000)
        before = {
            "orderId": x,
            "orderLinkId": order["orderLinkId"],
            "symbol": "BTCUSDT",
            "category": "linear",
            "side": "Buy",
            "price": order["price"],
            "qty": order["qty"],
            "leavesQty": order["qty"],
            "cumExecQty": "0",
            "orderStatus": order["orderStatus"],
            "updatedTime": order["updatedTime"],
        }
        item = {"index": 0, "symbol": "BTCUSDT", "orderId": x, "orderLinkId": None}
        journal.record_request("r-before-crash-1", "wsBatchAmendOrders", {}, now_ms)
        journal.record_intent(
            "r-before-crash-1",
            "sc-crashed-1",
            "order.amend-batch",
            "linear",
            [{**item, "targets": {"price": "94000.5"}, "before": before}],
            now_ms,
            config.exchange.recv_window_ms,
            None,
            now_ms,
        )
        journal.close()
        raw = Redis.from_url(redis_server.url, decode_responses=True)
        lease = "{" + namespace + "}:lease:" + x
        starting = asyncio.create_task(add_instance(fleet, config))
        try:

            async def held_by_recovery() -> bool:
                return await raw.get(lease) == "r-before-crash-1"

            await until(held_by_recovery, "recovery to hold the order in Redis")
            busy = await b.submit(fleet.amend([x]))
            assert item_codes([busy]) == ["ORDER_BUSY"]
            assert "another sidecar" in busy.body["items"][0]["reasons"][0]["message"]
            a = await starting
            assert a.recovered_requests == 1

            async def b_amends_x() -> bool:
                return await verified(fleet, b, x)

            await until(b_amends_x, "the order to be free once recovery decided", timeout_s=15)
            assert order_amend_frames(fleet, x)[0]["reqId"] != "sc-crashed-1"  # never resent
        finally:
            if not starting.done():
                starting.cancel()
            await raw.aclose()


async def test_a_reload_while_the_shared_store_decides_keeps_the_version_the_items_were_checked_under(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    # With Redis, the store's decision is the one await before the intent: a reload can land there.
    # The items were validated under the old policy and are sent as such: the intent and the
    # answer must name that policy, not the one reloaded meanwhile.
    async with running_fleet(tmp_path, 1, redis_url=redis_server.url, namespace=namespace) as fleet:
        (service,) = fleet.services
        old = service.policy.version
        call = asyncio.create_task(service.submit(fleet.amend(ids(fleet)[:1])))
        await asyncio.sleep(0)  # the call runs to its first await: the store's decision
        data = service.config.model_dump(mode="json")
        data["reference_price"]["max_age_ms"] += 1  # any change: a new policy version
        assert service.reload(type(service.config).model_validate(data))
        assert service.policy.version != old
        result = await call
        assert item_outcomes([result]) == ["verified"], result.body
        assert result.body["policyVersion"] == old
