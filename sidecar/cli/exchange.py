"""Where `sidecar serve` and `sidecar demo` trade: endpoints and credentials, and in sim mode the
emulator in-process with a few resting orders to amend.

One job: resolve the exchange for a command. Only the sim path (and a keyless run against an
emulator's URL) touches `sidecar.emulator`, lazily: a run with real keys never imports it. It must
not hold business rules.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sidecar.bybit.endpoints import Endpoints, resolve_endpoints
from sidecar.config import SidecarConfig
from sidecar.env import Credentials, Environment, emulator_credentials
from sidecar.logs import register_secret

__all__ = ["SIM_ORDERS", "Exchange", "open_exchange", "rest_sim_orders"]

# Orders `serve` rests on the built-in emulator so an agent has something to amend right away.
SIM_ORDERS: tuple[dict[str, str], ...] = (
    {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "qty": "0.01",
        "pct": "-0.008",
        "link": "sim-btc-buy-1",
    },
    {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Sell",
        "qty": "0.01",
        "pct": "0.008",
        "link": "sim-btc-sell-1",
    },
    {
        "category": "linear",
        "symbol": "ETHUSDT",
        "side": "Buy",
        "qty": "0.1",
        "pct": "-0.008",
        "link": "sim-eth-buy-1",
    },
    {
        "category": "linear",
        "symbol": "SOLUSDT",
        "side": "Sell",
        "qty": "1",
        "pct": "0.008",
        "link": "sim-sol-sell-1",
    },
)


@dataclass
class Exchange:
    """Where the service connects, and the emulator when we run one in-process."""

    endpoints: Endpoints
    credentials: Credentials
    emulator: Any = None


@contextlib.asynccontextmanager
async def open_exchange(
    config: SidecarConfig,
    exchange_url: str | None,
    env: Environment,
    *,
    seed: int | None = None,
    walk: bool = True,
) -> AsyncIterator[Exchange]:
    """Resolve endpoints and credentials; in sim mode without a URL, run the emulator in-process.

    Raises:
        ConfigError: testnet, mainnet or custom without an exchange URL and without both keys.
    """
    venue = config.exchange.env
    if venue == "sim" and exchange_url is None:
        from sidecar.emulator import Emulator  # noqa: PLC0415 - sim only

        credentials = emulator_credentials()
        async with Emulator(
            seed=seed, api_key=credentials.api_key, api_secret=credentials.api_secret, walk=walk
        ) as emu:
            # The simulated account has the per-UID limits the config declares (see sidecar.yaml).
            for rule in config.rate_limits:
                if rule.scope == "exchange" and rule.op is not None and rule.category is not None:
                    emu.set_rate_limit(rule.op, str(rule.category), rule.max)
            endpoints = resolve_endpoints("sim", None, None, emu.url)
            yield Exchange(endpoints, credentials, emu)
        return
    credentials = env.signing_credentials(venue, exchange_url)
    register_secret(credentials.api_key)
    register_secret(credentials.api_secret)
    endpoints = resolve_endpoints(venue, config.exchange.rest_url, config.exchange.ws_url, exchange_url)
    yield Exchange(endpoints, credentials)


async def rest_sim_orders(emulator: Any, config: SidecarConfig) -> list[dict[str, Any]]:
    """Rest the SIM_ORDERS on the emulator near the current market (for `serve` and `demo`)."""
    placed = []
    allowed = {(r.category, r.symbol) for r in config.symbols}
    for o in SIM_ORDERS:
        if (o["category"], o["symbol"]) not in allowed:
            continue
        last = Decimal(emulator.last_price(o["category"], o["symbol"]))
        tick = Decimal(emulator.tick_size(o["category"], o["symbol"]))
        price = (last * (1 + Decimal(o["pct"])) / tick).to_integral_value() * tick
        placed.append(
            emulator.place_order(
                category=o["category"],
                symbol=o["symbol"],
                side=o["side"],
                qty=o["qty"],
                price=str(price),
                order_link_id=o["link"],
            )
        )
    return placed
