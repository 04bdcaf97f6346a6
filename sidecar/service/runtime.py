"""The runtime: build the exchange adapters, start their tasks, wait until they are ready, stop them.

One job: the adapters' life. `bybit_adapters` builds the real ones (REST, public market feeds, trade
socket, private stream, the exchange clock), reporting into the sinks the service gives them; a
test passes its own factory instead (sidecar/testing). `Runtime.start` syncs the exchange clock
before anything signed is sent, loads the instruments, starts the tasks and waits for the trade and
private sockets and a first quote per symbol; a refused API key or an unreachable exchange ends the
start with a `StartupError` that says why.

It decides nothing about amends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import structlog

from sidecar.bybit._ws import SocketTiming
from sidecar.bybit.endpoints import Endpoints
from sidecar.bybit.exchange_clock import ExchangeClock, keep_synced, sync_from_rest
from sidecar.bybit.market import MarketData, ping_interval_for
from sidecar.bybit.rest import RestClient
from sidecar.bybit.ws_private import PrivateStream
from sidecar.bybit.ws_trade import TradeConnection
from sidecar.clock import Clock
from sidecar.config import SidecarConfig
from sidecar.core.market_state import MarketState
from sidecar.core.policy import Policy
from sidecar.core.types import Category
from sidecar.env import Credentials
from sidecar.errors import StartupError
from sidecar.service.ports import AdapterFactory, Adapters, AdapterSinks
from sidecar.service.tasks import cancel_and_wait

__all__ = ["Runtime", "bybit_adapters"]

log = structlog.get_logger("service")


def bybit_adapters(endpoints: Endpoints, credentials: Credentials) -> AdapterFactory:
    """The factory of the real Bybit adapters for `endpoints`, signing with `credentials`."""

    def build(config: SidecarConfig, policy: Policy, clock: Clock, sinks: AdapterSinks) -> Adapters:
        # Bybit's clock, estimated from server times: request timestamps and verification timing
        # follow it (the exchange judges them by its own clock, not this host's).
        exchange_clock = ExchangeClock(clock)
        key, secret = credentials.api_key, credentials.api_secret
        rest = RestClient(endpoints.rest_url, key, secret, exchange_clock, config.exchange.recv_window_ms)
        symbols = sorted(policy.symbols)
        market = MarketData(
            endpoints,
            rest,
            symbols,
            clock,
            sinks.on_market,
            timing=SocketTiming(ping_interval_s=ping_interval_for(policy.reference_max_age_ms)),
        )
        trade = TradeConnection(
            endpoints.trade_ws_url,
            key,
            secret,
            clock,
            sinks.events,
            ack_timeout_ms=config.verification.ack_timeout_ms,
            exchange_clock=exchange_clock,
        )
        private = PrivateStream(
            endpoints.private_ws_url,
            key,
            secret,
            clock,
            sinks.open_orders,
            rest,
            sorted(policy.categories),
            sinks.on_private,
            exchange_clock=exchange_clock,
        )
        return Adapters(
            exchange_clock,
            rest,
            market,
            trade,
            private,
            clock_keeper=lambda: keep_synced(exchange_clock, rest),
        )

    return build


class Runtime:
    """Starts and stops the adapters' tasks."""

    def __init__(self, adapters: Adapters, market: MarketState, where: str) -> None:
        self.adapters = adapters
        self._market = market
        self._where = where  # the exchange, as named in a StartupError
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self, ready_timeout_s: float) -> None:
        a = self.adapters
        await sync_from_rest(a.exchange_clock, a.rest)  # before anything signed is sent
        await a.market.load_instruments()
        if a.clock_keeper is not None:
            self.tasks.append(asyncio.create_task(a.clock_keeper(), name="exchange_clock"))
        self.tasks += [
            asyncio.create_task(a.market.run(), name="market"),
            asyncio.create_task(a.trade.run(), name="ws_trade"),
            asyncio.create_task(a.private.run(), name="ws_private"),
        ]
        ready = asyncio.ensure_future(a.trade.wait_ready())
        refused = asyncio.ensure_future(a.trade.auth_failed.wait())
        try:
            async with asyncio.timeout(ready_timeout_s):
                await asyncio.wait({ready, refused}, return_when=asyncio.FIRST_COMPLETED)
                if refused.done():
                    raise StartupError(
                        f"the exchange refused the API credentials (retCode {a.trade.auth_error_code}); "
                        "check BYBIT_API_KEY and BYBIT_API_SECRET"
                    )
                await a.private.wait_ready()
        except TimeoutError:
            raise StartupError(
                f"the exchange at {self._where} did not become ready within {ready_timeout_s:.0f} s"
            ) from None
        finally:
            ready.cancel()
            refused.cancel()

    async def wait_for_quotes(self, symbols: Iterable[tuple[Category, str]], timeout_s: float) -> None:
        """Give the ticker streams a moment to deliver a first price for every symbol.

        Not fatal: a symbol without a fresh price is simply denied (fail closed) until one arrives.
        """
        missing = set(symbols)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while missing:
                    missing = {k for k in missing if self._market.quote(*k) is None}
                    if missing:
                        await asyncio.sleep(0.01)  # startup only; ticker pushes arrive every ~100 ms
        if missing:
            log.warning("service.quotes_missing", symbols=sorted(f"{c}:{s}" for c, s in missing))

    async def stop(self) -> None:
        await cancel_and_wait(self.tasks)
        self.tasks = []
        await self.adapters.rest.close()
