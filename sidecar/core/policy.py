"""The compiled policy: frozen core-side copies of the YAML limits.

`sidecar/config/policy.py` builds a `Policy` with `to_policy()`; the validator and rate limiter read it.
This module holds values only. It must not parse YAML, import pydantic or read the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Final

from sidecar.core.types import BatchMode, Category, ReferenceKind

__all__ = [
    "DEFAULT_EXCHANGE_GUARD_MS",
    "DEFAULT_EXCHANGE_LIMITS_PER_S",
    "DEFAULT_UTILIZATION",
    "ExchangeBudget",
    "Policy",
    "RateRule",
    "RateScope",
    "SymbolRule",
    "default_budgets",
]


class RateScope(StrEnum):
    TOOL = "tool"  # key: the MCP tool name; cost 1 per call
    SYMBOL = "symbol"  # key: "{category}:{symbol}"; cost 1 per item of that symbol
    GLOBAL = "global"  # key: "*"; cost 1 per call
    EXCHANGE = "exchange"  # key: "{op}:{category}"; Bybit's per-UID budget (items or requests)


# Bybit's default per-UID limits per second (reference/bybit-v5.md §5, UTA Pro default tier),
# for the two ops the sidecar sends. inverse and linear share a cell in Bybit's table.
DEFAULT_EXCHANGE_LIMITS_PER_S: Mapping[tuple[str, Category], int] = {
    ("order.amend-batch", Category.LINEAR): 10,
    ("order.amend-batch", Category.INVERSE): 10,
    ("order.amend-batch", Category.OPTION): 10,
    ("order.amend-batch", Category.SPOT): 20,
    ("order.amend", Category.LINEAR): 10,
    ("order.amend", Category.INVERSE): 10,
    ("order.amend", Category.OPTION): 10,
    ("order.amend", Category.SPOT): 10,
}
# The share of Bybit's budget the sidecar uses, and the headroom for admission-to-exchange jitter
# (ExchangeBudget; docs/rate-limits.md), where the config names no other.
DEFAULT_UTILIZATION: Final = Decimal("0.8")
DEFAULT_EXCHANGE_GUARD_MS: Final = 100


@dataclass(frozen=True, slots=True)
class SymbolRule:
    """Limits for one symbol in one category."""

    category: Category
    symbol: str
    max_qty: Decimal
    max_notional: Decimal
    price_band_bps: Decimal
    reference: ReferenceKind = ReferenceKind.MARK
    # Options only: the implied-volatility band an `orderIv` amend must fall in (Bybit prices an
    # option order from orderIv and ignores `price`, so the price band cannot bound it). Unset:
    # orderIv is denied FIELD_NOT_SUPPORTED (fail closed).
    order_iv_min: Decimal | None = None
    order_iv_max: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RateRule:
    """At most `max` units per `window_ms` for each key of `scope`."""

    scope: RateScope
    max: int
    window_ms: int


@dataclass(frozen=True, slots=True)
class ExchangeBudget:
    """Bybit's per-UID budget for one op and category, and the share of it the sidecar may use.

    Headroom at the exchange: a frame reaches Bybit some time d after it was admitted, and d
    varies (journal commit, event loop, network). Bybit counts arrivals in its own rolling window
    W. If every d lies within a spread J, an exchange window [s, s + W) holds only frames admitted
    in a span of W + J; admitting at most `local_max` units per W + `guard_ms` therefore keeps
    Bybit's count at or below `local_max` whenever J <= `guard_ms`. `utilization` is the second
    layer, for spreads beyond the guard and for other clients on the same UID.
    """

    op: str
    category: Category
    limit: int  # Bybit's limit per window
    window_ms: int = 1000  # Bybit's window
    utilization: Decimal = DEFAULT_UTILIZATION
    guard_ms: int = 0  # added to the window the sidecar admits against (see the class docstring)

    @property
    def local_max(self) -> int:
        """Units the sidecar allows itself per admission window (at least 1)."""
        return max(1, int(self.limit * self.utilization))

    @property
    def admission_window_ms(self) -> int:
        """The window the sidecar counts `local_max` over: Bybit's window plus the guard."""
        return self.window_ms + self.guard_ms

    @property
    def counts_items(self) -> bool:
        """Batch items count one each for linear/spot/inverse; option batches count per request."""
        return self.category is not Category.OPTION


def default_budgets(guard_ms: int = DEFAULT_EXCHANGE_GUARD_MS) -> list[ExchangeBudget]:
    """Bybit's documented default budget for every (op, category) the sidecar sends
    (DEFAULT_EXCHANGE_LIMITS_PER_S at DEFAULT_UTILIZATION): the one place they are built. The
    config's policy lists them all with the default headroom (config.to_policy); the rate limiter
    falls back to them, unguarded, only for a policy built by hand that leaves a key out (tests,
    the decision bench), whose timing is Bybit's window exactly."""
    return [
        ExchangeBudget(op=op, category=cat, limit=limit, utilization=DEFAULT_UTILIZATION, guard_ms=guard_ms)
        for (op, cat), limit in DEFAULT_EXCHANGE_LIMITS_PER_S.items()
    ]


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything the validator and the rate limiter need to decide, compiled from the config."""

    symbols: Mapping[tuple[Category, str], SymbolRule]
    batch_max_orders: int = 20
    batch_mode: BatchMode = BatchMode.ALL_OR_NOTHING
    batch_max_notional: Decimal | None = None
    reference_max_age_ms: int = 2000
    rate_rules: tuple[RateRule, ...] = ()
    exchange_budgets: tuple[ExchangeBudget, ...] = ()
    approval_above_notional: Decimal | None = None
    version: str = field(default="")  # hash of the policy source, recorded with each verdict

    def rule(self, category: Category, symbol: str) -> SymbolRule | None:
        return self.symbols.get((category, symbol))

    @property
    def categories(self) -> frozenset[Category]:
        return frozenset(c for c, _ in self.symbols)
