"""Injected faults: every emulator fault kind × every pipeline stage, each trial checked against
the emulator's own order state, the frames it received and the journal.

Its one job is the fault matrix (`CELLS`) and its trials. A *stage* is where the fault strikes the
sidecar's pipeline: the trade request and its ack (`single` order.amend or `batch`), one item's
order-stream push (`first`, `middle` or `last` item of a 3-item batch, or `all` of them), or the
amend itself (`fill_before_amend` on one or all items). `rest` combines a lost ack with lost pushes
so that only the REST read-back can decide. Expected verdicts follow tests/e2e/test_faults.py and
docs/verification.md; each is then checked against the exchange state (`verified` → at target,
`not_applied`/`rejected` → unchanged, `superseded` → filled or cancelled). Trials run on several
independent stacks at once (faults are global to one emulator). It must not decide verdicts itself.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import ErrorCounter
from bench.stats import pct
from reliability.journal_check import check_journal
from reliability.stack import INSTRUMENTS, PRICES, RULES, Stack, soak_config, start_stack

__all__ = ["CELLS", "run_faults"]

DEBUG = bool(os.environ.get("SOAK_DEBUG"))
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
# (symbol, qty, price) of the one resting Buy order per symbol each stack amends.
START = {"BTCUSDT": ("0.01", "94000.0"), "ETHUSDT": ("0.1", "3450.00"), "SOLUSDT": ("1.0", "178.000")}

# Ambiguous codes: nothing was applied, so the read-back after the recv window proves not_applied.
# 110001 "order not exists or too late to replace" does not say whether the order just closed: looked at.
AMBIGUOUS_CODES = (10006, 10016, 10019, 20006, 10000, 110001)
DEFINITIVE_CODES = ((110003, "order price is out of permissible range"), (10001, "Params Error"))

TRADE_KINDS = (
    "drop_ack",
    "delay_ack_short",
    "delay_ack_long",
    "reject_definitive",
    "reject_ambiguous",
    "rate_limit",
    "disconnect_trade",
)
PUSH_KINDS = (
    "drop_order_events",
    "delay_order_events",
    "order_events_before_ack",
    "duplicate_order_events",
    "disconnect_private",
)
TRADE_STAGES = ("single", "batch")
ITEM_STAGES = ("single", "first", "middle", "last", "all")

CELLS: list[tuple[str, str]] = [
    *((k, s) for k in TRADE_KINDS for s in TRADE_STAGES),
    *((k, s) for k in PUSH_KINDS for s in ITEM_STAGES),
    *(("fill_before_amend", s) for s in ITEM_STAGES),
    *(("drop_ack+drop_order_events", s) for s in ("single", "rest")),
]


def expected(kind: str, hit: bool) -> str:
    """The verdict the design gives an item (`hit`: the fault struck this item)."""
    if kind in ("reject_definitive",):
        return "rejected"
    if kind in ("reject_ambiguous", "rate_limit"):
        return "not_applied"
    if kind == "fill_before_amend":
        return "superseded" if hit else "verified"
    return "verified"


@dataclass
class Trial:
    kind: str
    stage: str
    seed: int


@dataclass
class Results:
    trials: int = 0
    fault_hits: int = 0
    faults_not_fired: Counter[str] = field(default_factory=Counter)
    items: int = 0
    correct: int = 0
    wrong: Counter[str] = field(default_factory=Counter)
    wrong_examples: list[dict[str, Any]] = field(default_factory=list)
    false_verified: int = 0
    ground_truth_mismatch: Counter[str] = field(default_factory=Counter)
    resends: int = 0
    extra_frames: int = 0
    by_cell: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    reconnect_waits: int = 0


class Lane:
    """One stack (emulator + service) running trials one after another."""

    def __init__(self, stack: Stack, results: Results, name: str) -> None:
        self.stack = stack
        self.r = results
        self.name = name
        self.orders: dict[str, dict[str, Any]] = {}
        self.n = 0

    async def ensure_orders(self) -> None:
        for sym in SYMBOLS:
            o = self.orders.get(sym)
            rec = self.stack.exchange_order("linear", o["orderId"]) if o else None
            if rec is not None and rec.is_open:
                continue
            self.n += 1
            qty, price = START[sym]
            self.orders[sym] = await self.stack.place(
                "linear", sym, "Buy", qty, price, f"{self.name}-{sym[:3].lower()}-{self.n}"
            )

    def _target(self, rng: random.Random, sym: str) -> dict[str, Any]:
        """A new price (and sometimes qty) inside the band, below the market, unlike the current."""
        rec = self.stack.exchange_order("linear", self.orders[sym]["orderId"])
        ref, inst, rule = PRICES[("linear", sym)], INSTRUMENTS[("linear", sym)], RULES[("linear", sym)]
        lo = int((ref * (1 - rule.band_bps / Decimal(10_000))) / inst.tick) + 1
        hi = int((ref - inst.tick * 5) / inst.tick)
        price = rec.price
        while price == rec.price:
            price = rng.randint(lo, hi) * inst.tick
        item: dict[str, Any] = {"symbol": sym, "orderLinkId": rec.order_link_id, "price": format(price, "f")}
        if rng.random() < 0.3:
            # Notional at most 10,000 per item: under every cap, and 3 items under the batch cap.
            top = int(min(rule.max_notional, Decimal(10_000)) / price / inst.step)
            bottom = int(max(inst.min_qty, Decimal(10) / price) / inst.step) + 1
            qty = rec.qty
            while qty == rec.qty:
                qty = inst.step * rng.randint(bottom, top)
            item["qty"] = format(qty, "f")
        return item

    def _faults(
        self, t: Trial, rng: random.Random, items: list[dict[str, Any]]
    ) -> tuple[list[Any], set[int]]:
        """Fault specs for this trial and the indices of the items they strike."""
        op = "order.amend" if t.stage == "single" else "order.amend-batch"
        n = len(items)
        if t.stage in ("single", "all", "batch", "rest"):
            hit = set(range(n))
            count, symbol = n, None
        else:
            pos = {"first": 0, "middle": n // 2, "last": n - 1}[t.stage]
            hit = {pos}
            count, symbol = 1, items[pos]["symbol"]
        k = t.kind
        if k == "drop_ack":
            return [{"kind": "drop_ack", "count": 1, "op": op}], hit
        if k == "delay_ack_short":
            return [{"kind": "delay_ack", "count": 1, "op": op, "ms": rng.randint(20, 350)}], hit
        if k == "delay_ack_long":
            return [{"kind": "delay_ack", "count": 1, "op": op, "ms": rng.randint(650, 1500)}], hit
        if k == "reject_definitive":
            code, msg = rng.choice(DEFINITIVE_CODES)
            return [{"kind": "reject", "count": 1, "op": op, "code": code, "msg": msg}], hit
        if k == "reject_ambiguous":
            code = rng.choice(AMBIGUOUS_CODES)
            return [{"kind": "reject", "count": 1, "op": op, "code": code, "msg": "injected"}], hit
        if k == "rate_limit":
            return [{"kind": "rate_limit", "count": 1, "op": op}], hit
        if k == "disconnect_trade":
            return [{"kind": "disconnect_trade", "count": 1, "op": op}], hit
        if k == "drop_ack+drop_order_events":
            return [
                {"kind": "drop_ack", "count": 1, "op": op},
                {"kind": "drop_order_events", "count": n},
            ], hit
        spec: dict[str, Any] = {"kind": k, "count": count}
        if symbol is not None:
            spec["symbol"] = symbol
        if k == "delay_order_events":
            spec["ms"] = rng.randint(50, 1200)
        elif k == "order_events_before_ack":
            spec["ms"] = rng.randint(10, 300)
        return [spec], hit

    async def run(self, t: Trial) -> None:
        from sidecar.core.types import AmendRequest  # noqa: PLC0415

        r = self.r
        rng = random.Random(t.seed)
        await asyncio.sleep(0)  # a trial that is answered at once must still let the others run
        service = self.stack.service
        if not (service.trade.ready and service.private.ready):
            # After a disconnect fault the sockets reconnect; until then an amend is (rightly)
            # denied EXCHANGE_UNAVAILABLE. An agent retries later; so does the trial.
            r.reconnect_waits += 1
            async with asyncio.timeout(15):
                await service.trade.wait_ready()
                await service.private.wait_ready()
        await self.ensure_orders()
        single = t.stage == "single"
        syms = [rng.choice(SYMBOLS)] if single else rng.sample(SYMBOLS, 3)
        items = [self._target(rng, s) for s in syms]
        before = {s: self.stack.exchange_order("linear", self.orders[s]["orderId"]) for s in syms}
        before_vals = {s: (o.price, o.qty, o.status) for s, o in before.items()}
        specs, hit = self._faults(t, rng, items)
        frames_before = len(self.stack.amend_frames())
        self.stack.emu.add_faults(specs)
        planned = sum(int(s["count"]) for s in specs)
        tool = "wsAmendOrder" if single else "wsBatchAmendOrders"
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(30):
                result = await self.stack.service.submit(
                    AmendRequest("linear", tuple(items), batch=not single, tool=tool)
                )
        except Exception as exc:  # a harness-visible failure is a wrong verdict, never a crash
            r.errors[f"{type(exc).__name__}: {exc!s:.100}"] += 1
            self.stack.emu.clear_faults()
            r.trials += 1
            r.wrong[f"{t.kind}/{t.stage}: exception"] += len(items)
            r.items += len(items)
            return
        elapsed = (time.perf_counter() - t0) * 1000
        left = sum(int(f.get("count", 0)) for f in self.stack.emu.hub.faults.active())
        self.stack.emu.clear_faults()
        cell = f"{t.kind}/{t.stage}"
        r.trials += 1
        r.by_cell[cell] += 1
        r.fault_hits += planned - left
        if left:
            r.faults_not_fired[cell] += left
        r.latency_ms.setdefault(t.kind, []).append(elapsed)
        body = result.body
        frames = self.stack.amend_frames()[frames_before:]
        if len(frames) != 1:
            r.extra_frames += abs(len(frames) - 1)
        if len({f.get("reqId") for f in frames}) != len(frames):
            r.resends += 1
        for idx, it in enumerate(body["items"]):
            r.items += 1
            outcome = it["outcome"]
            r.outcomes[outcome] += 1
            want = expected(t.kind, idx in hit)
            sym = items[idx]["symbol"]
            now = self.stack.exchange_order("linear", self.orders[sym]["orderId"])
            truth = _truth_ok(outcome, items[idx], before_vals[sym], now)
            if outcome == "verified" and not truth:
                r.false_verified += 1
            if not truth:
                r.ground_truth_mismatch[f"{cell}:{outcome}"] += 1
            if outcome == want and truth:
                r.correct += 1
            else:
                r.wrong[f"{cell}: got {outcome}, want {want}"] += 1
                if len(r.wrong_examples) < 12:
                    r.wrong_examples.append(
                        {
                            "cell": cell,
                            "item": idx,
                            "got": outcome,
                            "want": want,
                            "truth_ok": truth,
                            "exchangeCode": it.get("exchangeCode"),
                            "requestId": body["requestId"],
                            "faults": specs,
                            "order_now": None if now is None else [str(now.price), str(now.qty), now.status],
                            "target": items[idx],
                        }
                    )


def _truth_ok(outcome: str, item: dict[str, Any], before: tuple[Decimal, Decimal, str], now: Any) -> bool:
    """Is `outcome` true of the emulator's order state now?"""
    if now is None:
        return False
    price_ok = Decimal(item["price"]) == now.price
    qty_ok = "qty" not in item or Decimal(item["qty"]) == now.qty
    unchanged = (now.price, now.qty) == before[:2]
    if outcome == "verified":
        return price_ok and qty_ok
    if outcome in ("not_applied", "rejected"):
        return unchanged and now.is_open
    if outcome == "superseded":
        return now.status in ("Filled", "Cancelled", "PartiallyFilledCanceled")
    return False  # unverified/denied/throttled are never right for these trials


