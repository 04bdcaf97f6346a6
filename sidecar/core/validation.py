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

Speed, by design and on one path: `PreparedPolicy` compiles the policy once (at config load and
on every reload) into per-symbol band factors and the allowlist text; for each (instrument, quote)
pair it keeps the band and grid bounds, recomputed only when the market hands out a new quote or
instrument object; it parses number strings through a bounded memo. Every item then takes the same
path (`_check_item`): one pass over its fields, then the checks in the order above, each a
comparison against prepared bounds; a reason and its sentence are built only when a check fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from sidecar.core.inflight import is_reread
from sidecar.core.numbers import EXACT, parse_positive_decimal, plain_decimal, short_repr
from sidecar.core.policy import Policy, SymbolRule
from sidecar.core.types import (
    AMEND_FIELDS,
    AMEND_PRICE_FIELDS,
    BYBIT_BATCH_LIMIT,
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

__all__ = [
    "BAND_FIELDS",
    "ENUM_VALUES",
    "ITEM_FIELDS",
    "LISTED_MAX",
    "PreparedPolicy",
    "refused_whole",
    "validate",
]

# Field kinds of an amend item (Bybit's names), derived from core.types.AMEND_FIELDS.
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
    **{
        name: _RESTRICTED if (not f.in_batch or f.option_only) else (_ENUM if f.enum is not None else _NUMBER)
        for name, f in AMEND_FIELDS.items()
    },
}
ITEM_FIELDS: Final = tuple(_FIELD_KIND)
ENUM_VALUES: Final[Mapping[str, frozenset[str]]] = {
    name: f.enum for name, f in AMEND_FIELDS.items() if f.enum is not None
}
# Prices checked against the band and the tick (triggerPrice too: it is a price like the others).
BAND_FIELDS: Final = AMEND_PRICE_FIELDS
_BATCH_FORBIDDEN: Final = frozenset(name for name, f in AMEND_FIELDS.items() if not f.in_batch)
_ORDER_ID_MAX = 64
_LINK_ID_MAX = 36
_SYMBOL_MAX = 40  # config.py's symbol pattern allows the same
LISTED_MAX: Final = 20  # items listed in a verdict on a request refused whole (Bybit's largest batch)

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
_PRICE_QTY: Final = frozenset({"price", "qty"})
_multiply: Final = EXACT.multiply
_num: Final = plain_decimal  # numbers in messages: the sidecar's one Decimal text form
_IDS: Final = frozenset({"orderId", "orderLinkId"})
# A NamedTuple built by tuple.__new__ directly: the same object as its constructor makes, without
# the generated Python-level __new__ (half the cost; it runs twice per item).
_new: Final = tuple.__new__

_Ranked = tuple[int, Reason]
_Checks = tuple["_Sym", list[_Ranked], bool]  # a symbol's state, its problems now, band usable now
_FAST_QUOTIENT: Final = Decimal(10) ** 20  # see _off_grid
_ZERO: Final = Decimal(0)  # a Decimal compares faster with a Decimal than with an int


def validate(  # noqa: PLR0917  # the signature every caller uses (DESIGN: validate(request, policy, ...))
    request: AmendRequest,
    policy: Policy | PreparedPolicy,
    market: MarketLookup,
    orders: OrderLookup,
    now_ns: int,
    trading_state: TradingState = TradingState.ACTIVE,
    in_flight: InFlightLookup | None = None,
) -> Verdict:
    """Decide every item of `request`; see the module docstring for the checks and their order.

    `policy`: the `PreparedPolicy` its owner keeps (a plain `Policy` is prepared for this one
    call). `in_flight` names the orders with an unsettled amend (core/inflight.py); None: none are.
    """
    try:
        prepared = policy if isinstance(policy, PreparedPolicy) else PreparedPolicy(policy)
        busy = in_flight if in_flight is not None else _NOTHING_IN_FLIGHT
        return _validate(request, prepared, market, orders, now_ns, trading_state, busy)
    except Exception as exc:  # a bug in a check must deny, never let an item through
        return _internal_error(request, exc)


# --------------------------------------------------------------------------------------------
# Per-policy and per-symbol preparation


