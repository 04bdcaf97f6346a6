"""What a fill produces besides the order update: the fee, the `execution` record and the position.

Its one job is the simple, documented shapes of the `execution` and `position` pushes (reference
§3.4) and their arithmetic: one net position per derivatives symbol with entry price and realised /
unrealised PnL. It must not change orders or decide whether a fill happens (see `model.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sidecar.emulator.instruments import plain
from sidecar.emulator.market import Quote
from sidecar.emulator.orders import Order

__all__ = ["Positions", "execution_record", "fee_for"]

_SPOT_FEE = Decimal("0.001")
_DERIV_MAKER_FEE = Decimal("0.0002")
_DERIV_TAKER_FEE = Decimal("0.00055")
_QUANT = Decimal("0.00000001")


def fee_for(order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> tuple[Decimal, Decimal, str]:
    """(fee, rate, fee coin). Spot buys pay in the base coin, everything else in the quote coin."""
    inst = order.inst
    if inst.category == "spot":
        base = qty if order.side == "Buy" else qty * price
        coin = inst.base_coin if order.side == "Buy" else inst.quote_coin
        return (base * _SPOT_FEE).quantize(_QUANT), _SPOT_FEE, coin
    rate = _DERIV_MAKER_FEE if maker else _DERIV_TAKER_FEE
    return (inst.value(qty, price) * rate).quantize(_QUANT), rate, inst.settle_coin


def execution_record(
    order: Order,
    qty: Decimal,
    price: Decimal,
    fee: Decimal,
    rate: Decimal,
    *,
    maker: bool,
    quote: Quote,
    exec_id: str,
    seq: int,
) -> dict[str, Any]:
    """One element of an `execution` push."""
    inst = order.inst
    spot = inst.category == "spot"
    return {
        "category": inst.category,
        "symbol": inst.symbol,
        "orderId": order.order_id,
        "orderLinkId": order.order_link_id,
        "side": order.side,
        "orderPrice": inst.fmt_price(order.price),
        "orderQty": inst.fmt_qty(order.qty),
        "leavesQty": inst.fmt_qty(order.leaves_qty),
        "createType": "" if spot else "CreateByUser",
        "orderType": order.order_type,
        "stopOrderType": order.stop_order_type,
        "execId": exec_id,
        "execPrice": inst.fmt_price(price),
        "execQty": inst.fmt_qty(qty),
        "execValue": plain(inst.value(qty, price).quantize(_QUANT)),
        "execFee": plain(fee),
        "feeRate": plain(rate),
        "feeCurrency": order.fee_coin,
        "execType": "Trade",
        "execTime": str(order.updated_ms),
        "isMaker": maker,
        "execPnl": "0",
        "closedSize": "0",
        "markPrice": "" if spot else inst.fmt_price(quote.mark),
        "indexPrice": "" if spot else inst.fmt_price(quote.index),
        "underlyingPrice": "",
        "tradeIv": "",
        "markIv": "",
        "blockTradeId": "",
        "isLeverage": "0",
        "marketUnit": "",
        "extraFees": "",
        "seq": seq,
    }


@dataclass
class _Position:
    size: Decimal  # signed: > 0 long, < 0 short
    entry: Decimal
    realised: Decimal
    created_ms: int
    updated_ms: int


class Positions:
    """Net positions per (category, symbol) in one-way mode."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], _Position] = {}

    def apply(
        self, order: Order, qty: Decimal, price: Decimal, q: Quote, *, now_ms: int, seq: int
    ) -> dict[str, Any]:
        """Book a fill and return the `position` push element."""
        inst = order.inst
        pos = self._by_key.get(inst.key)
        if pos is None:
            pos = self._by_key[inst.key] = _Position(Decimal(0), Decimal(0), Decimal(0), now_ms, now_ms)
        signed = qty if order.side == "Buy" else -qty
        if pos.size == 0 or (pos.size > 0) == (signed > 0):
            held = abs(pos.size)
            if inst.inverse and held:  # inverse entries average harmonically (value is qty / price)
                pos.entry = (held + qty) / (held / pos.entry + qty / price)
            else:
                pos.entry = (held * pos.entry + qty * price) / (held + qty)
            pos.size += signed
        else:
            direction = 1 if pos.size > 0 else -1
            closed = min(qty, abs(pos.size))
            if inst.inverse:
                pos.realised += closed * (1 / pos.entry - 1 / price) * direction
            else:
                pos.realised += (price - pos.entry) * closed * direction
            pos.size += signed
            if pos.size == 0:
                pos.entry = Decimal(0)
            elif (pos.size > 0) != (direction > 0):
                pos.entry = price  # flipped through zero: the remainder opened at this price
        pos.updated_ms = max(now_ms, pos.updated_ms)
        size = abs(pos.size)
        if not pos.size:
            upnl = Decimal(0)
        elif inst.inverse:  # coin-settled: PnL = contracts x (1/entry - 1/mark)
            upnl = pos.size * (1 / pos.entry - 1 / q.mark)
        else:
            upnl = (q.mark - pos.entry) * pos.size
        return {
            "category": inst.category,
            "symbol": inst.symbol,
            "side": "" if pos.size == 0 else ("Buy" if pos.size > 0 else "Sell"),
            "size": inst.fmt_qty(size),
            "positionIdx": 0,
            "tradeMode": 0,
            "positionValue": plain(inst.value(size, pos.entry).quantize(_QUANT)) if size else "0",
            "riskId": 1,
            "riskLimitValue": "2000000",
            "entryPrice": plain(pos.entry.quantize(_QUANT)),
            "markPrice": inst.fmt_price(q.mark),
            "leverage": "10",
            "positionBalance": "0",
            "autoAddMargin": 0,
            "positionIM": "0",
            "positionMM": "0",
            "liqPrice": "",
            "bustPrice": "",
            "tpslMode": "Full",
            "takeProfit": "0",
            "stopLoss": "0",
            "trailingStop": "0",
            "unrealisedPnl": plain(upnl.quantize(_QUANT)),
            "curRealisedPnl": plain(pos.realised.quantize(_QUANT)),
            "cumRealisedPnl": plain(pos.realised.quantize(_QUANT)),
            "sessionAvgPrice": "",
            "positionStatus": "Normal",
            "adlRankIndicator": 0,
            "isReduceOnly": False,
            "createdTime": str(pos.created_ms),
            "updatedTime": str(pos.updated_ms),
            "seq": seq,
        }
