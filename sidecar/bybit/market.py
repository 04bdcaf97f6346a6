"""Market data adapter: instruments by REST and the public `tickers.{symbol}` streams, reported as events.

One job: keep the public sockets of every configured category open (subscribe, app ping with a pong
deadline, reconnect with backoff) and load instrument rules by REST (at start and periodically:
Bybit re-sets some limits twice a month), and report what it saw as `core.market_state` events
through `emit`: `Connected`, `TickerSeen`, `PongSeen` (with the send time of the ping it answers, on
the same connection), `InstrumentsLoaded`. The service applies them to its `MarketState`, which
holds the quotes and decides how current they are (see core/market_state.py for the rules).

It must not hold quotes, decide freshness, validate amends or write anything to the exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import structlog
from websockets.asyncio.client import ClientConnection

from sidecar.bybit._ws import (
    DEFAULT_TIMING,
    Backoff,
    SessionEnded,
    SocketTiming,
    first_done,
    heartbeat,
    reconnect_forever,
)
from sidecar.bybit.codec import DecodeError, PublicControl, TickerUpdate, decode_public, encode_subscribe
from sidecar.bybit.endpoints import Endpoints
from sidecar.bybit.rest import RestClient, RestError
from sidecar.clock import Clock
from sidecar.core.market_state import Connected, InstrumentsLoaded, MarketEvent, PongSeen, TickerSeen
from sidecar.core.types import Category, Instrument

__all__ = ["MarketData", "ping_interval_for"]

log = structlog.get_logger()

_SUBSCRIBE_CHUNK = 10  # Bybit spot accepts at most 10 args per subscribe request
_PING_MIN_S, _PING_MAX_S = 0.1, 10.0


def ping_interval_for(max_age_ms: int) -> float:
    """The public-socket ping interval that keeps a quiet but alive feed fresh: a third of the
    reference max age (an answered ping vouches for the quotes; the next one must come, round trip
    included, before they are `max_age_ms` old), between 0.1 s and 10 s."""
    return min(_PING_MAX_S, max(_PING_MIN_S, max_age_ms / 3000))


class MarketData:
    """The public feeds of the configured symbols. `run()` keeps them open; events go to `emit`."""

    def __init__(
        self,
        endpoints: Endpoints,
        rest: RestClient,
        symbols: Iterable[tuple[Category, str]],
        clock: Clock,
        emit: Callable[[MarketEvent], object],
        *,
        instruments_refresh_s: float = 600.0,
        timing: SocketTiming = DEFAULT_TIMING,
        backoff_factory: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._rest = rest
        self._endpoints = endpoints
        self._clock = clock
        self._emit = emit
        by_cat: dict[Category, dict[str, None]] = {}
        for cat, sym in symbols:
            by_cat.setdefault(Category(cat), {})[sym] = None
        self._symbols: dict[Category, tuple[str, ...]] = {c: tuple(s) for c, s in by_cat.items()}
        self._refresh_s = instruments_refresh_s
        self._timing = timing
        self._backoff_factory = backoff_factory

    # ------------------------------------------------------------ instruments

    async def load_instruments(self) -> int:
        """Fetch the rules of every configured symbol and report them; raises RestError if any
        fetch fails. A symbol the venue does not list stays absent (validation then denies it)."""
        fresh: dict[tuple[Category, str], Instrument] = {}
        for cat, syms in self._symbols.items():
            for sym in syms:
                for inst in await self._rest.instruments(cat, sym):
                    if inst.symbol == sym:
                        fresh[(cat, sym)] = inst
        missing = [f"{c.value}:{s}" for c, syms in self._symbols.items() for s in syms if (c, s) not in fresh]
        if missing:
            log.warning("market.instruments_missing", symbols=missing)
        self._emit(InstrumentsLoaded(fresh))
        log.info("market.instruments_loaded", count=len(fresh))
        return len(fresh)

    async def _refresh_instruments(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.load_instruments()
            except RestError as e:
                # Keep the rules we have; they change rarely. Logged so an operator sees it.
                log.error("market.instruments_refresh_failed", ret_code=e.ret_code, ret_msg=e.ret_msg)
            except Exception as e:
                # Never let a refresh bug take the price streams down with it.
                log.error("market.instruments_refresh_failed", error=f"{type(e).__name__}: {e}")

    # ------------------------------------------------------------ streams

    async def run(self) -> None:
        """Run the ticker stream of every category plus the periodic instrument refresh."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._refresh_instruments())
            for cat in self._symbols:
                tg.create_task(_Feed(self, cat).run())


