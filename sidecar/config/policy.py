"""Compile a valid config into the core's frozen `Policy` (defaults merged into every symbol,
Bybit's default budgets for those not listed) and the policy's version hash. Pure.
"""

from __future__ import annotations

import hashlib
import json
from types import MappingProxyType
from typing import TYPE_CHECKING

from sidecar.core.policy import (
    DEFAULT_EXCHANGE_GUARD_MS,
    DEFAULT_UTILIZATION,
    ExchangeBudget,
    Policy,
    RateRule,
    RateScope,
    SymbolRule,
    default_budgets,
)
from sidecar.core.types import Category, ReferenceKind

if TYPE_CHECKING:
    from sidecar.config.model import SidecarConfig


def to_policy(config: SidecarConfig, version: str | None = None) -> Policy:
    """Compile `config` into the core's frozen `Policy`.

    Symbol rules get the `defaults` merged in. Exchange budgets not listed in `rate_limits` are
    Bybit's defaults (`core.policy.default_budgets`, the one place they are built).
    `Policy.version` is `version`, else `policy_hash(config)`.
    """
    d = config.defaults
    rules: dict[tuple[Category, str], SymbolRule] = {}
    for s in config.symbols:
        max_qty = s.max_qty if s.max_qty is not None else d.max_qty
        max_notional = s.max_notional if s.max_notional is not None else d.max_notional
        band = s.price_band_bps if s.price_band_bps is not None else d.price_band_bps
        # The model validator guarantees these; a direct construction bypassing it must not pass.
        if max_qty is None or max_notional is None or band is None:
            raise ValueError(f"symbol {s.category} {s.symbol} has no max_qty/max_notional/price_band_bps")
        rules[(s.category, s.symbol)] = SymbolRule(
            category=s.category,
            symbol=s.symbol,
            max_qty=max_qty,
            max_notional=max_notional,
            price_band_bps=band,
            reference=s.reference or d.reference or ReferenceKind.MARK,
            order_iv_min=s.order_iv_min if s.order_iv_min is not None else d.order_iv_min,
            order_iv_max=s.order_iv_max if s.order_iv_max is not None else d.order_iv_max,
        )
    local: list[RateRule] = []
    budgets: dict[tuple[str, Category], ExchangeBudget] = {(b.op, b.category): b for b in default_budgets()}
    for r in config.rate_limits:
        if r.scope == "exchange":
            assert r.op is not None and r.category is not None  # checked by the model
            budgets[(r.op, r.category)] = ExchangeBudget(
                op=r.op,
                category=r.category,
                limit=r.max,
                window_ms=r.window_ms,
                utilization=r.utilization if r.utilization is not None else DEFAULT_UTILIZATION,
                guard_ms=r.guard_ms if r.guard_ms is not None else DEFAULT_EXCHANGE_GUARD_MS,
            )
        else:
            local.append(RateRule(scope=RateScope(r.scope), max=r.max, window_ms=r.window_ms))
    return Policy(
        symbols=MappingProxyType(rules),
        batch_max_orders=config.batch.max_orders,
        batch_mode=config.batch.mode,
        batch_max_notional=config.batch.max_notional,
        reference_max_age_ms=config.reference_price.max_age_ms,
        rate_rules=tuple(local),
        exchange_budgets=tuple(budgets.values()),
        approval_above_notional=config.approval.above_notional,
        version=version if version is not None else policy_hash(config),
    )


def policy_hash(config: SidecarConfig) -> str:
    """First 12 hex digits of the SHA-256 of the config as canonical JSON (sorted keys)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
