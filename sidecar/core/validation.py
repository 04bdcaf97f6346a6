"""The pre-trade check: decide, item by item, whether an amend request may be sent.

`validate()` is pure and total: it reads the request, the compiled `Policy`, the market and the
order view it is given, and returns a `Verdict`. It never raises (an internal failure becomes an
`INTERNAL_ERROR` denial of every item: fail closed), never reads the clock (``now_ns`` comes in),
never logs and never sends. It must not rate-limit (core/ratelimit.py does) or format numbers for
the wire (the codec does).

Checks run in this fixed order (like NautilusTrader's RiskEngine). Every failing check adds a
reason; an item lists *all* its reasons, sorted by this order. Batch-level reasons are listed in
`Verdict.reasons` and repeated first on every item.

Batch level, before any item is looked at:
 1. trading state ``halted`` → ``TRADING_HALTED``.
 2. ``category`` is a string naming a category the policy has symbols for → else ``CATEGORY_NOT_ALLOWED``.
 3. ``items`` is a non-empty array; a single amend (``request.batch`` False) has exactly one item
    → else ``INVALID_REQUEST``.
 4. batch size ≤ min(``batch.max_orders``, Bybit's limit for the category: 20, spot 10)
    → else ``BATCH_TOO_LARGE``.
 If 3 or 4 fails, no item is parsed (a 10,000-item batch is refused in constant time per item).

Per item:
 5. shape: the item is an object; ``symbol`` is a non-empty string; enum fields hold one of Bybit's
    values (``tpTriggerBy``/``slTriggerBy``/``triggerBy``: LastPrice|IndexPrice|MarkPrice;
    ``tpslMode``: Full|Partial) → else ``INVALID_REQUEST``; a ``symbol`` longer than 40 characters
    (the longest Bybit symbol is far shorter) → ``INVALID_FIELD``, never echoed whole.
 6. fields: only Bybit's amend fields; ``category`` inside an item only if equal to the request's;
    ``triggerPrice``/``triggerBy`` not in a batch (Bybit's batch amend has no conditional orders);
    ``orderIv`` only for ``option`` → else ``FIELD_NOT_SUPPORTED``.
 7. ``orderId`` (1-64) or ``orderLinkId`` (1-36) given → else ``MISSING_ORDER_ID``. An empty
    string or null counts as not given. A given id that is not Bybit-shaped (a string of printable
    ASCII without spaces, at most 64 / 36 characters) → ``INVALID_FIELD``, never echoed whole.
 8. numbers: every numeric field parses exactly (grammar in core/numbers.py) and is > 0
    → else ``INVALID_NUMBER``. (Removing a TP/SL with Bybit's ``"0"`` is therefore refused.)
 9. at least one amend field (numeric or enum) → else ``NOTHING_TO_AMEND``.
10. no order twice in the batch (same orderId, or same orderLinkId, within a symbol; or two keys
    resolving to the same order in the order view) → ``DUPLICATE_ORDER_IN_BATCH`` on the later ones.
11. symbol allowlist: exact, case-sensitive, per category → else ``SYMBOL_NOT_ALLOWED``.
    Steps 12-18 need an allowed symbol and are skipped without one.
12. instrument rules known (tick size, qty step > 0) → else ``INSTRUMENT_UNKNOWN``.
13. reference price: a quote exists, its configured reference (mark|last|index|mid) is > 0
    (for ``mid``: bid > 0, ask > 0, bid ≤ ask and the whole spread inside the price band)
    → else ``REFERENCE_PRICE_MISSING``; age = now_ns - received_ns ≤ ``reference_price.max_age_ms``
    → else ``REFERENCE_PRICE_STALE``. (Required for every item, even a qty-only amend.)
14. price band: ``price``, ``takeProfit``, ``stopLoss``, ``tpLimitPrice``, ``slLimitPrice`` and
    ``triggerPrice``, when given, lie in [ref × (1 − bps/10000), ref × (1 + bps/10000)],
    bounds included, computed exactly → else ``PRICE_OUT_OF_BAND``. The band is symmetric and
    the same for both sides; side matters only in ``reducing`` (step 17). Skipped when step 13
    failed. Prices outside the instrument's minPrice/maxPrice are ``PRICE_OUT_OF_BAND`` too.
15. tick and step: price fields are multiples of tickSize → else ``PRICE_NOT_ON_TICK``; qty is a
    multiple of qtyStep → else ``QTY_NOT_ON_STEP``; qty ≤ min(rule max_qty, instrument max_qty)
    → else ``QTY_ABOVE_CAP``; qty ≥ instrument min_qty → else ``QTY_BELOW_MIN``.
16. order: found in the order view and open (New, PartiallyFilled, Untriggered), and, if both ids
    were given, both match it → else ``UNKNOWN_ORDER``; a new qty is > the order's cumExecQty
    → else ``QTY_BELOW_MIN``; no earlier amend of the order is in flight (`in_flight`, see
    core/inflight.py), nor another item of this batch naming it by its other id → else
    ``ORDER_BUSY``; at least one requested value differs from the order's → else ``NO_CHANGE``
    (Bybit would refuse it with 10001 "The order remains unchanged").
17. trading state ``reducing``: the amend must lower risk → else ``RISK_INCREASING``. Rule: qty may
    stay or decrease, never increase; a Buy's price may stay or go down and a Sell's may stay or
    go up (away from the market, relative to the order's current price); no other field may be
    set (TP/SL, trigger, tpslMode, orderIv). An unknown order or unknown side is denied.
18. notional after the amend, (new price or current price) × (new qty or current qty), ≤ the
    symbol's ``max_notional`` → else ``NOTIONAL_ABOVE_CAP``. For ``inverse``, qty is in USD
    contracts, so the notional is the qty. With no known order, only an item giving both is
    checked. Fail closed: an order price of 0 or blank (a market or conditional order) counts at
    the reference price; an ``orderIv`` amend (Bybit prices the option from the IV and ignores
    ``price``) counts at the higher of the order's price and the reference.
    ``orderIv`` (options only) must lie in the symbol's [order_iv_min, order_iv_max] → else
    ``PRICE_OUT_OF_BAND``; without a configured IV band it is ``FIELD_NOT_SUPPORTED``.

Batch level, after every item:
19. Σ item notionals ≤ ``batch.max_notional`` (if set) → else ``BATCH_NOTIONAL_ABOVE_CAP`` (batch-level).
20. ``batch.mode: all_or_nothing``: if any item is denied, every item without its own reason gets
    ``BATCH_DENIED`` (nothing is sent). ``per_item``: clean items stay allowed.

JSON ``null`` for an optional field means "not given" (Bybit's own REST example sends null for
untouched fields); the field is not forwarded.

Speed: the common item (symbol, one order id, price and/or qty, everything in bounds) is decided
by an inline happy path that only ever allows; any other item, and any item that fails a check
there, is decided from scratch by the detailed path (`_check_item`), which alone writes reasons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, cast

from sidecar.core.inflight import is_reread
from sidecar.core.numbers import EXACT, parse_positive_decimal, parsed_memo_get, short_repr
from sidecar.core.policy import Policy, SymbolRule
from sidecar.core.types import (
    BYBIT_BATCH_LIMIT,
    OPEN_ORDER_STATUSES,
    AmendItem,
    AmendRequest,
    BatchMode,
    Category,
    DenialCode,
    InFlightLookup,
    Instrument,
    ItemVerdict,
    MarketLookup,
    OrderLookup,
    OrderView,
    Quote,
    Reason,
    ReferenceKind,
    Side,
    TradingState,
    Verdict,
)

__all__ = ["BAND_FIELDS", "ENUM_VALUES", "ITEM_FIELDS", "validate"]

# Field kinds of an amend item (Bybit's names).
_NUMBER: Final = 0  # a numeric field allowed everywhere
_SYMBOL: Final = 1
_ORDER_ID: Final = 2
_LINK_ID: Final = 3
_CATEGORY: Final = 4
_ENUM: Final = 5
_RESTRICTED: Final = 6  # numeric or enum field allowed only in some requests (see step 6)

_FIELD_KIND: Final[dict[str, int]] = {
    "symbol": _SYMBOL,
    "orderId": _ORDER_ID,
    "orderLinkId": _LINK_ID,
    "category": _CATEGORY,
    "qty": _NUMBER,
    "price": _NUMBER,
    "takeProfit": _NUMBER,
    "stopLoss": _NUMBER,
    "tpLimitPrice": _NUMBER,
    "slLimitPrice": _NUMBER,
    "triggerPrice": _RESTRICTED,
    "orderIv": _RESTRICTED,
    "tpTriggerBy": _ENUM,
    "slTriggerBy": _ENUM,
    "triggerBy": _RESTRICTED,
    "tpslMode": _ENUM,
}
ITEM_FIELDS: Final = tuple(_FIELD_KIND)

_TRIGGER_BY = frozenset({"LastPrice", "IndexPrice", "MarkPrice"})
ENUM_VALUES: Final[Mapping[str, frozenset[str]]] = {
    "tpTriggerBy": _TRIGGER_BY,
    "slTriggerBy": _TRIGGER_BY,
    "triggerBy": _TRIGGER_BY,
    "tpslMode": frozenset({"Full", "Partial"}),
}
# Prices checked against the band and the tick (triggerPrice too: it is a price like the others).
BAND_FIELDS: Final = ("price", "takeProfit", "stopLoss", "tpLimitPrice", "slLimitPrice", "triggerPrice")
_BAND_SET: Final = frozenset(BAND_FIELDS)
_BATCH_FORBIDDEN: Final = frozenset({"triggerPrice", "triggerBy"})
_ORDER_ID_MAX = 64
_LINK_ID_MAX = 36
_SYMBOL_MAX = 40  # config.py's symbol pattern allows the same
_LISTED_MAX = 20  # items listed in a verdict on a request refused whole (Bybit's largest batch)

_CATEGORY_BY_NAME: Final = {c.value: c for c in Category}

# Rank of each check in the documented order; an item's reasons are sorted by it.
_R_HALTED = 1
_R_CATEGORY = 2
_R_SHAPE_BATCH = 3
_R_SIZE = 4
_R_SHAPE = 5
_R_FIELD = 6
_R_ID = 7
_R_NUMBER = 8
_R_NOTHING = 9
_R_DUPLICATE = 10
_R_SYMBOL = 11
_R_INSTRUMENT = 12
_R_REFERENCE = 13
_R_BAND = 14
_R_TICK = 15
_R_ORDER = 16
_R_REDUCING = 17
_R_NOTIONAL = 18


class _NothingInFlight:
    """The `in_flight` of a caller that tracks no amends (tests, tools): no order is busy."""

    @staticmethod
    def holder(order_id: str) -> str | None:
        return None


_NOTHING_IN_FLIGHT: Final = _NothingInFlight()

_Ranked = tuple[int, Reason]
_Checks = tuple["_Sym", list[_Ranked], bool]  # a symbol's state, its problems now, band usable now
_FAST_QUOTIENT: Final = Decimal(10) ** 20  # see _off_grid
_INFINITY: Final = Decimal("Infinity")


def validate(  # noqa: PLR0917  # the signature every caller uses (DESIGN: validate(request, policy, ...))
    request: AmendRequest,
    policy: Policy,
    market: MarketLookup,
    orders: OrderLookup,
    now_ns: int,
    trading_state: TradingState = TradingState.ACTIVE,
    in_flight: InFlightLookup | None = None,
) -> Verdict:
    """Decide every item of `request`; see the module docstring for the checks and their order.

    `in_flight` names the orders with an unsettled amend (core/inflight.py); None: none are.
    """
    try:
        busy = in_flight if in_flight is not None else _NOTHING_IN_FLIGHT
        return _validate(request, policy, market, orders, now_ns, trading_state, busy)
    except Exception as exc:  # a bug in a check must deny, never let an item through
        return _internal_error(request, exc)


# --------------------------------------------------------------------------------------------
# Per-policy and per-symbol preparation


class _Compiled:
    """Values derived from one Policy, computed once (the policy object is immutable)."""

    __slots__ = ("bands", "categories", "max_age_ns", "policy", "symbol_state", "symbols_text")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.categories = policy.categories
        self.max_age_ns = policy.reference_max_age_ms * 1_000_000
        self.bands: dict[tuple[Category, str], tuple[Decimal, Decimal]] = {}
        for key, rule in policy.symbols.items():
            frac = EXACT.divide(rule.price_band_bps, Decimal(10_000))
            self.bands[key] = (EXACT.subtract(Decimal(1), frac), EXACT.add(Decimal(1), frac))
        names: dict[Category, list[str]] = {}
        for cat, sym in policy.symbols:
            names.setdefault(cat, []).append(sym)
        self.symbols_text = {c: ", ".join(sorted(s)) for c, s in names.items()}
        self.symbol_state: dict[tuple[Category, str], _Sym] = {}


_last_compiled: _Compiled | None = None


def _compiled(policy: Policy) -> _Compiled:
    global _last_compiled  # noqa: PLW0603  # one-entry cache keyed by identity; values are immutable
    cached = _last_compiled
    if cached is not None and cached.policy is policy:
        return cached
    cached = _Compiled(policy)
    _last_compiled = cached
    return cached


class _Sym:
    """What every item of one symbol is checked against, derived from one (instrument, quote) pair.

    Kept while the market returns the very same (immutable) Instrument and Quote objects, so the
    band and grid bounds are computed once per ticker update, not once per call. Only the age of
    the quote depends on `now_ns`; it is checked per call.
    """

    __slots__ = (
        "band_factors",
        "high",
        "inst",
        "inst_high",
        "inst_low",
        "low",
        "max_notional",
        "max_price",
        "min_price",
        "min_qty",
        "ok_high",
        "ok_low",
        "price_grid",
        "price_high",
        "price_low",
        "problems",
        "qty_cap",
        "qty_cap_source",
        "qty_grid",
        "qty_high",
        "qty_low",
        "quote",
        "ref",
        "rule",
        "step",
        "step_fast_max",
        "tick",
        "tick_fast_max",
    )

    def __init__(
        self,
        rule: SymbolRule,
        band_factors: tuple[Decimal, Decimal],
        inst: Instrument | None,
        quote: Quote | None,
    ) -> None:
        self.rule = rule
        self.band_factors = band_factors
        self.inst = inst
        self.quote = quote
        self.problems: list[_Ranked] = []  # steps 12-13 (except staleness)
        self.tick: Decimal | None = None
        self.step: Decimal | None = None
        self.tick_fast_max = Decimal(0)
        self.step_fast_max = Decimal(0)
        self.qty_cap = rule.max_qty
        self.qty_cap_source = "the configured max_qty"
        self.min_qty: Decimal | None = None
        self.min_price: Decimal | None = None
        self.max_price: Decimal | None = None
        self.ref: Decimal | None = None
        self.low = Decimal(0)
        self.high = Decimal(0)
        # Fast-path intervals: a price inside [ok_low, ok_high] passes the band and the
        # instrument's limits at once; without a usable band only [inst_low, inst_high] applies.
        self.inst_low = Decimal(0)
        self.inst_high = _INFINITY
        self.ok_low = Decimal(0)
        self.ok_high = Decimal(-1)  # empty: every price takes the detailed path
        # The happy path's intervals (used only when `problems` is empty and the quote is fresh):
        # a price in [price_low, price_high] passes the band and the instrument's limits and
        # can be tested for the tick with `%` (see _off_grid); a qty in [qty_low, qty_high] is
        # within min and cap and can be tested for the step the same way.
        self.price_low = Decimal(0)
        self.price_high = Decimal(-1)
        self.qty_low = Decimal(0)
        self.qty_high = Decimal(-1)
        self.price_grid = Decimal(1)  # tick and step, typed for the happy path
        self.qty_grid = Decimal(1)
        self.max_notional = rule.max_notional
        cat, name = rule.category, rule.symbol
        if inst is None:
            _deny(
                self.problems,
                _R_INSTRUMENT,
                DenialCode.INSTRUMENT_UNKNOWN,
                f"no instrument rules (tick size, qty step) are known for {cat} {name} yet",
            )
        elif not _instrument_usable(inst):
            _deny(
                self.problems,
                _R_INSTRUMENT,
                DenialCode.INSTRUMENT_UNKNOWN,
                f"the instrument rules for {cat} {name} are unusable "
                f"(tickSize {inst.tick_size}, qtyStep {inst.qty_step})",
            )
        else:
            self.tick = inst.tick_size
            self.step = inst.qty_step
            self.tick_fast_max = EXACT.multiply(inst.tick_size, _FAST_QUOTIENT)
            self.step_fast_max = EXACT.multiply(inst.qty_step, _FAST_QUOTIENT)
            self.min_qty = inst.min_qty
            if inst.max_qty < rule.max_qty:
                self.qty_cap = inst.max_qty
                self.qty_cap_source = "the instrument's maxOrderQty"
            self.min_price = inst.min_price
            self.max_price = inst.max_price
            if inst.min_price is not None:
                self.inst_low = inst.min_price
            if inst.max_price is not None:
                self.inst_high = inst.max_price

        kind = rule.reference
        ref = quote.reference(kind) if quote is not None else None
        if quote is None or ref is None or not ref.is_finite() or ref <= 0:
            what = "no quote" if quote is None else f"no usable {kind} price (got {ref})"
            _deny(
                self.problems,
                _R_REFERENCE,
                DenialCode.REFERENCE_PRICE_MISSING,
                f"{what} for {cat} {name}; the price band needs a {kind} reference price",
            )
            return
        low = EXACT.multiply(ref, band_factors[0])
        high = EXACT.multiply(ref, band_factors[1])
        # Quote.reference() already refuses a zero side or a crossed book; a spread wider than the
        # band means the mid is no price anyone could trade near.
        if (
            kind is ReferenceKind.MID
            and quote.bid is not None
            and quote.ask is not None
            and (quote.bid < low or quote.ask > high)
        ):
            _deny(
                self.problems,
                _R_REFERENCE,
                DenialCode.REFERENCE_PRICE_MISSING,
                f"no usable mid price for {cat} {name}: the spread (bid {_num(quote.bid)}, ask "
                f"{_num(quote.ask)}) is wider than the price band ±{_num(rule.price_band_bps)} bps",
            )
            return
        self.ref = ref
        self.low = low
        self.high = high
        self.ok_low = max(self.low, self.inst_low)
        self.ok_high = min(self.high, self.inst_high)
        if self.tick is not None and self.step is not None and self.min_qty is not None:
            self.price_grid = self.tick
            self.qty_grid = self.step
            self.price_low = self.ok_low
            self.price_high = min(self.ok_high, self.tick_fast_max)
            self.qty_low = self.min_qty
            self.qty_high = min(self.qty_cap, self.step_fast_max)

    def band_text(self) -> str:
        return f"{self.rule.reference} {_num(self.ref or Decimal(0))} ± {_num(self.rule.price_band_bps)} bps"


def _symbol_checks(
    compiled: _Compiled, rule: SymbolRule, market: MarketLookup, now_ns: int
) -> tuple[_Sym, list[_Ranked], bool]:
    """The symbol's state, its problems now, and whether its band can be used now."""
    key = (rule.category, rule.symbol)
    inst = market.instrument(rule.category, rule.symbol)
    quote = market.quote(rule.category, rule.symbol)
    sym = compiled.symbol_state.get(key)
    if sym is None or sym.inst is not inst or sym.quote is not quote:
        sym = _Sym(rule, compiled.bands[key], inst, quote)
        compiled.symbol_state[key] = sym
    if sym.ref is None or quote is None:
        return sym, sym.problems, False
    age_ns = now_ns - quote.received_ns
    if age_ns <= compiled.max_age_ns:
        return sym, sym.problems, True
    stale = Reason(
        DenialCode.REFERENCE_PRICE_STALE,
        f"the {rule.reference} price for {rule.category} {rule.symbol} is {age_ns // 1_000_000} ms old; "
        f"at most {compiled.policy.reference_max_age_ms} ms (reference_price.max_age_ms)",
    )
    return sym, [*sym.problems, (_R_REFERENCE, stale)], False


