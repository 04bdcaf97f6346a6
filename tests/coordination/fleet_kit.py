"""Several real `Service` instances on one emulator (one Bybit account, one API key), coordinated
through a real redis-server (or each on its own, `backend="local"`, as the baseline).

Nothing is mocked: each instance has its own journal, trade and private sockets; the emulator counts
every instance's frames against one per-UID budget, as Bybit does, and keeps each frame with the
time it arrived (`receivedAt`), which is what the budget checks here are computed from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sidecar.config import SidecarConfig, load_config
from sidecar.core.types import AmendRequest
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from sidecar.service import AmendResult, Service
from sidecar.testing.stack import build_service

ROOT = Path(__file__).resolve().parents[2]
BATCH = "order.amend-batch"
# Bybit's per-UID order.amend-batch linear budget in these tests, per second: the emulator enforces
# it and every sidecar is configured with it (utilization 1: the guard alone keeps the headroom).
BUDGET = 20
BTC_MARK = "95000"
BTC_BASE = Decimal("94000.0")
BTC_STEP = Decimal("0.1")  # BTCUSDT's tick on the emulator


def fleet_config(
    tmp_path: Path,
    name: str,
    *,
    redis_url: str | None,
    namespace: str,
    budget: int = BUDGET,
    timeout_ms: int = 100,
    batch_mode: str = "all_or_nothing",
    safety: dict[str, Any] | None = None,
) -> SidecarConfig:
    """The shipped config for one instance: its own journal; every sidecar-side budget far above
    Bybit's so Bybit's budget is the one that binds; Redis coordination unless `redis_url` is None."""
    data = load_config(ROOT / "config" / "sidecar.yaml").model_dump(mode="json")
    data["journal"]["path"] = str(tmp_path / name / "journal.sqlite3")
    data["verification"].update({"timeout_ms": 3000, "ack_timeout_ms": 1000, "not_applied_margin_ms": 200})
    data["exchange"]["recv_window_ms"] = 2000
    data["batch"]["mode"] = batch_mode
    data["safety"].update(safety or {})
    data["rate_limits"] = [
        {"scope": "tool", "max": 10_000, "window_s": "1"},
        {"scope": "global", "max": 10_000, "window_s": "1"},
        {"scope": "symbol", "max": 10_000, "window_s": "1"},
        {"scope": "exchange", "op": BATCH, "category": "linear", "max": budget, "utilization": "1"},
        {"scope": "exchange", "op": "order.amend", "category": "linear", "max": 50},
    ]
    if redis_url is None:
        data["coordination"] = {"backend": "local"}
    else:
        data["coordination"] = {
            "backend": "redis",
            "url": redis_url,
            "namespace": namespace,
            "timeout_ms": timeout_ms,
        }
    return SidecarConfig.model_validate(data)


@dataclass
class Fleet:
    emu: Emulator
    services: list[Service]
    tmp_path: Path
    # orderId -> how many amends were asked of it (each asks a higher price: never a no-op)
    asked: dict[str, int] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)

    def amend(self, order_ids: Sequence[str], *, single: bool = False) -> AmendRequest:
        """One batch (or, `single`, one order.amend) raising each order's price by a tick more than
        its last amend asked for."""
        items = []
        for oid in order_ids:
            n = self.asked[oid] = self.asked.get(oid, 0) + 1
            base = Decimal(next(o["price"] for o in self.orders if o["orderId"] == oid))
            items.append({"symbol": "BTCUSDT", "orderId": oid, "price": str(base + n * BTC_STEP)})
        if single:
            return AmendRequest("linear", tuple(items), batch=False, tool="wsAmendOrder")
        return AmendRequest("linear", tuple(items), batch=True, tool="wsBatchAmendOrders")

    def amend_frames(self) -> list[dict[str, Any]]:
        return [f for f in self.emu.frames() if f.get("op") == BATCH]


async def add_instance(fleet: Fleet, config: SidecarConfig) -> Service:
    service = build_service(config, fleet.emu.url)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        service.journal.close()
        raise
    fleet.services.append(service)
    return service


async def stop_instance(fleet: Fleet, service: Service) -> None:
    await service.stop()
    service.journal.close()
    fleet.services.remove(service)


@contextlib.asynccontextmanager
async def running_fleet(
    tmp_path: Path,
    n: int,
    *,
    redis_url: str | None,
    namespace: str,
    orders: int = 24,
    budget: int = BUDGET,
    **config: Any,
) -> AsyncIterator[Fleet]:
    """`n` started services on one emulator with `orders` resting BTCUSDT buys."""
    emu = Emulator(seed=11, api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, walk=False)
    await emu.start()
    fleet = Fleet(emu, [], tmp_path)
    try:
        emu.set_rate_limit(BATCH, "linear", budget)
        emu.set_price("linear", "BTCUSDT", mark_price=BTC_MARK, last_price=BTC_MARK, index_price=BTC_MARK)
        for i in range(orders):
            price = BTC_BASE - 5 * i
            fleet.orders.append(
                emu.place_order("linear", "BTCUSDT", "Buy", "0.01", str(price), order_link_id=f"o{i}")
            )
        for i in range(n):
            cfg = fleet_config(
                tmp_path, f"i{i}", redis_url=redis_url, namespace=namespace, budget=budget, **config
            )
            await add_instance(fleet, cfg)
        yield fleet
    finally:
        for service in list(fleet.services):
            await stop_instance(fleet, service)
        await emu.stop()


async def offer_load(
    fleet: Fleet,
    service: Service,
    order_ids: Sequence[str],
    *,
    items_per_s: float,
    batch: int,
    duration_s: float,
) -> list[AmendResult]:
    """Open-loop load: a batch of `batch` orders (round robin over `order_ids`) every
    batch / items_per_s seconds for `duration_s`, without waiting for answers (an agent that does
    not slow down); returns every answer."""
    loop = asyncio.get_running_loop()
    interval_s = batch / items_per_s
    start = loop.time()
    tasks: list[asyncio.Task[AmendResult]] = []
    k = 0
    while loop.time() - start < duration_s:
        chosen = [order_ids[(k * batch + j) % len(order_ids)] for j in range(batch)]
        tasks.append(asyncio.create_task(service.submit(fleet.amend(chosen))))
        k += 1
        # Pacing of the load generator (an open-loop schedule), not a wait for a condition.
        await asyncio.sleep(max(0.0, start + k * interval_s - loop.time()))
    return list(await asyncio.gather(*tasks))


def arrivals(frames: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(receivedAt ms, units) of each batch frame as the emulator counts it (one unit per item)."""
    return [(int(f["receivedAt"]), len(f["args"][0]["request"])) for f in frames]


