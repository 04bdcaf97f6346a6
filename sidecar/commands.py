"""The long-running and operator commands behind `sidecar serve|demo|halt|resume|status|journal`.

Each function takes the parsed argparse namespace and returns an exit code (0 ok, 2 usage/config,
1 runtime). Human output goes to stderr for `serve` (stdout belongs to MCP) and to stdout otherwise.
This module wires parts together; it must not hold business rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from sidecar.bybit.endpoints import Endpoints, resolve_endpoints
from sidecar.clock import SystemClock
from sidecar.config import ConfigError, SidecarConfig, load_config
from sidecar.journal import Journal, JournalError
from sidecar.logs import configure_logging, register_secret
from sidecar.service import Credentials, Service, StartupError

__all__ = ["demo", "halt", "journal", "reload", "resume", "serve", "status"]

# Crash-recovery tests set this to a point in service.CRASH_POINTS; never set it in use.
CRASH_ENV = "SIDECAR_TEST_CRASH_AT"

log = structlog.get_logger("cli")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2

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


def _fail(msg: str, code: int = EXIT_RUNTIME) -> int:
    print(f"sidecar: {msg}", file=sys.stderr)
    return code


def _load(path: Path) -> SidecarConfig | int:
    try:
        return load_config(path)
    except ConfigError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE


@dataclass
class Exchange:
    """Where the service connects, and the emulator when we run one in-process."""

    endpoints: Endpoints
    credentials: Credentials
    emulator: Any = None


@contextlib.asynccontextmanager
async def open_exchange(
    config: SidecarConfig, exchange_url: str | None, *, seed: int | None = None, walk: bool = True
) -> AsyncIterator[Exchange]:
    """Resolve endpoints and credentials; in sim mode without a URL, run the emulator in-process."""
    env = config.exchange.env
    if env == "sim" and exchange_url is None:
        from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator

        async with Emulator(
            seed=seed, api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, walk=walk
        ) as emu:
            # The simulated account has the per-UID limits the config declares (see sidecar.yaml).
            for rule in config.rate_limits:
                if rule.scope == "exchange" and rule.op is not None and rule.category is not None:
                    emu.set_rate_limit(rule.op, str(rule.category), rule.max)
            endpoints = resolve_endpoints("sim", None, None, emu.url)
            yield Exchange(endpoints, Credentials(DEFAULT_API_KEY, DEFAULT_API_SECRET), emu)
        return
    key = os.environ.get("BYBIT_API_KEY")
    secret = os.environ.get("BYBIT_API_SECRET")
    if env in {"testnet", "mainnet", "custom"} and exchange_url is None and not (key and secret):
        raise ConfigError(
            Path("<environment>"),
            [f"exchange.env is {env}: set BYBIT_API_KEY and BYBIT_API_SECRET in the environment"],
        )
    if not (key and secret):
        from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET

        key, secret = DEFAULT_API_KEY, DEFAULT_API_SECRET
    register_secret(key)
    register_secret(secret)
    endpoints = resolve_endpoints(env, config.exchange.rest_url, config.exchange.ws_url, exchange_url)
    yield Exchange(endpoints, Credentials(key, secret))


async def rest_sim_orders(emulator: Any, config: SidecarConfig) -> list[dict[str, Any]]:
    """Rest the SIM_ORDERS on the emulator near the current market (for `serve` and `demo`)."""
    from decimal import Decimal

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


def _banner(config: SidecarConfig, exchange: Exchange, transport: str, where: str, orders: list[Any]) -> str:
    lines = [
        "bybit order-safety sidecar",
        f"  exchange : {config.exchange.env} at {exchange.endpoints.rest_url}"
        + (" (built-in emulator, no keys, no network)" if exchange.emulator is not None else ""),
        f"  transport: {transport} {where}",
        f"  batch    : max {config.batch.max_orders} orders, mode {config.batch.mode}",
        f"  reference: max age {config.reference_price.max_age_ms} ms",
        "  symbols  :",
    ]
    for rule in config.to_policy().symbols.values():
        lines.append(
            f"    {rule.category}:{rule.symbol} band ±{rule.price_band_bps} bps on {rule.reference}, "
            f"max qty {rule.max_qty}, max notional {rule.max_notional}"
        )
    if orders:
        lines.append("  resting orders to try: " + ", ".join(str(o.get("orderLinkId")) for o in orders))
    if transport == "stdio":
        lines.append(
            "  connect  : npx @modelcontextprotocol/inspector --cli .venv/bin/sidecar serve "
            "--method tools/list"
        )
    else:
        lines.append(f"  connect  : POST {where} with 'Authorization: Bearer $" + config.http.token_env + "'")
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    config = loaded
    configure_logging("INFO")
    try:
        return asyncio.run(_serve(config, args))
    except ConfigError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except JournalError as err:
        return _fail(f"journal: {err}")
    except StartupError as err:
        return _fail(str(err))


async def _serve(config: SidecarConfig, args: argparse.Namespace) -> int:
    from sidecar.mcp_server import build_server
    from sidecar.stdio_transport import serve_stdio

    if args.transport == "http":
        from sidecar.http_transport import http_refusal

        refusal = http_refusal(config, args)
        if refusal is not None:  # refuse before starting anything
            print(f"sidecar: {refusal}", file=sys.stderr)
            return EXIT_USAGE
    journal_db = Journal(config.journal.path, config.journal.synchronous)
    try:
        async with open_exchange(config, args.exchange_url) as exchange:
            orders = await rest_sim_orders(exchange.emulator, config) if exchange.emulator is not None else []
            service = Service(
                config,
                clock=SystemClock(),
                endpoints=exchange.endpoints,
                credentials=exchange.credentials,
                journal=journal_db,
                crash_at=os.environ.get(CRASH_ENV) or None,
            )
            async with service:
                _install_reload(service, args.config)
                server = build_server(service)
                if args.transport == "stdio":
                    print(
                        _banner(config, exchange, "stdio", "(this process's stdin/stdout)", orders),
                        file=sys.stderr,
                        flush=True,
                    )
                    await _until_signal(serve_stdio(server))
                else:
                    from sidecar.http_transport import run_http

                    return await run_http(
                        server, config, args, lambda where: _banner(config, exchange, "http", where, orders)
                    )
    finally:
        journal_db.close()
    return EXIT_OK


def _install_reload(service: Service, path: Path) -> None:
    """SIGHUP re-reads the YAML: a valid file is swapped in, an invalid one is logged and ignored."""

    def on_hup() -> None:
        try:
            config = load_config(path)
        except ConfigError as err:
            log.error("config.reload_rejected", problems=err.problems, kept=service.policy.version)
            return
        service.reload(config)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)


async def _until_signal(main: Any) -> None:
    """Run `main` until it ends or SIGTERM/SIGINT arrives (a clean stop, exit 0)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------------------- operator commands


