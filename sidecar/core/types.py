"""Domain values shared by the whole sidecar: categories, codes, outcomes, requests, orders, verdicts.

Frozen, slotted dataclasses, string enums, and NamedTuples for the two values built per item on the
decision path (`AmendItem`, `ItemVerdict`). This module must not parse, validate or decide
anything; it names things. It must not import anything outside the stdlib.

Words (kept from NautilusTrader): *denied* means the sidecar refused and sent nothing; *rejected*
means Bybit refused; *unverified* means sent but not confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, cast

__all__ = [
    "AMEND_ENUM_FIELDS",
    "AMEND_FIELDS",
    "AMEND_FIELD_ATTRS",
    "AMEND_NUMERIC_FIELDS",
    "AMEND_PRICE_FIELDS",
    "BYBIT_BATCH_LIMIT",
    "OPEN_ORDER_STATUSES",
    "TERMINAL_ORDER_STATUSES",
    "Ack",
    "AckItem",
    "AmendField",
    "AmendItem",
    "AmendRequest",
    "BatchMode",
    "Category",
    "CodeClass",
    "DenialCode",
    "InFlightLookup",
    "Instrument",
    "ItemVerdict",
    "MarketLookup",
    "OrderLookup",
    "OrderView",
    "Outcome",
    "Quote",
    "Reason",
    "ReferenceKind",
    "Side",
    "TradingState",
    "Verdict",
]


class Category(StrEnum):
    """Bybit product category."""

    LINEAR = "linear"
    INVERSE = "inverse"
    SPOT = "spot"
    OPTION = "option"


# Max orders per batch request, identical for place/amend/cancel (reference/bybit-v5.md §1.6).
BYBIT_BATCH_LIMIT: Mapping[Category, int] = {
    Category.LINEAR: 20,
    Category.INVERSE: 20,
    Category.OPTION: 20,
    Category.SPOT: 10,
}


class Side(StrEnum):
    BUY = "Buy"
    SELL = "Sell"


class TradingState(StrEnum):
    """The kill switch. Only the operator moves it back to ACTIVE."""

    ACTIVE = "active"
    REDUCING = "reducing"  # only risk-reducing amends pass
    HALTED = "halted"  # no amend passes


class ReferenceKind(StrEnum):
    """Which ticker price anchors a symbol's price band."""

    MARK = "mark"
    LAST = "last"
    INDEX = "index"
    MID = "mid"


class BatchMode(StrEnum):
    ALL_OR_NOTHING = "all_or_nothing"  # one denied item denies the whole batch
    PER_ITEM = "per_item"  # allowed items proceed, denied items are reported


class DenialCode(StrEnum):
    """Stable machine codes (DESIGN.md §4.3). Add codes as needed; never rename one."""

    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    CATEGORY_NOT_ALLOWED = "CATEGORY_NOT_ALLOWED"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    PRICE_NOT_ON_TICK = "PRICE_NOT_ON_TICK"
    QTY_ABOVE_CAP = "QTY_ABOVE_CAP"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_NOT_ON_STEP = "QTY_NOT_ON_STEP"
    NOTIONAL_ABOVE_CAP = "NOTIONAL_ABOVE_CAP"
    BATCH_NOTIONAL_ABOVE_CAP = "BATCH_NOTIONAL_ABOVE_CAP"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    DUPLICATE_ORDER_IN_BATCH = "DUPLICATE_ORDER_IN_BATCH"
    MISSING_ORDER_ID = "MISSING_ORDER_ID"
    NOTHING_TO_AMEND = "NOTHING_TO_AMEND"
    FIELD_NOT_SUPPORTED = "FIELD_NOT_SUPPORTED"
    INVALID_NUMBER = "INVALID_NUMBER"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    REFERENCE_PRICE_STALE = "REFERENCE_PRICE_STALE"
    REFERENCE_PRICE_MISSING = "REFERENCE_PRICE_MISSING"
    TRADING_HALTED = "TRADING_HALTED"
    RATE_LIMITED = "RATE_LIMITED"
    APPROVAL_DECLINED = "APPROVAL_DECLINED"
    APPROVAL_UNAVAILABLE = "APPROVAL_UNAVAILABLE"
    # Added by the sidecar (not in the first list of DESIGN.md §4.3):
    BATCH_DENIED = "BATCH_DENIED"  # this item was fine, another one was not (batch.mode all_or_nothing)
    INVALID_REQUEST = "INVALID_REQUEST"  # request shape unusable (not a list, item not an object, ...)
    RISK_INCREASING = "RISK_INCREASING"  # trading state `reducing` and the amend does not lower risk
    INTERNAL_ERROR = "INTERNAL_ERROR"  # the sidecar failed before sending; nothing was sent (fail closed)
    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"  # trade connection not ready; nothing was sent
    INSTRUMENT_UNKNOWN = "INSTRUMENT_UNKNOWN"  # no usable tick/step/min/max rules for the symbol yet
    # Second wave (DESIGN.md §4.3):
    ORDER_BUSY = "ORDER_BUSY"  # an earlier amend of this order has not settled yet; nothing sent
    NO_CHANGE = "NO_CHANGE"  # the order already holds every requested value; nothing sent
    COORDINATION_UNAVAILABLE = "COORDINATION_UNAVAILABLE"  # the shared store is unreachable; nothing sent
    INVALID_FIELD = "INVALID_FIELD"  # a value of absurd size or shape (e.g. an over-long symbol or id)
    CANCELLED = "CANCELLED"  # the caller cancelled the call before anything was sent (journal only)


