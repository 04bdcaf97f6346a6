"""What every probe check shares: where the exchange is, the credentials, the exchange's clock, the
sidecar's REST client, the probe's tag and request ids, and a few cached look-ups (instrument rules,
touch prices) with the frames that refer to no order at all.

The probe's request timestamps are on the exchange's clock (the sidecar's `ExchangeClock`, synced
from `/v5/market/time` first), exactly as the sidecar stamps its own, so a skewed host does not
turn every check into a recv-window refusal.

It must not judge anything (that is each check's job) and must never print keys or secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from sidecar.bybit.codec import encode_amend
from sidecar.bybit.endpoints import Endpoints
from sidecar.bybit.exchange_clock import ExchangeClock
from sidecar.bybit.ids import ReqIdFactory, make_boot_token
from sidecar.bybit.messages import InstrumentItem, InstrumentsResult, TickerItem
from sidecar.bybit.rest import RestClient
from sidecar.bybit.retcodes import classify, describe
from sidecar.clock import Clock
from sidecar.core.types import AmendItem, Category
from sidecar.probe.sockets import Frame, TradeSocket

__all__ = [
    "AUTH_EXPIRY_MS",
    "BALANCE_CODES",
    "Probe",
    "ProbeSettings",
    "Rules",
    "code_meaning",
    "not_found_code",
]

AUTH_EXPIRY_MS = 10_000  # the sidecar's own auth `expires` horizon
_TAG_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# The probe's own link ids: `probe-<tag>-<n>`; the tag is random per run, so no other run's or
# anyone else's order can carry it.
LINK_PREFIX = "probe-"


# Refusals that mean the account lacks funds for a test order (the run's problem, not a difference).
BALANCE_CODES = frozenset({110004, 110006, 110007, 110012, 170131})


def not_found_code(category: Category) -> int:
    """Bybit's "order does not exist" code for an amend of an order nobody has (reference §6)."""
    return 170213 if category is Category.SPOT else 110001


def code_meaning(code: int | str) -> str:
    """A retCode with what it means and how the sidecar classes it (for a `differs` detail)."""
    if not isinstance(code, int):
        return code
    return f"{code} ({describe(code)}; the sidecar treats it as {classify(code).value})"


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """What the run was asked to do."""

    symbols: tuple[tuple[Category, str], ...]  # the configured ones, in config order
    max_age_ms: int  # reference_price.max_age_ms
    recv_window_ms: int
    allow_orders: bool
    ticker_seconds: float


@dataclass(frozen=True, slots=True)
class Rules:
    """The trading rules the probe needs to build valid orders (from instruments-info)."""

    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal  # linear minNotionalValue / spot minOrderAmt; 0 when none

    def floor_price(self, price: Decimal) -> Decimal:
        return (price / self.tick).to_integral_value(ROUND_FLOOR) * self.tick

    def ceil_price(self, price: Decimal) -> Decimal:
        return (price / self.tick).to_integral_value(ROUND_CEILING) * self.tick

    def qty_for(self, price: Decimal) -> Decimal:
        """The smallest qty on the step that is at least the minimum and worth 10 % over the
        minimum notional at `price`."""
        need = self.min_notional * Decimal("1.1") / price if self.min_notional else Decimal(0)
        qty = max(self.min_qty, need)
        return (qty / self.step).to_integral_value(ROUND_CEILING) * self.step


