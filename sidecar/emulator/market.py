"""Reference prices of the emulator: a seeded random walk of last/mark/index with bid and ask.

Its one job is price state: step the walk, set and freeze prices, and render ticker fields. It must
not know about orders (matching lives in `model.py`) and never reads the clock (`now_ms` comes in).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from sidecar.emulator.instruments import Instrument, plain

__all__ = ["Market", "Quote"]

_WALK_BPS = 3  # largest step of one walk tick, in basis points of the price
_BPS = Decimal("0.0001")


@dataclass
class Quote:
    """Current prices of one instrument (Decimals; spot uses only last, bid and ask)."""

    last: Decimal
    mark: Decimal
    index: Decimal
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    prev_24h: Decimal
    high_24h: Decimal
    low_24h: Decimal
    volume_24h: Decimal
    frozen: bool = False
    updated_ms: int = 0


class Market:
    """Quotes for every instrument, moved by a walk drawn from one seeded `random.Random`."""

    def __init__(self, instruments: list[Instrument], rng: random.Random) -> None:
        self._rng = rng
        self._instruments = {i.key: i for i in instruments}
        self._quotes: dict[tuple[str, str], Quote] = {}
        self.walk_enabled = True
        for inst in instruments:
            price = inst.start_price
            q = Quote(
                last=price,
                mark=price,
                index=price,
                bid=price - inst.tick,
                ask=price + inst.tick,
                bid_size=self._size(inst),
                ask_size=self._size(inst),
                prev_24h=price,
                high_24h=price,
                low_24h=price,
                volume_24h=Decimal("0"),
            )
            self._quotes[inst.key] = q

    def quote(self, category: str, symbol: str) -> Quote | None:
        return self._quotes.get((category, symbol))

    def keys(self) -> list[tuple[str, str]]:
        return list(self._quotes)

    def _size(self, inst: Instrument) -> Decimal:
        return inst.step * self._rng.randint(100, 5000)

    def step(self, now_ms: int) -> list[tuple[str, str]]:
        """One walk tick for every unfrozen quote; returns the keys whose prices moved."""
        if not self.walk_enabled:
            return []
        moved: list[tuple[str, str]] = []
        for key, q in self._quotes.items():
            if q.frozen:
                continue
            inst = self._instruments[key]
            drift_bps = self._rng.randint(-_WALK_BPS, _WALK_BPS)
            last = inst.round_price(q.last * (1 + drift_bps * _BPS))
            mark = inst.round_price(last * (1 + self._rng.randint(-1, 1) * _BPS))
            index = inst.round_price(last * (1 + self._rng.randint(-1, 1) * _BPS))
            self._apply(inst, q, last=last, mark=mark, index=index, bid=None, ask=None, now_ms=now_ms)
            q.bid_size = self._size(inst)
            q.ask_size = self._size(inst)
            moved.append(key)
        return moved

    def set_price(
        self,
        inst: Instrument,
        *,
        last: Decimal | None,
        mark: Decimal | None,
        index: Decimal | None,
        bid: Decimal | None,
        ask: Decimal | None,
        freeze: bool,
        now_ms: int,
    ) -> Quote:
        """Set some prices (missing ones follow `last`) and freeze or unfreeze the quote."""
        q = self._quotes[inst.key]
        new_last = last if last is not None else (mark if mark is not None else q.last)
        self._apply(
            inst,
            q,
            last=new_last,
            mark=mark if mark is not None else new_last,
            index=index if index is not None else (mark if mark is not None else new_last),
            bid=bid,
            ask=ask,
            now_ms=now_ms,
        )
        q.frozen = freeze
        return q

    def _apply(
        self,
        inst: Instrument,
        q: Quote,
        *,
        last: Decimal,
        mark: Decimal,
        index: Decimal,
        bid: Decimal | None,
        ask: Decimal | None,
        now_ms: int,
    ) -> None:
        floor = inst.tick
        q.last = max(last, floor)
        q.mark = max(mark, floor)
        q.index = max(index, floor)
        q.bid = bid if bid is not None else max(q.last - inst.tick, floor)
        q.ask = ask if ask is not None else q.last + inst.tick
        q.high_24h = max(q.high_24h, q.last)
        q.low_24h = min(q.low_24h, q.last)
        q.updated_ms = now_ms

    def add_volume(self, inst: Instrument, qty: Decimal) -> None:
        self._quotes[inst.key].volume_24h += qty

    def ticker(self, inst: Instrument, now_ms: int) -> dict[str, str]:
        """The ticker fields Bybit publishes for the instrument's category (all strings)."""
        q = self._quotes[inst.key]
        pcnt = (q.last - q.prev_24h) / q.prev_24h if q.prev_24h else Decimal(0)
        fields = {
            "symbol": inst.symbol,
            "lastPrice": inst.fmt_price(q.last),
            "bid1Price": inst.fmt_price(q.bid),
            "bid1Size": inst.fmt_qty(q.bid_size),
            "ask1Price": inst.fmt_price(q.ask),
            "ask1Size": inst.fmt_qty(q.ask_size),
            "prevPrice24h": inst.fmt_price(q.prev_24h),
            "price24hPcnt": format(pcnt.quantize(Decimal("0.000001")), "f"),
            "highPrice24h": inst.fmt_price(q.high_24h),
            "lowPrice24h": inst.fmt_price(q.low_24h),
            "turnover24h": plain(q.volume_24h * q.last),
            "volume24h": plain(q.volume_24h),
        }
        if inst.category == "spot":
            fields["usdIndexPrice"] = inst.fmt_price(q.index)
            return fields
        next_funding_ms = (now_ms // 28_800_000 + 1) * 28_800_000
        fields.update(
            {
                "tickDirection": "ZeroPlusTick",
                "markPrice": inst.fmt_price(q.mark),
                "indexPrice": inst.fmt_price(q.index),
                "prevPrice1h": inst.fmt_price(q.prev_24h),
                "openInterest": "0",
                "openInterestValue": "0.00",
                "fundingRate": "0.0001",
                "nextFundingTime": str(next_funding_ms),
                "predictedDeliveryPrice": "",
                "basisRate": "",
                "deliveryFeeRate": "",
                "deliveryTime": "0",
                "basis": "",
            }
        )
        return fields
