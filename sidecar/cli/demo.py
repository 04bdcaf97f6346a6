"""`sidecar demo`: the whole product in a few seconds.

Starts the emulator and the service in-process, rests a few orders, then plays a scripted agent
session through the MCP SDK's `Client` (the same path a real agent uses) and prints a table of calls,
verdicts, reasons and latencies. It must not be imported by the service; it is a showcase, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from mcp import Client

from sidecar.cli.exchange import open_exchange, rest_sim_orders
from sidecar.clock import SystemClock
from sidecar.config import SidecarConfig, load_config
from sidecar.env import Environment
from sidecar.errors import UsageError
from sidecar.journal import Journal
from sidecar.mcp_server import build_server
from sidecar.service import Service

__all__ = ["demo", "run_demo"]

FROZEN = {("linear", "BTCUSDT"): "95000", ("linear", "ETHUSDT"): "3500", ("linear", "SOLUSDT"): "180"}


def _demo_config(config: SidecarConfig, journal_path: Path) -> SidecarConfig:
    """The shipped config plus a tight per-tool limit, so the session shows a throttle."""
    data = config.model_dump(mode="json")
    data["journal"]["path"] = str(journal_path)
    data["rate_limits"] = [
        *[r for r in data["rate_limits"] if r.get("scope") != "tool"],
        {"scope": "tool", "max": 4, "window_s": 60},
    ]
    return SidecarConfig.model_validate(data)


def _row(step: str, result: Any) -> list[str]:
    body = result.structured_content or {}
    items = body.get("items") or []
    codes = sorted(
        {r["code"] for it in items for r in it.get("reasons", [])}
        | {r["code"] for r in body.get("reasons", [])}
    )
    per_item = " ".join(f"{it.get('orderLinkId') or it.get('orderId')}={it['outcome']}" for it in items)
    return [
        step,
        body.get("outcome", "?"),
        per_item,
        ",".join(codes) or "-",
        f"{body.get('latencyMs', 0):.1f}",
    ]


def _table(rows: list[list[str]]) -> str:
    head = ["step", "outcome", "items", "reasons", "ms"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("{:<" + str(w) + "}" for w in widths)
    return "\n".join(
        [line.format(*head), line.format(*["-" * w for w in widths])] + [line.format(*r) for r in rows]
    )


def demo(args: argparse.Namespace, env: Environment) -> int:
    """`sidecar demo`: logs stay at ERROR unless asked (the table is the output)."""
    return asyncio.run(run_demo(load_config(args.config), env))


async def run_demo(config: SidecarConfig, env: Environment) -> int:
    if config.exchange.env != "sim":
        # The demo rests and reprices its own orders on the built-in emulator; never on a venue.
        raise UsageError(
            f"sidecar demo runs on the built-in emulator only (exchange.env: sim); "
            f"this config names {config.exchange.env}"
        )
    with tempfile.TemporaryDirectory(prefix="sidecar-demo-") as tmp:
        config = _demo_config(config, Path(tmp) / "journal.sqlite3")
        async with open_exchange(config, None, env, seed=7, walk=False) as exchange:
            emu = exchange.emulator
            for (category, symbol), price in FROZEN.items():
                emu.set_price(category, symbol, mark_price=price, last_price=price)
            orders = await rest_sim_orders(emu, config)
            links = {o["orderLinkId"]: o for o in orders}
            journal = Journal(config.journal.path, config.journal.synchronous)
            service = Service(
                config,
                clock=SystemClock(),
                endpoints=exchange.endpoints,
                credentials=exchange.credentials,
                journal=journal,
            )
            rows: list[list[str]] = []
            async with service, Client(build_server(service)) as client:
                policy = (await client.call_tool("getSafetyPolicy", {"symbol": "BTCUSDT"})).structured_content
                btc = (policy or {}).get("symbols", [{}])[0]
                print(
                    f"BTCUSDT reference {btc.get('referencePrice')} ({btc.get('reference')}), "
                    f"allowed {btc.get('minPrice')}..{btc.get('maxPrice')}, max qty {btc.get('maxQty')}"
                )

                def moved(link: str, pct: str) -> str:
                    return str((Decimal(links[link]["price"]) * (1 + Decimal(pct))).quantize(Decimal("0.1")))

                batch = [
                    {
                        "symbol": "BTCUSDT",
                        "orderLinkId": "sim-btc-buy-1",
                        "price": moved("sim-btc-buy-1", "-0.001"),
                    },
                    {"symbol": "ETHUSDT", "orderLinkId": "sim-eth-buy-1", "qty": "0.2"},
                ]
                r = await client.call_tool("wsBatchAmendOrders", {"category": "linear", "request": batch})
                rows.append(_row("1 batch amend inside limits", r))

                r = await client.call_tool(
                    "wsBatchAmendOrders",
                    {
                        "category": "linear",
                        "request": [
                            {"symbol": "BTCUSDT", "orderLinkId": "sim-btc-sell-1", "price": "120000"}
                        ],
                    },
                )
                rows.append(_row("2 price 26% above mark", r))

                r = await client.call_tool(
                    "previewBatchAmendOrders",
                    {"category": "linear", "request": [{"symbol": "DOGEUSDT", "orderId": "x", "qty": "1e3"}]},
                )
                rows.append(_row("3 preview: unknown symbol", r))

                emu.add_faults([{"kind": "drop_order_events", "count": 5}])
                r = await client.call_tool(
                    "wsAmendOrder",
                    {
                        "category": "linear",
                        "symbol": "SOLUSDT",
                        "orderLinkId": "sim-sol-sell-1",
                        "price": moved("sim-sol-sell-1", "0.001"),
                    },
                )
                rows.append(_row("4 order events lost (REST proves it)", r))
                emu.clear_faults()

                emu.add_faults([{"kind": "fill_before_amend", "count": 1}])
                r = await client.call_tool(
                    "wsBatchAmendOrders",
                    {
                        "category": "linear",
                        "request": [{"symbol": "BTCUSDT", "orderLinkId": "sim-btc-sell-1", "qty": "0.02"}],
                    },
                )
                rows.append(_row("5 order filled before amend", r))
                emu.clear_faults()

                for n in range(3):
                    r = await client.call_tool(
                        "wsBatchAmendOrders",
                        {
                            "category": "linear",
                            "request": [
                                {
                                    "symbol": "ETHUSDT",
                                    "orderLinkId": "sim-eth-buy-1",
                                    "qty": ("0.3", "0.4", "0.5")[n],
                                }
                            ],
                        },
                    )
                    rows.append(_row(f"{6 + n} tool budget 4 calls/min", r))

                halt_reason = "demo: operator pressed the kill switch"
                await service.halt(halt_reason)
                r = await client.call_tool(
                    "wsBatchAmendOrders",
                    {
                        "category": "linear",
                        "request": [{"symbol": "ETHUSDT", "orderLinkId": "sim-eth-buy-1", "qty": "0.1"}],
                    },
                )
                rows.append(_row("9 after `sidecar halt`", r))
            journal.close()
            print(_table(rows))
            print(
                "\nEvery call above went through the MCP SDK client, the sidecar's checks, its journal and "
                "the emulator's order stream."
            )
    return 0
