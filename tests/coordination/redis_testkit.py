"""Helpers for the coordination tests: the real redis-server (bench/redis_server.py, shared with
`python -m bench coordination`) and a RedisCoordinator with test-friendly defaults.

Never a fake: the coordination backend is tested against the server it will run against.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bench.redis_server import RedisServer, find_redis_server
from sidecar.clock import SystemClock
from sidecar.coordination.redis_backend import RedisCoordinator
from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope
from sidecar.core.types import Category

__all__ = ["RedisServer", "find_redis_server", "make_redis_coordinator", "small_policy"]


def make_redis_coordinator(
    url: str, namespace: str, policy: Policy | None = None, **kw: Any
) -> RedisCoordinator:
    """A RedisCoordinator on the real clock with test-friendly defaults (override any with **kw)."""
    options: dict[str, Any] = {"timeout_ms": 100, "local_id_prefix": "local", "heartbeat_s": 0.2}
    options.update(kw)
    return RedisCoordinator(
        policy if policy is not None else small_policy(),
        url=url,
        namespace=namespace,
        clock=SystemClock(),
        **options,
    )


def small_policy(global_max: int = 3, exchange_limit: int = 10, global_window_ms: int = 1000) -> Policy:
    """Global budget `global_max` per `global_window_ms` (1 s); Bybit's order.amend-batch linear
    budget `exchange_limit` at utilization 1 with no guard (so tests can count exactly). Inverse is
    configured alike: Bybit has one cell for linear and inverse, and a core limiter that folds them
    into one bucket then still finds this exact budget (not the 80 % default filled in for an
    unconfigured category)."""
    return Policy(
        symbols={},
        rate_rules=(RateRule(RateScope.GLOBAL, global_max, global_window_ms),),
        exchange_budgets=tuple(
            ExchangeBudget("order.amend-batch", category, limit=exchange_limit, utilization=Decimal(1))
            for category in (Category.LINEAR, Category.INVERSE)
        ),
    )