def _journal(args: argparse.Namespace) -> Journal | int:
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    return Journal(loaded.journal.path, loaded.journal.synchronous)


def halt(args: argparse.Namespace) -> int:
    j = _journal(args)
    if isinstance(j, int):
        return j
    with contextlib.closing(j):
        j.set_trading_state(
            "halted", args.reason, f"cli:{os.environ.get('USER', 'operator')}", SystemClock().wall_ms()
        )
    print(f"halted: {args.reason}")
    return EXIT_OK


def resume(args: argparse.Namespace) -> int:
    j = _journal(args)
    if isinstance(j, int):
        return j
    with contextlib.closing(j):
        j.set_trading_state(
            "active", "", f"cli:{os.environ.get('USER', 'operator')}", SystemClock().wall_ms()
        )
    print("active")
    return EXIT_OK


def reload(args: argparse.Namespace) -> int:
    """Ask the running server (its pid is in the journal database) to re-read its config."""
    loaded = _load(args.config)  # refuse to signal with a file that would be rejected anyway
    if isinstance(loaded, int):
        return loaded
    j = Journal(loaded.journal.path, loaded.journal.synchronous)
    with contextlib.closing(j):
        pid = j.get_control("server_pid")
    if not pid or not pid.isdigit():
        return _fail("no running server recorded in the journal")
    try:
        os.kill(int(pid), signal.SIGHUP)
    except ProcessLookupError:
        return _fail(f"the server recorded in the journal (pid {pid}) is not running")
    print(f"reload requested from pid {pid}")
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    j = _journal(args)
    if isinstance(j, int):
        return j
    with contextlib.closing(j):
        state, reason, who, ts = j.trading_state()
        health = j.get_control("health")
    body: dict[str, Any] = {"tradingState": state, "reason": reason or None, "by": who or None, "sinceMs": ts}
    if health:
        body["health"] = json.loads(health)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(f"trading state: {state}" + (f" ({reason}, by {who})" if reason else ""))
        h = body.get("health")
        if isinstance(h, dict):
            for key, value in h.items():
                print(f"{key}: {json.dumps(value)}")
    return EXIT_OK


def journal(args: argparse.Namespace) -> int:
    j = _journal(args)
    if isinstance(j, int):
        return j
    with contextlib.closing(j):
        if args.request:
            record = j.get_request(args.request)
            if record is None:
                return _fail(f"no request {args.request!r} in the journal", EXIT_USAGE)
            if args.json:
                print(json.dumps(dataclasses.asdict(record), indent=2, default=str))
                return EXIT_OK
            print(
                f"request {record.request_id}  tool {record.tool}  status {record.status}  "
                f"policy {record.policy_version}"
            )
            for rec in record.records:
                item = "" if rec.item_idx is None else f" item {rec.item_idx}"
                body = json.dumps(rec.body, default=str)[:300]
                print(f"  #{rec.seq} {_when(rec.ts_wall_ms)} {rec.kind}{item}: {body}")
            if record.result is not None:
                print("result: " + json.dumps(record.result, default=str))
            return EXIT_OK
        rows = j.last_requests(args.last)
        if args.json:
            print(json.dumps([dataclasses.asdict(r) for r in rows], default=str))
            return EXIT_OK
        for r in rows:
            print(f"{_when(r.created_ms)}  {r.request_id}  {r.tool or '-'}  {r.status}  {r.outcome or '-'}")
        if not rows:
            print("the journal holds no requests yet")
    return EXIT_OK


def _when(wall_ms: int) -> str:
    return datetime.datetime.fromtimestamp(wall_ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[
        :-3
    ]


def demo(args: argparse.Namespace) -> int:
    from sidecar.demo import run_demo

    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    configure_logging("ERROR")  # the table is the output; the journal has the details
    return asyncio.run(run_demo(loaded))
