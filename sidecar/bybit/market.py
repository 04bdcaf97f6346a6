"""Market data: instruments (trading rules) and fresh reference prices, per configured symbol.

Implements `core.types.MarketLookup`. Quotes come from the public `tickers.{symbol}` stream
(`/v5/public/{category}`); a delta carries only what changed and is merged into the last
snapshot. Bybit pushes only when something changed, so a quiet market sends nothing for as long as
it stays quiet (a real mainnet symbol went 3.8 s without a frame, ccxt#21451).

Freshness is therefore "known current", not "recently received": a quote is current as of its own
frame, and as of every later ping on the same live subscription that a pong answered (the socket
delivers in order, so a pong proves no change was pushed before it and missed). `Quote.received_ns`
holds that instant (monotonic ns): the frame's arrival, or the send time of the last answered ping
after the snapshot of the current connection. The ping cadence (`ping_interval_for`) keeps a quiet
but alive feed within `reference_price.max_age_ms`; a feed that goes silent (no frame, no pong) ages
from its last proof and is denied within max_age, failing closed; a reconnect's pongs never vouch
for a quote until that connection's own snapshot arrives. Nothing here guesses a price.
Instruments load by REST at start and refresh periodically (Bybit re-sets some limits twice a
month).

It must not validate amends and must not write anything to the exchange.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

import structlog
from websockets.asyncio.client import ClientConnection

from sidecar.bybit._ws import Backoff, SessionEnded, first_done, heartbeat, open_ws
from sidecar.bybit.codec import DecodeError, PublicControl, TickerUpdate, decode_public, encode_subscribe
from sidecar.bybit.endpoints import Endpoints
from sidecar.bybit.rest import RestClient, RestError
from sidecar.clock import Clock
from sidecar.core.types import Category, Instrument, Quote

__all__ = ["MarketData", "MarketEvent", "QuoteUpdate", "ping_interval_for"]

log = structlog.get_logger()

_SUBSCRIBE_CHUNK = 10  # Bybit spot accepts at most 10 args per subscribe request
_PING_MIN_S, _PING_MAX_S = 0.1, 10.0


def ping_interval_for(max_age_ms: int) -> float:
    """The public-socket ping interval that keeps a quiet but alive feed fresh: a third of the
    reference max age (an answered ping vouches for the quotes; the next one must come, round trip
    included, before they are `max_age_ms` old), between 0.1 s and 10 s."""
    return min(_PING_MAX_S, max(_PING_MIN_S, max_age_ms / 3000))


@dataclass(frozen=True, slots=True)
class QuoteUpdate:
    """A quote just changed, or was vouched for by an answered ping (same prices, newer time)."""

    category: Category
    symbol: str
    quote: Quote


MarketEvent = QuoteUpdate


class MarketData:
    """Instruments and quotes for the configured symbols. `run()` keeps them current."""

    def __init__(
        self,
        endpoints: Endpoints,
        rest: RestClient,
        symbols: Iterable[tuple[Category, str]],
        clock: Clock,
        *,
        events: asyncio.Queue[MarketEvent] | None = None,
        instruments_refresh_s: float = 600.0,
        ping_interval_s: float = 10.0,
        pong_timeout_s: float = 5.0,
        open_timeout_s: float = 5.0,
        subscribe_timeout_s: float = 5.0,
        backoff_factory: Callable[[], Backoff] = Backoff,
    ) -> None:
        if ping_interval_s > 20:
            raise ValueError("Bybit wants a ping at least every 20 s")
        self._rest = rest
        self._endpoints = endpoints
        self._clock = clock
        by_cat: dict[Category, dict[str, None]] = {}
        for cat, sym in symbols:
            by_cat.setdefault(Category(cat), {})[sym] = None
        self._symbols: dict[Category, tuple[str, ...]] = {c: tuple(s) for c, s in by_cat.items()}
        self._events = events
        self._refresh_s = instruments_refresh_s
        self._ping_interval_s = ping_interval_s
        self._pong_timeout_s = pong_timeout_s
        self._open_timeout_s = open_timeout_s
        self._subscribe_timeout_s = subscribe_timeout_s
        self._backoff_factory = backoff_factory
        self._instruments: dict[tuple[Category, str], Instrument] = {}
        self._quotes: dict[tuple[Category, str], Quote] = {}
        self._raw: dict[tuple[Category, str], dict[str, Decimal | None]] = {}
        # One epoch per connection of a category; a quote may be vouched for by that connection's
        # pongs only once its snapshot arrived on it (`_snapshot_epoch`).
        self._epoch: dict[Category, int] = dict.fromkeys(self._symbols, 0)
        self._snapshot_epoch: dict[tuple[Category, str], int] = {}
        self._ping_sent_ns: dict[Category, int] = {}

    # ------------------------------------------------------------ MarketLookup

    def instrument(self, category: Category, symbol: str) -> Instrument | None:
        return self._instruments.get((category, symbol))

    def quote(self, category: Category, symbol: str) -> Quote | None:
        return self._quotes.get((category, symbol))

    def ages_ms(self, now_ns: int) -> dict[tuple[Category, str], int | None]:
        """Age of each configured symbol's quote in ms (None: no quote yet)."""
        out: dict[tuple[Category, str], int | None] = {}
        for cat, syms in self._symbols.items():
            for sym in syms:
                q = self._quotes.get((cat, sym))
                out[(cat, sym)] = None if q is None else max(0, (now_ns - q.received_ns) // 1_000_000)
        return out

    # ------------------------------------------------------------ instruments

    async def load_instruments(self) -> int:
        """Fetch the rules of every configured symbol; raises RestError if any fetch fails.

        A symbol the venue does not list stays absent (validation then denies it)."""
        fresh: dict[tuple[Category, str], Instrument] = {}
        for cat, syms in self._symbols.items():
            for sym in syms:
                for inst in await self._rest.instruments(cat, sym):
                    if inst.symbol == sym:
                        fresh[(cat, sym)] = inst
        missing = [f"{c.value}:{s}" for c, syms in self._symbols.items() for s in syms if (c, s) not in fresh]
        if missing:
            log.warning("market.instruments_missing", symbols=missing)
        self._instruments.update(fresh)
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
                tg.create_task(self._stream(cat))

    async def _stream(self, category: Category) -> None:
        url = self._endpoints.public_ws_url(category)
        backoff = self._backoff_factory()
        while True:
            reason = "closed"
            subscribed = False
            try:
                async with open_ws(url, self._open_timeout_s) as ws:
                    log.info("market.connected", category=category.value)
                    self._connected(category)
                    try:
                        await self._subscribe(ws, category)
                        subscribed = True
                        pong = asyncio.Event()
                        await first_done(
                            self._reader(ws, category, pong),
                            heartbeat(
                                ws,
                                self._ping_interval_s,
                                self._pong_timeout_s,
                                pong,
                                lambda: self._on_ping(category),
                            ),
                        )
                    except SessionEnded as e:
                        reason = e.reason
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:
                        reason = f"{type(e).__name__}: {e}"
            except asyncio.CancelledError:
                raise
            except Exception as e:
                reason = f"connect failed: {type(e).__name__}: {e}"
            if subscribed:
                backoff.reset()
            delay_s = backoff.next_s()
            log.info("market.reconnecting", category=category.value, reason=reason, delay_s=round(delay_s, 3))
            await asyncio.sleep(delay_s)

    def _connected(self, category: Category) -> None:
        """A new connection: its pongs vouch only for quotes whose snapshot arrives on it."""
        self._epoch[category] += 1
        self._ping_sent_ns.pop(category, None)

    def _on_ping(self, category: Category) -> None:
        self._ping_sent_ns[category] = self._clock.monotonic_ns()

    async def _subscribe(self, ws: ClientConnection, category: Category) -> None:
        topics = [f"tickers.{s}" for s in self._symbols[category]]
        # A reconnect starts a new snapshot/delta sequence: forget the merged raw fields
        # (quotes stay and age until the new snapshot arrives).
        for sym in self._symbols[category]:
            self._raw.pop((category, sym), None)
        chunks = [topics[i : i + _SUBSCRIBE_CHUNK] for i in range(0, len(topics), _SUBSCRIBE_CHUNK)]
        for n, chunk in enumerate(chunks):
            await ws.send(encode_subscribe(chunk, f"m{category.value}{n}"))
        replies = 0
        try:
            async with asyncio.timeout(self._subscribe_timeout_s):
                while replies < len(chunks):
                    r = self._on_frame(await ws.recv(), category, None)
                    if isinstance(r, PublicControl) and r.op == "subscribe":
                        if not r.success:
                            raise SessionEnded(f"subscribe failed: {r.ret_msg}")
                        replies += 1
        except TimeoutError:
            raise SessionEnded("no subscribe reply") from None
        log.info("market.subscribed", category=category.value, topics=len(topics))

    async def _reader(self, ws: ClientConnection, category: Category, pong: asyncio.Event) -> None:
        async for text in ws:
            self._on_frame(text, category, pong)

    def _on_frame(
        self, text: str | bytes, category: Category, pong: asyncio.Event | None
    ) -> PublicControl | None:
        try:
            r = decode_public(text)
        except DecodeError as e:
            log.warning("market.undecodable", category=category.value, error=str(e))
            return None
        if isinstance(r, TickerUpdate):
            self._apply(category, r)
            return None
        if isinstance(r, PublicControl):
            if pong is not None and r.is_pong:
                sent_ns = self._ping_sent_ns.get(category)
                if sent_ns is not None:
                    self._vouch(category, sent_ns)
                pong.set()
            return r
        return None

    def _vouch(self, category: Category, as_of_ns: int) -> None:
        """A pong answered a ping sent at `as_of_ns`: every quote of this connection whose snapshot
        arrived on it was current then (in-order delivery: a change would have come first)."""
        epoch = self._epoch[category]
        for sym in self._symbols.get(category, ()):
            key = (category, sym)
            q = self._quotes.get(key)
            if q is not None and self._snapshot_epoch.get(key) == epoch and as_of_ns > q.received_ns:
                fresh = dataclasses.replace(q, received_ns=as_of_ns)
                self._quotes[key] = fresh
                if self._events is not None:
                    self._events.put_nowait(QuoteUpdate(category, sym, fresh))

    def _apply(self, category: Category, u: TickerUpdate) -> None:
        key = (category, u.symbol)
        if category not in self._symbols or u.symbol not in self._symbols[category]:
            return
        raw = self._raw.get(key)
        if u.snapshot or raw is None:
            raw = dict(u.values)
            self._raw[key] = raw
            if u.snapshot:
                self._snapshot_epoch[key] = self._epoch[category]
        else:
            raw.update(u.values)
        q = Quote(
            received_ns=self._clock.monotonic_ns(),
            mark=raw.get("mark"),
            last=raw.get("last"),
            index=raw.get("index"),
            bid=raw.get("bid"),
            ask=raw.get("ask"),
        )
        self._quotes[key] = q
        if self._events is not None:
            self._events.put_nowait(QuoteUpdate(category, u.symbol, q))
