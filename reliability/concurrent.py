"""Bad input, concurrent mode: several agents amend the same orders at once while the order stream
lags, acks get lost and the exchange refuses some requests (issue 9).

Its one job is to show two things the sequential bad-input part cannot: (1) no order at the
exchange ever leaves the policy, however calls interleave (the notional-cap trick of two amends
that pass one at a time); (2) no verdict is contradicted by the exchange's final state (a
`verified` whose target the order does not hold, a `not_applied`/`rejected` whose order changed).
Ground truth is the emulator's own ledger and its frame capture, never the sidecar's view. It must
not use the sidecar's validator or reconciler to decide what is right.

Each round: pick a few resting orders, snapshot them at the exchange, arm faults (delayed pushes
always; sometimes a lost ack, a lost push, a 10006), fire several calls at once (valid items whose
combination can breach a cap, plus hostile variants), wait for every answer, then check.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from reliability.pool import Pool, valid_item, valid_price
from reliability.stack import INSTRUMENTS, PRICES, RULES, Stack, soak_config, start_stack

__all__ = ["run_concurrent"]

TOOL = "wsBatchAmendOrders"
DEFINITIVE = ("verified", "not_applied", "rejected")


def order_in_policy(category: str, order: Any) -> list[str]:
    """Every way one resting order at the exchange breaks the soak policy (empty: in policy)."""
    key = (category, order.symbol)
    if key not in RULES:
        return []
    rule, inst, ref = RULES[key], INSTRUMENTS[key], PRICES[key]
    band = ref * rule.band_bps / Decimal(10_000)
    out = []
    if not ref - band <= order.price <= ref + band:
        out.append("price_out_of_band")
    if order.price % inst.tick:
        out.append("price_off_tick")
    if order.qty > min(rule.max_qty, inst.max_qty):
        out.append("qty_above_cap")
    if order.price * order.qty > rule.max_notional:
        out.append("notional_above_cap")
    return out


def _breaching_pair(rng: random.Random, po: Any) -> list[dict[str, Any]]:
    """Two single-item calls on one order that each pass alone but together breach its notional
    cap: one raises the price, the other the qty (issue 9, finding 1)."""
    rule = RULES[(po.category, po.symbol)]
    inst = INSTRUMENTS[(po.category, po.symbol)]
    ref = PRICES[(po.category, po.symbol)]
    band = ref * rule.band_bps / Decimal(10_000)
    high = ((ref + band) / inst.tick).to_integral_value(rounding="ROUND_FLOOR") * inst.tick
    low = ((ref - band) / inst.tick).to_integral_value(rounding="ROUND_CEILING") * inst.tick
    price = high if po.side == "Sell" else max(po.price, low)
    # The largest qty that fits at the order's current price; at `price` it may not.
    qty = (rule.max_notional / po.price / inst.step).to_integral_value(rounding="ROUND_FLOOR") * inst.step
    qty = min(qty, rule.max_qty)
    return [
        {"symbol": po.symbol, "orderId": po.order_id, "price": str(price)},
        {"symbol": po.symbol, "orderLinkId": po.link, "qty": str(qty)},
    ]


class _Round:
    def __init__(self, stack: Stack, rng: random.Random, pool: Pool) -> None:
        self.stack = stack
        self.rng = rng
        self.pool = pool

    def calls(self, orders: list[Any]) -> list[dict[str, Any]]:
        rng = self.rng
        calls: list[dict[str, Any]] = []
        for po in orders:
            if rng.random() < 0.5:
                calls += [{"category": po.category, "request": [item]} for item in _breaching_pair(rng, po)]
        for _ in range(rng.randint(2, 4)):
            picks = rng.sample(orders, rng.randint(1, len(orders)))
            items = [valid_item(rng, po, Decimal(20_000)) for po in picks]
            if rng.random() < 0.3:  # the same order twice in one batch, under its other id
                po = picks[0]
                twin = {"symbol": po.symbol, "orderLinkId": po.link, "price": str(valid_price(rng, po))}
                items.append(twin)
            calls.append({"category": picks[0].category, "request": items})
        rng.shuffle(calls)
        return calls

    def faults(self) -> list[dict[str, Any]]:
        rng = self.rng
        faults: list[dict[str, Any]] = [
            {"kind": "delay_order_events", "ms": rng.choice([20, 80, 250]), "count": 40}
        ]
        extra = rng.random()
        if extra < 0.15:
            faults.append({"kind": "drop_ack", "count": 1})
        elif extra < 0.3:
            faults.append({"kind": "drop_order_events", "count": 1})
        elif extra < 0.4:
            faults.append({"kind": "rate_limit", "count": 1})
        return faults


async def _call(stack: Stack, args: dict[str, Any]) -> dict[str, Any] | None:
    from mcp import Client  # noqa: PLC0415

    from sidecar.mcp_server import build_server  # noqa: PLC0415

    async with asyncio.timeout(60), Client(build_server(stack.service)) as client:
        result = await client.call_tool(TOOL, args)
    body: dict[str, Any] | None = result.structured_content
    return body


def _req_ids(stack: Stack, bodies: list[dict[str, Any] | None]) -> dict[str, str]:
    """reqId (on the wire) -> requestId (the answer), from each request's journaled intent."""
    out: dict[str, str] = {}
    for body in bodies:
        if not body:
            continue
        record = stack.service.journal.get_request(body["requestId"])
        for r in record.records if record is not None else ():
            if r.kind == "intent" and r.req_id:
                out[r.req_id] = body["requestId"]
    return out