def _instrument_usable(inst: Instrument) -> bool:
    for value in (inst.tick_size, inst.qty_step, inst.min_qty, inst.max_qty):
        if not value.is_finite():
            return False
    return inst.tick_size > 0 and inst.qty_step > 0 and inst.max_qty > 0


# --------------------------------------------------------------------------------------------
# The check


class _Call:
    """What the detailed path needs of one call (built on the first item that takes it)."""

    __slots__ = (
        "cat_name",
        "category",
        "compiled",
        "in_flight",
        "is_batch",
        "is_inverse",
        "is_option",
        "market",
        "now_ns",
        "orders",
        "raw_category",
        "reducing",
        "seen_keys",
        "seen_orders",
        "syms",
    )

    def __init__(  # noqa: PLR0917  # built from _validate's locals
        self,
        compiled: _Compiled,
        orders: OrderLookup,
        market: MarketLookup,
        now_ns: int,
        category: Category | None,
        raw_category: object,
        is_batch: bool,
        trading_state: TradingState,
        syms: dict[str, _Checks | None],
        seen_keys: dict[tuple[str, int, str], int],
        seen_orders: dict[str, int],
        in_flight: InFlightLookup,
    ) -> None:
        self.in_flight = in_flight
        self.compiled = compiled
        self.orders = orders
        self.market = market
        self.now_ns = now_ns
        self.category = category
        self.raw_category = raw_category
        self.cat_name = raw_category if isinstance(raw_category, str) else None
        self.is_batch = is_batch
        self.is_option = category is Category.OPTION
        self.is_inverse = category is Category.INVERSE
        self.reducing = trading_state is TradingState.REDUCING
        self.syms = syms
        self.seen_keys = seen_keys
        self.seen_orders = seen_orders


