"""The market as the sidecar sees it: instrument rules and reference quotes, and when a quote is current.

One job: hold what the market adapter reported (instruments loaded by REST, ticker pushes, answered
pings) and decide from it how current each quote is. The adapter decodes and reports; only the
service applies these events here (`MarketState.apply`), so the rules below are in one pure place.
It must not read the clock (times come in with the events) and must not guess a price.

Freshness is "known current", not "recently received". Bybit pushes a ticker only when something
changed, so a quiet market sends nothing for as long as it stays quiet (a real mainnet symbol went
3.8 s without a frame, ccxt#21451). A quote is current as of its own frame, and as of every later ping
on the same live subscription that a pong answered: the socket delivers in order, so a pong proves no
change was pushed before it and missed. `Quote.received_ns` holds that instant (monotonic ns).

Rules (one connection = one epoch per category):
- `Connected(category)`: a new connection starts a new snapshot/delta sequence. The merged raw fields
  of its symbols are forgotten (quotes stay and age until the new snapshot arrives).
- `TickerSeen`: a snapshot replaces the raw fields and marks the symbol as snapshotted on this
  epoch; a delta merges into them (a delta before any snapshot is taken as the fields known so far).
  The quote is current as of the frame's arrival.
- `PongSeen(category, ping_sent_ns)`: every quote of that category whose snapshot arrived on the
  current epoch is current as of `ping_sent_ns` (never moved backwards). A reconnect's pongs never
  vouch for a quote until that connection's own snapshot arrived.
- `InstrumentsLoaded`: the rules of the symbols listed replace the ones held (others are kept: a
  failed refresh keeps the rules we have).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from sidecar.core.types import Category, Instrument, Quote

__all__ = [
    "Connected",
    "InstrumentsLoaded",
    "MarketEvent",
    "MarketState",
    "PongSeen",
    "TickerSeen",
]

SymbolKey = tuple[Category, str]


@dataclass(frozen=True, slots=True)
class Connected:
    """A public connection of `category` opened (and is about to subscribe)."""

    category: Category


@dataclass(frozen=True, slots=True)
class TickerSeen:
    """A ticker push: `values` holds only the fields present (keyed mark/last/index/bid/ask; None =
    sent blank), received at `received_ns`."""

    category: Category
    symbol: str
    snapshot: bool
    values: Mapping[str, Decimal | None]
    received_ns: int


@dataclass(frozen=True, slots=True)
class PongSeen:
    """A pong answered the ping sent at `ping_sent_ns` on the current connection of `category`."""

    category: Category
    ping_sent_ns: int


@dataclass(frozen=True, slots=True)
class InstrumentsLoaded:
    """The venue's rules for the symbols it lists (a symbol it does not list is absent)."""

    instruments: Mapping[SymbolKey, Instrument] = field(default_factory=dict)


MarketEvent = Connected | TickerSeen | PongSeen | InstrumentsLoaded


class MarketState:
    """Instruments and quotes of the configured symbols; implements `core.types.MarketLookup`."""

    __slots__ = ("_epoch", "_instruments", "_quotes", "_raw", "_snapshot_epoch", "_symbols")

    def __init__(self, symbols: Iterable[SymbolKey]) -> None:
        by_cat: dict[Category, dict[str, None]] = {}
        for cat, sym in symbols:
            by_cat.setdefault(Category(cat), {})[sym] = None
        self._symbols: dict[Category, tuple[str, ...]] = {c: tuple(s) for c, s in by_cat.items()}
        self._instruments: dict[SymbolKey, Instrument] = {}
        self._quotes: dict[SymbolKey, Quote] = {}
        self._raw: dict[SymbolKey, dict[str, Decimal | None]] = {}
        self._epoch: dict[Category, int] = dict.fromkeys(self._symbols, 0)
        self._snapshot_epoch: dict[SymbolKey, int] = {}

    # ------------------------------------------------------------ MarketLookup

    def instrument(self, category: Category, symbol: str) -> Instrument | None:
        return self._instruments.get((category, symbol))

    def quote(self, category: Category, symbol: str) -> Quote | None:
        return self._quotes.get((category, symbol))

    @property
    def symbols(self) -> tuple[SymbolKey, ...]:
        return tuple((c, s) for c, syms in self._symbols.items() for s in syms)

    def ages_ms(self, now_ns: int) -> dict[SymbolKey, int | None]:
        """Age of each configured symbol's quote in ms (None: no quote yet)."""
        out: dict[SymbolKey, int | None] = {}
        for key in self.symbols:
            q = self._quotes.get(key)
            out[key] = None if q is None else max(0, (now_ns - q.received_ns) // 1_000_000)
        return out

    # ------------------------------------------------------------ events

    def apply(self, event: MarketEvent) -> list[tuple[SymbolKey, Quote]]:
        """Apply one event; returns the quotes it made current (possibly none)."""
        if isinstance(event, TickerSeen):
            q = self._ticker(event)
            return [] if q is None else [((event.category, event.symbol), q)]
        if isinstance(event, PongSeen):
            return self._vouch(event.category, event.ping_sent_ns)
        if isinstance(event, Connected):
            self._connected(event.category)
        elif isinstance(event, InstrumentsLoaded):
            self._instruments.update(event.instruments)
        return []

    def _connected(self, category: Category) -> None:
        if category not in self._epoch:
            return
        self._epoch[category] += 1
        for sym in self._symbols[category]:
            self._raw.pop((category, sym), None)

    def _ticker(self, u: TickerSeen) -> Quote | None:
        key = (u.category, u.symbol)
        if u.symbol not in self._symbols.get(u.category, ()):
            return None
        raw = self._raw.get(key)
        if u.snapshot or raw is None:
            raw = dict(u.values)
            self._raw[key] = raw
            if u.snapshot:
                self._snapshot_epoch[key] = self._epoch[u.category]
        else:
            raw.update(u.values)
        q = Quote(
            received_ns=u.received_ns,
            mark=raw.get("mark"),
            last=raw.get("last"),
            index=raw.get("index"),
            bid=raw.get("bid"),
            ask=raw.get("ask"),
        )
        self._quotes[key] = q
        return q

    def _vouch(self, category: Category, as_of_ns: int) -> list[tuple[SymbolKey, Quote]]:
        epoch = self._epoch.get(category)
        vouched: list[tuple[SymbolKey, Quote]] = []
        for sym in self._symbols.get(category, ()):
            key = (category, sym)
            q = self._quotes.get(key)
            if q is not None and self._snapshot_epoch.get(key) == epoch and as_of_ns > q.received_ns:
                fresh = dataclasses.replace(q, received_ns=as_of_ns)
                self._quotes[key] = fresh
                vouched.append((key, fresh))
        return vouched
