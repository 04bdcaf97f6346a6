"""The reliability suite's set-up: the soak policy, the oracle's copy of the exchange rules, an
in-process stack (emulator + service + journal) and this process's resource readings.

Its one job is set-up and read-outs that the bad-input, fault and load parts share. It must not
decide whether a part passed (each part does), and it holds the oracle's own copy of the exchange
rules (`INSTRUMENTS`, from docs/emulator.md) instead of asking the sidecar for them. Set-up that the
benchmarks share too (credentials, the emulator process, quiet logging, the service as `serve`
builds it) is bench/common.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import API_KEY, API_SECRET, ROOT, build_service, rss_kb

__all__ = [
    "BATCH_MAX_NOTIONAL",
    "EXCHANGE_BATCH_LIMIT",
    "INSTRUMENTS",
    "PRICES",
    "RULES",
    "InstrumentRule",
    "Stack",
    "SymbolRuleCopy",
    "resources",
    "restart_service",
    "soak_config",
    "start_stack",
]

# Frozen prices (mark = last = index), so every reference is known exactly to the oracle.
PRICES: dict[tuple[str, str], Decimal] = {
    ("linear", "BTCUSDT"): Decimal("95000"),
    ("linear", "ETHUSDT"): Decimal("3500"),
    ("linear", "SOLUSDT"): Decimal("180"),
    ("spot", "BTCUSDT"): Decimal("95000"),
}


@dataclass(frozen=True)
class InstrumentRule:
    """The emulator's instrument rules as docs/emulator.md states them (the oracle's own copy)."""

    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal


INSTRUMENTS: dict[tuple[str, str], InstrumentRule] = {
    ("linear", "BTCUSDT"): InstrumentRule(
        Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal("1190")
    ),
    ("linear", "ETHUSDT"): InstrumentRule(Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal("7240")),
    ("linear", "SOLUSDT"): InstrumentRule(Decimal("0.010"), Decimal("0.1"), Decimal("0.1"), Decimal("79770")),
    # Spot's minimum is one step: the listed minOrderQty (0.000048) is deprecated and not enforced.
    ("spot", "BTCUSDT"): InstrumentRule(
        Decimal("0.01"), Decimal("0.000001"), Decimal("0.000001"), Decimal("71.73956243")
    ),
}


@dataclass(frozen=True)
class SymbolRuleCopy:
    """One allowlist entry of the soak policy, as the oracle reads it."""

    max_qty: Decimal
    max_notional: Decimal
    band_bps: Decimal


# The soak policy. Notional caps are set below max_qty × price on purpose, so the notional check is
# reachable (with the shipped config, the qty cap and the band imply the notional cap).
RULES: dict[tuple[str, str], SymbolRuleCopy] = {
    ("linear", "BTCUSDT"): SymbolRuleCopy(Decimal("0.5"), Decimal("30000"), Decimal("150")),
    ("linear", "ETHUSDT"): SymbolRuleCopy(Decimal("10"), Decimal("20000"), Decimal("150")),
    ("linear", "SOLUSDT"): SymbolRuleCopy(Decimal("200"), Decimal("25000"), Decimal("200")),
    ("spot", "BTCUSDT"): SymbolRuleCopy(Decimal("0.1"), Decimal("5000"), Decimal("100")),
}
BATCH_MAX_ORDERS = 20
BATCH_MAX_NOTIONAL = Decimal("100000")
EXCHANGE_BATCH_LIMIT = {"linear": 20, "spot": 10}
BIG = 1_000_000


def soak_config(journal: Path, **overrides: Any) -> Any:
    """The shipped config with the soak policy: local rate limits and automatic trips out of the way
    (they are tested elsewhere and would hide what these parts measure), a temp journal, and
    `overrides` merged in section by section."""
    from sidecar.config import SidecarConfig, load_config  # noqa: PLC0415

    data = load_config(ROOT / "config" / "sidecar.yaml").model_dump(mode="json")
    data["journal"]["path"] = str(journal)
    data["symbols"] = [
        {
            "category": c,
            "symbol": s,
            "max_qty": str(r.max_qty),
            "max_notional": str(r.max_notional),
            "price_band_bps": str(r.band_bps),
            "reference": "mark" if c == "linear" else "last",
        }
        for (c, s), r in RULES.items()
    ]
    data["batch"] = {
        "max_orders": BATCH_MAX_ORDERS,
        "mode": "all_or_nothing",
        "max_notional": str(BATCH_MAX_NOTIONAL),
    }
    data["rate_limits"] = [
        {"scope": "tool", "max": BIG, "window_s": 1},
        {"scope": "global", "max": BIG, "window_s": 1},
        {"scope": "symbol", "max": BIG, "window_s": 1},
        *(
            {"scope": "exchange", "op": op, "category": cat, "max": 100_000, "window_s": 1}
            for op in ("order.amend-batch", "order.amend")
            for cat in ("linear", "spot")
        ),
    ]
    data["safety"] = {
        "max_unverified": BIG,
        "max_exchange_rate_limited": BIG,
        "stale_reference_trip_ms": 600_000,
        "socket_down_trip_s": 600,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return SidecarConfig.model_validate(data)


# ---------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """An in-process emulator (frozen prices, resting orders) and a started service on it."""

    emu: Any
    service: Any
    config: Any
    journal_path: Path
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # orderLinkId -> as placed

    async def stop(self) -> None:
        await self.service.stop()
        self.service.journal.close()
        await self.emu.stop()

    def amend_frames(self) -> list[dict[str, Any]]:
        return [f for f in self.emu.frames() if f.get("op") in ("order.amend", "order.amend-batch")]

    def exchange_order(self, category: str, order_id: str) -> Any:
        """The emulator's own record of an order (its ground-truth ledger), or None."""
        found = self.emu.hub.exchange.find(category, order_id=order_id)
        return found[0] if found else None

    async def place(
        self, category: str, symbol: str, side: str, qty: str, price: str, link: str
    ) -> dict[str, Any]:
        """Rest an order and wait until the sidecar's order view has it (else it is UNKNOWN_ORDER)."""
        order = self.emu.place_order(category, symbol, side, qty, price, order_link_id=link)
        self.links[link] = order
        async with asyncio.timeout(10):
            # Polling on purpose: the service exposes no event for "order known".
            while self.service.order_state(category, symbol, order["orderId"], None) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        return dict(order)


