"""The Lua limiter agrees with the Python one, decision for decision, on a real redis-server.

Same policy, same calls, same times: every `check` (admit) and `peek` (preview) gives the same
answer - admitted, or the same Throttle (bucket, cost, cap, window, exact retry, message) - every
header resync and 10006 block reports the same "tightened", and the budget views agree.

Time: the scripts run on Redis's `TIME` in production. Here they are built with a test clock (the
one `clock()` function of lua/clock.lua swapped for one that reads `{ns}:test:now_us`), so both
limiters see the same instants. Those instants are integer microseconds; the Python limiter gets
them as nanoseconds (x 1000). Steps are mostly forward, sometimes backward (both clamp).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from sidecar.clock import SystemClock
from sidecar.coordination import Admitted, Throttled
from sidecar.coordination.plan import BudgetPlan
from sidecar.coordination.redis_backend import RedisCoordinator
from sidecar.coordination.scripts import build_scripts
from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope
from sidecar.core.ratelimit import Admit, Demand, RateLimiter
from sidecar.core.types import Category, TradingState
from tests.coordination.redis_testkit import RedisServer

TEST_CLOCK = """
local function clock()
  local tag = string.match(KEYS[1], '^({[^}]*})')
  return tonumber(redis.call('GET', tag .. ':test:now_us'))