def _checks_for(  # noqa: PLR0917  # positional: called once per symbol and call
    compiled: _Compiled,
    category: Category,
    market: MarketLookup,
    now_ns: int,
    syms: dict[str, _Checks | None],
    symbol: str,
) -> _Checks | None:
    """Steps 11-13 for `symbol`, once per call (cached in `syms`): None if it is not allowed."""
    if symbol in syms:
        return syms[symbol]
    rule = compiled.policy.symbols.get((category, symbol))
    checks = _symbol_checks(compiled, rule, market, now_ns) if rule is not None else None
    syms[symbol] = checks
    return checks


def _fast_sym(  # noqa: PLR0917  # positional: called once per symbol and call
    compiled: _Compiled,
    category: Category,
    market: MarketLookup,
    now_ns: int,
    syms: dict[str, _Checks | None],
    fast_syms: dict[str, _Sym],
    symbol: str,
) -> _Sym | None:
    """The symbol's state if its items can take the happy path now (allowed, instrument rules
    and a fresh reference price known; cached in `fast_syms`), else None."""
    checks = _checks_for(compiled, category, market, now_ns, syms, symbol)
    if checks is None:
        return None
    sym, problems, band_ok = checks
    if problems or not band_ok or sym.tick is None or sym.step is None:
        return None
    fast_syms[symbol] = sym
    return sym


