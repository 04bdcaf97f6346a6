"""`sidecar serve`: the MCP server over stdio or HTTP, on the exchange the config names.

`serve(args, env)` returns an exit code or raises a `SidecarError` (the CLI prints it). Human output
goes to stderr (stdout belongs to MCP). `service_options` is the seam the test kit uses to pass
extra `Service` arguments (`sidecar.testing.serve`: the crash hook); the product passes none.
This module wires parts together; it must not hold business rules.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from sidecar.cli.exchange import Exchange, open_exchange, rest_sim_orders
from sidecar.cli.scaffold import sidecar_command
from sidecar.cli.serve_runtime import (
    CLOSE_S,
    DRAIN_S,
    CallTracker,
    StopSignals,
    hold_journal,
    install_reload,
    print_warning,
    register_on_host,
)
from sidecar.clock import SystemClock
from sidecar.config import SidecarConfig, load_config
from sidecar.env import Environment
from sidecar.errors import ExitCode, RestError, RestTransportError, StartupError, UsageError
from sidecar.host_registry import runtime_dir
from sidecar.http_transport import http_refusal, run_http
from sidecar.journal import Journal
from sidecar.mcp_server import build_server
from sidecar.metrics import observing
from sidecar.presence import Presence
from sidecar.runtime_lock import ProcessIdentity
from sidecar.service import Service
from sidecar.stdio_transport import serve_stdio

__all__ = ["INSPECTOR", "connect_hint", "serve"]

# The MCP Inspector release the README and the banner's connect hint were checked with (Node 20).
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"

log = structlog.get_logger("cli")


def connect_hint(transport: str, where: str, *, config_path: Path | None = None, token_env: str = "") -> str:
    """The MCP Inspector command that reaches this server (the same form as the README's)."""
    if transport == "stdio":
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


def serve(
    args: argparse.Namespace, env: Environment, *, service_options: Mapping[str, Any] | None = None
) -> int:
    """Run the MCP server until stopped (0). Raises a `SidecarError` for what stops it early."""
    config = load_config(args.config)
    try:
        # Absolute: SIGHUP re-reads it, and the operator's commands compare it, from any directory.
        options = dict(service_options or {})
        return asyncio.run(_serve(config, args, Path(args.config).resolve(), env, options))
    except asyncio.CancelledError:  # stopped by a signal during start-up
        return ExitCode.OK
    except RestTransportError as err:  # DNS failure, refused connection, timeout: one line
        raise StartupError(f"cannot reach the exchange at start-up ({err.ret_msg})") from None
    except RestError as err:
        raise StartupError(f"the exchange answered an error at start-up ({err})") from None


async def _serve(
    config: SidecarConfig,
    args: argparse.Namespace,
    config_path: Path,
    env: Environment,
    service_options: dict[str, Any],
) -> int:
    if args.transport == "http":
        refusal = http_refusal(config, args, env)
        if refusal is not None:  # refuse before starting anything
            raise UsageError(refusal)
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
                async with open_exchange(config, args.exchange_url, env) as exchange:
                    registration = register_on_host(
                        identity=identity,
                        config_path=str(config_path),
                        journal_path=config.journal.path,
                        rest_url=exchange.endpoints.rest_url,
                        api_key=None if exchange.emulator is not None else exchange.credentials.api_key,
                        coordination=config.coordination.backend,
                        started_ms=clock.wall_ms(),
                        warn=print_warning,
                        registry=runtime_dir(env.runtime_dir),
                    )
                    orders = await rest_sim_orders(exchange.emulator, config) if exchange.emulator else []
                    service = Service(
                        config,
                        clock=clock,
                        endpoints=exchange.endpoints,
                        credentials=exchange.credentials,
                        journal=journal_db,
                        env=env.values,
                        **service_options,
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
                                return await run_http(
                                    server,
                                    config,
                                    args,
                                    lambda where: _banner(config, exchange, "http", where, orders),
                                    env=env,
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
    return ExitCode.OK