end
"""
BATCH, SINGLE = "order.amend-batch", "order.amend"
START_US = 1_700_000_000_000_000
WALL0_MS = 1_700_000_000_000

scope_rule = st.tuples(st.integers(1, 5), st.integers(1, 4))  # (max, window_ms)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules: list[RateRule] = []
    for scope in (RateScope.TOOL, RateScope.SYMBOL, RateScope.GLOBAL):
        # Up to two rules per scope; equal windows allowed (they share one log on Redis).
        rules += [RateRule(scope, m, w) for m, w in draw(st.lists(scope_rule, max_size=2))]
    budgets = []
    for op in (BATCH, SINGLE):
        m, w = draw(st.integers(2, 10)), draw(st.integers(1, 4))
        budgets.append(
            ExchangeBudget(
                op,
                Category.LINEAR,
                limit=m,
                window_ms=w,
                utilization=draw(st.sampled_from([Decimal(1), Decimal("0.5")])),
                guard_ms=draw(st.integers(0, 2)),
            )
        )
    return Policy(symbols={}, rate_rules=tuple(rules), exchange_budgets=tuple(budgets))


demand = st.one_of(
    st.builds(
        Demand, st.just(RateScope.TOOL), st.sampled_from(["wsBatchAmendOrders", "b"]), st.integers(0, 3)
    ),
    st.builds(
        Demand, st.just(RateScope.SYMBOL), st.sampled_from(["linear:X", "linear:Y"]), st.integers(0, 6)
    ),
    st.builds(Demand, st.just(RateScope.GLOBAL), st.just("*"), st.integers(0, 2)),
    st.builds(
        Demand,
        st.just(RateScope.EXCHANGE),
        # order.amend:inverse uses Bybit's default budget; order.create is not budgeted (ignored).
        st.sampled_from([f"{BATCH}:linear", f"{SINGLE}:linear", f"{SINGLE}:inverse", "order.create:linear"]),
        st.integers(0, 3),
    ),
)


@dataclass(frozen=True)
class Op:
    kind: str  # check | peek | observe | rate_limited | views
    step_us: int
    demands: tuple[Demand, ...] = ()
    op: str = BATCH
    category: Category = Category.LINEAR
    limit: int = 0
    remaining: int = 0
    reset_in_ms: int | None = None


# Mostly forward by up to 1.5 ms (windows are 1-6 ms), landing on exact window edges as well as
# 1 µs past them; sometimes back (both limiters clamp).
step = st.one_of(
    st.tuples(st.integers(0, 6), st.integers(0, 1)).map(lambda ab: ab[0] * 250 + ab[1]),
    st.integers(-700, -1),
)
call = st.lists(demand, min_size=1, max_size=5).map(tuple)
ops = st.lists(
    st.one_of(
        st.builds(Op, st.sampled_from(["check", "check", "check", "peek"]), step, call),
        st.builds(Op, st.sampled_from(["check", "check", "check", "peek"]), step, call),
        st.builds(
            Op,
            st.just("observe"),
            step,
            st.just(()),
            st.sampled_from([BATCH, SINGLE]),
            st.sampled_from([Category.LINEAR, Category.INVERSE, Category.SPOT]),
            st.integers(0, 8),
            st.integers(-1, 8),
            st.one_of(st.none(), st.integers(-2, 4)),
        ),
        st.builds(
            Op,
            st.just("rate_limited"),
            step,
            st.just(()),
            st.sampled_from([BATCH, SINGLE]),
            st.sampled_from([Category.LINEAR, Category.OPTION]),
            st.just(0),
            st.just(0),
            st.one_of(st.none(), st.integers(-2, 5)),
        ),
        st.builds(Op, st.just("views"), step),
    ),
    min_size=20,
    max_size=60,
)


async def _compare(url: str, namespace: str, policy: Policy, steps: list[Op]) -> None:
    client = Redis.from_url(url, decode_responses=True)
    now_key = "{" + namespace + "}:test:now_us"
    now_us = START_US
    await client.set(now_key, now_us)
    coord = RedisCoordinator(
        policy,
        url=url,
        namespace=namespace,
        clock=SystemClock(),
        local_id_prefix="t",
        timeout_ms=5000,
        late_guard=False,
        scripts=build_scripts(TEST_CLOCK),
    )
    py = RateLimiter(policy)
    configured = {(log.scope, log.key) for log, _ in BudgetPlan(policy).view_logs()}
    await coord.start()
    try:
        for i, op in enumerate(steps):
            now_us += op.step_us
            await client.set(now_key, now_us)
            now_ns, wall_ms = now_us * 1000, WALL0_MS + (now_us - START_US) // 1000
            reset_ms = None if op.reset_in_ms is None else wall_ms + op.reset_in_ms
            where = f"step {i}: {op}"
            if op.kind in ("check", "peek"):
                if op.kind == "check":
                    expected = py.check(op.demands, now_ns)
                    got = await coord.admit(
                        op.demands, (), "holder", validated_under=TradingState.ACTIVE, lease_ttl_ms=1000
                    )
                else:
                    expected = py.peek(op.demands, now_ns)
                    got = await coord.preview(op.demands, (), validated_under=TradingState.ACTIVE)
                if isinstance(expected, Admit):
                    assert isinstance(got, Admitted), where
                else:
                    assert got == Throttled(expected), where
            elif op.kind == "observe":
                expected_b = py.observe_exchange_budget(
                    op.op, op.category, op.limit, op.remaining, reset_ms, now_ns, wall_ms
                )
                got_b = await coord.observe_exchange_budget(
                    op.op, op.category, op.limit, op.remaining, reset_ms, wall_ms
                )
                assert got_b == expected_b, where
            elif op.kind == "rate_limited":
                expected_b = py.on_exchange_rate_limited(op.op, op.category, reset_ms, now_ns, wall_ms)
                got_b = await coord.on_exchange_rate_limited(op.op, op.category, reset_ms, wall_ms)
                assert got_b == expected_b, where
            else:
                expected_v = [v for v in py.snapshot(now_ns) if (v.scope, v.key) in configured]
                assert await coord.budgets() == expected_v, where
    finally:
        await coord.stop()
        await client.aclose()


@pytest.mark.timeout(900)  # a failure shrinks for a while; its minimal example is worth the wait
def test_lua_limiter_decides_exactly_as_the_python_limiter(redis_server: RedisServer) -> None:
    runner = asyncio.Runner()
    names = itertools.count()

    @settings(max_examples=150, deadline=None)
    @given(policy=policies(), steps=ops)
    def check(policy: Policy, steps: list[Op]) -> None:
        runner.run(_compare(redis_server.url, f"eq-{os.getpid()}-{next(names)}", policy, steps))

    try:
        check()
    finally:
        runner.close()
