"""Several sidecars on one Bybit account stay within the account's budget at the exchange.

Three `Service` instances share one emulator whose per-UID order.amend-batch budget equals the one
each sidecar is configured with, and together offer three times that budget. With Redis
coordination Bybit never answers 10006 and never counts more than the budget in any rolling second
(computed from the emulator's own arrival times). The baseline, each sidecar on its own (`local`),
draws 10006: the same harness can see the difference.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.stats import peak_units
from tests.coordination.fleet_kit import (
    BUDGET,
    arrivals,
    exchange_codes,
    item_outcomes,
    offer_load,
    running_fleet,
)
from tests.coordination.redis_testkit import RedisServer

pytestmark = pytest.mark.slow

N = 3
LOAD = 3  # offered load, in multiples of the budget
DURATION_S = 3.0
BATCH = 2


async def _run(tmp_path: Path, redis_url: str | None, namespace: str) -> tuple[list[str], list[int], int]:
    async with running_fleet(tmp_path, N, redis_url=redis_url, namespace=namespace, orders=8 * N) as fleet:
        ids = [o["orderId"] for o in fleet.orders]
        share = len(ids) // N
        per_instance = LOAD * BUDGET / N
        results = await asyncio.gather(
            *(
                offer_load(
                    fleet,
                    service,
                    ids[i * share : (i + 1) * share],
                    items_per_s=per_instance,
                    batch=BATCH,
                    duration_s=DURATION_S,
                )
                for i, service in enumerate(fleet.services)
            )
        )
        flat = [r for rs in results for r in rs]
        frames = fleet.amend_frames()
        if redis_url is not None:  # request ids and Bybit reqIds are unique across the fleet
            assert len({f["reqId"] for f in frames}) == len(frames)
            assert len({r.body["requestId"] for r in flat}) == len(flat)
        return item_outcomes(flat), exchange_codes(flat), peak_units(arrivals(frames))


async def test_a_coordinated_fleet_never_draws_10006_nor_exceeds_the_budget_at_the_exchange(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    outcomes, codes, peak = await _run(tmp_path, redis_server.url, namespace)
    assert 10006 not in codes
    assert peak <= BUDGET, f"{peak} units in one rolling second at the exchange (budget {BUDGET})"
    # The load really pressed on the budget: most of it was throttled, and the budget was used.
    assert outcomes.count("throttled") > outcomes.count("verified")
    assert outcomes.count("verified") >= BUDGET * DURATION_S * 0.6
    assert peak >= BUDGET * 0.75


async def test_the_same_fleet_without_coordination_draws_10006(tmp_path: Path) -> None:
    _outcomes, codes, _peak = await _run(tmp_path, None, "unused")
    assert 10006 in codes  # each sidecar applies the whole budget alone: together they exceed it
