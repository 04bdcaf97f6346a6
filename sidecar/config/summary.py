"""The short human summary `sidecar check-config` prints for a valid config."""

from __future__ import annotations

from decimal import Decimal

from sidecar.config.model import SidecarConfig
from sidecar.core.ratelimit import RateLimiter
from sidecar.core.types import Category

# Bybit counts linear and inverse in one cell of its table; the limiter keeps one bucket for both.
_SHARED_LABEL = {Category.LINEAR: "linear+inverse", Category.INVERSE: "linear+inverse"}


def summarize(config: SidecarConfig) -> str:
    """A short human summary of a valid config (what `sidecar check-config` prints)."""
    policy = config.to_policy()
    ex = config.exchange
    where = {
        "sim": "in-process emulator",
        "testnet": ex.rest_url or "Bybit testnet",
        "mainnet": ex.rest_url or "Bybit mainnet",
        "custom": f"{ex.rest_url} + {ex.ws_url}",
    }[ex.env]
    lines = [
        f"config OK (policy version {policy.version})",
        f"exchange      : {ex.env} ({where}), recv window {ex.recv_window_ms} ms",
        f"symbols       : {len(policy.symbols)}",
    ]
    for rule in policy.symbols.values():
        lines.append(
            f"  {rule.category.value:<7} {rule.symbol:<12} band ±{rule.price_band_bps} bps "
            f"on {rule.reference.value}, max qty {rule.max_qty}, max notional {rule.max_notional}"
        )
    cap = f", batch notional ≤ {config.batch.max_notional}" if config.batch.max_notional is not None else ""
    lines.append(f"batch         : ≤ {config.batch.max_orders} orders, {config.batch.mode.value}{cap}")
    lines.append(f"reference     : max age {config.reference_price.max_age_ms} ms")
    local = "; ".join(f"{r.scope.value} {r.max}/{_seconds(r.window_ms)}" for r in policy.rate_rules) or "none"
    lines.append(f"rate limits   : {local}")
    # The budgets as the rate limiter enforces them: linear and inverse share one (Bybit's table).
    enforced = RateLimiter(policy).exchange_budgets()
    for op in ("order.amend-batch", "order.amend"):
        budgets = ", ".join(
            f"{_SHARED_LABEL.get(b.category, b.category.value)} "
            f"{b.local_max}/{_seconds(b.admission_window_ms)} "
            f"({b.utilization} × {b.limit}/{_seconds(b.window_ms)}, +{b.guard_ms} ms guard)"
            for b in enforced.values()
            if b.op == op
        )
        lines.append(f"{'bybit budget':<14}: {op}: {budgets}")
    v = config.verification
    lines.append(
        f"verification  : timeout {v.timeout_ms} ms, ack timeout {v.ack_timeout_ms} ms, "
        f"REST fallback {'on' if v.rest_fallback else 'off'}"
    )
    above = config.approval.above_notional
    lines.append(f"approval      : {'above notional ' + str(above) if above is not None else 'off'}")
    days = config.journal.retain_days
    kept = "kept forever" if days is None else f"settled requests kept {days} days"
    lines.append(f"journal       : {config.journal.path} (synchronous {config.journal.synchronous}, {kept})")
    co = config.coordination
    if co.backend == "local":
        lines.append("coordination  : local (in-process; one sidecar per Bybit account)")
    else:
        # The URL itself is never printed (it may hold a password when it comes from url_env).
        source = f"url from ${co.url_env}" if co.url_env is not None else "url in the file"
        lines.append(
            f"coordination  : redis, namespace {co.namespace}, {source}, timeout {co.decision_timeout_ms} ms"
        )
    return "\n".join(lines)


def _seconds(window_ms: int) -> str:
    return f"{Decimal(window_ms) / 1000:f}s"
