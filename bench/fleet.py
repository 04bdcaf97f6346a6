"""`python -m bench fleet`: several sidecars on one Bybit account, one JSON object.

Each sidecar is its own process (`bench/fleet_worker.py`: a real `Service` with its own journal,
trade and private sockets, and event loop) on one emulator process whose per-UID order.amend-batch
budget equals the one every sidecar is configured with (utilization 1, so the exchange guard alone
keeps the headroom). For N = 1, 2, 4, 8 sidecars (BENCH_FLEET_SIZES) they together offer
BENCH_FLEET_LOAD (3) times that budget for BENCH_FLEET_SECONDS (5), once coordinated through one
real redis-server and once each on its own (`local`, the baseline). Per run:
- `peak_units_per_rolling_s` vs `budget`: the most items the emulator received in any rolling
  second (its own arrival times, its own counting rule), and `exchange_10006`: Bybit's answers;
- `decision_p50_ms`/`p99_ms`: from `submit` to the frame handed to the trade socket (validation,
  the Redis admission, the journal's write-ahead intent, the send); `refusal_p50_ms`: to a refusal;
- `round_trips_per_decision`: Redis admission calls per call that reached the admission;
- `admission_to_arrival_p50_ms`/`p99`/`max`: from the admission's answer to the frame's arrival at
  the exchange (what the guard must cover: it is 100 ms).
Then `halt_visibility_p50_ms`/`p99`/`max`: a halt (and resume) written to Redis by another process,
as `sidecar halt` does, until each sidecar's own view shows it (the admission refuses the very next
call regardless: it reads Redis); and `refuse_refused_ms` / `refuse_frozen_ms`: a call's answer with
Redis gone (connection refused) and frozen (SIGSTOP; timeout 100 ms).

Everything runs on this machine: the figures include the CPU contention of N + 2 processes.
Needs Debian's `redis-server` on PATH.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import ROOT, EmulatorProcess, build_service, quiet_logging, temp_dir, write_bench_config
from bench.redis_server import RedisServer, find_redis_server
from bench.stats import pct, peak_units

CATEGORY, SYMBOL, MARK, TICK = "linear", "BTCUSDT", "95000", "0.1"
BATCH = 2  # items per call
ORDERS_PER_SIDECAR = 12
HALTS = 20
WORKER_TIMEOUT_S = 120


def _config(tmp: Path, name: str, budget: int, redis_url: str | None, namespace: str) -> Path:
    budget_rule = {"op": "order.amend-batch", "category": CATEGORY, "max": budget, "utilization": "1"}
    coordination = {"backend": "redis", "url": redis_url, "namespace": namespace} if redis_url else None
    return write_bench_config(
        tmp / f"{name}.yaml",
        tmp / name / "journal.sqlite3",
        [budget_rule],
        **({"coordination": coordination} if coordination else {}),
    )


class _Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fleet_worker", json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def expect(self, key: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a fleet worker exited early (rc={self.proc.wait()})")
        message: dict[str, Any] = json.loads(line)
        if key not in message:
            raise RuntimeError(f"a fleet worker said {line[:200]!r}, expected {key!r}")
        return message

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        out = self.expect("submits")
        self.proc.wait(timeout=WORKER_TIMEOUT_S)
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _fleet_run(
    emu: EmulatorProcess,
    tmp: Path,
    n: int,
    budget: int,
    load: float,
    seconds: float,
    redis: RedisServer | None,
) -> dict[str, Any]:
    namespace = f"bench-{n}-{time.time_ns()}"
    run_dir = tmp / namespace
    run_dir.mkdir()
    frames_before = len(emu.get("/emulator/frames")["frames"])
    workers: list[_Worker] = []
    watch = 2 * HALTS if redis is not None and n > 0 else 0
    try:
        for i in range(n):
            orders = [
                {"id": oid, "price": price}
                for oid, price in (
                    _rest(emu, f"{namespace}-{i}-{j}", 94000 - (i * ORDERS_PER_SIDECAR + j))
                    for j in range(ORDERS_PER_SIDECAR)
                )
            ]
            spec = {
                "config": str(_config(run_dir, f"s{i}", budget, redis.url if redis else None, namespace)),
                "exchange_url": emu.url,
                "orders": orders,
                "symbol": SYMBOL,
                "category": CATEGORY,
                "tick": TICK,
                "batch": BATCH,
                "items_per_s": load * budget / n,
                "duration_s": seconds,
                "watch": watch,
            }
            workers.append(_Worker(spec))
        for w in workers:
            w.expect("ready")
        for w in workers:
            w.go()
        for w in workers:
            w.expect("loaded")
        halt_at = asyncio.run(_halts(redis.url, namespace)) if redis is not None and watch else {}
        results = [w.result() for w in workers]
    finally:
        for w in workers:
            w.kill()
    frames = [
        f for f in emu.get("/emulator/frames")["frames"][frames_before:] if f.get("op") == "order.amend-batch"
    ]
    arrivals = [(int(f["receivedAt"]), len(f["args"][0]["request"])) for f in frames]
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for r in results:
        outcomes.update(r["outcomes"])
        reasons.update(r["reasons"])
        codes.update(r["ack_codes"])
    admitted = {k: v for r in results for k, v in r["admitted_ns"].items()}
    spread = [f["receivedAt"] - admitted[f["reqId"]] / 1e6 for f in frames if f.get("reqId") in admitted]
    reached = sum(r["admissions"] for r in results)  # calls whose admission Redis was asked for
    out: dict[str, Any] = {
        "sidecars": n,
        "coordination": "redis" if redis is not None else "local",
        "budget": budget,
        "offered_items_per_s": round(load * budget, 1),
        "peak_units_per_rolling_s": peak_units(arrivals),
        "exchange_10006": int(codes.get("10006", 0)),
        "items": dict(outcomes),
        "reasons": dict(reasons),
        "decision_p50_ms": pct([x for r in results for x in r["decision_sent_ms"]], 0.5),
        "decision_p99_ms": pct([x for r in results for x in r["decision_sent_ms"]], 0.99),
        "refusal_p50_ms": pct([x for r in results for x in r["decision_refused_ms"]], 0.5),
    }
    if redis is not None:
        out["round_trips_per_decision"] = round(sum(r["admit_calls"] for r in results) / max(1, reached), 3)
        out["admission_to_arrival_p50_ms"] = pct(spread, 0.5)
        out["admission_to_arrival_p99_ms"] = pct(spread, 0.99)
        out["admission_to_arrival_max_ms"] = round(max(spread), 2) if spread else None
        seen = [
            (at_ns - halt_at[epoch]) / 1e6 for r in results for epoch, at_ns in r["seen"] if epoch in halt_at
        ]
        out["state_changes_seen"] = f"{len(seen)}/{len(halt_at) * n}"
        out["halt_visibility_ms"] = seen
    return out


def _rest(emu: EmulatorProcess, link: str, price: float) -> tuple[str, str]:
    body = {
        "category": CATEGORY,
        "symbol": SYMBOL,
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.001",
        "price": f"{price:.1f}",
        "orderLinkId": link[:36],
    }
    order = emu.post("/emulator/orders", body)["order"]
    return str(order["orderId"]), str(order["price"])


async def _halts(url: str, namespace: str) -> dict[int, int]:
    """Halt and resume HALTS times through Redis from this process (as `sidecar halt` does);
    returns each change's epoch -> the wall time it was asked for."""
    from sidecar.clock import SystemClock  # noqa: PLC0415
    from sidecar.coordination.redis_backend import RedisCoordinator  # noqa: PLC0415
    from sidecar.core.policy import Policy  # noqa: PLC0415
    from sidecar.core.types import TradingState  # noqa: PLC0415

    operator = RedisCoordinator(
        Policy(symbols={}), url=url, namespace=namespace, clock=SystemClock(), local_id_prefix="bench"
    )
    at: dict[int, int] = {}
    try:
        for _ in range(HALTS):
            for state in (TradingState.HALTED, TradingState.ACTIVE):
                t0 = time.time_ns()
                view = await operator.set_trading_state(state, "bench", "bench")
                if not hasattr(view, "epoch"):
                    raise RuntimeError(f"the bench could not write the state: {view}")
                at[view.epoch] = t0
                await asyncio.sleep(0.05)  # spacing between changes, so each one is seen on its own
    finally:
        await operator.stop()
    return at