def _validate(  # noqa: PLR0917  # mirrors validate()
    request: AmendRequest,
    policy: Policy,
    market: MarketLookup,
    orders: OrderLookup,
    now_ns: int,
    trading_state: TradingState,
    in_flight: InFlightLookup,
) -> Verdict:
    compiled = _compiled(policy)
    batch: list[_Ranked] = []
    if trading_state is TradingState.HALTED:  # step 1
        _deny(
            batch,
            _R_HALTED,
            DenialCode.TRADING_HALTED,
            "trading is halted by the operator; no amend is sent until `sidecar resume`",
        )

    raw_category = request.category  # step 2
    category = _CATEGORY_BY_NAME.get(raw_category) if isinstance(raw_category, str) else None
    if category is not None and category not in compiled.categories:
        category = None
    if category is None:
        allowed = ", ".join(sorted(compiled.categories)) or "none"
        _deny(
            batch,
            _R_CATEGORY,
            DenialCode.CATEGORY_NOT_ALLOWED,
            f"category {short_repr(raw_category)} is not allowed (configured: {allowed})",
        )

    items: object = request.items  # step 3; typed as a tuple, but the caller's input is not trusted
    if not isinstance(items, (tuple, list)):
        _deny(
            batch,
            _R_SHAPE_BATCH,
            DenialCode.INVALID_REQUEST,
            f"request must be an array of amend items, got {short_repr(items)}",
        )
        return _refuse_unparsed(category, 0, batch)
    count = len(items)
    if count == 0:
        _deny(batch, _R_SHAPE_BATCH, DenialCode.INVALID_REQUEST, "request has no items")
        return _refuse_unparsed(category, 0, batch)
    is_batch = request.batch
    if not is_batch:
        if count != 1:
            _deny(
                batch,
                _R_SHAPE_BATCH,
                DenialCode.INVALID_REQUEST,
                f"a single amend takes exactly one item, got {count} (use wsBatchAmendOrders for several)",
            )
            return _refuse_unparsed(category, count, batch)
    else:  # step 4
        bybit = BYBIT_BATCH_LIMIT[category if category is not None else Category.LINEAR]
        limit = min(policy.batch_max_orders, bybit)
        if count > limit:
            where = f"for {category}" if category is not None else "per batch"
            _deny(
                batch,
                _R_SIZE,
                DenialCode.BATCH_TOO_LARGE,
                f"batch has {count} items; at most {limit} {where} (Bybit allows {bybit}, "
                f"batch.max_orders is {policy.batch_max_orders}); nothing was checked or sent",
            )
            return _refuse_unparsed(category, count, batch)

    syms: dict[str, _Checks | None] = {}
    fast_syms: dict[str, _Sym] = {}  # symbols with no problem now: the happy path's only ones
    seen_keys: dict[tuple[str, int, str], int] = {}
    seen_orders: dict[str, int] = {}
    call: _Call | None = None
    find = orders.find
    busy = in_flight.holder
    memo = parsed_memo_get
    parse = parse_positive_decimal
    multiply = EXACT.multiply
    open_statuses = OPEN_ORDER_STATUSES
    new_item = _amend_item
    new_verdict = _item_verdict
    cat_name = raw_category if isinstance(raw_category, str) else None
    is_inverse = category is Category.INVERSE
    # The happy path below covers the common item shape (symbol, one order id, price and/or qty)
    # outside `reducing`; it builds a verdict only when every check passes. Anything else - a
    # denial, another field, an odd value - goes to _check_item, which starts the item over and
    # gives every reason. Starting over is safe: the only state the happy path touches is
    # `setdefault(key, index)` for this item's index, which _check_item repeats to the same effect.
    fast = category is not None and trading_state is not TradingState.REDUCING
    fast_category = category or Category.LINEAR  # read only when `fast`
    verdicts: list[ItemVerdict] = []
    any_denied = False
    for index, raw in enumerate(items):
        if fast and type(raw) is dict:
            symbol: Any = None
            order_id: Any = None
            link_id: Any = None
            p_raw: Any = None
            q_raw: Any = None
            qty_first = False
            for key, value in raw.items():
                if key == "price":
                    p_raw = value
                elif key == "qty":
                    q_raw = value
                    qty_first = p_raw is None
                elif key == "symbol":
                    symbol = value
                elif key == "orderId":
                    order_id = value
                elif key == "orderLinkId":
                    link_id = value
                elif key != "category" or not (value is None or (type(value) is str and value == cat_name)):
                    symbol = None  # any other field: the detailed path
                    break
            # Steps 5-7 and 10 (by key): a symbol, exactly one well-formed id, not seen before.
            dkey: tuple[str, int, str] | None = None
            if type(symbol) is str and symbol and (p_raw is not None or q_raw is not None):
                if link_id is None:
                    if type(order_id) is str and order_id and _id_ok(order_id, _ORDER_ID_MAX):
                        dkey = (symbol, _ORDER_ID, order_id)
                elif order_id is None and type(link_id) is str and link_id and _id_ok(link_id, _LINK_ID_MAX):
                    dkey = (symbol, _LINK_ID, link_id)
            if dkey is not None and seen_keys.setdefault(dkey, index) == index:
                # Step 8: numbers, through the parse memo first (a hit is one dict lookup).
                price: Any = None
                qty: Any = None
                if p_raw is not None:
                    price = memo(p_raw) if type(p_raw) is str else None
                    if price is None:
                        price = parse(p_raw)
                if q_raw is not None:
                    qty = memo(q_raw) if type(q_raw) is str else None
                    if qty is None:
                        qty = parse(q_raw)
                # Steps 11-15: an allowed symbol with no problems now, price and qty inside
                # their fast intervals and on the grid (see _Sym).
                sym = fast_syms.get(symbol)
                if sym is None:
                    sym = _fast_sym(compiled, fast_category, market, now_ns, syms, fast_syms, symbol)
                if (
                    sym is not None
                    and (
                        price is None or (type(price) is Decimal and sym.price_low <= price <= sym.price_high)
                    )
                    and (qty is None or (type(qty) is Decimal and sym.qty_low <= qty <= sym.qty_high))
                    and (price is None or not price % sym.price_grid)
                    and (qty is None or not qty % sym.qty_grid)
                ):
                    # Steps 16 and 10 (by order): an open order with a price, not busy, not
                    # already in this batch, and the amend changes something.
                    view = find(fast_category, symbol, order_id, link_id)
                    if (
                        view is not None
                        and view.order_status in open_statuses
                        and (qty is None or qty > view.cum_exec_qty)
                        and view.price > 0
                        and (price != view.price if price is not None else qty != view.qty)
                        and busy(view.order_id) is None
                        and seen_orders.setdefault(view.order_id, index) == index
                    ):
                        # Step 18 (inverse: the qty is the notional).
                        if is_inverse:
                            notional = qty if qty is not None else view.qty
                        else:
                            notional = multiply(
                                price if price is not None else view.price,
                                qty if qty is not None else view.qty,
                            )
                        if notional <= sym.max_notional:
                            values: dict[str, Decimal | str]
                            if price is None:
                                assert qty is not None  # at least one of the two is set
                                values = {"qty": qty}
                            elif qty is None:
                                values = {"price": price}
                            elif qty_first:
                                values = {"qty": qty, "price": price}
                            else:
                                values = {"price": price, "qty": qty}
                            item = new_item(symbol, order_id, link_id, values)
                            verdicts.append(
                                new_verdict(index, symbol, order_id, link_id, (), item, view, notional)
                            )
                            continue
        if call is None:
            call = _Call(
                compiled,
                orders,
                market,
                now_ns,
                category,
                raw_category,
                is_batch,
                trading_state,
                syms,
                seen_keys,
                seen_orders,
                in_flight,
            )
        verdict = _check_item(call, index, raw)
        if verdict.reasons:
            any_denied = True
        verdicts.append(verdict)

    # Step 19: the batch notional.
    after: tuple[Reason, ...] = ()
    cap = policy.batch_max_notional
    if cap is not None:
        total = Decimal(0)
        for verdict in verdicts:
            if verdict.notional is not None:
                total = EXACT.add(total, verdict.notional)
        if total > cap:
            after = (
                Reason(
                    DenialCode.BATCH_NOTIONAL_ABOVE_CAP,
                    f"the batch's total notional {_num(total)} is above batch.max_notional {_num(cap)}",
                ),
            )

    # Step 20, and batch-level reasons first on every item. The happy path skips all of this.
    # BATCH_DENIED goes only to items with no reason at all (batch-level reasons are reasons).
    before = tuple([r for _, r in batch])
    batch_level = before or after
    mark_clean = any_denied and not batch_level and policy.batch_mode is BatchMode.ALL_OR_NOTHING
    if batch_level or mark_clean:
        for i, v in enumerate(verdicts):
            own = v.reasons or ((_BATCH_DENIED,) if mark_clean else ())
            verdicts[i] = _item_verdict(
                v.index,
                v.symbol,
                v.order_id,
                v.order_link_id,
                before + own + after,
                v.item,
                v.order,
                v.notional,
            )
    return Verdict(category=category, items=tuple(verdicts), reasons=before + after)


