"""Load: 20-item batches at a constant arrival rate (default 50/s) for a set time, with faults
sprinkled in, against the emulator in its own process; latency, outcomes and resource drift.

Its one job is the sustained-load figures of reliability.md §5.4: open-loop arrivals (latency
counted from each batch's *intended* start, so a stall cannot hide itself), verified latency
p50/p99/p99.9/max, the raw-client ack floor measured against the same emulator process in the same
run, RSS / open fds / asyncio tasks / in-flight maps sampled over the run (flat = no leak), and the
write-ahead and no-resend checks over every frame. It must not tune the sidecar or skip batches.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import EmulatorProcess, ErrorCounter, build_service
from bench.raw import measure_raw_ack
from bench.stats import dist_ms, pct_us
from bench.timing import Timings
from reliability.journal_check import check_journal
from reliability.stack import resources, soak_config

__all__ = ["FAULTS", "run_load"]

ITEMS = 20
# Faults sprinkled into the load: one at a time, each hits the next matching event (any batch).
FAULTS: list[dict[str, Any]] = [
    {"kind": "drop_ack"},
    {"kind": "delay_ack", "ms": 400},
    {"kind": "delay_ack", "ms": 3500},
    {"kind": "drop_order_events"},
    {"kind": "delay_order_events", "ms": 800},
    {"kind": "duplicate_order_events"},
    {"kind": "order_events_before_ack", "ms": 100},
    {"kind": "disconnect_private"},
    {"kind": "disconnect_trade"},
    {"kind": "rate_limit"},
    {"kind": "reject", "code": 110001, "msg": "order not exists or too late to replace"},
]
# Targets on the tick, below the frozen 95,000 market, inside the ±150 bps band.
LOW_TICKS, HIGH_TICKS = 936_000, 949_000
TICK = Decimal("0.1")


class OrderSets:
    """Sets of 20 resting orders; a batch borrows one set. A set with an unverified item rests
    until background reconciliation is over, so two requests never race on the same orders."""

    def __init__(self, sets: list[list[str]], rest_s: float) -> None:
        self.free: asyncio.Queue[int] = asyncio.Queue()
        self.sets = sets
        self.rest_s = rest_s
        self.last_target: dict[int, str | None] = {}
        self.resting = 0
        for k in range(len(sets)):
            self.free.put_nowait(k)

    def give_back(self, k: int, clean: bool) -> None:
        if clean:
            self.free.put_nowait(k)
            return
        self.resting += 1
        asyncio.get_running_loop().call_later(self.rest_s, self._rested, k)

    def _rested(self, k: int) -> None:
        self.resting -= 1
        self.free.put_nowait(k)


async def _place_sets(emu: Any, n_sets: int) -> list[list[str]]:
    out = []
    for k in range(n_sets):
        orders = await asyncio.to_thread(emu.rest_orders, f"load{k}", ITEMS)
        out.append(orders.order_ids)
    return out


async def _wait_known(service: Any, sets: list[list[str]]) -> None:
    async with asyncio.timeout(30):
        for ids in sets:
            for oid in ids:
                # Polling on purpose: the service exposes no event for "order known".
                while service.order_state("linear", "BTCUSDT", oid, None) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)


def _size(obj: Any, attr: str) -> int | None:
    value = getattr(obj, attr, None)
    return len(value) if value is not None else None


def _sample(service: Any, journal: Path, t0: float) -> dict[str, Any]:
    """Resources plus the size of every map that must stay bounded (introspection, read-only)."""
    r = resources()
    r["t_s"] = round(time.perf_counter() - t0, 1)
    rec = service.reconciler
    r["maps"] = {
        "reconciler_items": _size(rec, "_items"),
        "reconciler_requests": _size(rec, "_requests"),
        "reconciler_by_req_id": _size(rec, "_by_req_id"),
        "reconciler_by_order_id": _size(rec, "_by_order_id"),
        "service_pending": len(service.pending),
        "service_lookups": len(service.lookups),
        "service_background": len(service.background),
        "trade_pending": _size(service.trade, "_pending"),
        "book_orders": _size(service.book, "_by_id"),
    }
    # Idle keep-alive REST connections (aiohttp pools up to 100 for 15 s): fds, but not a leak.
    session = getattr(service.rest, "_session", None)
    conns = getattr(getattr(session, "connector", None), "_conns", None) or {}
    r["rest_pooled"] = sum(len(v) for v in conns.values())
    try:
        r["journal_mb"] = round(journal.stat().st_size / 2**20, 1)
    except OSError:
        r["journal_mb"] = None
    return r


async def _load(
    emu: Any,
    tmp: Path,
    rate: float,
    duration_s: float,
    fault_every_s: float,
    seed: int,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    from sidecar.core.types import AmendRequest  # noqa: PLC0415

    journal = tmp / "load.sqlite3"
    config = soak_config(journal, **overrides)
    service = build_service(config, emu.url)
    await service.start()
    timings = Timings()  # the service's own observer hook: when each frame was handed to the socket
    service.observer = timings
    rng = random.Random(seed)
    n_sets = max(8, int(rate * 0.6))  # well above what is in flight at once
    sets = await _place_sets(emu, n_sets)
    await _wait_known(service, sets)
    rest_s = (config.verification.background_timeout_ms + config.verification.timeout_ms) / 1000 + 2
    pool = OrderSets(sets, rest_s)
    latencies: list[float] = []  # intended start -> answer, all batches
    verified_lat: list[float] = []  # same, batches with every item verified
    service_lat: list[float] = []  # the service's own latencyMs of verified batches
    outcomes: Counter[str] = Counter()
    batch_outcomes: Counter[str] = Counter()
    spans: list[tuple[float, float, bool]] = []  # (start, end, all verified)
    faults_at: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    last_target: dict[int, tuple[str, bool]] = {}
    errors: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    warm_s = min(30.0, duration_s * 0.1)
    me = asyncio.current_task()
    if me is not None:
        me.set_name("soak-main")

    async def one(intended: float) -> None:
        k = await pool.free.get()
        price = format(rng.randint(LOW_TICKS, HIGH_TICKS) * TICK, "f")
        items = tuple({"symbol": "BTCUSDT", "orderId": oid, "price": price} for oid in pool.sets[k])
        clean = False
        try:
            result = await service.submit(
                AmendRequest("linear", items, batch=True, tool="wsBatchAmendOrders")
            )
            end = time.perf_counter()
            body = result.body
            outs = [it["outcome"] for it in body["items"]]
            outcomes.update(outs)
            batch_outcomes[body["outcome"]] += 1
            ms = (end - intended) * 1000
            latencies.append(ms)
            all_verified = all(o == "verified" for o in outs)
            if all_verified:
                verified_lat.append(ms)
                service_lat.append(float(body["latencyMs"]))
            spans.append((intended, end, all_verified))
            last_target[k] = (price, all_verified)
            clean = "unverified" not in outs  # only an unverified item is still being looked at
        except Exception as exc:  # a harness-visible failure is a finding, never a crash
            errors[f"{type(exc).__name__}: {exc!s:.80}"] += 1
        finally:
            pool.give_back(k, clean)

    async def injector() -> None:
        next_at = t0 + warm_s + fault_every_s
        end_at = t0 + duration_s - 2 * fault_every_s
        while next_at < end_at:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            spec = {**rng.choice(FAULTS), "count": 1}
            faults_at.append(time.perf_counter())
            await asyncio.to_thread(emu.post, "/emulator/faults", {"faults": [spec]})
            next_at += fault_every_s

    async def sampler() -> None:
        every = max(2.0, duration_s / 40)
        while time.perf_counter() - t0 < duration_s:
            samples.append(_sample(service, journal, t0))
            await asyncio.sleep(every)

    inj = asyncio.create_task(injector(), name="soak-injector")
    smp = asyncio.create_task(sampler(), name="soak-sampler")
    n = int(rate * duration_s)
    for i in range(n):
        intended = t0 + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(intended), name=f"soak-batch-{i}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_s = time.perf_counter() - t0
    await inj
    smp.cancel()
    if tasks:
        await asyncio.wait(set(tasks), timeout=120)
    await asyncio.to_thread(emu.post, "/emulator/faults", {"faults": []})
    # Drain: background reconciliation ends within its own timeout; then the end sample.
    async with asyncio.timeout(rest_s + 10):
        while service.reconciler.in_flight_count() or len(service.pending):  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    end_sample = _sample(service, journal, t0)
    start_sample = next((s for s in samples if s["t_s"] >= warm_s), samples[0] if samples else end_sample)

    # Ground truth: sets whose last batch was all verified must sit at that batch's price.
    orders = {o["orderId"]: o for o in (await asyncio.to_thread(emu.get, "/emulator/orders"))["orders"]}
    false_verified = 0
    for k, (price, ok) in last_target.items():
        if ok:
            false_verified += sum(
                1 for oid in pool.sets[k] if Decimal(orders[oid]["price"]) != Decimal(price)
            )
    frames = [
        f
        for f in (await asyncio.to_thread(emu.get, "/emulator/frames"))["frames"]
        if not str(f.get("reqId", "")).startswith("raw")
    ]
    await service.stop()
    service.journal.close()
    journal_check = check_journal(journal, frames)

    def near_fault(a: float, b: float) -> bool:
        # A fault hits the next matching event; a socket fault also disturbs what follows for the
        # reconnect. "Near": injected from 2 s before the batch's start to its end.
        return any(a - 2.0 <= f <= b for f in faults_at)

    clean_verified = [(e - s) * 1000 for s, e, ok in spans if ok and not near_fault(s, e)]
    presend_lat = [s * 1000 for s in timings.decision_s]  # every sent batch, faults included
    return {
        "rate_per_s": rate,
        "duration_s": duration_s,
        "batches": len(latencies),
        "items": sum(outcomes.values()),
        "offered_batches": n,
        "achieved_rate_per_s": round(len(latencies) / max(sent_s, 1e-9), 1),
        "faults_injected": len(faults_at),
        "item_outcomes": dict(outcomes),
        "batch_outcomes": dict(batch_outcomes),
        "latency_ms_all": dist_ms(latencies),
        "verified_latency_ms": dist_ms(verified_lat),
        "verified_latency_ms_away_from_faults": dist_ms(clean_verified),
        "service_latency_ms_verified": dist_ms(service_lat),
        "sidecar_added_ms": {
            **dist_ms(presend_lat),
            "definition": "Service.submit → the frame handed to the trade socket (validate, rate-limit, "
            "journal the intent, encode), every sent batch, faults included",
        },
        "resources_start": start_sample,
        "resources_end": end_sample,
        "rss_drift_pct": round(100 * (end_sample["rss_mb"] / start_sample["rss_mb"] - 1), 1)
        if start_sample.get("rss_mb")
        else None,
        "samples": samples,
        "false_verified_at_end": false_verified,
        "sets_rested_for_reconciliation": pool.resting,
        "journal": journal_check,
        "harness_errors": dict(errors),
    }


def run_load(
    tmp: Path,
    *,
    rate: float = 50.0,
    duration_s: float = 600.0,
    fault_every_s: float = 5.0,
    raw_runs: int = 500,
    seed: int = 5,
    errors: ErrorCounter | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The load part (synchronous: it owns its event loops and the emulator process)."""
    with EmulatorProcess(seed=seed) as emu:
        emu.prepare()
        raw_orders = emu.rest_orders("raw")
        raw_ns = measure_raw_ack(emu, raw_orders, raw_runs, max(10, raw_runs // 10))
        out = asyncio.run(_load(emu, tmp, rate, duration_s, fault_every_s, seed, config_overrides or {}))
    raw_p50_us, raw_p99_us = pct_us(raw_ns, 0.5, 0), pct_us(raw_ns, 0.99, 0)
    if raw_p50_us is None or raw_p99_us is None:
        raise RuntimeError("load: the raw client measured nothing")
    raw_p50 = raw_p50_us / 1000
    out["raw_ack_p50_ms"] = round(raw_p50, 3)
    out["raw_ack_p99_ms"] = round(raw_p99_us / 1000, 3)
    v = out["verified_latency_ms_away_from_faults"]
    out["added_latency_ms"] = {
        "p50": None if v["p50"] is None else round(v["p50"] - raw_p50, 2),
        "p99": None if v["p99"] is None else round(v["p99"] - raw_p50, 2),
        "definition": "verified latency (intended start → all 20 items verified), batches away from "
        "injected faults, minus the raw client's ack p50 in the same run",
    }
    out["errors_logged"] = dict(errors.errors) if errors else {}
    return out