async def _refusals(emu: EmulatorProcess, tmp: Path, binary: str, budget: int) -> dict[str, Any]:
    """A call's answer time with Redis gone (refused) and frozen (SIGSTOP), on one sidecar."""
    from sidecar.config import load_config  # noqa: PLC0415
    from sidecar.core.types import AmendRequest  # noqa: PLC0415

    redis = RedisServer(binary, tmp)
    redis.start()
    try:
        config = load_config(_config(tmp, "refuse", budget, redis.url, "bench-refuse"))
        oid, price = _rest(emu, f"refuse-{time.time_ns()}", 94500)
        service = build_service(config, emu.url)
        k = 0

        async def timed() -> tuple[float, list[str]]:
            nonlocal k
            k += 1
            item = {"symbol": SYMBOL, "orderId": oid, "price": f"{float(price) + k * 0.1:.1f}"}
            t0 = time.perf_counter()
            result = await service.submit(
                AmendRequest(CATEGORY, (item,), batch=True, tool="wsBatchAmendOrders")
            )
            codes = [r["code"] for i in result.body["items"] for r in i["reasons"]]
            return (time.perf_counter() - t0) * 1000, codes

        async with service:
            await timed()  # warm: a connection in the pool, an admission that passes
            redis.freeze()
            try:
                frozen = [await timed() for _ in range(5)]
            finally:
                redis.thaw()
            redis.kill()
            refused = [await timed() for _ in range(20)]
    finally:
        redis.stop()
    if any(codes != ["COORDINATION_UNAVAILABLE"] for _, codes in frozen + refused):
        raise RuntimeError(f"a refusal was not COORDINATION_UNAVAILABLE: {frozen + refused}")
    return {
        "refuse_frozen_ms": pct([ms for ms, _ in frozen], 0.5),
        "refuse_frozen_max_ms": round(max(ms for ms, _ in frozen), 1),
        "refuse_refused_ms": pct([ms for ms, _ in refused], 0.5),
        "refuse_refused_max_ms": round(max(ms for ms, _ in refused), 1),
    }


