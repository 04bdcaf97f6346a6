"""What the service needs from the exchange adapters: the protocols the Bybit adapters implement
(sidecar/bybit/) and test doubles can too (sidecar/testing/), so the service runs on either.

Protocols only: no behaviour. The adapters report what they see through the callbacks and the
queue they are built with (`AdapterSinks`); the service never lets them write its state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.bybit.exchange_clock import ExchangeClock
from sidecar.bybit.ws_private import PrivateEvent
from sidecar.clock import Clock
from sidecar.config import SidecarConfig
from sidecar.core.market_state import MarketEvent
from sidecar.core.policy import Policy
from sidecar.core.types import Category, OrderView

__all__ = [
    "AdapterFactory",
    "AdapterSinks",
    "Adapters",
    "MarketPort",
    "PrivatePort",
    "RestPort",
    "TradePort",
]


class RestPort(Protocol):
    recv_window_ms: int

    async def get_order(
        self,
        category: Category,
        symbol: str,
        order_id: str | None = None,
        order_link_id: str | None = None,
    ) -> OrderView | None: ...

    async def server_time_ms(self) -> int: ...

    async def close(self) -> None: ...


class TradePort(Protocol):
    """The trade socket: `send` hands a frame to the socket (raises NotConnected before writing
    when it is not ready); acks and their absence arrive on the queue it was built with."""

    ack_timeout_ms: int
    auth_failed: asyncio.Event
    auth_error_code: int | None

    @property
    def ready(self) -> bool: ...

    async def wait_ready(self) -> None: ...

    async def send(self, req_id: str, frame: str, *, items: int | None = None) -> None: ...

    async def run(self) -> None: ...


class PrivatePort(Protocol):
    @property
    def ready(self) -> bool: ...

    async def wait_ready(self) -> None: ...

    async def run(self) -> None: ...


class MarketPort(Protocol):
    async def load_instruments(self) -> int: ...

    async def run(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AdapterSinks:
    """Where the adapters report: the event queue (trade events), the private stream's and the
    market's callbacks, and the open orders the private stream may read (never write)."""

    events: asyncio.Queue[Any]
    on_private: Callable[[PrivateEvent], object]
    on_market: Callable[[MarketEvent], object]
    open_orders: Callable[[], Iterable[OrderView]]


@dataclass(frozen=True, slots=True)
class Adapters:
    exchange_clock: ExchangeClock
    rest: RestPort
    market: MarketPort
    trade: TradePort
    private: PrivatePort
    # Keeps the exchange clock in step with Bybit's server time (None: nothing to keep).
    clock_keeper: Callable[[], Any] | None = None


class AdapterFactory(Protocol):
    def __call__(
        self, config: SidecarConfig, policy: Policy, clock: Clock, sinks: AdapterSinks
    ) -> Adapters: ...
