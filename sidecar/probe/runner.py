"""`sidecar probe`: check every assumption the sidecar makes about the exchange it is pointed at.

Its one job is the run: read the config, refuse `--allow-orders` against mainnet before any
connection (exit 2), find the credentials, run the read-only checks (always) and the order checks
(with `--allow-orders`), cancel and sweep the probe's own orders whatever happens (an error, a
cancelled run, Ctrl-C or SIGTERM), and print one result per check (human lines, or `--json`).
Exit 0 when nothing differs or errs, 1 when something does (or the run was interrupted, or an
order of the probe's could not be cancelled), 2 for usage and config errors.

It uses the sidecar's adapters (`sidecar.bybit`) directly, never the service. It must never print
or log keys or secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from sidecar.bybit.endpoints import Endpoints, mainnet_hosts, resolve_endpoints
from sidecar.bybit.exchange_clock import ExchangeClock, sync_from_rest
from sidecar.bybit.rest import RestClient, RestError, RestTransportError
from sidecar.clock import SystemClock
from sidecar.config import SidecarConfig, load_config
from sidecar.env import Environment
from sidecar.errors import ExitCode, UsageError
from sidecar.logs import register_secret
from sidecar.probe import public_checks, rest_checks, tickers, trade_checks
from sidecar.probe.context import Probe, ProbeSettings
from sidecar.probe.order_checks import run_order_checks
from sidecar.probe.orders import Ledger, sweep
from sidecar.probe.report import (
    CHECK_NAMES,
    ORDER_CHECKS,
    CheckResult,
    error,
    exit_code,
    render_human,
    render_json,
    skipped,
)

__all__ = ["Cleanup", "Outcome", "guarded", "probe_command", "run_probe"]

log = structlog.get_logger("probe")

_CLEANUP_TIMEOUT_S = 60.0

Check = Callable[[Probe], Awaitable[CheckResult]]

# Read-only checks in the order they run (the ticker watch runs beside them the whole time).
READ_ONLY: tuple[tuple[str, Check], ...] = (
    ("clock_offset", trade_checks.check_clock_offset),
    ("public_pong_shapes", public_checks.check_public_pong_shapes),
    ("option_subscribe_reply", public_checks.check_option_subscribe_reply),
    ("cursor_round_trip", rest_checks.check_cursor_round_trip),
    ("cursor_last_page", rest_checks.check_cursor_last_page),
    ("linear_settle_coins", rest_checks.check_linear_settle_coins),
    ("recv_window_code", trade_checks.check_recv_window_code),
    ("auth_error_codes", trade_checks.check_auth_error_codes),
    ("unauthenticated_op_reqid", trade_checks.check_unauthenticated_op_reqid),
    ("reqid_duplicate_scope", trade_checks.check_reqid_duplicate_scope),
    ("trade_header_types", trade_checks.check_trade_header_types),
    ("single_ack_ret_ext_info", trade_checks.check_single_ack_ret_ext_info),
    ("ack_rate_limit_headers", trade_checks.check_ack_rate_limit_headers),
    ("linear_inverse_shared_bucket", trade_checks.check_linear_inverse_shared_bucket),
)

# Order-gated checks that place nothing but spend the whole amend-batch budget for a second.
_BUDGET_CHECKS = frozenset({"batch_rate_limit_item_code", "batch_max_items"})
_SPENDS_BUDGET = "spends the account's whole amend-batch budget for a second"

_RACES = (
    "needs a fill to land within milliseconds of an acked {what}: a race that takes luck to provoke "
    "on a real exchange; the sidecar's handling is covered by the emulator's `{fault}` fault in its "
    "own tests"
)


def _never_probed() -> dict[str, CheckResult]:
    return {
        "trade_session_limit": trade_checks.check_trade_session_limit(),
        "post_ack_fill_race": skipped(
            "post_ack_fill_race",
            {"ack": 0, "then": "Filled at the old price, then a second Filled"},
            _RACES.format(what="amend", fault="fill_after_ack"),
        ),
        "double_filled_push": skipped(
            "double_filled_push",
            {"pushes": ["Filled EC_NoError", "Filled CancelByUser EC_OrigClOrdIDDoesNotExist"]},
            _RACES.format(what="cancel", fault="fill_after_ack"),
        ),
    }


async def guarded(name: str, run: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
    """Run one check; whatever it raises becomes its `error` (one line, no traceback)."""
    try:
        return await run()
    except asyncio.CancelledError:
        raise
    except RestTransportError as e:
        return error(name, None, f"could not reach the exchange ({e.ret_msg})")
    except RestError as e:
        return error(name, None, f"the exchange answered retCode {e.ret_code}: {e.ret_msg}")
    except Exception as e:
        log.warning("probe.check_failed", check=name, error=f"{type(e).__name__}: {e}")
        return error(name, None, f"{type(e).__name__}: {e}")


@dataclass(frozen=True)
class Outcome:
    """A finished run: one result per check, in report order, and the probe's orders it could not
    cancel (link ids; empty when none are left)."""

    results: list[CheckResult]
    leftovers: list[str]


@dataclass
class Cleanup:
    """The probe's orders and, once swept, those it could not cancel (read after an interruption)."""

    ledger: Ledger
    leftovers: list[str]
    swept: bool = False


