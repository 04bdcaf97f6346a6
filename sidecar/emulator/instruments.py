"""The emulator's seeded instruments and their `instruments-info` shapes.

Its one job is to describe what can be traded (tick, step, min/max qty, start price) and to format
prices and quantities the way Bybit prints them. It must not hold order or market state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["CATEGORIES", "OPTION_SYMBOL", "Instrument", "default_instruments", "plain"]

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
    settle_coin: str
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

    @property
    def inverse(self) -> bool:
        return self.category == "inverse"

    def value(self, qty: Decimal, price: Decimal) -> Decimal:
        """Order value in the settle coin: qty x price, or qty / price for inverse (qty in USD)."""
        return qty / price if self.inverse else qty * price

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
    settle: str = "USDT",
    inverse: bool = False,
) -> Instrument:
    """A perpetual: USDT- or USDC-settled linear, or coin-settled inverse (qty in USD contracts)."""
    quote = "USD" if inverse else settle
    lot: dict[str, Any] = {
        "maxOrderQty": max_qty,
        "minOrderQty": min_qty,
        "qtyStep": step,
        "postOnlyMaxOrderQty": max_qty,
        "maxMktOrderQty": max_mkt_qty,
    }
    if not inverse:
        lot["minNotionalValue"] = "5"
    info: dict[str, Any] = {
        "symbol": symbol,
        "contractType": "InversePerpetual" if inverse else "LinearPerpetual",
        "status": "Trading",
        "baseCoin": base,
        "quoteCoin": quote,
        "launchTime": launch_ms,
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": price_scale,
        "leverageFilter": {"minLeverage": "1", "maxLeverage": max_leverage, "leverageStep": "0.01"},
        "priceFilter": {"minPrice": min_price, "maxPrice": max_price, "tickSize": tick},
        "lotSizeFilter": lot,
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": settle,
        "copyTrading": "none" if inverse or settle != "USDT" else "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
        "symbolType": "",
    }
    return Instrument(
        category="inverse" if inverse else "linear",
        symbol=symbol,
        base_coin=base,
        quote_coin=quote,
        settle_coin=settle,
        tick=Decimal(tick),
        step=Decimal(step),
        min_qty=Decimal(min_qty),
        max_qty=Decimal(max_qty),
        max_mkt_qty=Decimal(max_mkt_qty),
        min_price=Decimal(min_price),
        max_price=Decimal(max_price),
        # Inverse qty is in USD contracts: there is no minimum notional in the coin.
        min_notional=Decimal(0) if inverse else Decimal("5"),
        start_price=Decimal(start),
        info=info,
    )


def _option(symbol: str, base: str, *, settle: str, start: str, delivery_ms: str) -> Instrument:
    """A European option (reference instruments-info option shape): premium tick 5, qty step 0.01."""
    info: dict[str, Any] = {
        "symbol": symbol,
        "status": "Trading",
        "baseCoin": base,
        "quoteCoin": settle,
        "settleCoin": settle,
        "optionsType": "Call" if symbol.endswith("-C") else "Put",
        "launchTime": "1743669649256",
        "deliveryTime": delivery_ms,
        "deliveryFeeRate": "0.00015",
        "priceFilter": {"minPrice": "5", "maxPrice": "1110000", "tickSize": "5"},
        "lotSizeFilter": {"maxOrderQty": "500", "minOrderQty": "0.01", "qtyStep": "0.01"},
        "displayName": "",
    }
    return Instrument(
        category="option",
        symbol=symbol,
        base_coin=base,
        quote_coin=settle,
        settle_coin=settle,
        tick=Decimal("5"),
        step=Decimal("0.01"),
        min_qty=Decimal("0.01"),
        max_qty=Decimal("500"),
        max_mkt_qty=Decimal("500"),
        min_price=Decimal("5"),
        max_price=Decimal("1110000"),
        min_notional=Decimal(0),
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
            # Deprecated by Bybit and no longer checked (minOrderAmt is): listed, never enforced.
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
        settle_coin="",
        tick=Decimal("0.01"),
        step=Decimal("0.000001"),
        # The smallest quantity is the base precision; the real floor is the order value (minOrderAmt).
        min_qty=Decimal("0.000001"),
        max_qty=Decimal("71.73956243"),
        max_mkt_qty=Decimal("35.86978121"),
        min_price=None,
        max_price=None,
        min_notional=Decimal("5"),
        start_price=Decimal("95000.00"),
        info=info,
    )


OPTION_SYMBOL = "BTC-26JUN26-100000-C"


def _with_symbol_ids(insts: list[Instrument]) -> list[Instrument]:
    """Linear, inverse and spot rows carry a numeric `symbolId` after `symbol` (D-INSTR examples)."""
    for n, inst in enumerate(insts, start=1):
        if inst.category != "option":
            info = dict(inst.info)
            inst.info.clear()
            inst.info.update({"symbol": info.pop("symbol"), "symbolId": n, **info})
    return insts


def default_instruments() -> list[Instrument]:
    """Linear BTCUSDT, ETHUSDT, SOLUSDT (USDT), BTCPERP (USDC), inverse BTCUSD, one USDC BTC call
    option and spot BTCUSDT, with real-looking filters."""
    return _with_symbol_ids(
        [
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
            _linear(
                "BTCPERP",
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
                launch_ms="1669852800000",
                settle="USDC",
            ),
            _linear(
                "BTCUSD",
                "BTC",
                tick="0.50",
                step="1",
                min_qty="1",
                max_qty="1000000",
                max_mkt_qty="150000",
                min_price="0.50",
                max_price="999999.00",
                price_scale="2",
                max_leverage="100.00",
                start="95000.00",
                launch_ms="1542211200000",
                settle="BTC",
                inverse=True,
            ),
            _option(OPTION_SYMBOL, "BTC", settle="USDC", start="2500", delivery_ms="1782460800000"),
            _spot_btc(),
        ]
    )