def _check_item(c: _Call, index: int, raw: object) -> ItemVerdict:
    """Steps 5-18 for one item, every reason in the documented order (the detailed path)."""
    bad: list[_Ranked] = []
    if not isinstance(raw, Mapping):  # step 5
        _deny(
            bad,
            _R_SHAPE,
            DenialCode.INVALID_REQUEST,
            f"item {index} must be an object, got {short_repr(raw)}",
        )
        return _item_verdict(index, None, None, None, (bad[0][1],), None, None, None)
    category = c.category
    raw_category = c.raw_category
    cat_name = c.cat_name
    is_batch = c.is_batch
    is_option = c.is_option
    is_inverse = c.is_inverse
    seen_keys = c.seen_keys
    seen_orders = c.seen_orders
    parse = parse_positive_decimal
    multiply = EXACT.multiply
    field_kind = _FIELD_KIND

    # Steps 5-9: one pass over the item's fields.
    symbol: str | None = None
    order_id: str | None = None
    link_id: str | None = None
    shown_symbol: str | None = None
    shown_oid: str | None = None
    shown_link: str | None = None
    values: dict[str, Decimal | str] = {}
    new_price: Decimal | None = None
    new_qty: Decimal | None = None
    new_iv: Decimal | None = None
    other_prices: list[tuple[str, Decimal]] = []
    amend_fields = 0
    unknown: list[str] | None = None
    symbol_seen = False
    for key, value in raw.items():
        kind = field_kind.get(key)
        if kind is None:
            if unknown is None:
                unknown = []
            unknown.append(key if isinstance(key, str) and len(key) <= 40 else short_repr(key))
            continue
        if value is None:  # null means "not given" (Bybit's REST example sends it)
            continue
        if kind == 0:  # _NUMBER (literal: this branch is the hot path)
            amend_fields += 1
            parsed = parse(value)
            if type(parsed) is Decimal:
                values[key] = parsed
                if key == "price":
                    new_price = parsed
                elif key == "qty":
                    new_qty = parsed
                else:  # takeProfit, stopLoss, tpLimitPrice, slLimitPrice
                    other_prices.append((key, parsed))
            else:
                _deny(bad, _R_NUMBER, DenialCode.INVALID_NUMBER, f"{key} {short_repr(value)} {parsed}")
        elif kind == _RESTRICTED:
            amend_fields += 1
            if is_batch and key in _BATCH_FORBIDDEN:
                bad.append((_R_FIELD, _conditional_in_batch(key)))
            elif key == "orderIv" and not is_option:
                _deny(
                    bad,
                    _R_FIELD,
                    DenialCode.FIELD_NOT_SUPPORTED,
                    f"orderIv is only for category option, not {short_repr(raw_category)}",
                )
            elif key == "triggerBy":
                _parse_enum(key, value, values, bad)
            else:
                parsed = parse(value)
                if type(parsed) is Decimal:
                    values[key] = parsed
                    if key == "triggerPrice":
                        other_prices.append((key, parsed))
                    else:  # orderIv: bounded by the symbol's IV band (step 18)
                        new_iv = parsed
                else:
                    _deny(bad, _R_NUMBER, DenialCode.INVALID_NUMBER, f"{key} {short_repr(value)} {parsed}")
        elif kind == _SYMBOL:
            symbol_seen = True
            if isinstance(value, str):
                if len(value) > _SYMBOL_MAX:
                    _deny(
                        bad,
                        _R_SHAPE,
                        DenialCode.INVALID_FIELD,
                        f"symbol is {len(value)} characters long; Bybit symbols have at most {_SYMBOL_MAX} "
                        f"(got {short_repr(value)})",
                    )
                    continue
                shown_symbol = value
                if value:
                    symbol = value
                    continue
            _deny(
                bad,
                _R_SHAPE,
                DenialCode.INVALID_REQUEST,
                f"symbol must be a non-empty string, got {short_repr(value)}",
            )
        elif kind == _ORDER_ID:
            if isinstance(value, str) and len(value) <= _ORDER_ID_MAX:
                shown_oid = value
                if not value:
                    continue
                if _id_ok(value, _ORDER_ID_MAX):
                    order_id = value
                    continue
            bad.append((_R_ID, _bad_id("orderId", value, _ORDER_ID_MAX)))
        elif kind == _LINK_ID:
            if isinstance(value, str) and len(value) <= _LINK_ID_MAX:
                shown_link = value
                if not value:
                    continue
                if _id_ok(value, _LINK_ID_MAX):
                    link_id = value
                    continue
            bad.append((_R_ID, _bad_id("orderLinkId", value, _LINK_ID_MAX)))
        elif kind == _ENUM:
            amend_fields += 1
            _parse_enum(key, value, values, bad)
        elif not (isinstance(value, str) and value == cat_name):  # _CATEGORY, echoed per item
            _deny(
                bad,
                _R_FIELD,
                DenialCode.FIELD_NOT_SUPPORTED,
                f"item category {short_repr(value)} differs from the request's "
                f"category {short_repr(raw_category)} (one category per batch)",
            )
    if not symbol_seen:
        _deny(bad, _R_SHAPE, DenialCode.INVALID_REQUEST, "symbol is missing")
    if unknown is not None:
        shown = ", ".join(sorted(unknown)[:10]) + (" ..." if len(unknown) > 10 else "")
        _deny(
            bad,
            _R_FIELD,
            DenialCode.FIELD_NOT_SUPPORTED,
            f"unsupported field(s): {shown}; supported: {', '.join(ITEM_FIELDS)}",
        )
    if order_id is None and link_id is None and not any(r[0] == _R_ID for r in bad):
        _deny(bad, _R_ID, DenialCode.MISSING_ORDER_ID, "give orderId or orderLinkId to name the order")
    if amend_fields == 0:
        _deny(
            bad,
            _R_NOTHING,
            DenialCode.NOTHING_TO_AMEND,
            "nothing to amend: set at least one of qty, price, takeProfit, stopLoss, "
            "tpLimitPrice, slLimitPrice, tpTriggerBy, slTriggerBy, tpslMode",
        )

    # Step 10: the same order twice (by key here; by resolved order after step 16).
    duplicate = False
    if symbol is not None:
        if order_id is not None:
            dkey = (symbol, _ORDER_ID, order_id)
            if seen_keys.setdefault(dkey, index) != index:
                duplicate = _report_duplicate(seen_keys, dkey, bad)
        if link_id is not None and not duplicate:
            dkey = (symbol, _LINK_ID, link_id)
            if seen_keys.setdefault(dkey, index) != index:
                duplicate = _report_duplicate(seen_keys, dkey, bad)

    item = _amend_item(symbol, order_id, link_id, values) if symbol is not None else None
    view: OrderView | None = None
    notional: Decimal | None = None
    if symbol is not None and category is not None:
        checks = _checks_for(c.compiled, category, c.market, c.now_ns, c.syms, symbol)
        if checks is None:  # step 11
            _deny(
                bad,
                _R_SYMBOL,
                DenialCode.SYMBOL_NOT_ALLOWED,
                f"symbol {short_repr(symbol)} is not allowed in category {category} "
                f"(allowed: {c.compiled.symbols_text.get(category, 'none')})",
            )
        else:
            sym, problems, band_ok = checks
            if problems:  # steps 12-13, found once per symbol
                bad.extend(problems)
            # Steps 14-15. The happy path is inline; a price or qty outside the fast interval or
            # off the grid takes the detailed check, which says exactly what is wrong.
            if band_ok:
                low, high = sym.ok_low, sym.ok_high
            else:
                low, high = sym.inst_low, sym.inst_high
            tick = sym.tick
            if new_price is not None and (
                tick is None
                or not low <= new_price <= high
                or new_price > sym.tick_fast_max
                or new_price % tick
            ):
                _check_price(sym, band_ok, "price", new_price, bad)
            for name, price in other_prices:
                _check_price(sym, band_ok, name, price, bad)
            step = sym.step
            if new_qty is not None and (
                step is None
                or not sym.min_qty <= new_qty <= sym.qty_cap  # type: ignore[operator]  # set with step
                or new_qty > sym.step_fast_max
                or new_qty % step
            ):
                _check_qty(sym, new_qty, bad)
            if order_id is not None or link_id is not None:  # step 16
                view = c.orders.find(category, symbol, order_id, link_id)
                if (
                    view is None
                    or not view.is_open
                    or (order_id is not None and link_id is not None and view.order_link_id != link_id)
                    or (new_qty is not None and new_qty <= view.cum_exec_qty)
                ):
                    _check_order(view, category, symbol, order_id, link_id, values, bad)
                if view is not None and not duplicate:
                    first = seen_orders.setdefault(view.order_id, index)
                    if first != index:
                        _deny(
                            bad,
                            _R_DUPLICATE,
                            DenialCode.DUPLICATE_ORDER_IN_BATCH,
                            f"order {view.order_id} is already amended by item {first} of this batch",
                        )
                        _deny(
                            bad,
                            _R_DUPLICATE,
                            DenialCode.ORDER_BUSY,
                            f"item {first} of this batch already amends order {view.order_id} (named by its "
                            "other id); one amend in flight per order",
                        )
                if view is not None:
                    holder = c.in_flight.holder(view.order_id)
                    if holder is not None:
                        _deny(bad, _R_ORDER, DenialCode.ORDER_BUSY, _busy_message(view.order_id, holder))
                    if view.is_open and values and all(_same(view, k, v) for k, v in values.items()):
                        _deny(
                            bad,
                            _R_ORDER,
                            DenialCode.NO_CHANGE,
                            f"order {view.order_id} already holds every requested value "
                            f"({', '.join(sorted(values))}); nothing to send",
                        )
            # Step 18. Inverse contracts are quoted in USD: there the qty is the notional.
            if new_qty is None and view is not None:
                new_qty = view.qty
            if new_qty is not None:
                if is_inverse:
                    notional = new_qty
                else:
                    price_now = new_price
                    if price_now is None and view is not None:
                        price_now = view.price
                    if price_now is not None and price_now <= 0:
                        price_now = sym.ref  # a market or conditional order's blank price: fail closed
                    if new_iv is not None and sym.ref is not None:
                        # Bybit prices the option from orderIv, not `price`: count the higher one.
                        price_now = sym.ref if price_now is None else max(price_now, sym.ref)
                    if price_now is not None:
                        notional = multiply(price_now, new_qty)
            if new_iv is not None:
                _check_iv(sym.rule, new_iv, bad)
            if notional is not None and notional > sym.rule.max_notional:
                _deny(
                    bad,
                    _R_NOTIONAL,
                    DenialCode.NOTIONAL_ABOVE_CAP,
                    f"notional {_num(notional)} after the amend is above the cap "
                    f"{_num(sym.rule.max_notional)} for {category} {symbol} (max_notional)",
                )
    if c.reducing:  # step 17 (also for items that never reached the order lookup)
        _check_reducing(view, values, bad)

    if bad:
        if len(bad) > 1:
            bad.sort(key=_rank)
        reasons = tuple([r for _, r in bad])
    else:
        reasons = ()
    return _item_verdict(index, shown_symbol, shown_oid, shown_link, reasons, item, view, notional)