class Outcome(StrEnum):
    """Per-item outcome of an amend (and `ALLOWED` for a preview; `PARTIAL` only for a batch)."""

    VERIFIED = "verified"
    DENIED = "denied"
    THROTTLED = "throttled"
    REJECTED = "rejected"
    NOT_APPLIED = "not_applied"
    SUPERSEDED = "superseded"
    UNVERIFIED = "unverified"
    ALLOWED = "allowed"
    PARTIAL = "partial"


_TRIGGER_BY = frozenset({"LastPrice", "IndexPrice", "MarkPrice"})


@dataclass(frozen=True, slots=True)
class AmendField:
    """What the sidecar knows of one field an amend item may set (Bybit's name is the table key)."""

    attr: str  # the OrderView attribute that reads it back (every amendable field is verified)
    enum: frozenset[str] | None = None  # an enum field's values; None: a positive number
    banded: bool = False  # a price: checked against the band around the reference, and the tick
    in_batch: bool = True  # Bybit's order.amend-batch takes it (conditional fields: single only)
    option_only: bool = False
    zero_means_unset: bool = False  # Bybit shows a removed TP/SL/trigger as "0" or ""


# THE table of amendable fields (reference/bybit-v5.md §2), in Bybit's order. The validator's
# field kinds, the MCP input schema, the codec's read-back and the reconciler's comparison are all
# derived from it. The private stream's typed decoder (bybit/codec.py `_WireOrder`) must name the
# fields for msgspec; a test reads every field of this table back through it.
AMEND_FIELDS: Mapping[str, AmendField] = {
    "qty": AmendField("qty"),
    "price": AmendField("price", banded=True),
    "takeProfit": AmendField("take_profit", banded=True, zero_means_unset=True),
    "stopLoss": AmendField("stop_loss", banded=True, zero_means_unset=True),
    "tpTriggerBy": AmendField("tp_trigger_by", enum=_TRIGGER_BY),
    "slTriggerBy": AmendField("sl_trigger_by", enum=_TRIGGER_BY),
    "tpLimitPrice": AmendField("tp_limit_price", banded=True, zero_means_unset=True),
    "slLimitPrice": AmendField("sl_limit_price", banded=True, zero_means_unset=True),
    "tpslMode": AmendField("tpsl_mode", enum=frozenset({"Full", "Partial"})),
    "orderIv": AmendField("order_iv", option_only=True),
    "triggerPrice": AmendField("trigger_price", banded=True, in_batch=False, zero_means_unset=True),
    "triggerBy": AmendField("trigger_by", enum=_TRIGGER_BY, in_batch=False),
}
AMEND_NUMERIC_FIELDS: tuple[str, ...] = tuple(k for k, f in AMEND_FIELDS.items() if f.enum is None)
AMEND_PRICE_FIELDS: tuple[str, ...] = tuple(k for k, f in AMEND_FIELDS.items() if f.banded)
AMEND_ENUM_FIELDS: tuple[str, ...] = tuple(k for k, f in AMEND_FIELDS.items() if f.enum is not None)
AMEND_FIELD_ATTRS: Mapping[str, str] = {k: f.attr for k, f in AMEND_FIELDS.items()}

OPEN_ORDER_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})
TERMINAL_ORDER_STATUSES = frozenset(
    {"Filled", "Cancelled", "Rejected", "PartiallyFilledCanceled", "Deactivated"}
)


class CodeClass(StrEnum):
    """What a Bybit retCode means for the sidecar (the table lives in sidecar/bybit/retcodes.py)."""

    SUCCESS = "success"  # accepted (still needs proof on the order stream)
    REJECTED = "rejected"  # definitive: the venue refused this item; it did not change
    ORDER_CLOSED = "order_closed"  # definitive: refused because the order is already filled/cancelled
    AMBIGUOUS = "ambiguous"  # may or may not have applied: look, never resend
    RATE_LIMITED = "rate_limited"  # 10006 and friends: not applied, but treated as ambiguous for items
    RECONNECT = "reconnect"  # 10016/10019: the node is restarting; reconnect, reconcile by looking


