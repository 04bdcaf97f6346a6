"""One sidecar of `python -m bench fleet`, in its own process: a real `Service` on the benchmark's
emulator (and Redis, unless its config says local), driven by an open-loop load.

Protocol (lines on stdin/stdout, JSON): started with one argument, the spec (config path, exchange
URL, its orders, the load, how many state changes to watch for); prints {"ready": true} once
started; reads "go" and offers the load; prints {"loaded": true} and watches the trading state
change `watch` times (the parent writes them); prints its figures as one JSON object and exits.

Instrumentation only reads: a `ServiceObserver` for decision times, and a wrapper around the
coordinator's `admit` that counts the round trips and notes when each admission answered (wall
clock, to match the emulator's arrival times). It must not change what the service decides.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bench.common import build_service, quiet_logging


def _out(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


class _Decisions:
    """ServiceObserver: the decision time of every call (sent: to the socket; refused: answered)."""

    def __init__(self) -> None:
        self.sent_ms: list[float] = []
        self.refused_ms: list[float] = []

    def observe_sent(self, decision_s: float) -> None:
        self.sent_ms.append(decision_s * 1000)

    def observe_ack(self, elapsed_s: float) -> None:
        pass

    def observe_answer(self, outcomes: Sequence[Any], latency_s: float) -> None:
        if all(str(o.outcome) in ("denied", "throttled") for o in outcomes):
            self.refused_ms.append(latency_s * 1000)


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    from sidecar.config import load_config  # noqa: PLC0415
    from sidecar.core.types import AmendRequest, TradingState  # noqa: PLC0415

    config = load_config(spec["config"])
    service = build_service(config, spec["exchange_url"])
    decisions = _Decisions()
    admitted_ns: dict[str, int] = {}
    calls = Counter[str]()
    coordinator = service.coordination
    plain_admit = coordinator.admit

    holders: set[str] = set()

    async def admit(*args: Any, **kwargs: Any) -> Any:
        calls["admit"] += 1
        holders.add(args[2])
        decision = await plain_admit(*args, **kwargs)
        if type(decision).__name__ == "Admitted":
            admitted_ns[args[2]] = time.time_ns()  # args[2]: the holder, i.e. the request id
        return decision

    coordinator.admit = admit  # type: ignore[method-assign]  # counting wrapper; decides nothing
    orders: list[dict[str, str]] = spec["orders"]
    asked = Counter[str]()
    tick = Decimal(spec["tick"])

    def request(k: int) -> AmendRequest:
        items = []
        for j in range(spec["batch"]):
            order = orders[(k * spec["batch"] + j) % len(orders)]
            asked[order["id"]] += 1
            price = Decimal(order["price"]) + asked[order["id"]] * tick  # never a no-op
            items.append({"symbol": spec["symbol"], "orderId": order["id"], "price": str(price)})
        return AmendRequest(spec["category"], tuple(items), batch=True, tool="wsBatchAmendOrders")

    async with service:
        service.observer = decisions
        _out({"ready": True})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # "go"
        interval_s = spec["batch"] / spec["items_per_s"]
        start = loop.time()
        tasks = []
        k = 0
        while loop.time() - start < spec["duration_s"]:
            tasks.append(asyncio.create_task(service.submit(request(k))))
            k += 1
            # Pacing of an open-loop load (an agent that does not wait for answers).
            await asyncio.sleep(max(0.0, start + k * interval_s - loop.time()))
        results = await asyncio.gather(*tasks)
        _out({"loaded": True})

        seen: list[tuple[int, int]] = []
        want = TradingState.HALTED
        wait_for_state = getattr(coordinator, "wait_for_state", None)
        while wait_for_state is not None and len(seen) < spec["watch"]:
            if not await wait_for_state(want, 10.0):
                break
            seen.append((coordinator.trading_state().epoch, time.time_ns()))
            want = TradingState.ACTIVE if want is TradingState.HALTED else TradingState.HALTED

        outcomes = Counter(i["outcome"] for r in results for i in r.body["items"])
        reasons = Counter(x["code"] for r in results for i in r.body["items"] for x in i["reasons"])
        codes = Counter[int]()
        for r in results:
            if r.body.get("ack"):
                codes[int(r.body["ack"]["retCode"])] += 1
        sent_at: dict[str, int] = {}
        for request_id, at_ns in admitted_ns.items():
            record = service.journal.get_request(request_id)
            req_id = next((rec.req_id for rec in (record.records if record else ()) if rec.req_id), None)
            if req_id is not None:
                sent_at[req_id] = at_ns
    return {
        "submits": len(results),
        "admit_calls": calls["admit"],
        "admissions": len(holders),
        "reasons": dict(reasons),
        "outcomes": dict(outcomes),
        "ack_codes": {str(c): n for c, n in codes.items()},
        "decision_sent_ms": decisions.sent_ms,
        "decision_refused_ms": decisions.refused_ms,
        "admitted_ns": sent_at,
        "seen": seen,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    quiet_logging("INFO")  # as `serve` logs, rendered into /dev/null so the cost counts
    result = asyncio.run(_main(spec))
    _out(result)


if __name__ == "__main__":
    main()
