"""The read-only views: an order (getOrderState), the policy in force (getSafetyPolicy), health
(`sidecar status`, /healthz), and the small bodies journaled for order events and read-backs.

Pure functions of the values passed in: no I/O, no clock, no decisions. Numbers are written in the
one Decimal text form (core/numbers.plain_decimal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sidecar.core.market_state import MarketState
from sidecar.core.numbers import plain_decimal
from sidecar.core.policy import Policy
from sidecar.core.ratelimit import BudgetView
from sidecar.core.reconcile import QueryOrder
from sidecar.core.types import Category, OrderView, TradingState

__all__ = ["event_json", "health_body", "order_body", "policy_body", "query_json"]


def _s(d: Decimal | None) -> str | None:
    return None if d is None else plain_decimal(d)


def order_body(view: OrderView) -> dict[str, Any]:
    """The sidecar's view of an order, JSON-ready (getOrderState)."""
    return {
        "category": str(view.category),
        "symbol": view.symbol,
        "orderId": view.order_id,
        "orderLinkId": view.order_link_id,
        "side": str(view.side) if view.side else None,
        "price": _s(view.price),
        "qty": _s(view.qty),
        "leavesQty": _s(view.leaves_qty),
        "cumExecQty": _s(view.cum_exec_qty),
        "orderStatus": view.order_status,
        "updatedTime": str(view.updated_time_ms),
        "takeProfit": _s(view.take_profit),
        "stopLoss": _s(view.stop_loss),
        "tpLimitPrice": _s(view.tp_limit_price),
        "slLimitPrice": _s(view.sl_limit_price),
        "triggerPrice": _s(view.trigger_price),
        "orderIv": _s(view.order_iv),
        "tpTriggerBy": view.tp_trigger_by,
        "slTriggerBy": view.sl_trigger_by,
        "triggerBy": view.trigger_by,
        "tpslMode": view.tpsl_mode,
    }


def event_json(view: OrderView) -> dict[str, Any]:
    """An order event as journaled: the fields verification reads, exact and cheap to format."""
    return {
        "orderId": view.order_id,
        "orderLinkId": view.order_link_id,
        "symbol": view.symbol,
        "price": plain_decimal(view.price),
        "qty": plain_decimal(view.qty),
        "leavesQty": plain_decimal(view.leaves_qty),
        "cumExecQty": plain_decimal(view.cum_exec_qty),
        "orderStatus": view.order_status,
        "updatedTime": str(view.updated_time_ms),  # Bybit's own form (a string of ms)
    }


def query_json(q: QueryOrder) -> dict[str, Any]:
    return {
        "category": str(q.category),
        "symbol": q.symbol,
        "orderId": q.order_id,
        "orderLinkId": q.order_link_id,
        "index": q.index,
    }


def _symbol_body(
    policy: Policy, market: MarketState, key: tuple[Category, str], now_ns: int
) -> dict[str, Any]:
    rule = policy.symbols[key]
    cat, sym = key
    quote = market.quote(cat, sym)
    inst = market.instrument(cat, sym)
    ref = quote.reference(rule.reference) if quote is not None else None
    band = rule.price_band_bps / Decimal(10_000)
    max_qty = rule.max_qty if inst is None else min(rule.max_qty, inst.max_qty)
    return {
        "category": str(cat),
        "symbol": sym,
        "reference": str(rule.reference),
        "referencePrice": _s(ref),
        "referenceAgeMs": None if quote is None else (now_ns - quote.received_ns) // 1_000_000,
        "priceBandBps": _s(rule.price_band_bps),
        "minPrice": _s(ref * (1 - band)) if ref is not None else None,
        "maxPrice": _s(ref * (1 + band)) if ref is not None else None,
        "tickSize": _s(inst.tick_size) if inst else None,
        "qtyStep": _s(inst.qty_step) if inst else None,
        "minQty": _s(inst.min_qty) if inst else None,
        "maxQty": _s(max_qty),
        "maxNotional": _s(rule.max_notional),
    }


def policy_body(
    policy: Policy,
    market: MarketState,
    now_ns: int,
    *,
    state: tuple[TradingState, str],
    budgets: Iterable[BudgetView],
    coordination: Mapping[str, Any],
    category: str | None = None,
    symbol: str | None = None,
) -> dict[str, Any]:
    """getSafetyPolicy: the limits in force now (optionally one category / symbol), with every rate
    budget's remaining units."""
    symbols = [
        _symbol_body(policy, market, key, now_ns)
        for key in sorted(policy.symbols)
        if (category is None or str(key[0]) == category) and (symbol is None or key[1] == symbol)
    ]
    trading, reason = state
    return {
        "tradingState": str(trading),
        "haltReason": reason or None,
        "policyVersion": policy.version,
        "batch": {
            "maxOrders": policy.batch_max_orders,
            "mode": str(policy.batch_mode),
            "maxNotional": _s(policy.batch_max_notional),
        },
        "referenceMaxAgeMs": policy.reference_max_age_ms,
        "symbols": symbols,
        "rateLimits": [
            {
                "scope": b.scope,
                "key": b.key,
                "max": b.max,
                "windowS": float(b.window_s),
                "remaining": b.remaining,
                "retryAfterMs": b.retry_after_ms,
            }
            for b in budgets
        ],
        "coordination": dict(coordination),
    }


def health_body(
    *,
    updated_ms: int,
    pid: int,
    state: tuple[TradingState, str],
    sockets_up: Mapping[str, bool],
    clock_offset_ms: int | None,
    clock_sample_age_ms: int | None,
    reference_ages_ms: Mapping[tuple[Category, str], int | None],
    in_flight_items: int,
    outcomes: Mapping[str, int],
    recovered_requests: int,
    policy_version: str,
    budgets: Iterable[BudgetView],
    coordination: Mapping[str, Any],
) -> dict[str, Any]:
    """Connection health, reference ages, trading state, budgets and outcome counts."""
    trading, reason = state
    return {
        "updatedMs": updated_ms,
        "pid": pid,
        "tradingState": str(trading),
        "haltReason": reason or None,
        "tradeSocket": "up" if sockets_up["trade"] else "down",
        # Exchange clock minus this host's, ms (None until a server time was seen).
        "clockOffsetMs": clock_offset_ms,
        "clockSampleAgeMs": clock_sample_age_ms,
        "privateSocket": "up" if sockets_up["private"] else "down",
        "referenceAgesMs": {f"{c}:{sym}": age for (c, sym), age in sorted(reference_ages_ms.items())},
        "inFlightItems": in_flight_items,
        "outcomes": dict(outcomes),
        "recoveredRequests": recovered_requests,
        "policyVersion": policy_version,
        "rateLimits": [
            {"scope": b.scope, "key": b.key, "remaining": b.remaining, "max": b.max} for b in budgets
        ],
        "coordination": dict(coordination),
    }
