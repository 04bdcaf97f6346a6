"""One emulated order and its wire shape (the fields of a Bybit V5 private `order` push).

Its one job is the order record: status sets, leaves/cum arithmetic, `updatedTime` that strictly
advances, and `to_wire()`. It must not decide whether an operation is allowed (see `model.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sidecar.emulator.instruments import Instrument, plain

__all__ = ["OPEN_STATUSES", "TERMINAL_STATUSES", "Order"]

OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})
TERMINAL_STATUSES = frozenset({"Filled", "Cancelled", "Rejected", "PartiallyFilledCanceled", "Deactivated"})

_ZERO = Decimal(0)


@dataclass
class Order:
    """Mutable exchange-side order. Money is Decimal; the wire renders strings."""

    inst: Instrument
    order_id: str
    order_link_id: str
    side: str
    order_type: str
    price: Decimal
    qty: Decimal
    time_in_force: str
    created_ms: int
    updated_ms: int
    last_price_on_created: Decimal
    status: str = "New"
    cum_exec_qty: Decimal = _ZERO
    cum_exec_value: Decimal = _ZERO
    cum_exec_fee: Decimal = _ZERO
    fee_coin: str = ""
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    position_idx: int = 0
    reduce_only: bool = False
    close_on_trigger: bool = False
    trigger_price: Decimal | None = None
    trigger_direction: int = 0
    stop_order_type: str = ""
    opt: dict[str, str] = field(default_factory=dict)  # TP/SL and trigger-by strings, verbatim

    @property
    def category(self) -> str:
        return self.inst.category

    @property
    def symbol(self) -> str:
        return self.inst.symbol

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.cum_exec_qty if self.is_open else _ZERO

    def touch(self, now_ms: int) -> None:
        """Advance `updatedTime`: never backwards, and by at least 1 ms per change."""
        self.updated_ms = max(now_ms, self.updated_ms + 1)

    def avg_price(self) -> Decimal | None:
        if self.cum_exec_qty == 0:
            return None
        if self.inst.inverse:  # value is in coin: avg = contracts / value
            return self.cum_exec_qty / self.cum_exec_value
        return self.cum_exec_value / self.cum_exec_qty

    def to_wire(self) -> dict[str, Any]:
        """Every documented field of an `order` push (reference §3.2), values typed as Bybit sends them."""
        inst = self.inst
        avg = self.avg_price()
        leaves = self.leaves_qty
        spot = inst.category == "spot"
        price_text = "0" if self.order_type == "Market" and spot else inst.fmt_price(self.price)
        wire: dict[str, Any] = {
            "category": inst.category,
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "parentOrderLinkId": "",
            "isLeverage": "0" if spot else "",
            "blockTradeId": "",
            "symbol": inst.symbol,
            "price": price_text,
            "qty": inst.fmt_qty(self.qty),
            "brokerOrderPrice": "",
            "side": self.side,
            "positionIdx": self.position_idx,
            "orderStatus": self.status,
            "cancelType": self.cancel_type,
            "rejectReason": self.reject_reason,
            "avgPrice": "" if avg is None else plain(avg.quantize(Decimal("0.00000001"))),
            "leavesQty": inst.fmt_qty(leaves),
            "leavesValue": plain(inst.value(leaves, self.price).quantize(Decimal("0.00000001"))),
            "cumExecQty": inst.fmt_qty(self.cum_exec_qty),
            "cumExecValue": plain(self.cum_exec_value),
            "cumExecFee": plain(self.cum_exec_fee),
            "closedPnl": "0",
            "feeCurrency": self.fee_coin if spot else "",
            "timeInForce": self.time_in_force,
            "orderType": self.order_type,
            "stopOrderType": self.stop_order_type,
            "ocoTriggerBy": "",
            "orderIv": self.opt.get("orderIv", ""),
            "placeType": "",
            "marketUnit": "",
            "slippageToleranceType": "UNKNOWN",
            "slippageTolerance": "0",
            "triggerPrice": "" if self.trigger_price is None else inst.fmt_price(self.trigger_price),
            "takeProfit": self.opt.get("takeProfit", ""),
            "stopLoss": self.opt.get("stopLoss", ""),
            "tpslMode": self.opt.get("tpslMode", ""),
            "tpLimitPrice": self.opt.get("tpLimitPrice", ""),
            "slLimitPrice": self.opt.get("slLimitPrice", ""),
            "tpTriggerBy": self.opt.get("tpTriggerBy", ""),
            "slTriggerBy": self.opt.get("slTriggerBy", ""),
            "triggerBy": self.opt.get("triggerBy", ""),
            "triggerDirection": self.trigger_direction,
            "lastPriceOnCreated": inst.fmt_price(self.last_price_on_created),
            "reduceOnly": self.reduce_only,
            "closeOnTrigger": self.close_on_trigger,
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms),
            "cumFeeDetail": {self.fee_coin: plain(self.cum_exec_fee)} if self.cum_exec_fee else {},
            "rpiTakerAccess": False,
            "rpiMatchedQty": "0",
        }
        if not spot and inst.category != "option":
            wire["createType"] = "CreateByUser"
        return wire