@dataclass
class Probe:
    """The shared state of one probe run."""

    endpoints: Endpoints
    api_key: str
    api_secret: str
    clock: Clock
    xclock: ExchangeClock
    rest: RestClient
    settings: ProbeSettings
    tag: str = field(default_factory=lambda: "".join(secrets.choice(_TAG_ALPHABET) for _ in range(6)))
    _ids: ReqIdFactory | None = None
    _rules: dict[tuple[Category, str], tuple[InstrumentItem, Rules]] = field(default_factory=dict)
    _absent_prices: dict[tuple[Category, str], Decimal] = field(default_factory=dict)
    trade_budget_used_ns: int = 0  # when a request last spent per-UID trade budget

    # ------------------------------------------------------------ ids

    def req_id(self) -> str:
        if self._ids is None:
            token = make_boot_token(self.clock.wall_ms(), secrets.token_bytes(3))
            self._ids = ReqIdFactory(token)
        return self._ids.next()

    def link(self, label: str) -> str:
        """An orderLinkId of this run (≤ 36 characters: Bybit's limit)."""
        return f"{LINK_PREFIX}{self.tag}-{label}"[:36]

    @property
    def link_prefix(self) -> str:
        return f"{LINK_PREFIX}{self.tag}-"

    # ------------------------------------------------------------ symbols

    def symbol_of(self, *categories: Category, fallback: str) -> tuple[Category, str]:
        """The first configured symbol of the first of `categories` that has one, else
        (`categories[0]`, `fallback`): a symbol every Bybit venue lists."""
        for category in categories:
            for cat, sym in self.settings.symbols:
                if cat is category:
                    return cat, sym
        return categories[0], fallback

    def linear_symbol(self) -> tuple[Category, str]:
        return self.symbol_of(Category.LINEAR, fallback="BTCUSDT")

    def inverse_symbol(self) -> tuple[Category, str]:
        return self.symbol_of(Category.INVERSE, fallback="BTCUSD")

    # ------------------------------------------------------------ look-ups

    async def rules(self, category: Category, symbol: str) -> tuple[InstrumentItem, Rules]:
        key = (category, symbol)
        if key not in self._rules:
            result = await self.rest.fetch(
                "/v5/market/instruments-info", {"category": category.value, "symbol": symbol}
            )
            page = InstrumentsResult.model_validate(result)
            row = next((r for r in page.rows if r.symbol == symbol), None)
            if row is None:
                raise LookupError(f"{category.value} {symbol} is not listed by the exchange")
            inst = row.to_instrument(category)
            lot = row.lot_size_filter
            min_notional = lot.min_notional_value or lot.min_order_amt or Decimal(0)
            self._rules[key] = (row, Rules(inst.tick_size, inst.qty_step, inst.min_qty, min_notional))
        return self._rules[key]

    async def touch(self, category: Category, symbol: str) -> TickerItem:
        rows = await self.rest.tickers(category, symbol)
        row = next((r for r in rows if r.symbol == symbol), None)
        if row is None or (row.bid1_price is None and row.last_price is None):
            raise LookupError(f"no ticker for {category.value} {symbol}")
        return row

    async def resting_price(self, category: Category, symbol: str) -> Decimal:
        """A tick-valid price near the market's bid, read once per run (for requests about orders
        that do not exist: any valid price will do)."""
        key = (category, symbol)
        if key not in self._absent_prices:
            _, rules = await self.rules(category, symbol)
            row = await self.touch(category, symbol)
            ref = row.bid1_price or row.last_price
            assert ref is not None  # touch() guarantees one
            self._absent_prices[key] = rules.floor_price(ref)
        return self._absent_prices[key]

    # ------------------------------------------------------------ trade socket

    @contextlib.asynccontextmanager
    async def trade(self) -> AsyncIterator[TradeSocket]:
        """An authenticated trade socket (raises ConnectionError if the exchange refuses auth)."""
        async with TradeSocket.open(self.endpoints.trade_ws_url, self.clock) as sock:
            reply = await sock.auth(self.api_key, self.api_secret, self.xclock.wall_ms() + AUTH_EXPIRY_MS)
            if reply is None or reply.get("retCode") != 0:
                code = reply.get("retCode") if reply else "no reply"
                raise ConnectionError(f"trade socket auth refused (retCode {code})")
            yield sock

    def absent_amend(
        self,
        category: Category,
        symbol: str,
        price: Decimal,
        *,
        req_id: str,
        label: str = "absent",
        ts_ms: int | None = None,
        integer_header: bool = False,
    ) -> str:
        """An `order.amend` frame, built by the sidecar's encoder, for an order nobody has (an
        orderLinkId of this run the probe never creates): Bybit refuses it (110001) and nothing
        changes. `integer_header` sends the header values as JSON integers (pybit's form)."""
        item = AmendItem(symbol, None, self.link(label), {"price": price})
        stamp = self.xclock.wall_ms() if ts_ms is None else ts_ms
        frame = encode_amend(req_id, category, item, stamp, self.settings.recv_window_ms)
        if not integer_header:
            return frame
        msg = json.loads(frame)
        msg["header"] = {k: int(v) for k, v in msg["header"].items()}
        return json.dumps(msg, separators=(",", ":"))

    async def spend(self, sock: TradeSocket, req_id: str, frame: str) -> Frame | None:
        """A trade request that spends rate budget (remembered, so a budget check can wait for a
        fresh 1 s window first)."""
        reply = await sock.request(req_id, frame)
        self.trade_budget_used_ns = self.clock.monotonic_ns()
        return reply

    async def fresh_window(self, window_ms: int = 1100) -> None:
        """Wait until the last budget-spending request is out of Bybit's rolling 1 s window."""
        if self.trade_budget_used_ns:
            left_ns = self.trade_budget_used_ns + window_ms * 1_000_000 - self.clock.monotonic_ns()
            if left_ns > 0:
                await asyncio.sleep(left_ns / 1e9)
