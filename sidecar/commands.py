"""The long-running commands behind `sidecar serve|demo`; the operator's (`halt|resume|status|
journal|reload`) live in `sidecar.ops` and are re-exported here for the CLI's dispatch.

Each function takes the parsed argparse namespace and returns an exit code (0 ok, 2 usage/config,
1 runtime). Human output goes to stderr for `serve` (stdout belongs to MCP) and to stdout otherwise.
This module wires parts together; it must not hold business rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from sidecar.bybit.endpoints import Endpoints, resolve_endpoints
from sidecar.bybit.rest import RestError, RestTransportError
from sidecar.clock import SystemClock
from sidecar.config import ConfigError, SidecarConfig, load_config
from sidecar.journal import Journal, JournalError
from sidecar.logs import register_secret
from sidecar.ops import halt, journal, reload, resume, status
from sidecar.presence import Presence
from sidecar.runtime_lock import ProcessIdentity
from sidecar.serve_runtime import (
    CLOSE_S,
    DRAIN_S,
    AlreadyServing,
    CallTracker,
    StopSignals,
    coordination_backend,
    hold_journal,
    install_reload,
    print_warning,
    register_on_host,
)
from sidecar.service import Credentials, Service, StartupError

__all__ = ["demo", "halt", "journal", "reload", "resume", "serve", "status"]

# The MCP Inspector release the README and the banner's connect hint were checked with (Node 20).
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"

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


def connect_hint(transport: str, where: str, *, config_path: Path | None = None, token_env: str = "") -> str:
    """The MCP Inspector command that reaches this server (the same form as the README's)."""
    if transport == "stdio":
        from sidecar.scaffold import sidecar_command

        command = [*sidecar_command(), "serve"]
        if config_path is not None:
            command += ["--config", os.path.abspath(config_path)]
        return f"npx -y {INSPECTOR} --cli --method tools/list -- {shlex.join(command)}"
    return (
        f'npx -y {INSPECTOR} --cli {where} --transport http --header "Authorization: Bearer ${token_env}" '
        "--method tools/list"
    )


def _banner(
    config: SidecarConfig,
    exchange: Exchange,
    transport: str,
    where: str,
    orders: list[Any],
    *,
    config_path: Path | None = None,
) -> str:
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
    hint = connect_hint(transport, where, config_path=config_path, token_env=config.http.token_env)
    lines.append(f"  connect  : {hint}")
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    config = loaded
    try:
        # Absolute: SIGHUP re-reads it, and the operator's commands compare it, from any directory.
        return asyncio.run(_serve(config, args, Path(args.config).resolve()))
    except ConfigError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except AlreadyServing as err:
        return _fail(str(err), EXIT_USAGE)
    except JournalError as err:
        return _fail(f"journal: {err}")
    except StartupError as err:
        return _fail(str(err))
    except asyncio.CancelledError:  # stopped by a signal during start-up
        return EXIT_OK
    except RestTransportError as err:  # DNS failure, refused connection, timeout: one line
        return _fail(f"cannot reach the exchange at start-up ({err.ret_msg})")
    except RestError as err:
        return _fail(f"the exchange answered an error at start-up ({err})")


async def _serve(config: SidecarConfig, args: argparse.Namespace, config_path: Path) -> int:
    from sidecar.mcp_server import build_server
    from sidecar.metrics import observing
    from sidecar.stdio_transport import serve_stdio

    if args.transport == "http":
        from sidecar.http_transport import http_refusal

        refusal = http_refusal(config, args)
        if refusal is not None:  # refuse before starting anything
            print(f"sidecar: {refusal}", file=sys.stderr)
            return EXIT_USAGE
    identity = ProcessIdentity.current()
    clock = SystemClock()
    signals = StopSignals()
    signals.install()
    try:
        with hold_journal(config.journal.path, identity):
            journal_db = Journal(config.journal.path, config.journal.synchronous)
            presence = Presence(
                journal_db,
                clock,
                identity=identity,
                config_path=str(config_path),
                transport=args.transport,
                on_epoch=lambda epoch: log.info(
                    "safety.state_observed", epoch=epoch, state=journal_db.trading_state()[0]
                ),
            )
            registration = None
            try:
                presence.start()
                async with open_exchange(config, args.exchange_url) as exchange:
                    registration = register_on_host(
                        identity=identity,
                        config_path=str(config_path),
                        journal_path=config.journal.path,
                        rest_url=exchange.endpoints.rest_url,
                        api_key=None if exchange.emulator is not None else exchange.credentials.api_key,
                        coordination=coordination_backend(config),
                        started_ms=clock.wall_ms(),
                        warn=print_warning,
                    )
                    orders = await rest_sim_orders(exchange.emulator, config) if exchange.emulator else []
                    service = Service(
                        config,
                        clock=clock,
                        endpoints=exchange.endpoints,
                        credentials=exchange.credentials,
                        journal=journal_db,
                        crash_at=os.environ.get(CRASH_ENV) or None,
                    )
                    metrics_port = getattr(args, "metrics_port", None)
                    async with (
                        service,
                        observing(
                            service, http_transport=args.transport == "http", metrics_port=metrics_port
                        ) as observability,
                    ):
                        remove_reload = install_reload(service, config_path, presence)
                        try:
                            server = build_server(service)
                            tracker = CallTracker()
                            server.middleware.append(tracker)
                            presence.serving()
                            signals.serving()
                            if args.transport == "stdio":
                                where = "(this process's stdin/stdout)"
                                banner = _banner(
                                    config, exchange, "stdio", where, orders, config_path=config_path
                                )
                                print(banner, file=sys.stderr, flush=True)
                                await serve_stdio(
                                    server,
                                    stop=signals.requested,
                                    calls=tracker,
                                    drain_s=DRAIN_S,
                                    close_s=CLOSE_S,
                                    on_call=observability.observe_mcp_call if observability else None,
                                    clock=clock,
                                )
                            else:
                                from sidecar.http_transport import run_http

                                return await run_http(
                                    server,
                                    config,
                                    args,
                                    lambda where: _banner(config, exchange, "http", where, orders),
                                    observability=observability,
                                )
                        finally:
                            remove_reload()
                            presence.stopping()
            finally:
                if registration is not None:
                    registration.close()
                await presence.stop()
                journal_db.close()
    finally:
        signals.uninstall()
    return EXIT_OK


def demo(args: argparse.Namespace) -> int:
    from sidecar.demo import run_demo

    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    return asyncio.run(run_demo(loaded))  # logs stay at ERROR unless asked (the table is the output)
