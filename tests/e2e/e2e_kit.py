"""End-to-end test kit: the real emulator on a loopback port, the real service, the real journal.

`stack` gives an emulator with frozen prices and resting orders, a started `Service` against it,
and the MCP server built on it. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sidecar.clock import Clock
from sidecar.config import SidecarConfig, load_config
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from sidecar.service import Service
from sidecar.testing.stack import build_service

ROOT = Path(__file__).resolve().parents[2]

PRICES = {
    ("linear", "BTCUSDT"): "95000",
    ("linear", "ETHUSDT"): "3500",
    ("linear", "SOLUSDT"): "180",
    ("spot", "BTCUSDT"): "95000",
}

# (category, symbol, side, qty, price, orderLinkId): resting orders every e2e test starts with.
ORDERS = [
    ("linear", "BTCUSDT", "Buy", "0.01", "94000.0", "btc-b1"),
    ("linear", "BTCUSDT", "Buy", "0.01", "94100.0", "btc-b2"),
    ("linear", "BTCUSDT", "Sell", "0.01", "96000.0", "btc-s1"),
    ("linear", "ETHUSDT", "Buy", "0.1", "3450.00", "eth-b1"),
    ("linear", "ETHUSDT", "Sell", "0.1", "3550.00", "eth-s1"),
    ("linear", "SOLUSDT", "Buy", "1.0", "178.000", "sol-b1"),
    ("spot", "BTCUSDT", "Buy", "0.001", "94000.00", "spot-b1"),
]


def e2e_config(tmp_path: Path, **overrides: Any) -> SidecarConfig:
    """The shipped config with the journal in tmp_path, short deadlines, and `overrides` merged in."""
    data = load_config(ROOT / "config" / "sidecar.yaml").model_dump(mode="json")
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    data["verification"].update({"timeout_ms": 3000, "ack_timeout_ms": 500, "not_applied_margin_ms": 200})
    data["exchange"]["recv_window_ms"] = 1000
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return SidecarConfig.model_validate(data)


@dataclass
class Stack:
    emu: Emulator
    service: Service
    config: SidecarConfig
    orders: dict[str, dict[str, Any]]  # by orderLinkId, as placed

    def frames(self, op: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.emu.frames() if op is None or f.get("op") == op]

    def order(self, link: str) -> dict[str, Any]:
        return next(o for o in self.emu.orders() if o["orderLinkId"] == link)

    def sent_items(self) -> list[dict[str, Any]]:
        """Every amend item the emulator received, batch and single."""
        items: list[dict[str, Any]] = []
        for f in self.emu.frames():
            if f.get("op") == "order.amend-batch":
                items.extend(f["args"][0]["request"])
            elif f.get("op") == "order.amend":
                items.append(f["args"][0])
        return items


StackFactory = Callable[..., Any]


async def start_stack(
    tmp_path: Path,
    *,
    prices: dict[tuple[str, str], str] | None = None,
    orders_to_rest: list[tuple[str, str, str, str, str, str]] | None = None,
    clock: Clock | None = None,
    before_start: Callable[[Emulator], None] | None = None,
    **overrides: Any,
) -> tuple[Emulator, Service, SidecarConfig, dict[str, Any]]:
    """The stack of `Stack`; `prices` and `orders_to_rest` replace PRICES and ORDERS; `clock`
    replaces the service's SystemClock; `before_start` prepares the emulator (more orders, a clock
    offset, ...) after the orders are rested and before the service starts."""
    config = e2e_config(tmp_path, **overrides)
    emu = Emulator(seed=11, api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, walk=False)
    await emu.start()
    for rule in config.rate_limits:
        if rule.scope == "exchange" and rule.op is not None and rule.category is not None:
            emu.set_rate_limit(rule.op, str(rule.category), rule.max)
    for (category, symbol), price in (PRICES if prices is None else prices).items():
        emu.set_price(category, symbol, mark_price=price, last_price=price, index_price=price)
    orders = {}
    for category, symbol, side, qty, price, link in ORDERS if orders_to_rest is None else orders_to_rest:
        orders[link] = emu.place_order(category, symbol, side, qty, price, order_link_id=link)
    if before_start is not None:
        before_start(emu)
    service = build_service(config, emu.url, clock=clock)
    await service.start()
    return emu, service, config, orders


async def stop_stack(emu: Emulator, service: Service) -> None:
    await service.stop()
    service.journal.close()
    await emu.stop()


AMEND_OPS = ("order.amend", "order.amend-batch")


def intercept_amends(emu: Emulator, on_frame: Callable[[dict[str, Any]], bool]) -> None:
    """Run `on_frame(msg)` inside the emulator when an amend frame arrives, before the exchange
    handles it; if it returns True the frame is swallowed (lost before reaching the exchange)."""
    original = emu.hub.on_trade_text

    def hooked(conn: Any, session: Any, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if isinstance(msg, dict) and msg.get("op") in AMEND_OPS and on_frame(msg):
            return
        original(conn, session, text)

    emu.hub.on_trade_text = hooked  # type: ignore[method-assign]  # a test hook on the witness


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


@dataclass
class EmulatorProc:
    """A standalone emulator process; `stderr` is filled in once it has stopped."""

    proc: asyncio.subprocess.Process
    url: str
    stderr: str = ""


@contextlib.asynccontextmanager
async def emulator_process(
    seed: int = 5, *, api_key: str | None = None, api_secret: str | None = None
) -> AsyncIterator[EmulatorProc]:
    """`sidecar emulator --port 0` in its own process, stopped (and its stderr collected) after."""
    args = ["-m", "sidecar", "emulator", "--port", "0", "--seed", str(seed)]
    if api_key is not None and api_secret is not None:
        args += ["--api-key", api_key, "--api-secret", api_secret]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    handle = EmulatorProc(proc, "")
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            handle.url = json.loads(await proc.stdout.readline())["url"]
        yield handle
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
        handle.stderr = err.decode(errors="replace")