_BATCH_DENIED: Final = Reason(
    DenialCode.BATCH_DENIED,
    "another item in this batch was denied; batch.mode is all_or_nothing; nothing was sent",
)


def _deny(bad: list[_Ranked], rank: int, code: DenialCode, message: str) -> None:
    bad.append((rank, Reason(code, message)))


def _rank(ranked: _Ranked) -> int:
    return ranked[0]


def _id_ok(value: str, max_len: int) -> bool:
    """Printable ASCII without spaces (0x21-0x7E), at most `max_len`: what Bybit's ids are made of."""
    return len(value) <= max_len and value.isascii() and value.isprintable() and " " not in value


def _report_duplicate(
    seen: dict[tuple[str, int, str], int], key: tuple[str, int, str], bad: list[_Ranked]
) -> bool:
    first = seen[key]
    name = "orderId" if key[1] == _ORDER_ID else "orderLinkId"
    _deny(
        bad,
        _R_DUPLICATE,
        DenialCode.DUPLICATE_ORDER_IN_BATCH,
        f"{name} {key[2]!r} is already amended by item {first} of this batch",
    )
    return True


def _check_price(sym: _Sym, band_ok: bool, name: str, value: Decimal, bad: list[_Ranked]) -> None:
    """Steps 14-15 for one price field, with a reason per problem."""
    if band_ok and not (sym.low <= value <= sym.high):
        _deny(
            bad,
            _R_BAND,
            DenialCode.PRICE_OUT_OF_BAND,
            f"{name} {_num(value)} is outside the allowed band "
            f"[{_num(sym.low)}, {_num(sym.high)}] ({sym.band_text()})",
        )
    if sym.min_price is not None and value < sym.min_price:
        _deny(
            bad,
            _R_BAND,
            DenialCode.PRICE_OUT_OF_BAND,
            f"{name} {_num(value)} is below the instrument's minPrice {_num(sym.min_price)}",
        )
    if sym.max_price is not None and value > sym.max_price:
        _deny(
            bad,
            _R_BAND,
            DenialCode.PRICE_OUT_OF_BAND,
            f"{name} {_num(value)} is above the instrument's maxPrice {_num(sym.max_price)}",
        )
    tick = sym.tick
    if tick is not None and _off_grid(value, tick, sym.tick_fast_max):
        _deny(
            bad,
            _R_TICK,
            DenialCode.PRICE_NOT_ON_TICK,
            f"{name} {_num(value)} is not a multiple of the tick size {_num(tick)}",
        )


