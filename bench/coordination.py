"""`python -m bench coordination`: the coordination engine's own figures, one JSON object.

On a real redis-server it starts itself (loopback, free port, no persistence): the latency of one
admission decision for a 20-item linear batch (tool, global, 4 symbols and Bybit's budget, plus 20
order leases) and the Redis round trips per decision; the same decision on the local backend; how
soon a halt written through one instance shows in the pub/sub view of the others (in-process
instances sharing one event loop: a pessimistic figure); how long a send waits before it is
refused with Redis frozen (SIGSTOP) and with Redis gone. Counts: BENCH_COORD_RUNS (2000),
BENCH_COORD_HALTS (50), BENCH_COORD_INSTANCES (8). Needs Debian's `redis-server` on PATH.
It never touches an exchange; limits are high so nothing is throttled.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import quiet_logging
from bench.redis_server import RedisServer, find_redis_server
from bench.stats import pct

TOOL = "wsBatchAmendOrders"
OP = "order.amend-batch"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"] * 5  # 20 items, 4 symbols


def run() -> dict[str, Any]:
    binary = find_redis_server()
    if binary is None:
        return {"error": "redis-server not found on PATH (apt-get install redis-server)"}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(binary, Path(tmp))
        server.start()
        try:
            quiet_logging("INFO")  # logged as `serve` logs, rendered into /dev/null
            return asyncio.run(_measure(server))
        finally:
            server.stop()


async def _measure(server: RedisServer) -> dict[str, Any]:
    from redis.asyncio import Redis  # noqa: PLC0415

    from sidecar.clock import SystemClock  # noqa: PLC0415
    from sidecar.coordination import Admitted, LocalCoordinator  # noqa: PLC0415
    from sidecar.coordination.redis_backend import RedisCoordinator  # noqa: PLC0415
    from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope  # noqa: PLC0415
    from sidecar.core.ratelimit import demands_for  # noqa: PLC0415
    from sidecar.core.types import Category, TradingState  # noqa: PLC0415

    runs = int(os.environ.get("BENCH_COORD_RUNS", "2000"))
    halts = int(os.environ.get("BENCH_COORD_HALTS", "50"))
    n_instances = int(os.environ.get("BENCH_COORD_INSTANCES", "8"))
    big = 10**9
    policy = Policy(
        symbols={},
        rate_rules=tuple(
            RateRule(s, big, 1000) for s in (RateScope.TOOL, RateScope.SYMBOL, RateScope.GLOBAL)
        ),
        exchange_budgets=(ExchangeBudget(OP, Category.LINEAR, limit=big, guard_ms=100),),
    )
    demands = demands_for(TOOL, Category.LINEAR, OP, SYMBOLS)
    active = TradingState.ACTIVE
    out: dict[str, Any] = {"runs": runs, "instances": n_instances, "halts": halts}

    def make(ns: str, **kw: Any) -> RedisCoordinator:
        return RedisCoordinator(
            policy, url=server.url, namespace=ns, clock=SystemClock(), local_id_prefix="b", **kw
        )

    raw = Redis.from_url(server.url, decode_responses=True)
    # 1. Decision latency and round trips (heartbeat parked so only admissions reach Redis).
    c = make("bench", heartbeat_s=3600.0)
    await c.start()
    for i in range(-max(1, runs // 10), 0):  # warm-up: the first use of a script loads it (EVAL)
        await c.admit(demands, [f"linear:id:{i}"], f"r{i}", validated_under=active, lease_ttl_ms=1000)
    lat: list[float] = []
    before = await _script_calls(raw)
    for i in range(runs):
        orders = [f"linear:id:{i}-{k}" for k in range(20)]
        t0 = time.perf_counter_ns()
        decision = await c.admit(demands, orders, f"r{i}", validated_under=active, lease_ttl_ms=1000)
        lat.append((time.perf_counter_ns() - t0) / 1000)
        if not isinstance(decision, Admitted):
            return {"error": f"admission {i} was not admitted: {decision}"}
    out["round_trips_per_decision"] = round((await _script_calls(raw) - before) / runs, 3)
    out["decision_p50_us"], out["decision_p99_us"] = pct(lat, 0.5, 1), pct(lat, 0.99, 1)

    # 2. The same decision in-process (the local backend), for comparison.
    class _Store:
        def trading_state(self) -> tuple[str, str, str, int]:
            return ("active", "", "", 0)

        def set_trading_state(self, state: str, reason: str, who: str, wall_ms: int) -> None:
            return None

    local = LocalCoordinator(policy, clock=SystemClock(), store=_Store(), request_id_prefix="b")
    lat = []
    for i in range(runs):
        orders = [f"linear:id:{i}-{k}" for k in range(20)]
        t0 = time.perf_counter_ns()
        await local.admit(demands, orders, f"r{i}", validated_under=active, lease_ttl_ms=1000)
        lat.append((time.perf_counter_ns() - t0) / 1000)
        await local.release(f"r{i}", orders)
    out["local_decision_p50_us"], out["local_decision_p99_us"] = pct(lat, 0.5, 1), pct(lat, 0.99, 1)

    # 3. Halt visibility: written through one instance, seen in every other's pub/sub view.
    fleet = [make("bench-halt") for _ in range(n_instances)]
    for member in fleet:
        await member.start()
    seen: list[float] = []
    for _ in range(halts):
        for state in (TradingState.HALTED, active):
            written = time.perf_counter()
            waits = [asyncio.create_task(_seen_at(m, state)) for m in fleet[1:]]
            await fleet[0].set_trading_state(state, "bench", "bench")
            seen += [(t - written) * 1000 for t in await asyncio.gather(*waits)]
    out["halt_visibility_p50_ms"], out["halt_visibility_p99_ms"] = pct(seen, 0.5, 1), pct(seen, 0.99, 1)
    out["halt_visibility_max_ms"] = round(max(seen), 1)
    for member in fleet:
        await member.stop()

    # 4. Time to refuse: Redis frozen (SIGSTOP), then gone.
    server.freeze()
    try:
        out["refuse_frozen_ms"] = await _refuse_ms(c, demands, 10)
    finally:
        server.thaw()
    server.stop()
    out["refuse_refused_ms"] = await _refuse_ms(c, demands, 20)
    out["timeout_ms"] = 100
    await c.stop()
    await raw.aclose()
    return out


async def _script_calls(raw: Any) -> int:
    stats = await raw.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


async def _seen_at(member: Any, state: Any) -> float:
    await member.wait_for_state(state, 10.0)
    return time.perf_counter()


async def _refuse_ms(c: Any, demands: Any, n: int) -> float | None:
    from sidecar.coordination import CoordinationUnavailable  # noqa: PLC0415
    from sidecar.core.types import TradingState  # noqa: PLC0415

    waits: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        decision = await c.admit(demands, [], f"x{i}", validated_under=TradingState.ACTIVE, lease_ttl_ms=1000)
        waits.append((time.perf_counter() - t0) * 1000)
        assert isinstance(decision, CoordinationUnavailable), decision
    return pct(waits, 0.5, 1)