async def run_probe(
    endpoints: Endpoints,
    api_key: str,
    api_secret: str,
    settings: ProbeSettings,
    cleanup: Cleanup | None = None,
) -> Outcome:
    """Every check against `endpoints`. The probe's orders are cancelled and swept in a `finally`."""
    cleanup = cleanup if cleanup is not None else Cleanup(Ledger(), [])
    clock = SystemClock()
    xclock = ExchangeClock(clock)
    async with RestClient(endpoints.rest_url, api_key, api_secret, xclock, settings.recv_window_ms) as rest:
        p = Probe(endpoints, api_key, api_secret, clock, xclock, rest, settings)
        if not await sync_from_rest(xclock, rest):
            reason = f"cannot read the exchange's time at {endpoints.rest_url}/v5/market/time"
            return Outcome([error(n, None, reason) for n in CHECK_NAMES], [])
        results: dict[str, CheckResult] = _never_probed()
        watch = asyncio.create_task(tickers.watch_tickers(p))
        try:
            for name, check in READ_ONLY:
                results[name] = await guarded(name, functools.partial(check, p))
            own_closed = None
            if settings.allow_orders:
                try:
                    found, own_closed = await run_order_checks(p, cleanup.ledger, guarded)
                    results.update(found)
                except Exception as e:  # set-up failed (sockets, rules): every order check says so
                    for name in ORDER_CHECKS - results.keys():
                        results[name] = error(
                            name, None, f"order checks could not start: {type(e).__name__}: {e}"
                        )
                finally:
                    cleanup.leftovers = await _sweep(p, cleanup.ledger)
                    cleanup.swept = True
            else:
                for name in ORDER_CHECKS:
                    why = _SPENDS_BUDGET if name in _BUDGET_CHECKS else "places the probe's own test orders"
                    results[name] = skipped(
                        name, None, f"{why}: run with --allow-orders (testnet or an emulator)"
                    )
            results["realtime_closed_retention"] = await guarded(
                "realtime_closed_retention",
                lambda: rest_checks.check_realtime_closed_retention(p, own_closed),
            )
            results["order_history_lookup"] = await guarded(
                "order_history_lookup", lambda: rest_checks.check_order_history_lookup(p, own_closed)
            )
            results.update(await _ticker_results(watch))
        finally:
            if not watch.done():
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watch
        for name in ORDER_CHECKS - results.keys():  # a check the run never reached
            results[name] = error(name, None, "not reached (an earlier step of the order checks failed)")
        return Outcome([results[n] for n in CHECK_NAMES], cleanup.leftovers)


async def _ticker_results(watch: asyncio.Task[tickers.TickerRecording]) -> dict[str, CheckResult]:
    try:
        recording = await watch
    except Exception as e:  # the watch itself broke: both ticker checks say so
        detail = f"the ticker watch failed: {type(e).__name__}: {e}"
        return {name: error(name, None, detail) for name in ("ticker_quiet_gap", "ticker_delta_fields")}
    return {
        "ticker_quiet_gap": tickers.judge_quiet_gap(recording),
        "ticker_delta_fields": tickers.judge_delta_fields(recording),
    }


async def _sweep(p: Probe, ledger: Ledger) -> list[str]:
    """The last sweep (bounded in time): cancel every open order carrying this run's tag."""
    if not ledger.orders:
        return []
    try:
        async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
            return await sweep(p, ledger)
    except Exception as e:  # report what may be left; never hide it
        log.error("probe.sweep_failed", error=f"{type(e).__name__}: {e}")
        return sorted(o.link for o in ledger.open_ones()) or [f"{p.link_prefix}* (the sweep failed: {e})"]


# ------------------------------------------------------------------ the command