async def start_stack(config: Any, *, seed: int = 7) -> Stack:
    """The emulator in this process (exchange limits raised, prices frozen) and a started service."""
    from sidecar.emulator import Emulator  # noqa: PLC0415

    emu = Emulator(seed=seed, api_key=API_KEY, api_secret=API_SECRET, walk=False)
    await emu.start()
    for op in ("order.amend-batch", "order.amend"):
        for cat in ("linear", "spot"):
            emu.set_rate_limit(op, cat, 100_000)
    emu.set_rate_limit("order.realtime", "linear", 100_000)
    for (category, symbol), price in PRICES.items():
        emu.set_price(category, symbol, mark_price=price, last_price=price, index_price=price)
        # The oracle's copy of the rules must be the emulator's.
        assert Decimal(emu.tick_size(category, symbol)) == INSTRUMENTS[(category, symbol)].tick
    service = build_service(config, emu.url)
    await service.start()
    return Stack(emu, service, config, Path(config.journal.path))


async def restart_service(stack: Stack, config: Any) -> Stack:
    """A new service (new config and journal) on the same emulator and its resting orders."""
    service = build_service(config, stack.emu.url)
    await service.start()
    return Stack(stack.emu, service, config, Path(config.journal.path), stack.links)


def resources() -> dict[str, Any]:
    """This process: RSS (MB), open fds, asyncio tasks not named `soak-*` (inside a running loop)."""
    sockets = 0
    try:
        names = os.listdir("/proc/self/fd")
        fds = len(names)
        for name in names:
            with contextlib.suppress(OSError):
                sockets += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    except OSError:
        fds = -1
    try:  # the sidecar's tasks: the harness names its own "soak-..."
        tasks = sum(1 for t in asyncio.all_tasks() if not t.get_name().startswith("soak"))
    except RuntimeError:
        tasks = -1
    return {"rss_mb": round(rss_kb() / 1024, 1), "fds": fds, "sockets": sockets, "tasks": tasks}