def _check_qty(sym: _Sym, qty: Decimal, bad: list[_Ranked]) -> None:
    """Step 15 for qty, with a reason per problem."""
    step = sym.step
    if step is not None and _off_grid(qty, step, sym.step_fast_max):
        _deny(
            bad,
            _R_TICK,
            DenialCode.QTY_NOT_ON_STEP,
            f"qty {_num(qty)} is not a multiple of the qty step {_num(step)}",
        )
    if qty > sym.qty_cap:
        _deny(
            bad,
            _R_TICK,
            DenialCode.QTY_ABOVE_CAP,
            f"qty {_num(qty)} is above the cap {_num(sym.qty_cap)} ({sym.qty_cap_source}) "
            f"for {sym.rule.symbol}",
        )
    if sym.min_qty is not None and qty < sym.min_qty:
        _deny(
            bad,
            _R_TICK,
            DenialCode.QTY_BELOW_MIN,
            f"qty {_num(qty)} is below the instrument's minimum {_num(sym.min_qty)}",
        )


def _off_grid(value: Decimal, grid: Decimal, fast_max: Decimal) -> bool:
    """True if `value` is not an exact multiple of `grid`."""
    if value <= fast_max:
        # Quotient < 1e20: the `%` operator is exact in any context with >= 21 digits (the
        # default has 28) and ~3x faster than a Context method. Were the thread's context ever
        # smaller, the remainder would be NaN or raise: a denial either way, never a false pass.
        return bool(value % grid)
    return bool(EXACT.remainder(value, grid))


def _check_order(  # noqa: PLR0917  # called once per denied item; positional for speed
    view: OrderView | None,
    category: Category,
    symbol: str,
    order_id: str | None,
    link_id: str | None,
    values: Mapping[str, Decimal | str],
    bad: list[_Ranked],
) -> None:
    named = f"orderId {order_id!r}" if order_id is not None else f"orderLinkId {link_id!r}"
    if view is None:
        _deny(
            bad,
            _R_ORDER,
            DenialCode.UNKNOWN_ORDER,
            f"no order with {named} for {category} {symbol} in the sidecar's order view",
        )
        return
    if order_id is not None and link_id is not None and view.order_link_id != link_id:
        _deny(
            bad,
            _R_ORDER,
            DenialCode.UNKNOWN_ORDER,
            f"orderId {order_id!r} belongs to orderLinkId {view.order_link_id!r}, not {link_id!r}",
        )
    if not view.is_open:
        _deny(
            bad,
            _R_ORDER,
            DenialCode.UNKNOWN_ORDER,
            f"order {view.order_id} is {view.order_status} (closed); only open orders can be amended",
        )
    qty = values.get("qty")
    if isinstance(qty, Decimal) and qty <= view.cum_exec_qty:
        _deny(
            bad,
            _R_ORDER,
            DenialCode.QTY_BELOW_MIN,
            f"qty {_num(qty)} must be greater than the order's filled qty {_num(view.cum_exec_qty)}",
        )


def _same(view: OrderView, name: str, value: Decimal | str) -> bool:
    """The order already holds `value` in field `name` (Decimals compare by value: 94000 == 94000.0)."""
    return bool(view.value_of(name) == value)


def _busy_message(order_id: str, holder: str) -> str:
    if is_reread(holder):
        return (
            f"an earlier amend of order {order_id} ended unverified; the sidecar is re-reading the order "
            "from the exchange before it accepts another amend; nothing was sent, retry shortly"
        )
    return (
        f"an earlier amend of order {order_id} (request {holder}) has not settled yet; nothing was sent. "
        f"Wait for it (getAmendOutcome {holder}), then amend against the order's new state"
    )


def _check_iv(rule: SymbolRule, iv: Decimal, bad: list[_Ranked]) -> None:
    """orderIv: only inside the symbol's configured IV band (it sets the option's price)."""
    low, high = rule.order_iv_min, rule.order_iv_max
    if low is None or high is None:
        _deny(
            bad,
            _R_FIELD,
            DenialCode.FIELD_NOT_SUPPORTED,
            f"orderIv is not allowed for {rule.category} {rule.symbol}: Bybit prices the order from it and "
            "ignores price, so it needs an IV band (order_iv_min/order_iv_max) in the config",
        )
    elif not low <= iv <= high:
        _deny(
            bad,
            _R_BAND,
            DenialCode.PRICE_OUT_OF_BAND,
            f"orderIv {_num(iv)} is outside the allowed IV band [{_num(low)}, {_num(high)}] "
            f"for {rule.symbol}",
        )


def _check_reducing(view: OrderView | None, values: Mapping[str, Decimal | str], bad: list[_Ranked]) -> None:
    head = "trading state is reducing: "
    if view is None or view.side is None:
        why = "the order is unknown" if view is None else "the order's side is unknown"
        _deny(
            bad,
            _R_REDUCING,
            DenialCode.RISK_INCREASING,
            f"{head}{why}, so the sidecar cannot show that this amend lowers risk",
        )
        return
    for name, value in values.items():
        if name == "qty":
            assert isinstance(value, Decimal)
            if value > view.qty:
                _deny(
                    bad,
                    _R_REDUCING,
                    DenialCode.RISK_INCREASING,
                    f"{head}qty {_num(value)} is above the order's qty {_num(view.qty)}; "
                    "qty may only decrease",
                )
        elif name == "price":
            assert isinstance(value, Decimal)
            if view.side is Side.BUY and value > view.price:
                _deny(
                    bad,
                    _R_REDUCING,
                    DenialCode.RISK_INCREASING,
                    f"{head}a Buy may only move its price down (away from the market); "
                    f"{_num(value)} is above the current {_num(view.price)}",
                )
            elif view.side is Side.SELL and value < view.price:
                _deny(
                    bad,
                    _R_REDUCING,
                    DenialCode.RISK_INCREASING,
                    f"{head}a Sell may only move its price up (away from the market); "
                    f"{_num(value)} is below the current {_num(view.price)}",
                )
        else:
            _deny(
                bad,
                _R_REDUCING,
                DenialCode.RISK_INCREASING,
                f"{head}{name} cannot change; only qty decreases and prices moving away "
                "from the market are allowed",
            )


def _parse_enum(key: str, value: object, values: dict[str, Decimal | str], bad: list[_Ranked]) -> None:
    allowed_values = ENUM_VALUES[key]
    if isinstance(value, str) and value in allowed_values:
        values[key] = value
    else:
        _deny(
            bad,
            _R_SHAPE,
            DenialCode.INVALID_REQUEST,
            f"{key} must be one of {', '.join(sorted(allowed_values))}; got {short_repr(value)}",
        )


def _bad_id(name: str, value: object, max_len: int) -> Reason:
    """A given id that is not Bybit-shaped (wrong type, too long, odd characters)."""
    size = f" ({len(value)} characters)" if isinstance(value, str) and len(value) > max_len else ""
    return Reason(
        DenialCode.INVALID_FIELD,
        f"{name} must be a string of 1-{max_len} printable ASCII characters without spaces, "
        f"got {short_repr(value)}{size}",
    )