def run() -> dict[str, Any]:
    binary = find_redis_server()
    if binary is None:
        return {"error": "redis-server not found on PATH (apt-get install redis-server)"}
    sizes = [int(s) for s in os.environ.get("BENCH_FLEET_SIZES", "1,2,4,8").split(",") if s.strip()]
    load = float(os.environ.get("BENCH_FLEET_LOAD", "3"))
    seconds = float(os.environ.get("BENCH_FLEET_SECONDS", "5"))
    budget = int(os.environ.get("BENCH_FLEET_BUDGET", "50"))
    quiet_logging("INFO")  # logged as `serve` logs, rendered into /dev/null
    with temp_dir("sidecar-fleet-") as tmp:
        emu = EmulatorProcess(seed=3).start()
        redis = RedisServer(binary, tmp / "redis")
        (tmp / "redis").mkdir()
        try:
            emu.post(
                "/emulator/limits", {"op": "order.amend-batch", "category": CATEGORY, "perSecond": budget}
            )
            emu.post("/emulator/limits", {"op": "order.realtime", "category": CATEGORY, "perSecond": 100_000})
            emu.post(
                "/emulator/prices",
                {"category": CATEGORY, "symbol": SYMBOL, "markPrice": MARK, "lastPrice": MARK},
            )
            redis.start()
            runs = []
            for n in sizes:
                runs.append(_fleet_run(emu, tmp, n, budget, load, seconds, redis))
                runs.append(_fleet_run(emu, tmp, n, budget, load, seconds, None))
            (tmp / "refuse").mkdir()
            refusals = asyncio.run(_refusals(emu, tmp / "refuse", binary, budget))
        finally:
            redis.stop()
            emu.stop()
    seen = [ms for r in runs for ms in r.pop("halt_visibility_ms", [])]
    coordinated = [r for r in runs if r["coordination"] == "redis"]
    return {
        "budget_items_per_s": budget,
        "offered_load_x": load,
        "seconds_per_run": seconds,
        "guard_ms": 100,
        "within_budget_everywhere": all(r["peak_units_per_rolling_s"] <= budget for r in coordinated),
        "exchange_10006_coordinated": sum(r["exchange_10006"] for r in coordinated),
        "exchange_10006_baseline": sum(r["exchange_10006"] for r in runs if r["coordination"] == "local"),
        "halt_visibility_p50_ms": pct(seen, 0.5),
        "halt_visibility_p99_ms": pct(seen, 0.99),
        "halt_visibility_max_ms": round(max(seen), 2) if seen else None,
        **refusals,
        "runs": runs,
    }
