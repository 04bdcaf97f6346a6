"""Pydantic v2 models of Bybit V5 wire messages (the shapes of reference/bybit-v5.md).

camelCase aliases (python names also accepted), unknown fields ignored for forward
compatibility, numbers that Bybit sends as strings become `Decimal` here (`""` becomes None).

These models document the wire and parse the cold paths (REST, instruments, tickers). The hot
paths (trade acks, order pushes, public tickers) are decoded by hand in `codec.py` for speed; the
tests check both agree. This module must not do I/O and must not leak into `sidecar.core`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sidecar.core.types import Category, Instrument

__all__ = [
    "InstrumentItem",
    "InstrumentsResult",
    "LotSizeFilter",
    "OrderListResult",
    "OrderPush",
    "OrderPushItem",
    "PriceFilter",
    "PrivateReply",
    "PublicTickerMessage",
    "RestEnvelope",
    "TickerItem",
    "TickersResult",
    "TradeResponse",
    "WireDecimal",
]


def _blank_to_none(v: object) -> object:
    # Bybit sends "" for "no value" (avgPrice before a fill, leavesQty on some closed orders).
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return None
    if isinstance(v, float):
        # A JSON number that arrived as float: go through its shortest repr, never binary value.
        return repr(v)
    return v


WireDecimal = Annotated[Decimal | None, BeforeValidator(_blank_to_none)]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


# ---------------------------------------------------------------- trade socket (/v5/trade)


class TradeResponse(_Wire):
    """Any trade-socket reply: auth, pong, or an order-op ack (reference §1.7)."""

    req_id: str | None = None
    ret_code: int = 0
    ret_msg: str = ""
    op: str = ""
    data: Any = None
    ret_ext_info: dict[str, Any] = Field(default_factory=dict)
    header: dict[str, str] = Field(default_factory=dict)
    conn_id: str = ""


# ---------------------------------------------------------------- private stream (/v5/private)


class PrivateReply(BaseModel):
    """Private-stream control reply: auth, subscribe, pong (snake_case envelope, reference §3.1)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    success: bool | None = None
    ret_msg: str = ""
    op: str = ""
    conn_id: str = ""
    req_id: str | None = None
    args: list[str] = Field(default_factory=list)


class OrderPushItem(_Wire):
    """One element of an `order` push `data[]` (reference §3.2); also a REST order-list row."""

    category: Category | None = None
    symbol: str
    order_id: str
    order_link_id: str = ""
    side: str = ""
    price: WireDecimal = None
    qty: WireDecimal = None
    order_status: str
    order_type: str = ""
    time_in_force: str = ""
    avg_price: WireDecimal = None
    leaves_qty: WireDecimal = None
    leaves_value: WireDecimal = None
    cum_exec_qty: WireDecimal = None
    cum_exec_value: WireDecimal = None
    trigger_price: WireDecimal = None
    take_profit: WireDecimal = None
    stop_loss: WireDecimal = None
    tp_limit_price: WireDecimal = None
    sl_limit_price: WireDecimal = None
    tpsl_mode: str = ""
    tp_trigger_by: str = ""
    sl_trigger_by: str = ""
    trigger_by: str = ""
    order_iv: WireDecimal = None
    position_idx: int | None = None
    reduce_only: bool | None = None
    cancel_type: str = ""
    reject_reason: str = ""
    created_time: int | None = None
    updated_time: int


class OrderPush(_Wire):
    """An `order` topic push: `id`, `topic`, `creationTime`, `data[]`."""

    id: str = ""
    topic: str
    creation_time: int | None = None
    data: list[OrderPushItem]


# ---------------------------------------------------------------- REST


class RestEnvelope(_Wire):
    """Every REST response: `retCode`, `retMsg`, `result`, `retExtInfo`, `time`."""

    ret_code: int
    ret_msg: str = ""
    result: Any = None
    ret_ext_info: Any = None
    time: int | None = None


class OrderListResult(_Wire):
    """`result` of GET /v5/order/realtime."""

    category: str = ""
    rows: list[dict[str, Any]] = Field(default_factory=list, alias="list")
    next_page_cursor: str = ""


class PriceFilter(_Wire):
    tick_size: WireDecimal = None
    min_price: WireDecimal = None
    max_price: WireDecimal = None


class LotSizeFilter(_Wire):
    """Linear/inverse/option use qtyStep/min/maxOrderQty; spot uses basePrecision/maxLimitOrderQty."""

    qty_step: WireDecimal = None
    min_order_qty: WireDecimal = None
    max_order_qty: WireDecimal = None
    max_mkt_order_qty: WireDecimal = None
    min_notional_value: WireDecimal = None
    base_precision: WireDecimal = None
    quote_precision: WireDecimal = None
    min_order_amt: WireDecimal = None
    max_limit_order_qty: WireDecimal = None
    max_market_order_qty: WireDecimal = None


class InstrumentItem(_Wire):
    """One `list[]` row of GET /v5/market/instruments-info (linear and spot shapes)."""

    symbol: str
    status: str = "Trading"
    price_filter: PriceFilter = Field(default_factory=PriceFilter)
    lot_size_filter: LotSizeFilter = Field(default_factory=LotSizeFilter)

    def to_instrument(self, category: Category) -> Instrument:
        """The core `Instrument`; raises ValueError if a rule the validator needs is missing."""
        pf, lf = self.price_filter, self.lot_size_filter
        if category is Category.SPOT:
            # Spot `minOrderQty` is deprecated and no longer checked by Bybit (D-INSTR: "check
            # minOrderAmt instead"), so the smallest quantity is one step; the order-value floor
            # (minOrderAmt) is the exchange's to enforce (170140).
            step = lf.base_precision
            min_qty = step
            max_qty = lf.max_limit_order_qty if lf.max_limit_order_qty is not None else lf.max_order_qty
        else:
            step, min_qty, max_qty = lf.qty_step, lf.min_order_qty, lf.max_order_qty
        if pf.tick_size is None or step is None or min_qty is None or max_qty is None:
            raise ValueError(f"instrument {self.symbol}: tick size, qty step, min or max qty missing")
        return Instrument(
            category=category,
            symbol=self.symbol,
            tick_size=pf.tick_size,
            qty_step=step,
            min_qty=min_qty,
            max_qty=max_qty,
            min_price=pf.min_price,
            max_price=pf.max_price,
            status=self.status,
        )


class InstrumentsResult(_Wire):
    category: str = ""
    rows: list[InstrumentItem] = Field(default_factory=list, alias="list")
    next_page_cursor: str = ""


class TickerItem(_Wire):
    """A ticker (REST /v5/market/tickers row, or public WS `tickers.*` data; deltas omit fields)."""

    symbol: str
    last_price: WireDecimal = None
    mark_price: WireDecimal = None
    index_price: WireDecimal = None
    bid1_price: WireDecimal = None
    ask1_price: WireDecimal = None
    bid1_size: WireDecimal = None
    ask1_size: WireDecimal = None


class TickersResult(_Wire):
    category: str = ""
    rows: list[TickerItem] = Field(default_factory=list, alias="list")


class PublicTickerMessage(_Wire):
    """Public WS `tickers.{symbol}` push: `type` is `snapshot` or `delta`."""

    topic: str
    type: str = "snapshot"
    ts: int | None = None
    cs: int | None = None
    data: TickerItem