class PreparedPolicy:
    """A `Policy` compiled for validation: what every call would otherwise recompute.

    Built once per policy (the owner rebuilds it on reload). Holds, explicitly, the two things that
    change under it: per-symbol bounds (`_Sym`), recomputed when the market hands out a new quote or
    instrument object, and a bounded memo of parsed number strings (parsing is a pure function of
    the text, so the memo cannot change an answer). Not thread-safe; one owner.
    """

    __slots__ = (
        "_memo",
        "bands",
        "categories",
        "max_age_ns",
        "memo_get",
        "policy",
        "symbol_state",
        "symbols_text",
    )

    _MEMO_MAX: Final = 4096

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
        self._memo: dict[str, Decimal | str] = {}
        # What `parse` gave for a text recently, or None (then call `parse`): the memo's own `get`,
        # for the hot loop. The memo is only ever cleared, never replaced, so this stays valid.
        self.memo_get = self._memo.get

    def parse(self, value: object) -> Decimal | str:
        """`numbers.parse_positive_decimal`, memoised for strings (amends cluster around the
        market, so the same texts repeat: a hit is one dict lookup instead of a parse)."""
        if type(value) is not str:
            return parse_positive_decimal(value)
        memo = self._memo
        result = memo.get(value)
        if result is None:
            result = parse_positive_decimal(value)
            if len(memo) >= self._MEMO_MAX:
                memo.clear()
            memo[value] = result
        return result


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
        "low",
        "max_notional",
        "max_price",
        "min_price",
        "min_qty",
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
        # The common item's intervals (empty until the instrument and the reference are usable):
        # a price in [price_low, price_high] passes the band and the instrument's limits and
        # can be tested for the tick with `%` (see _off_grid); a qty in [qty_low, qty_high] is
        # within min and cap and can be tested for the step the same way. Anything outside takes
        # the detailed checks, which give the reasons.
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
            self.price_grid = inst.tick_size
            self.qty_grid = inst.qty_step
            self.qty_low = inst.min_qty
            self.qty_high = min(self.qty_cap, self.step_fast_max)

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
        if self.tick is not None:
            self.price_low = low if self.min_price is None else max(low, self.min_price)
            self.price_high = min(high, self.tick_fast_max)
            if self.max_price is not None:
                self.price_high = min(self.price_high, self.max_price)

    def band_text(self) -> str:
        return f"{self.rule.reference} {_num(self.ref or Decimal(0))} ± {_num(self.rule.price_band_bps)} bps"