@dataclass(frozen=True, slots=True)
class AckItem:
    """One item of an ack: the per-item code (batch `retExtInfo.list[i]`, or the top-level code of
    a single op) and the identifiers Bybit echoed in `data`."""

    code: int
    msg: str
    cls: CodeClass
    order_id: str = ""
    order_link_id: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """A decoded trade-socket response to one of our order ops."""

    req_id: str
    op: str
    ret_code: int
    ret_msg: str
    cls: CodeClass
    items: tuple[AckItem, ...]
    ret_ext_info: Mapping[str, object] = field(default_factory=dict)
    limit: int | None = None  # X-Bapi-Limit
    limit_status: int | None = None  # X-Bapi-Limit-Status (remaining)
    limit_reset_ms: int | None = None  # X-Bapi-Limit-Reset-Timestamp
    server_time_ms: int | None = None  # Timenow


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an item was denied: a stable code and a sentence a person can read."""

    code: DenialCode
    message: str


@dataclass(frozen=True, slots=True)
class AmendRequest:
    """An amend request exactly as the agent sent it: untrusted, unparsed.

    `items` hold Bybit's field names with whatever JSON values arrived. `batch` is True for
    `order.amend-batch` (tool `wsBatchAmendOrders`) and False for `order.amend` (`wsAmendOrder`).
    """

    category: object
    items: tuple[object, ...]
    batch: bool = True
    tool: str = "wsBatchAmendOrders"


class AmendItem(NamedTuple):
    """One amend item after parsing: what goes on the wire, numbers as exact Decimals.

    A NamedTuple, not a frozen dataclass: it is built once per item on the decision path, and a
    frozen dataclass's `__init__` (one `object.__setattr__` per field) costs several times more.

    `values` maps Bybit field names to the new values (Decimal for numeric fields, str for enum
    fields); only fields the agent set are present.
    """

    symbol: str
    order_id: str | None
    order_link_id: str | None
    values: Mapping[str, Decimal | str]

    @property
    def price(self) -> Decimal | None:
        v = self.values.get("price")
        return v if isinstance(v, Decimal) else None

    @property
    def qty(self) -> Decimal | None:
        v = self.values.get("qty")
        return v if isinstance(v, Decimal) else None

    def targets(self) -> Mapping[str, Decimal | str]:
        """Every field the order must show afterwards for the amend to count as applied: all the
        agent set, numeric (compared as Decimals) and enum (compared as text). Every amendable
        field is read back (`OrderView.value_of`), so nothing sent is beyond proof."""
        return self.values


@dataclass(frozen=True, slots=True)
class OrderView:
    """The sidecar's view of one order, as last seen on the order stream or by REST."""

    category: Category
    symbol: str
    order_id: str
    order_link_id: str
    side: Side | None
    price: Decimal
    qty: Decimal
    leaves_qty: Decimal
    cum_exec_qty: Decimal
    order_status: str
    updated_time_ms: int
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    tp_limit_price: Decimal | None = None
    sl_limit_price: Decimal | None = None
    trigger_price: Decimal | None = None
    order_iv: Decimal | None = None
    # Enum fields as Bybit pushes them ("" when the order has none).
    tp_trigger_by: str = ""
    sl_trigger_by: str = ""
    trigger_by: str = ""
    tpsl_mode: str = ""
    reject_reason: str = ""  # Bybit's `rejectReason`; "" or EC_NoError when nothing was refused

    @property
    def is_open(self) -> bool:
        return self.order_status in OPEN_ORDER_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self.order_status in TERMINAL_ORDER_STATUSES

    @property
    def refused_by_engine(self) -> bool:
        """The matching engine refused something on this order (e.g. `EC_PostOnlyWillTakeLiquidity`:
        a PostOnly order cancelled because it would take liquidity)."""
        return self.reject_reason not in ("", "EC_NoError")

    def value_of(self, bybit_field: str) -> Decimal | str | None:
        """The order's current value of an amendable field, by its Bybit name (None: not a field)."""
        attr = AMEND_FIELD_ATTRS.get(bybit_field)
        return None if attr is None else getattr(self, attr)

    @staticmethod
    def of(  # noqa: PLR0917 - one positional argument per field, in field order (see below)
        category: Category,
        symbol: str,
        order_id: str,
        order_link_id: str,
        side: Side | None,
        price: Decimal,
        qty: Decimal,
        leaves_qty: Decimal,
        cum_exec_qty: Decimal,
        order_status: str,
        updated_time_ms: int,
        take_profit: Decimal | None,
        stop_loss: Decimal | None,
        tp_limit_price: Decimal | None,
        sl_limit_price: Decimal | None,
        trigger_price: Decimal | None,
        order_iv: Decimal | None,
        tp_trigger_by: str,
        sl_trigger_by: str,
        trigger_by: str,
        tpsl_mode: str,
        reject_reason: str,
        /,
    ) -> OrderView:
        """The same view as `OrderView(...)` with every field given, built ~5x faster: one per
        order event on the private stream. A frozen dataclass's `__init__` sets each of the 22
        fields through `object.__setattr__`; here a plain slotted twin with the very same layout
        (`_OrderViewDraft`, generated from this class's fields) is filled by ordinary attribute
        stores and then becomes an `OrderView`. Callers get an ordinary frozen `OrderView`
        (equality, hash, `dataclasses.replace` and the frozen `__setattr__` are unchanged)."""
        view: Any = _OrderViewDraft(
            category,
            symbol,
            order_id,
            order_link_id,
            side,
            price,
            qty,
            leaves_qty,
            cum_exec_qty,
            order_status,
            updated_time_ms,
            take_profit,
            stop_loss,
            tp_limit_price,
            sl_limit_price,
            trigger_price,
            order_iv,
            tp_trigger_by,
            sl_trigger_by,
            trigger_by,
            tpsl_mode,
            reject_reason,
        )
        view.__class__ = OrderView  # same slots in the same order: CPython allows the switch
        return cast(OrderView, view)