class _Feed:
    """One category's public connection: the reconnect loop's session and the frames it reads."""

    def __init__(self, market: MarketData, category: Category) -> None:
        self._m = market
        self._category = category
        self._subscribed = False
        self._ping_sent_ns: int | None = None  # the last ping sent on the current connection

    async def run(self) -> None:
        m = self._m
        await reconnect_forever(
            name="market",
            url=m._endpoints.public_ws_url(self._category),
            open_timeout_s=m._timing.open_timeout_s,
            backoff=m._backoff_factory(),
            session=self._session,
            lost=self._lost,
            was_ready=lambda: self._subscribed,
            log=log.bind(category=self._category.value),
        )

    async def _session(self, ws: ClientConnection) -> None:
        m = self._m
        self._ping_sent_ns = None
        m._emit(Connected(self._category))
        await self._subscribe(ws)
        self._subscribed = True
        pong = asyncio.Event()
        await first_done(
            self._reader(ws, pong),
            heartbeat(ws, m._timing.ping_interval_s, m._timing.pong_timeout_s, pong, self._on_ping),
        )
        raise SessionEnded("connection closed")

    def _lost(self, reason: str) -> None:
        self._subscribed = False

    def _on_ping(self) -> None:
        self._ping_sent_ns = self._m._clock.monotonic_ns()

    async def _subscribe(self, ws: ClientConnection) -> None:
        symbols = self._m._symbols[self._category]
        topics = [f"tickers.{s}" for s in symbols]
        chunks = [topics[i : i + _SUBSCRIBE_CHUNK] for i in range(0, len(topics), _SUBSCRIBE_CHUNK)]
        for n, chunk in enumerate(chunks):
            await ws.send(encode_subscribe(chunk, f"m{self._category.value}{n}"))
        replies = 0
        try:
            async with asyncio.timeout(self._m._timing.reply_timeout_s):
                while replies < len(chunks):
                    r = self.on_frame(await ws.recv(), None)
                    if isinstance(r, PublicControl) and r.op == "subscribe":
                        if not r.success:
                            raise SessionEnded(f"subscribe failed: {r.ret_msg}")
                        replies += 1
        except TimeoutError:
            raise SessionEnded("no subscribe reply") from None
        log.info("market.subscribed", category=self._category.value, topics=len(topics))

    async def _reader(self, ws: ClientConnection, pong: asyncio.Event) -> None:
        async for text in ws:
            self.on_frame(text, pong)

    def on_frame(self, text: str | bytes, pong: asyncio.Event | None) -> PublicControl | None:
        """Decode one frame and report it; returns control replies (subscribe, pong) to the caller."""
        try:
            r = decode_public(text)
        except DecodeError as e:
            log.warning("market.undecodable", category=self._category.value, error=str(e))
            return None
        if isinstance(r, TickerUpdate):
            now_ns = self._m._clock.monotonic_ns()
            self._m._emit(TickerSeen(self._category, r.symbol, r.snapshot, r.values, now_ns))
            return None
        if isinstance(r, PublicControl):
            if pong is not None and r.is_pong:
                if self._ping_sent_ns is not None:
                    self._m._emit(PongSeen(self._category, self._ping_sent_ns))
                pong.set()
            return r
        return None
