"""Order-stream cost and order-view memory, in-process, no network.

`measure_stream`: `order` push frames (the emulator's exact shape, one order per frame as Bybit
sends them) pre-built as text, then decoded with one `sidecar.bybit.codec.OrderDecoder` (as the
private stream adapter holds one) and applied to `core.orders.OrderBook`: events per second. Every
event moves its order's `updatedTime` forward, so each one is really applied (not dropped as a
duplicate).
`measure_rss` runs `python -m bench.stream rss N` in a fresh process: VmRSS with N live orders.
It must not open sockets.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, rss_kb

__all__ = ["measure_rss", "measure_stream", "wire_order"]

_TEMPLATE: dict[str, Any] = {
    "category": "linear",
    "orderId": "",
    "orderLinkId": "",
    "parentOrderLinkId": "",
    "isLeverage": "",
    "blockTradeId": "",
    "symbol": "BTCUSDT",
    "price": "94000.00",
    "qty": "0.001",
    "side": "Buy",
    "positionIdx": 0,
    "orderStatus": "New",
    "cancelType": "UNKNOWN",
    "rejectReason": "EC_NoError",
    "avgPrice": "",
    "leavesQty": "0.001",
    "leavesValue": "94",
    "cumExecQty": "0.000",
    "cumExecValue": "0",
    "cumExecFee": "0",
    "closedPnl": "0",
    "feeCurrency": "",
    "timeInForce": "GTC",
    "orderType": "Limit",
    "stopOrderType": "",
    "triggerPrice": "",
    "takeProfit": "",
    "stopLoss": "",
    "tpslMode": "",
    "tpLimitPrice": "",
    "slLimitPrice": "",
    "tpTriggerBy": "",
    "slTriggerBy": "",
    "triggerBy": "",
    "triggerDirection": 0,
    "lastPriceOnCreated": "95000.00",
    "reduceOnly": False,
    "closeOnTrigger": False,
    "smpType": "None",
    "createdTime": "1795460000000",
    "updatedTime": "1795460000000",
    "createType": "CreateByUser",
}


def wire_order(i: int, updated_ms: int, price: str = "94000.00") -> dict[str, Any]:
    return {
        **_TEMPLATE,
        "orderId": f"0f6a1c3e-{i:04x}-4b7d-9a51-{i:012x}",
        "orderLinkId": f"bench-{i}",
        "price": price,
        "updatedTime": str(updated_ms),
    }


def _frames(start: int, n: int, orders: int) -> list[str]:
    out = []
    for k in range(start, start + n):
        price = "94000.00" if (k // orders) % 2 else "94000.10"
        frame = {
            "id": f"100001-{k}",
            "topic": "order",
            "creationTime": 1795460000000 + k,
            "data": [wire_order(k % orders, 1795460000000 + k, price)],
        }
        out.append(json.dumps(frame, separators=(",", ":")))
    return out


def measure_stream(events: int, orders: int = 1000, chunk: int = 10_000) -> dict[str, float | int]:
    from sidecar.bybit.codec import OrderDecoder  # noqa: PLC0415
    from sidecar.core.orders import ApplyResult, OrderBook  # noqa: PLC0415

    book = OrderBook()
    decode = OrderDecoder().frame
    applied = 0
    elapsed_ns = 0
    frame_bytes = 0
    for start in range(0, events, chunk):
        # Frames are built outside the timed loop, a chunk at a time (1 KB each: bounded memory).
        frames = _frames(start, min(chunk, events - start), orders)
        frame_bytes = len(frames[0])
        gc.collect()
        t0 = time.perf_counter_ns()
        for text in frames:
            views = decode(text)
            assert isinstance(views, list)
            for v in views:
                if book.apply(v) is ApplyResult.APPLIED:
                    applied += 1
        elapsed_ns += time.perf_counter_ns() - t0
    if applied != events:
        raise RuntimeError(f"stream bench: {events - applied} of {events} events were not applied")
    return {
        "events_per_s": round(events / (elapsed_ns / 1e9)),
        "events": events,
        "us_per_event": round(elapsed_ns / events / 1000, 2),
        "frame_bytes": frame_bytes,
    }


def _vm_rss_kb() -> int:
    kb = rss_kb()
    if not kb:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return kb


def _rss_child(n: int) -> dict[str, float | int]:
    """In a fresh interpreter: import the sidecar, then hold `n` live orders in an OrderBook."""
    import sidecar.service  # noqa: F401, PLC0415 - what a running sidecar has loaded
    from sidecar.bybit.codec import OrderDecoder  # noqa: PLC0415
    from sidecar.core.orders import OrderBook  # noqa: PLC0415

    gc.collect()
    base_kb = _vm_rss_kb()
    book = OrderBook()
    view = OrderDecoder().view  # one decoder, as the private stream and the REST client each hold
    for i in range(n):
        book.apply(view(wire_order(i, 1795460000000 + i)))
    gc.collect()
    total_kb = _vm_rss_kb()
    assert len(book) == n
    return {
        "rss_mb": round(total_kb / 1024, 1),
        "baseline_mb": round(base_kb / 1024, 1),
        "per_order_bytes": round((total_kb - base_kb) * 1024 / n) if n else 0,
        "orders": n,
    }


def measure_rss(n: int) -> dict[str, float | int]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.stream", "rss", str(n)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    result: dict[str, float | int] = json.loads(out.stdout)
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "rss":
        print(json.dumps(_rss_child(int(sys.argv[2]))))
    else:
        sys.exit("usage: python -m bench.stream rss N")