def _conditional_in_batch(name: str) -> Reason:
    return Reason(
        DenialCode.FIELD_NOT_SUPPORTED,
        f"{name} is not supported in a batch amend (Bybit's order.amend-batch has no conditional "
        "orders); use wsAmendOrder",
    )


def _num(value: Decimal) -> str:
    """A Decimal as plain digits for messages (no exponent)."""
    return format(value, "f")


def _refuse_unparsed(category: Category | None, count: int, batch: list[_Ranked]) -> Verdict:
    """Deny without parsing any item (steps 3-4): every item gets the batch reasons. Only the
    first `_LISTED_MAX` are listed, the rest counted in `items_omitted` (bounded answers)."""
    reasons = tuple([r for _, r in batch])
    listed = min(count, _LISTED_MAX)
    verdicts = tuple([_item_verdict(i, None, None, None, reasons, None, None, None) for i in range(listed)])
    return Verdict(category=category, items=verdicts, reasons=reasons, items_omitted=count - listed)


def _internal_error(request: AmendRequest, exc: Exception) -> Verdict:
    reason = Reason(
        DenialCode.INTERNAL_ERROR,
        f"the validator failed ({type(exc).__name__}); nothing was sent",
    )
    try:
        items: object = request.items
        count = len(items) if isinstance(items, (tuple, list)) else 0
    except Exception:
        count = 0
    verdicts = tuple(
        ItemVerdict(index=i, symbol=None, order_id=None, order_link_id=None, reasons=(reason,))
        for i in range(count)
    )
    return Verdict(category=None, items=verdicts, reasons=(reason,))


# --------------------------------------------------------------------------------------------
# Building the result objects.
#
# ItemVerdict and AmendItem are frozen, slotted dataclasses; their generated __init__ goes through
# object.__setattr__ per field and costs ~0.75 us per ItemVerdict on the bench machine, as much as
# all checks of an item. Two cheaper ways, tried in this order at import:
#  1. a builder: a plain class with the very same slots fills them with ordinary (fast) attribute
#     stores, then turns into the dataclass by `__class__` assignment, which CPython allows only
#     between classes of identical layout (it raises TypeError otherwise) (~0.2 us);
#  2. the slots' descriptors, called directly (what the generated __init__ ends up doing) (~0.45 us).
# Each is used only if the dataclass still has exactly the fields below and no __post_init__, and
# the builder only if a trial object comes out right; otherwise the normal constructor is used.
# The objects are the same either way: tests/core/test_validation.py compares them.

_ITEM_VERDICT_FIELDS: Final = (
    "index",
    "symbol",
    "order_id",
    "order_link_id",
    "reasons",
    "item",
    "order",
    "notional",
)
_AMEND_ITEM_FIELDS: Final = ("symbol", "order_id", "order_link_id", "values")

_NewItemVerdict = Callable[
    [
        int,
        str | None,
        str | None,
        str | None,
        tuple[Reason, ...],
        AmendItem | None,
        OrderView | None,
        Decimal | None,
    ],
    ItemVerdict,
]
_NewAmendItem = Callable[[str, str | None, str | None, dict[str, Decimal | str]], AmendItem]


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Any, ...] | None:
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return None
    if tuple(f.name for f in dataclasses.fields(cls)) != names:
        return None
    setters = tuple(getattr(cls.__dict__.get(n), "__set__", None) for n in names)
    return None if any(s is None for s in setters) else setters


_IV_SETTERS: Final = _slot_setters(ItemVerdict, _ITEM_VERDICT_FIELDS)
_AI_SETTERS: Final = _slot_setters(AmendItem, _AMEND_ITEM_FIELDS)
_new = object.__new__


def _item_verdict_by_setters(  # noqa: PLR0917  # positional on purpose: the hot path
    index: int,
    symbol: str | None,
    order_id: str | None,
    order_link_id: str | None,
    reasons: tuple[Reason, ...],
    item: AmendItem | None,
    order: OrderView | None,
    notional: Decimal | None,
) -> ItemVerdict:
    setters = _IV_SETTERS
    if setters is None:
        return ItemVerdict(index, symbol, order_id, order_link_id, reasons, item, order, notional)
    obj: ItemVerdict = _new(ItemVerdict)
    s_index, s_symbol, s_oid, s_link, s_reasons, s_item, s_order, s_notional = setters
    s_index(obj, index)
    s_symbol(obj, symbol)
    s_oid(obj, order_id)
    s_link(obj, order_link_id)
    s_reasons(obj, reasons)
    s_item(obj, item)
    s_order(obj, order)
    s_notional(obj, notional)
    return obj


def _amend_item_by_setters(
    symbol: str, order_id: str | None, order_link_id: str | None, values: dict[str, Decimal | str]
) -> AmendItem:
    setters = _AI_SETTERS
    if setters is None:
        return AmendItem(symbol, order_id, order_link_id, values)
    obj: AmendItem = _new(AmendItem)
    s_symbol, s_oid, s_link, s_values = setters
    s_symbol(obj, symbol)
    s_oid(obj, order_id)
    s_link(obj, order_link_id)
    s_values(obj, values)
    return obj


class _ItemVerdictBuilder:
    """Fills an ItemVerdict's slots, then becomes one (see above)."""

    __slots__ = _ITEM_VERDICT_FIELDS

    def __init__(  # noqa: PLR0917  # positional on purpose: the hot path
        self,
        index: int,
        symbol: str | None,
        order_id: str | None,
        order_link_id: str | None,
        reasons: tuple[Reason, ...],
        item: AmendItem | None,
        order: OrderView | None,
        notional: Decimal | None,
    ) -> None:
        self.index = index
        self.symbol = symbol
        self.order_id = order_id
        self.order_link_id = order_link_id
        self.reasons = reasons
        self.item = item
        self.order = order
        self.notional = notional
        self.__class__ = ItemVerdict  # type: ignore[assignment]  # same slots; see above


class _AmendItemBuilder:
    """Fills an AmendItem's slots, then becomes one (see above)."""

    __slots__ = _AMEND_ITEM_FIELDS

    def __init__(
        self, symbol: str, order_id: str | None, order_link_id: str | None, values: dict[str, Decimal | str]
    ) -> None:
        self.symbol = symbol
        self.order_id = order_id
        self.order_link_id = order_link_id
        self.values = values
        self.__class__ = AmendItem  # type: ignore[assignment]  # same slots; see above


def _builder_works(builder: Callable[..., object], cls: type, names: tuple[str, ...]) -> bool:
    """True if `builder` makes a `cls` holding each argument in the field of its position."""
    if _slot_setters(cls, names) is None:
        return False
    marks = [object() for _ in names]
    try:
        obj = builder(*marks)
    except TypeError:  # layouts differ: CPython refuses the __class__ assignment
        return False
    return type(obj) is cls and all(getattr(obj, n) is m for n, m in zip(names, marks, strict=True))


_item_verdict: Final[_NewItemVerdict] = (
    cast(_NewItemVerdict, _ItemVerdictBuilder)
    if _builder_works(_ItemVerdictBuilder, ItemVerdict, _ITEM_VERDICT_FIELDS)
    else _item_verdict_by_setters
)
_amend_item: Final[_NewAmendItem] = (
    cast(_NewAmendItem, _AmendItemBuilder)
    if _builder_works(_AmendItemBuilder, AmendItem, _AMEND_ITEM_FIELDS)
    else _amend_item_by_setters
)
