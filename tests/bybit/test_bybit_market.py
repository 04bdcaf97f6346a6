"""MarketData against the real emulator: instruments by REST, fresh quotes from the public stream."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sidecar.bybit.endpoints import resolve_endpoints
from sidecar.bybit.market import MarketData, QuoteUpdate
from sidecar.bybit.rest import RestClient
from sidecar.clock import SystemClock
from sidecar.core.types import Category, ReferenceKind
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from tests.bybit.bybit_live_helpers import next_of, running


def market(emu: Emulator, rest: RestClient, events: asyncio.Queue[QuoteUpdate] | None = None) -> MarketData:
    return MarketData(
        resolve_endpoints("sim", exchange_url=emu.url),
        rest,
        [(Category.LINEAR, "BTCUSDT"), (Category.LINEAR, "ETHUSDT"), (Category.SPOT, "BTCUSDT")],
        SystemClock(),
        events=events,
    )


async def test_instruments_load(emu: Emulator) -> None:
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock()) as rest:
        md = market(emu, rest)
        assert md.instrument(Category.LINEAR, "BTCUSDT") is None
        assert await md.load_instruments() == 3
    btc = md.instrument(Category.LINEAR, "BTCUSDT")
    assert btc is not None and btc.category is Category.LINEAR and btc.tick_size > 0
    spot = md.instrument(Category.SPOT, "BTCUSDT")
    assert spot is not None and spot.category is Category.SPOT
    assert md.instrument(Category.SPOT, "ETHUSDT") is None


async def test_quotes_follow_the_price(emu: Emulator) -> None:
    events: asyncio.Queue[QuoteUpdate] = asyncio.Queue()
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock()) as rest:
        md = market(emu, rest, events)
        assert md.ages_ms(SystemClock().monotonic_ns())[(Category.LINEAR, "BTCUSDT")] is None
        async with running(md.run()):
            await next_of(events, QuoteUpdate, lambda u: u.category is Category.LINEAR)
            emu.set_price("linear", "BTCUSDT", mark_price="65500.5", last_price="65499")
            u = await next_of(
                events,
                QuoteUpdate,
                lambda u: u.symbol == "BTCUSDT" and u.quote.mark == Decimal("65500.5"),
            )
            assert u.quote.last == Decimal(65499)
            q = md.quote(Category.LINEAR, "BTCUSDT")
            assert q is not None and q.reference(ReferenceKind.MARK) == Decimal("65500.5")
            age = md.ages_ms(SystemClock().monotonic_ns())[(Category.LINEAR, "BTCUSDT")]
            assert age is not None and 0 <= age < 2000

            emu.set_price("spot", "BTCUSDT", last_price="64000.25")
            s = await next_of(
                events,
                QuoteUpdate,
                lambda u: u.category is Category.SPOT and u.quote.last == Decimal("64000.25"),
            )
            assert s.symbol == "BTCUSDT"
            # Unconfigured symbols are not tracked.
            assert md.quote(Category.LINEAR, "SOLUSDT") is None
