"""MarketData against the real emulator: instruments by REST, fresh quotes from the public stream."""

from __future__ import annotations

from decimal import Decimal

from sidecar.bybit.endpoints import resolve_endpoints
from sidecar.bybit.market import MarketData
from sidecar.bybit.rest import RestClient
from sidecar.clock import SystemClock
from sidecar.core.types import Category, ReferenceKind
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from tests.bybit.bybit_live_helpers import MarketWatch, QuoteUpdate, next_of, running

SYMBOLS = [(Category.LINEAR, "BTCUSDT"), (Category.LINEAR, "ETHUSDT"), (Category.SPOT, "BTCUSDT")]


def market(emu: Emulator, rest: RestClient, watch: MarketWatch) -> MarketData:
    return MarketData(
        resolve_endpoints("sim", exchange_url=emu.url), rest, SYMBOLS, SystemClock(), watch.emit
    )


async def test_instruments_load(emu: Emulator) -> None:
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock()) as rest:
        watch = MarketWatch(SYMBOLS)
        md = market(emu, rest, watch)
        assert watch.state.instrument(Category.LINEAR, "BTCUSDT") is None
        assert await md.load_instruments() == 3
    btc = watch.state.instrument(Category.LINEAR, "BTCUSDT")
    assert btc is not None and btc.category is Category.LINEAR and btc.tick_size > 0
    spot = watch.state.instrument(Category.SPOT, "BTCUSDT")
    assert spot is not None and spot.category is Category.SPOT
    assert watch.state.instrument(Category.SPOT, "ETHUSDT") is None


async def test_quotes_follow_the_price(emu: Emulator) -> None:
    watch = MarketWatch(SYMBOLS)
    events = watch.events
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock()) as rest:
        md = market(emu, rest, watch)
        assert watch.state.ages_ms(SystemClock().monotonic_ns())[(Category.LINEAR, "BTCUSDT")] is None
        async with running(md.run()):
            await next_of(events, QuoteUpdate, lambda u: u.category is Category.LINEAR)
            emu.set_price("linear", "BTCUSDT", mark_price="65500.5", last_price="65499")
            u = await next_of(
                events,
                QuoteUpdate,
                lambda u: u.symbol == "BTCUSDT" and u.quote.mark == Decimal("65500.5"),
            )
            assert u.quote.last == Decimal(65499)
            q = watch.state.quote(Category.LINEAR, "BTCUSDT")
            assert q is not None and q.reference(ReferenceKind.MARK) == Decimal("65500.5")
            age = watch.state.ages_ms(SystemClock().monotonic_ns())[(Category.LINEAR, "BTCUSDT")]
            assert age is not None and 0 <= age < 2000

            emu.set_price("spot", "BTCUSDT", last_price="64000.25")
            s = await next_of(
                events,
                QuoteUpdate,
                lambda u: u.category is Category.SPOT and u.quote.last == Decimal("64000.25"),
            )
            assert s.symbol == "BTCUSDT"
            # Unconfigured symbols are not tracked.
            assert watch.state.quote(Category.LINEAR, "SOLUSDT") is None
