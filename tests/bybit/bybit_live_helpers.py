"""Helpers for the bybit adapter tests that run against the real emulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from sidecar.bybit._ws import Backoff
from sidecar.bybit.ws_private import OrderSeen, PrivateEvent
from sidecar.core.market_state import MarketEvent, MarketState
from sidecar.core.orders import OrderBook, OrderUpdate
from sidecar.core.types import Category, Quote

T = TypeVar("T")

WAIT_S = 5.0


def fast_backoff() -> Backoff:
    # Tests shrink the reconnect delay instead of waiting for real intervals (like websockets' tests).
    return Backoff(initial_s=0.01, max_s=0.05, factor=1.5, jitter_s=0.005)


async def next_of(queue: asyncio.Queue[Any], kind: type[T], pred: Callable[[T], bool] | None = None) -> T:
    """The next event of `kind` (matching `pred`) from `queue`; other events are skipped."""
    async with asyncio.timeout(WAIT_S):
        while True:
            ev = await queue.get()
            if isinstance(ev, kind) and (pred is None or pred(ev)):
                return ev


async def assert_quiet(queue: asyncio.Queue[Any], kind: type[Any], window_s: float) -> None:
    """No event of `kind` arrives within `window_s` (waits on the queue, not on a sleep)."""
    try:
        async with asyncio.timeout(window_s):
            while True:
                ev = await queue.get()
                assert not isinstance(ev, kind), f"unexpected {ev!r}"
    except TimeoutError:
        return


@asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run an adapter's `run()` for the duration of the block, then cancel it cleanly."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True, slots=True)
class QuoteUpdate:
    """A quote made current by one market event (a ticker push, or an answered ping vouching)."""

    category: Category
    symbol: str
    quote: Quote


class MarketWatch:
    """What the service does with the market adapter's events, for the adapter tests: apply them to
    a `MarketState` (the only writer) and queue a `QuoteUpdate` for every quote made current."""

    def __init__(self, symbols: list[tuple[Category, str]]) -> None:
        self.state = MarketState(symbols)
        self.events: asyncio.Queue[QuoteUpdate] = asyncio.Queue()
        self.seen: list[MarketEvent] = []

    def emit(self, event: MarketEvent) -> None:
        self.seen.append(event)
        for (category, symbol), quote in self.state.apply(event):
            self.events.put_nowait(QuoteUpdate(category, symbol, quote))


class OrderWatch:
    """What the service does with the private stream's events, for the adapter tests: apply every
    order seen to an `OrderBook` (the only writer) and queue it as an `OrderUpdate`; other events
    are queued as they come."""

    def __init__(self) -> None:
        self.book = OrderBook()
        self.events: asyncio.Queue[Any] = asyncio.Queue()

    def emit(self, event: PrivateEvent) -> None:
        if isinstance(event, OrderSeen):
            self.events.put_nowait(OrderUpdate(event.view, self.book.apply(event.view), event.source))
        else:
            self.events.put_nowait(event)