def _symbol_checks(
    compiled: PreparedPolicy, rule: SymbolRule, market: MarketLookup, now_ns: int
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
    """One call's context for `_check_item`: the request-wide facts and what items share."""

    __slots__ = (
        "any_denied",
        "cat_name",
        "category",
        "compiled",
        "find",
        "holder",
        "in_flight",
        "is_batch",
        "is_inverse",
        "is_option",
        "market",
        "memo_get",
        "now_ns",
        "orders",
        "parse",
        "raw_category",
        "reducing",
        "seen_keys",
        "seen_orders",
        "syms",
    )

    def __init__(  # noqa: PLR0917  # built from _validate's locals
        self,
        compiled: PreparedPolicy,
        orders: OrderLookup,
        market: MarketLookup,
        now_ns: int,
        category: Category | None,
        raw_category: object,
        is_batch: bool,
        trading_state: TradingState,
        in_flight: InFlightLookup,
    ) -> None:
        self.in_flight = in_flight
        self.holder = in_flight.holder
        self.compiled = compiled
        self.parse = compiled.parse
        self.memo_get = compiled.memo_get
        self.find = orders.find
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
        self.syms: dict[str, _Checks | None] = {}  # steps 11-13, once per symbol and call
        self.seen_keys: dict[tuple[str, int, str], int] = {}  # step 10 by key: first index
        self.seen_orders: dict[str, int] = {}  # step 10 by resolved order: first index
        self.any_denied = False  # some item has a reason of its own (step 20)


def _checks_for(  # noqa: PLR0917  # positional: called once per symbol and call
    compiled: PreparedPolicy,
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


def _validate(  # noqa: PLR0917  # mirrors validate()
    request: AmendRequest,
    compiled: PreparedPolicy,
    market: MarketLookup,
    orders: OrderLookup,
    now_ns: int,
    trading_state: TradingState,
    in_flight: InFlightLookup,
) -> Verdict:
    policy = compiled.policy
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

    call = _Call(
        compiled,
        orders,
        market,
        now_ns,
        category,
        raw_category,
        request.batch,
        trading_state,
        in_flight,
    )
    verdicts = [_check_item(call, index, raw) for index, raw in enumerate(items)]
    any_denied = call.any_denied

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
            verdicts[i] = ItemVerdict(
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
    """Steps 5-18 for one item, every reason in the documented order.

    Written for the common item: each check is a comparison that passes, and a reason (with its
    sentence) is built only when one fails. Keep it that way: it runs for every item of every call.
    """
    bad: list[_Ranked] = []
    if type(raw) is not dict and not isinstance(raw, Mapping):  # step 5
        _deny(
            bad,
            _R_SHAPE,
            DenialCode.INVALID_REQUEST,
            f"item {index} must be an object, got {short_repr(raw)}",
        )
        c.any_denied = True
        return ItemVerdict(index, None, None, None, (bad[0][1],), None, None, None)
    # Only what the common item needs is loaded up front (each local costs, 20 items a call); the
    # rest is read from `c` in the branches that need it.
    parse = c.parse
    memo_get = c.memo_get  # parse()'s memo, looked up inline: most number texts repeat

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
    other_prices: list[tuple[str, Decimal]] | None = None
    amend_fields = 0
    unknown: list[str] | None = None
    symbol_seen = False
    for key, value in raw.items():
        # The fields of the common item first, by name (no table lookup); the rest by kind.
        if key == "symbol":
            if value is None:
                continue
            symbol_seen = True
            if isinstance(value, str) and 0 < len(value) <= _SYMBOL_MAX:
                shown_symbol = symbol = value
                continue
            if isinstance(value, str) and len(value) > _SYMBOL_MAX:
                _deny(
                    bad,
                    _R_SHAPE,
                    DenialCode.INVALID_FIELD,
                    f"symbol is {len(value)} characters long; Bybit symbols have at most {_SYMBOL_MAX} "
                    f"(got {short_repr(value)})",
                )
                continue
            if isinstance(value, str):
                shown_symbol = value
            _deny(
                bad,
                _R_SHAPE,
                DenialCode.INVALID_REQUEST,
                f"symbol must be a non-empty string, got {short_repr(value)}",
            )
            continue
        if key in _PRICE_QTY:
            if value is None:  # null means "not given" (Bybit's REST example sends it)
                continue
            amend_fields += 1
            parsed = memo_get(value) if type(value) is str else None
            if parsed is None:
                parsed = parse(value)
            if type(parsed) is Decimal:
                values[key] = parsed
                if key == "price":
                    new_price = parsed
                else:
                    new_qty = parsed
            else:
                _deny(bad, _R_NUMBER, DenialCode.INVALID_NUMBER, f"{key} {short_repr(value)} {parsed}")
            continue
        if key in _IDS:
            if value is None:
                continue
            limit = _ORDER_ID_MAX if key == "orderId" else _LINK_ID_MAX
            if type(value) is str and len(value) <= limit:
                if key == "orderId":
                    shown_oid = value
                else:
                    shown_link = value
                if not value:
                    continue
                # Printable ASCII without spaces (0x21-0x7E): what Bybit's ids are made of.
                if value.isascii() and value.isprintable() and " " not in value:
                    if key == "orderId":
                        order_id = value
                    else:
                        link_id = value
                    continue
            bad.append((_R_ID, _bad_id(key, value, limit)))
            continue
        kind = _FIELD_KIND.get(key)
        if kind is None:
            if unknown is None:
                unknown = []
            unknown.append(key if isinstance(key, str) and len(key) <= 40 else short_repr(key))
            continue
        if value is None:  # null means "not given" (Bybit's REST example sends it)
            continue
        if kind == _NUMBER:  # takeProfit, stopLoss, tpLimitPrice, slLimitPrice (price, qty: above)
            amend_fields += 1
            parsed = parse(value)
            if type(parsed) is Decimal:
                values[key] = parsed
                if other_prices is None:
                    other_prices = []
                other_prices.append((key, parsed))
            else:
                _deny(bad, _R_NUMBER, DenialCode.INVALID_NUMBER, f"{key} {short_repr(value)} {parsed}")
        elif kind == _RESTRICTED:
            amend_fields += 1
            if c.is_batch and key in _BATCH_FORBIDDEN:
                bad.append((_R_FIELD, _conditional_in_batch(key)))
            elif key == "orderIv" and not c.is_option:
                _deny(
                    bad,
                    _R_FIELD,
                    DenialCode.FIELD_NOT_SUPPORTED,
                    f"orderIv is only for category option, not {short_repr(c.raw_category)}",
                )
            elif key == "triggerBy":
                _parse_enum(key, value, values, bad)
            else:
                parsed = parse(value)
                if type(parsed) is Decimal:
                    values[key] = parsed
                    if key == "triggerPrice":
                        if other_prices is None:
                            other_prices = []
                        other_prices.append((key, parsed))
                    else:  # orderIv: bounded by the symbol's IV band (step 18)
                        new_iv = parsed
                else:
                    _deny(bad, _R_NUMBER, DenialCode.INVALID_NUMBER, f"{key} {short_repr(value)} {parsed}")
        elif kind == _ENUM:
            amend_fields += 1
            _parse_enum(key, value, values, bad)
        elif not (isinstance(value, str) and value == c.cat_name):  # _CATEGORY, echoed per item
            _deny(
                bad,
                _R_FIELD,
                DenialCode.FIELD_NOT_SUPPORTED,
                f"item category {short_repr(value)} differs from the request's "
                f"category {short_repr(c.raw_category)} (one category per batch)",
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
    if order_id is None and link_id is None and not (bad and any(r[0] == _R_ID for r in bad)):
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
            if c.seen_keys.setdefault(dkey, index) != index:
                duplicate = _report_duplicate(c.seen_keys, dkey, bad)
        if link_id is not None and not duplicate:
            dkey = (symbol, _LINK_ID, link_id)
            if c.seen_keys.setdefault(dkey, index) != index:
                duplicate = _report_duplicate(c.seen_keys, dkey, bad)

    item = _new(AmendItem, (symbol, order_id, link_id, values)) if symbol is not None else None
    view: OrderView | None = None
    notional: Decimal | None = None
    category = c.category
    if symbol is not None and category is not None:
        syms = c.syms
        if symbol in syms:
            checks = syms[symbol]
        else:
            checks = _checks_for(c.compiled, category, c.market, c.now_ns, syms, symbol)
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
            # Steps 14-15. A price in the symbol's prepared interval passes the band and the
            # instrument's limits, and `%` tests its tick exactly (see _off_grid); anything else
            # (no usable band, outside, off the grid) takes the detailed check, which says exactly
            # what is wrong. The same for qty against its min, cap and step.
            if new_price is not None and (
                not band_ok or not sym.price_low <= new_price <= sym.price_high or new_price % sym.price_grid
            ):
                _check_price(sym, band_ok, "price", new_price, bad)
            if other_prices is not None:
                for name, price in other_prices:
                    _check_price(sym, band_ok, name, price, bad)
            if new_qty is not None and (not sym.qty_low <= new_qty <= sym.qty_high or new_qty % sym.qty_grid):
                _check_qty(sym, new_qty, bad)
            if order_id is not None or link_id is not None:  # step 16
                view = c.find(category, symbol, order_id, link_id)
                is_open = view is not None and view.is_open
                if (
                    view is None
                    or not is_open
                    or (order_id is not None and link_id is not None and view.order_link_id != link_id)
                    or (new_qty is not None and new_qty <= view.cum_exec_qty)
                ):
                    _check_order(view, category, symbol, order_id, link_id, values, bad)
                if view is not None and not duplicate:
                    first = c.seen_orders.setdefault(view.order_id, index)
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
                    holder = c.holder(view.order_id)
                    if holder is not None:
                        _deny(bad, _R_ORDER, DenialCode.ORDER_BUSY, _busy_message(view.order_id, holder))
                    if (
                        values
                        and is_open
                        and (new_price is None or new_price == view.price)
                        and (new_qty is None or new_qty == view.qty)
                        and all(_same(view, k, v) for k, v in values.items())
                    ):
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
                if c.is_inverse:
                    notional = new_qty
                else:
                    price_now = new_price
                    if price_now is None and view is not None:
                        price_now = view.price
                    if price_now is not None and price_now <= _ZERO:
                        price_now = sym.ref  # a market or conditional order's blank price: fail closed
                    if new_iv is not None and sym.ref is not None:
                        # Bybit prices the option from orderIv, not `price`: count the higher one.
                        price_now = sym.ref if price_now is None else max(price_now, sym.ref)
                    if price_now is not None:
                        notional = _multiply(price_now, new_qty)
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
        c.any_denied = True
        if len(bad) > 1:
            bad.sort(key=_rank)
        reasons = tuple([r for _, r in bad])
    else:
        reasons = ()
    return _new(ItemVerdict, (index, shown_symbol, shown_oid, shown_link, reasons, item, view, notional))


_BATCH_DENIED: Final = Reason(
    DenialCode.BATCH_DENIED,
    "another item in this batch was denied; batch.mode is all_or_nothing; nothing was sent",
)


def _deny(bad: list[_Ranked], rank: int, code: DenialCode, message: str) -> None:
    bad.append((rank, Reason(code, message)))


def _rank(ranked: _Ranked) -> int:
    return ranked[0]


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


def refused_whole(category: Category | None, count: int, reasons: tuple[Reason, ...]) -> Verdict:
    """A request of `count` items refused whole, no item parsed: every item gets `reasons`. Only the
    first LISTED_MAX are listed, the rest counted in `items_omitted` (bounded answers, DESIGN §4.3)."""
    listed = min(count, LISTED_MAX)
    verdicts = tuple([ItemVerdict(i, None, None, None, reasons, None, None, None) for i in range(listed)])
    return Verdict(category=category, items=verdicts, reasons=reasons, items_omitted=count - listed)


def _refuse_unparsed(category: Category | None, count: int, batch: list[_Ranked]) -> Verdict:
    """Deny without parsing any item (steps 3-4): every item gets the batch reasons."""
    return refused_whole(category, count, tuple([r for _, r in batch]))


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
    return refused_whole(None, count, (reason,))