# OrderView's layout without the frozen `__setattr__` (for `OrderView.of`). Generated from the
# fields, so the two cannot drift apart; `tests/core/test_order_view.py` checks both ways of
# building give equal, frozen views.
_OrderViewDraft = make_dataclass(
    "_OrderViewDraft", [(f.name, f.type) for f in fields(OrderView)], slots=True, eq=False, repr=False
)


class InFlightLookup(Protocol):
    """Which request holds an order's unsettled amend (core/inflight.py), by orderId."""

    def holder(self, order_id: str) -> str | None: ...


class OrderLookup(Protocol):
    """Finds an order in the sidecar's live view (by orderId first, else orderLinkId)."""

    def find(
        self, category: Category, symbol: str, order_id: str | None, order_link_id: str | None
    ) -> OrderView | None: ...


@dataclass(frozen=True, slots=True)
class Instrument:
    """Exchange rules for one symbol (from `/v5/market/instruments-info`)."""

    category: Category
    symbol: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    status: str = "Trading"


@dataclass(frozen=True, slots=True)
class Quote:
    """Latest ticker prices for one symbol and when they were received (monotonic ns)."""

    received_ns: int
    mark: Decimal | None = None
    last: Decimal | None = None
    index: Decimal | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None

    def reference(self, kind: ReferenceKind) -> Decimal | None:
        if kind is ReferenceKind.MARK:
            return self.mark
        if kind is ReferenceKind.LAST:
            return self.last
        if kind is ReferenceKind.INDEX:
            return self.index
        bid, ask = self.bid, self.ask
        # A mid needs a two-sided, uncrossed book: a zero side or bid > ask is no price at all.
        if bid is None or ask is None or not (bid.is_finite() and ask.is_finite()):
            return None
        if bid <= 0 or ask <= 0 or bid > ask:
            return None
        return (bid + ask) / 2


class MarketLookup(Protocol):
    """The market as the sidecar currently sees it."""

    def instrument(self, category: Category, symbol: str) -> Instrument | None: ...

    def quote(self, category: Category, symbol: str) -> Quote | None: ...


class ItemVerdict(NamedTuple):
    """The validator's decision on one item. Allowed iff `reasons` is empty. (A NamedTuple for the
    same reason as `AmendItem`: one per item on the decision path.)"""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index (unused here)
    symbol: str | None
    order_id: str | None
    order_link_id: str | None
    reasons: tuple[Reason, ...] = ()
    item: AmendItem | None = None  # None when the item could not be parsed
    order: OrderView | None = None  # the order's state the decision was made against
    notional: Decimal | None = None  # price x qty after the amend

    @property
    def allowed(self) -> bool:
        return not self.reasons


@dataclass(frozen=True, slots=True)
class Verdict:
    """The validator's decision on a whole request.

    `reasons` are batch-level problems (also repeated on every item). `items` are in request order.
    """

    category: Category | None
    items: tuple[ItemVerdict, ...]
    reasons: tuple[Reason, ...] = field(default=())
    # A request refused whole before per-item work lists only its first items; this many more
    # were sent and are denied with the same batch reasons (bounded answers, DESIGN §4.3).
    items_omitted: int = 0

    @property
    def allowed_items(self) -> tuple[ItemVerdict, ...]:
        return tuple(i for i in self.items if i.allowed)

    @property
    def any_allowed(self) -> bool:
        return any(i.allowed for i in self.items)
