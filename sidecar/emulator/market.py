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
_OPTION_UNDERLYING = Decimal("95000.00")  # the index of the emulated BTC options at start


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
                # An option's index is its underlying's (the premium is last/mark).
                index=_OPTION_UNDERLYING if inst.category == "option" else price,
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
            if inst.category == "option":
                index = (q.index * (1 + drift_bps * _BPS)).quantize(Decimal("0.01"))
            else:
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
        if index is not None:
            new_index = index
        elif inst.category == "option":
            new_index = q.index  # the underlying does not follow the premium
        else:
            new_index = mark if mark is not None else new_last
        self._apply(
            inst,
            q,
            last=new_last,
            mark=mark if mark is not None else new_last,
            index=new_index,
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
        q.index = max(index, Decimal("0.01"))
        q.bid = bid if bid is not None else max(q.last - inst.tick, floor)
        q.ask = ask if ask is not None else q.last + inst.tick
        q.high_24h = max(q.high_24h, q.last)
        q.low_24h = min(q.low_24h, q.last)
        q.updated_ms = now_ms

    def add_volume(self, inst: Instrument, qty: Decimal) -> None:
        self._quotes[inst.key].volume_24h += qty

    def ticker(self, inst: Instrument, now_ms: int) -> dict[str, str]:
        """A `GET /v5/market/tickers` row, in the shape Bybit uses for the category (all strings)."""
        q = self._quotes[inst.key]
        if inst.category == "option":
            return self._option_fields(inst, q, rest=True)
        fields = self._common(inst, q)
        if inst.category == "spot":
            fields.update(self._book(inst, q))
            fields["usdIndexPrice"] = inst.fmt_price(q.index)
            return fields
        fields.update(self._derivative(inst, q, now_ms))
        fields.update(self._book(inst, q))
        fields.update(
            {"predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0"}
        )
        fields["basis"] = ""
        return fields

    def stream_ticker(self, inst: Instrument, now_ms: int) -> dict[str, str]:
        """The `data` of a public `tickers.{symbol}` push (reference ticker.mdx): spot carries no
        bid/ask and no mark; option uses `bidPrice`/`askPrice`; linear/inverse the full set."""
        q = self._quotes[inst.key]
        if inst.category == "option":
            return self._option_fields(inst, q, rest=False)
        fields = self._common(inst, q)
        if inst.category == "spot":
            fields["usdIndexPrice"] = inst.fmt_price(q.index)
            return fields
        fields.update(self._derivative(inst, q, now_ms))
        fields.update(self._book(inst, q))
        return fields

    def _common(self, inst: Instrument, q: Quote) -> dict[str, str]:
        pcnt = (q.last - q.prev_24h) / q.prev_24h if q.prev_24h else Decimal(0)
        return {
            "symbol": inst.symbol,
            "lastPrice": inst.fmt_price(q.last),
            "prevPrice24h": inst.fmt_price(q.prev_24h),
            "price24hPcnt": format(pcnt.quantize(Decimal("0.000001")), "f"),
            "highPrice24h": inst.fmt_price(q.high_24h),
            "lowPrice24h": inst.fmt_price(q.low_24h),
            "turnover24h": plain(inst.value(q.volume_24h, q.last)) if q.volume_24h else "0",
            "volume24h": plain(q.volume_24h),
        }

    @staticmethod
    def _book(inst: Instrument, q: Quote) -> dict[str, str]:
        return {
            "bid1Price": inst.fmt_price(q.bid),
            "bid1Size": inst.fmt_qty(q.bid_size),
            "ask1Price": inst.fmt_price(q.ask),
            "ask1Size": inst.fmt_qty(q.ask_size),
        }

    @staticmethod
    def _derivative(inst: Instrument, q: Quote, now_ms: int) -> dict[str, str]:
        next_funding_ms = (now_ms // 28_800_000 + 1) * 28_800_000
        return {
            "tickDirection": "ZeroPlusTick",
            "prevPrice1h": inst.fmt_price(q.prev_24h),
            "markPrice": inst.fmt_price(q.mark),
            "indexPrice": inst.fmt_price(q.index),
            "openInterest": "0",
            "openInterestValue": "0.00",
            "fundingRate": "0.0001",
            "nextFundingTime": str(next_funding_ms),
            "fundingIntervalHour": "8",
            "fundingCap": "0.005",
            # pre-market perpetual fields: empty for a listed contract (ticker.mdx example)
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        }

    @staticmethod
    def _option_fields(inst: Instrument, q: Quote, *, rest: bool) -> dict[str, str]:
        # REST names the book fields bid1Price/bid1Iv; the stream names them bidPrice/bidIv.
        b, a = ("bid1", "ask1") if rest else ("bid", "ask")
        index = format(q.index.quantize(Decimal("0.01")), "f")
        return {
            "symbol": inst.symbol,
            f"{b}Price": inst.fmt_price(q.bid),
            f"{b}Size": inst.fmt_qty(q.bid_size),
            f"{b}Iv": "0.45",
            f"{a}Price": inst.fmt_price(q.ask),
            f"{a}Size": inst.fmt_qty(q.ask_size),
            f"{a}Iv": "0.47",
            "lastPrice": inst.fmt_price(q.last),
            "highPrice24h": inst.fmt_price(q.high_24h),
            "lowPrice24h": inst.fmt_price(q.low_24h),
            "markPrice": inst.fmt_price(q.mark),
            "indexPrice": index,
            ("markIv" if rest else "markPriceIv"): "0.46",
            "underlyingPrice": index,
            "openInterest": "0",
            "turnover24h": plain(q.volume_24h * q.index),
            "volume24h": plain(q.volume_24h),
            "totalVolume": plain(q.volume_24h),
            "totalTurnover": plain(q.volume_24h * q.index),
            "delta": "0.45",
            "gamma": "0.00002",
            "vega": "120.5",
            "theta": "-55.2",
            "predictedDeliveryPrice": "0",
            "change24h": "0",
        }
