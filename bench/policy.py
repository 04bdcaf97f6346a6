"""Decision latency: validate + rate-limit + encode one 20-item linear `order.amend-batch`.

Measures what the sidecar adds before a frame can leave, with no I/O: `core.validation.validate`,
`core.ratelimit` (demands and an atomic check) and `bybit.codec.encode_amend_batch`. The clock is
synthetic (10 µs per decision) so the reference prices stay fresh and the rate-limit windows slide
(entries expire on the hot path); limits are high enough that nothing is ever throttled.
Every run validates a fresh `AmendRequest` decoded from the agent's JSON text (new dicts and new
strings, as a real call gets them); the decoding happens before the timer starts.
It must not touch the network, the journal or the real clock beyond perf_counter_ns for timing.
"""

from __future__ import annotations

import gc
import json
import time
from decimal import Decimal

from bench.report import machine
from bench.stats import pct_us

RUNS = 20_000
WARMUP = 2_000
STEP_NS = 10_000  # synthetic time between two decisions
TOOL = "wsBatchAmendOrders"
OP = "order.amend-batch"
RECV_WINDOW_MS = 5000
# symbol -> (mark price, tick size)
SYMBOLS = {
    "BTCUSDT": (Decimal("65000.00"), Decimal("0.10")),
    "ETHUSDT": (Decimal("3200.00"), Decimal("0.01")),
    "SOLUSDT": (Decimal("150.000"), Decimal("0.001")),
    "XRPUSDT": (Decimal("0.5000"), Decimal("0.0001")),
}
ORDERS_PER_SYMBOL = 5  # 4 symbols x 5 = 20 items, Bybit's batch limit for linear


def run(runs: int = RUNS, warmup: int = WARMUP) -> dict[str, object]:
    # Imported here, not at the top: a missing or broken module must give a JSON error, not a crash.
    try:
        from sidecar.bybit.codec import encode_amend_batch  # noqa: PLC0415
        from sidecar.core.orders import OrderBook  # noqa: PLC0415
        from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope, SymbolRule  # noqa: PLC0415
        from sidecar.core.ratelimit import RateLimiter, Throttle, demands_for  # noqa: PLC0415
        from sidecar.core.types import (  # noqa: PLC0415
            AmendRequest,
            Category,
            Instrument,
            OrderView,
            Quote,
            ReferenceKind,
            Side,
        )
        from sidecar.core.validation import PreparedPolicy, validate  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a module failing while it loads
        return {"error": f"policy bench: cannot import the decision path: {exc}"}

    cat = Category.LINEAR
    base_ns = 1_000_000_000_000
    big = 10**12
    policy = Policy(
        symbols={
            (cat, s): SymbolRule(cat, s, Decimal(1000), Decimal(10_000_000), Decimal(500), ReferenceKind.MARK)
            for s in SYMBOLS
        },
        rate_rules=(
            RateRule(RateScope.TOOL, big, 1000),
            RateRule(RateScope.SYMBOL, big, 1000),
            RateRule(RateScope.GLOBAL, big, 1000),
        ),
        exchange_budgets=(ExchangeBudget(OP, cat, limit=big),),
    )

    class Market:
        """A MarketLookup over fixed instruments and quotes (fresh for the whole run)."""

        def __init__(self) -> None:
            self.instruments = {
                s: Instrument(cat, s, tick, Decimal("0.001"), Decimal("0.001"), Decimal(10_000))
                for s, (_, tick) in SYMBOLS.items()
            }
            self.quotes = {
                s: Quote(received_ns=base_ns, mark=mark, last=mark) for s, (mark, _) in SYMBOLS.items()
            }

        def instrument(self, category: Category, symbol: str) -> Instrument | None:
            return self.instruments.get(symbol) if category is cat else None

        def quote(self, category: Category, symbol: str) -> Quote | None:
            return self.quotes.get(symbol) if category is cat else None

    book = OrderBook()
    items: list[dict[str, object]] = []
    for s, (mark, tick) in SYMBOLS.items():
        for j in range(ORDERS_PER_SYMBOL):
            oid = f"{s.lower()}-{j:04d}"
            price = mark - tick * (10 + j)
            book.apply(
                OrderView(
                    category=cat,
                    symbol=s,
                    order_id=oid,
                    order_link_id=f"link-{oid}",
                    side=Side.BUY,
                    price=price,
                    qty=Decimal("0.010"),
                    leaves_qty=Decimal("0.010"),
                    cum_exec_qty=Decimal(0),
                    order_status="New",
                    updated_time_ms=1,
                )
            )
            # The agent's JSON: strings for numbers, as Bybit's MCP server takes them.
            items.append({"symbol": s, "orderId": oid, "price": str(price - tick), "qty": "0.020"})
    # What the agent sends; decoded afresh for every run (outside the timed region).
    args_text = json.dumps({"category": "linear", "request": items})

    def fresh_request() -> AmendRequest:
        args = json.loads(args_text)
        return AmendRequest(category=args["category"], items=tuple(args["request"]), batch=True, tool=TOOL)

    request = fresh_request()
    limiter = RateLimiter(policy)
    market = Market()
    prepared = PreparedPolicy(policy)  # what the service builds at config load (and on reload)

    verdict = validate(request, prepared, market, book, base_ns)
    if verdict.reasons or len(verdict.allowed_items) != 20:
        why = sorted({f"{r.code.value}: {r.message}" for iv in verdict.items for r in iv.reasons})
        return {"error": f"policy bench: the set-up batch is not all allowed: {'; '.join(why[:3])}"}

    total: list[int] = []
    parts: dict[str, list[int]] = {"validate": [], "ratelimit": [], "encode": []}
    throttled = 0
    frame_len = 0
    clock = time.perf_counter_ns
    gc.collect()
    for i in range(warmup + runs):
        now_ns = base_ns + i * STEP_NS
        request = fresh_request()
        t0 = clock()
        verdict = validate(request, prepared, market, book, now_ns)
        allowed = [iv for iv in verdict.items if iv.allowed]
        t1 = clock()
        decision = limiter.check(demands_for(TOOL, cat, OP, [iv.symbol or "" for iv in allowed]), now_ns)
        t2 = clock()
        frame = encode_amend_batch(
            f"bench-{i}",
            cat,
            [iv.item for iv in allowed if iv.item is not None],
            1_700_000_000_000 + i,
            RECV_WINDOW_MS,
        )
        t3 = clock()
        if isinstance(decision, Throttle) or len(allowed) != 20:
            throttled += 1
        if i >= warmup:
            total.append(t3 - t0)
            parts["validate"].append(t1 - t0)
            parts["ratelimit"].append(t2 - t1)
            parts["encode"].append(t3 - t2)
            frame_len = len(frame)
    if throttled:
        return {"error": f"policy bench: {throttled} decisions were throttled or denied; limits too low"}

    return {
        "bench": "policy",
        "items": 20,
        "decision_p50_us": pct_us(total, 0.50, 2),
        "decision_p99_us": pct_us(total, 0.99, 2),
        "decision_max_us": pct_us(total, 1.0, 2),
        "parts_p50_us": {k: pct_us(v, 0.50, 2) for k, v in parts.items()},
        "parts_p99_us": {k: pct_us(v, 0.99, 2) for k, v in parts.items()},
        "frame_bytes": frame_len,
        "runs": runs,
        "warmup": warmup,
        "machine": machine(),
    }
