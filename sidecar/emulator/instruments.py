"""The emulator's seeded instruments and their `instruments-info` shapes.

Its one job is to describe what can be traded (tick, step, min/max qty, start price) and to format
prices and quantities the way Bybit prints them. It must not hold order or market state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["CATEGORIES", "Instrument", "default_instruments", "plain"]

CATEGORIES = ("linear", "inverse", "option", "spot")


def plain(value: Decimal) -> str:
    """A decimal as a plain string with no exponent and no trailing zeros ("95000", "0.001")."""
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", ""} else text


@dataclass(frozen=True)
class Instrument:
    """One tradable symbol. Decimals for the rules, `info` is the exact instruments-info item."""

    category: str
    symbol: str
    base_coin: str
    quote_coin: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    max_mkt_qty: Decimal
    min_price: Decimal | None
    max_price: Decimal | None
    min_notional: Decimal
    start_price: Decimal
    info: dict[str, Any] = field(compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.category, self.symbol)

    def fmt_price(self, price: Decimal) -> str:
        """A price with the tick's number of decimals (Bybit prints `95000.10`, not `95000.1`)."""
        return format(price.quantize(self.tick), "f")

    def fmt_qty(self, qty: Decimal) -> str:
        """A quantity with the step's number of decimals."""
        return format(qty.quantize(self.step), "f")

    def on_tick(self, price: Decimal) -> bool:
        return price % self.tick == 0

    def on_step(self, qty: Decimal) -> bool:
        return qty % self.step == 0

    def round_price(self, price: Decimal) -> Decimal:
        """Nearest tick (used by the price walk)."""
        return (price / self.tick).quantize(Decimal(1)) * self.tick


def _linear(
    symbol: str,
    base: str,
    *,
    tick: str,
    step: str,
    min_qty: str,
    max_qty: str,
    max_mkt_qty: str,
    min_price: str,
    max_price: str,
    price_scale: str,
    max_leverage: str,
    start: str,
    launch_ms: str,
) -> Instrument:
    info: dict[str, Any] = {
        "symbol": symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": base,
        "quoteCoin": "USDT",
        "launchTime": launch_ms,
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": price_scale,
        "leverageFilter": {"minLeverage": "1", "maxLeverage": max_leverage, "leverageStep": "0.01"},
        "priceFilter": {"minPrice": min_price, "maxPrice": max_price, "tickSize": tick},
        "lotSizeFilter": {
            "maxOrderQty": max_qty,
            "minOrderQty": min_qty,
            "qtyStep": step,
            "postOnlyMaxOrderQty": max_qty,
            "maxMktOrderQty": max_mkt_qty,
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": "USDT",
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
        "symbolType": "",
    }
    return Instrument(
        category="linear",
        symbol=symbol,
        base_coin=base,
        quote_coin="USDT",
        tick=Decimal(tick),
        step=Decimal(step),
        min_qty=Decimal(min_qty),
        max_qty=Decimal(max_qty),
        max_mkt_qty=Decimal(max_mkt_qty),
        min_price=Decimal(min_price),
        max_price=Decimal(max_price),
        min_notional=Decimal("5"),
        start_price=Decimal(start),
        info=info,
    )


def _spot_btc() -> Instrument:
    info: dict[str, Any] = {
        "symbol": "BTCUSDT",
        "baseCoin": "BTC",
        "quoteCoin": "USDT",
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": "0.000001",
            "quotePrecision": "0.00000001",
            "minOrderQty": "0.000048",
            "maxOrderQty": "71.73956243",
            "minOrderAmt": "5",
            "maxOrderAmt": "8000000",
            "maxLimitOrderQty": "71.73956243",
            "maxMarketOrderQty": "35.86978121",
            "postOnlyMaxLimitOrderSize": "358.69781215",
        },
        "priceFilter": {"tickSize": "0.01"},
        "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
        "symbolType": "",
    }
    return Instrument(
        category="spot",
        symbol="BTCUSDT",
        base_coin="BTC",
        quote_coin="USDT",
        tick=Decimal("0.01"),
        step=Decimal("0.000001"),
        min_qty=Decimal("0.000048"),
        max_qty=Decimal("71.73956243"),
        max_mkt_qty=Decimal("35.86978121"),
        min_price=None,
        max_price=None,
        min_notional=Decimal("5"),
        start_price=Decimal("95000.00"),
        info=info,
    )


def default_instruments() -> list[Instrument]:
    """Linear BTCUSDT, ETHUSDT, SOLUSDT and spot BTCUSDT with real-looking filters."""
    return [
        _linear(
            "BTCUSDT",
            "BTC",
            tick="0.10",
            step="0.001",
            min_qty="0.001",
            max_qty="1190.000",
            max_mkt_qty="500.000",
            min_price="0.10",
            max_price="1999999.80",
            price_scale="2",
            max_leverage="100.00",
            start="95000.00",
            launch_ms="1585526400000",
        ),
        _linear(
            "ETHUSDT",
            "ETH",
            tick="0.01",
            step="0.01",
            min_qty="0.01",
            max_qty="7240.00",
            max_mkt_qty="3620.00",
            min_price="0.01",
            max_price="199999.98",
            price_scale="2",
            max_leverage="100.00",
            start="3500.00",
            launch_ms="1615766400000",
        ),
        _linear(
            "SOLUSDT",
            "SOL",
            tick="0.010",
            step="0.1",
            min_qty="0.1",
            max_qty="79770.0",
            max_mkt_qty="39885.0",
            min_price="0.010",
            max_price="19999.980",
            price_scale="3",
            max_leverage="100.00",
            start="180.000",
            launch_ms="1634256000000",
        ),
        _spot_btc(),
    ]