def exchange_codes(results: Sequence[AmendResult]) -> list[int]:
    """Every exchange code the answers carry (batch ack and items)."""
    codes: list[int] = []
    for r in results:
        ack = r.body.get("ack")
        if ack:
            codes.append(int(ack["retCode"]))
        codes += [int(i["exchangeCode"]) for i in r.body["items"] if i.get("exchangeCode") is not None]
    return codes


def item_outcomes(results: Sequence[AmendResult]) -> list[str]:
    return [i["outcome"] for r in results for i in r.body["items"]]


def item_codes(results: Sequence[AmendResult]) -> list[str]:
    return [reason["code"] for r in results for i in r.body["items"] for reason in i["reasons"]]


def on_amend_frame(emu: Emulator) -> asyncio.Event:
    """An event set when the next amend frame reaches the exchange (which then handles it as usual)."""
    seen = asyncio.Event()
    original = emu.hub.on_trade_text

    def hooked(conn: Any, session: Any, text: str) -> None:
        if '"order.amend' in text:
            seen.set()
        original(conn, session, text)

    emu.hub.on_trade_text = hooked  # type: ignore[method-assign]  # a test hook on the witness
    return seen


def order_amend_frames(fleet: Fleet, order_id: str) -> list[dict[str, Any]]:
    """The amend frames that name `order_id`."""
    return [
        f for f in fleet.amend_frames() if any(i.get("orderId") == order_id for i in f["args"][0]["request"])
    ]