@dataclass(frozen=True)
class _Target:
    env: str
    endpoints: Endpoints | None  # None: the built-in emulator, started by the run
    api_key: str
    api_secret: str


def _target(args: argparse.Namespace, config: SidecarConfig, environment: Environment) -> _Target:
    """Where to probe and with which keys, decided before any connection.

    Raises:
        UsageError: a bad endpoint, or --allow-orders on mainnet (exit 2).
        ConfigError: a real venue without keys, or only one of the two set (exit 2).
    """
    env = config.exchange.env
    url: str | None = args.exchange_url
    endpoints: Endpoints | None = None
    if env != "sim" or url is not None:
        try:
            endpoints = resolve_endpoints(env, config.exchange.rest_url, config.exchange.ws_url, url)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.allow_orders:
        hosts = mainnet_hosts(endpoints) if endpoints is not None else ()
        if env == "mainnet" or hosts:
            where = ", ".join(hosts) if hosts else "exchange.env mainnet"
            raise UsageError(
                f"--allow-orders is refused on mainnet ({where}): the probe places orders only on "
                "testnet or an emulator; run it without --allow-orders for the read-only checks"
            )
    keys = environment.signing_credentials(env, url)
    return _Target(env, endpoints, keys.api_key, keys.api_secret)


@contextlib.asynccontextmanager
async def _exchange(target: _Target) -> AsyncIterator[Endpoints]:
    if target.endpoints is not None:
        yield target.endpoints
        return
    from sidecar.emulator import Emulator  # noqa: PLC0415 - sim only: a real run never loads it

    async with Emulator(api_key=target.api_key, api_secret=target.api_secret) as emu:
        yield resolve_endpoints("sim", exchange_url=emu.url)


def _describe(target: _Target, endpoints: Endpoints, allow_orders: bool) -> dict[str, Any]:
    return {
        "env": target.env,
        "restUrl": endpoints.rest_url,
        "wsUrl": endpoints.trade_ws_url.removesuffix("/v5/trade"),
        "allowOrders": allow_orders,
    }


async def _main(target: _Target, settings: ProbeSettings, as_json: bool) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:  # SIGTERM stops the run like Ctrl-C: the `finally` cancels our orders
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    cleanup = Cleanup(Ledger(), [])
    try:
        async with _exchange(target) as endpoints:
            outcome = await run_probe(endpoints, target.api_key, target.api_secret, settings, cleanup)
            exchange = _describe(target, endpoints, settings.allow_orders)
    except asyncio.CancelledError:
        # The top of the run: stop here with a report instead of a traceback (the sweep has run).
        print(f"sidecar: probe interrupted; {_cleanup_state(cleanup)}", file=sys.stderr)
        return ExitCode.RUNTIME
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    render = render_json if as_json else render_human
    print(render(exchange, outcome.results), flush=True)
    if outcome.leftovers:
        print(f"sidecar: {_cleanup_state(cleanup)}", file=sys.stderr)
        return ExitCode.RUNTIME
    return exit_code(outcome.results)


def _cleanup_state(cleanup: Cleanup) -> str:
    if cleanup.leftovers:
        return f"could not cancel its own orders {', '.join(cleanup.leftovers)}: cancel them by hand"
    if not cleanup.ledger.orders:
        return "it had placed no orders"
    if cleanup.swept:
        return "its own test orders were cancelled"
    return "its own test orders may still rest: look for orderLinkIds starting with probe- and cancel them"


def probe_command(args: argparse.Namespace, env: Environment) -> int:
    """`sidecar probe`: 0 nothing differs, 1 something differs or errs; raises a UsageError (or a
    ConfigError) before connecting for what it must refuse."""
    config = load_config(args.config)
    target = _target(args, config, env)
    register_secret(target.api_key)
    register_secret(target.api_secret)
    policy = config.to_policy()
    settings = ProbeSettings(
        symbols=tuple(policy.symbols),
        max_age_ms=policy.reference_max_age_ms,
        recv_window_ms=config.exchange.recv_window_ms,
        allow_orders=bool(args.allow_orders),
        ticker_seconds=float(args.ticker_seconds),
    )
    try:
        return asyncio.run(_main(target, settings, bool(args.json)))
    except KeyboardInterrupt:  # a second Ctrl-C during the clean-up
        print(
            "sidecar: probe interrupted during its clean-up: look for open orders whose orderLinkId "
            "starts with probe- and cancel them",
            file=sys.stderr,
        )
        return ExitCode.RUNTIME