def _frame_items(frame: dict[str, Any]) -> list[dict[str, Any]]:
    arg = (frame.get("args") or [{}])[0]
    if not isinstance(arg, dict):
        return []
    request = arg.get("request")
    return [i for i in request if isinstance(i, dict)] if isinstance(request, list) else [arg]


async def run_concurrent(rounds: int, tmp: Path, *, seed: int = 99) -> dict[str, Any]:
    """`rounds` rounds of concurrent calls; returns the counts and up to 10 examples of each finding."""
    config = soak_config(tmp / "bad-concurrent.sqlite3", batch={"mode": "per_item"})
    stack = await start_stack(config, seed=seed % 1000)
    rng = random.Random(seed)
    pool = Pool(stack)
    await pool.fill()
    rnd = _Round(stack, rng, pool)
    outcomes: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    out_of_policy: Counter[str] = Counter()
    contradicted: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    calls = frames_sent = 0
    started = time.perf_counter()
    try:
        for _ in range(rounds):
            await pool.refresh()
            linear = pool.of("linear")
            orders = rng.sample(linear, min(len(linear), rng.randint(1, 3)))
            before = {po.order_id: stack.exchange_order("linear", po.order_id) for po in orders}
            snapshot = {oid: (o.price, o.qty, o.updated_ms) for oid, o in before.items() if o is not None}
            stack.emu.add_faults(rnd.faults())
            batch = rnd.calls(orders)
            calls += len(batch)
            frame_cursor = len(stack.emu.frames())
            bodies = await asyncio.gather(*(_call(stack, args) for args in batch))
            stack.emu.clear_faults()
            frames = [
                f
                for f in stack.emu.frames()[frame_cursor:]
                if f.get("op") in ("order.amend", "order.amend-batch")
            ]
            frames_sent += len(frames)
            # (1) Every order at the exchange is inside the policy, whatever interleaved.
            for po in orders:
                o = stack.exchange_order("linear", po.order_id)
                for problem in order_in_policy("linear", o) if o is not None else ():
                    out_of_policy[problem] += 1
                    if len(examples) < 10:
                        examples.append({"out_of_policy": problem, "order": po.order_id, "calls": batch})
            # (2) No definitive verdict is contradicted by the exchange's final state.
            by_req = _req_ids(stack, list(bodies))
            frames_for: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            for f in frames:
                request_id = by_req.get(str(f.get("reqId")))
                for item in _frame_items(f):
                    oid = item.get("orderId") or next(
                        (po.order_id for po in orders if po.link == item.get("orderLinkId")), None
                    )
                    if oid and request_id:
                        frames_for.setdefault(oid, []).append((request_id, item))
            for body in bodies:
                if body is None:
                    outcomes["no_structured_result"] += 1
                    continue
                for it in body["items"]:
                    outcomes[it["outcome"]] += 1
                    codes.update(r["code"] for r in it["reasons"])
                    oid = it.get("orderId")
                    if it["outcome"] not in DEFINITIVE or not oid:
                        continue
                    sent = frames_for.get(oid, [])
                    mine = [item for rid, item in sent if rid == body["requestId"]]
                    if not mine:
                        contradicted[f"{it['outcome']}_without_a_frame"] += 1
                        continue
                    final = stack.exchange_order("linear", oid)
                    if final is None:
                        continue
                    wrong = None
                    if it["outcome"] == "verified" and sent[-1][0] == body["requestId"]:
                        target = mine[-1]
                        for name, held in (("price", final.price), ("qty", final.qty)):
                            if name in target and Decimal(str(target[name])) != held:
                                wrong = f"verified_but_{name}_differs"
                    elif (
                        it["outcome"] != "verified"
                        and len(sent) == 1
                        and oid in snapshot
                        and (final.price, final.qty, final.updated_ms) != snapshot[oid]
                    ):
                        wrong = f"{it['outcome']}_but_the_order_changed"
                    if wrong is not None:
                        contradicted[wrong] += 1
                        if len(examples) < 10:
                            examples.append({"contradicted": wrong, "item": it, "frames": sent})
    finally:
        await stack.stop()
    return {
        "rounds": rounds,
        "calls": calls,
        "amend_frames": frames_sent,
        "duration_s": round(time.perf_counter() - started, 1),
        "outcomes": dict(outcomes),
        "denial_codes": dict(codes),
        "out_of_policy_orders": sum(out_of_policy.values()),
        "out_of_policy": dict(out_of_policy),
        "contradicted_verdicts": sum(contradicted.values()),
        "contradicted": dict(contradicted),
        "examples": examples,
    }