async def run_faults(
    min_faults: int,
    tmp: Path,
    *,
    lanes: int = 6,
    seed: int = 11,
    errors: ErrorCounter | None = None,
) -> dict[str, Any]:
    """Cycle the matrix (shuffled) until at least `min_faults` fault hits were injected."""
    started = time.perf_counter()
    config_over = {
        "verification": {"timeout_ms": 3000, "ack_timeout_ms": 500, "not_applied_margin_ms": 200},
        "exchange": {"recv_window_ms": 1000},
    }
    stacks = []
    for k in range(lanes):
        cfg = soak_config(tmp / f"faults-{k}.sqlite3", **config_over)
        stacks.append(await start_stack(cfg, seed=100 + k))
    results = Results()
    rng = random.Random(seed)
    queue: asyncio.Queue[Trial] = asyncio.Queue()
    # Enough trials for min_faults (a cell injects 1..3 hits), refilled if hits fall short.
    cells = list(CELLS)

    def enqueue_round() -> None:
        rng.shuffle(cells)
        for kind, stage in cells:
            queue.put_nowait(Trial(kind, stage, rng.getrandbits(32)))

    enqueue_round()
    lane_objs = [Lane(s, results, f"f{k}") for k, s in enumerate(stacks)]

    async def worker(lane: Lane) -> None:
        # Whole rounds only (every cell once per round), until at least `min_faults` hits.
        while results.fault_hits < min_faults or not queue.empty():
            if queue.empty():
                enqueue_round()
            t = queue.get_nowait()
            try:
                await lane.run(t)
            except Exception as exc:  # the harness itself failed: count it, keep going
                results.errors[f"{t.kind}/{t.stage}: {type(exc).__name__}: {exc!s:.100}"] += 1
                if DEBUG:
                    import traceback  # noqa: PLC0415

                    traceback.print_exc()
                await asyncio.sleep(0.1)  # never spin: a failing lane must not starve the others
            if DEBUG:
                print(f"{lane.name} {t.kind}/{t.stage} hits={results.fault_hits}", file=sys.stderr)

    await asyncio.gather(*(worker(ln) for ln in lane_objs))
    # Let late records (ack timeouts, late acks, background read-backs) land, then check journals.
    await asyncio.sleep(2.0)
    journals = [check_journal(s.journal_path, s.emu.frames()) for s in stacks]
    trips = [s.service.trading_state()[0].value for s in stacks]
    for s in stacks:
        await s.stop()
    problems: Counter[str] = Counter()
    for j in journals:
        problems.update(j["problems"])
    lat = {
        k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": round(max(v), 1)}
        for k, v in results.latency_ms.items()
    }
    return {
        "trials": results.trials,
        "fault_hits": results.fault_hits,
        "cells": len(CELLS),
        "cells_covered": len(results.by_cell),
        "items": results.items,
        "correct_verdicts": results.correct,
        "correct_pct": round(100 * results.correct / results.items, 3) if results.items else None,
        "wrong_verdicts": dict(results.wrong),
        "wrong_examples": results.wrong_examples,
        "false_verified": results.false_verified,
        "ground_truth_mismatch": dict(results.ground_truth_mismatch),
        "faults_not_fired": dict(results.faults_not_fired),
        "resends": results.resends + sum(j["resent_req_ids"] for j in journals),
        "unexpected_extra_frames": results.extra_frames,
        "frames_without_intent": sum(j["frames_without_intent"] for j in journals),
        "journal_intents": sum(j["intents"] for j in journals),
        "journal_sent": sum(j["sent"] for j in journals),
        "journal_problems": dict(problems),
        "journal_problem_examples": [j["problem_examples"] for j in journals if j["problem_examples"]][:2],
        "journal_chain_ok": all(j["chain_ok"] for j in journals),
        "outcomes": dict(results.outcomes),
        "latency_ms_by_kind": lat,
        "harness_errors": dict(results.errors),
        "waits_for_reconnect": results.reconnect_waits,
        "final_trading_states": trips,
        "lanes": lanes,
        "duration_s": round(time.perf_counter() - started, 1),
        "errors_logged": dict(errors.errors) if errors else {},
    }
