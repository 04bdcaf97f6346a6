"""The floor: a minimal raw `websockets` asyncio client, request → ack, and request → verified.

It authenticates once, then sends the same `order.amend-batch` frame the sidecar sends (compact
JSON, string header values; only reqId and timestamp change per request) and waits for the
matching ack, one request at a time. No validation, no journal: whatever this takes is the emulator
plus loopback plus the websockets library, which no client can go below. `measure_raw_ack` can run
a private `order` subscriber beside it that reads and discards (the work a verifying client has);
`measure_raw_verified` waits for the ack and for its own private socket to show all 20 orders at
their new price (the floor of proof). It must not share code with the sidecar's send path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.common import CATEGORY, RECV_WINDOW_MS, EmulatorProcess, OrderSet, auth_frame, wall_ms

WAIT_S = 5.0

__all__ = ["body_text", "frame_text", "measure_raw_ack", "measure_raw_verified"]


def body_text(items: list[dict[str, str]]) -> str:
    return json.dumps({"category": CATEGORY, "request": items}, separators=(",", ":"))


def frame_text(req_id: str, ts_ms: int, body: str) -> str:
    """The sidecar's wire shape for one amend batch (see `sidecar.bybit.codec.encode_amend_batch`)."""
    return (
        f'{{"reqId":"{req_id}","header":{{"X-BAPI-TIMESTAMP":"{ts_ms}","X-BAPI-RECV-WINDOW":'
        f'"{RECV_WINDOW_MS}"}},"op":"order.amend-batch","args":[{body}]}}'
    )


async def _auth(ws: ClientConnection) -> None:
    await ws.send(auth_frame(wall_ms()))
    reply = json.loads(await ws.recv())
    if reply.get("retCode") != 0:
        raise RuntimeError(f"raw client auth failed: {reply}")


class _Proof:
    """The request in flight: its ack, and the orders whose push has not shown the target price yet."""

    def __init__(self) -> None:
        self.want: dict[str, float] = {}
        self.acked = False
        self.done = asyncio.Event()

    def arm(self, items: list[dict[str, str]]) -> None:
        # Floats compare the numbers: the push prints the tick's decimals ("94000.10").
        self.want = {it["orderId"]: float(it["price"]) for it in items}
        self.acked = False
        self.done.clear()

    def ack(self) -> None:
        self.acked = True
        if not self.want:
            self.done.set()

    def push(self, text: str | bytes) -> None:
        msg = json.loads(text)
        if msg.get("topic") != "order" or not self.want:
            return
        for d in msg.get("data", ()):
            if self.want.get(d.get("orderId")) == float(d.get("price") or 0):
                del self.want[d["orderId"]]
        if not self.want and self.acked:
            self.done.set()


async def _private(url: str, ready: asyncio.Event, proof: _Proof | None) -> None:
    """A private `order` subscriber: reads every push, and checks it against `proof` if given."""
    async with connect(url + "/v5/private", compression=None) as ws:
        await ws.send(auth_frame(wall_ms()))
        await ws.recv()
        await ws.send('{"op":"subscribe","req_id":"s1","args":["order"]}')
        await ws.recv()
        ready.set()
        async for text in ws:
            if proof is not None:
                proof.push(text)


async def _run(
    emu: EmulatorProcess,
    orders: OrderSet,
    runs: int,
    warmup: int,
    prefix: str,
    with_stream: bool,
    proof: _Proof | None = None,
) -> list[int]:
    # The 20 items are fixed per target price: build them once (a real client would keep them too).
    bodies = [body_text(orders.items(0)), body_text(orders.items(1))]
    items = [orders.items(0), orders.items(1)]
    samples: list[int] = []
    drain: asyncio.Task[None] | None = None
    if with_stream or proof is not None:
        ready = asyncio.Event()
        drain = asyncio.create_task(_private(emu.ws_url, ready, proof))
        await asyncio.wait_for(ready.wait(), 10)
    try:
        async with connect(emu.ws_url + "/v5/trade", compression=None) as ws:
            await _auth(ws)
            for i in range(warmup + runs):
                req_id = f"{prefix}-{i}"
                if proof is not None:
                    proof.arm(items[i % 2])
                t0 = time.perf_counter_ns()
                await ws.send(frame_text(req_id, wall_ms(), bodies[i % 2]))
                while True:
                    msg: dict[str, Any] = json.loads(await ws.recv())
                    if msg.get("reqId") == req_id:
                        break
                if proof is not None:
                    proof.ack()
                    try:
                        await asyncio.wait_for(proof.done.wait(), WAIT_S)
                    except TimeoutError:
                        missing = len(proof.want)
                        raise RuntimeError(
                            f"raw client: request {i} acked, {missing} pushes missing"
                        ) from None
                t1 = time.perf_counter_ns()
                codes = [e.get("code") for e in msg.get("retExtInfo", {}).get("list", [])]
                if msg.get("retCode") != 0 or any(codes):
                    raise RuntimeError(f"raw client: request {i} failed: {msg.get('retMsg')} {codes[:3]}")
                if i >= warmup:
                    samples.append(t1 - t0)
    finally:
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await drain
    return samples


def measure_raw_ack(
    emu: EmulatorProcess, orders: OrderSet, runs: int, warmup: int, *, with_stream: bool = False
) -> list[int]:
    """Ack latencies (ns) of `runs` sequential batches after `warmup`."""
    prefix = "raw-s" if with_stream else "raw"
    return asyncio.run(_run(emu, orders, runs, warmup, f"{prefix}-{time.time_ns() % 10**9}", with_stream))


def measure_raw_verified(emu: EmulatorProcess, orders: OrderSet, runs: int, warmup: int) -> list[int]:
    """Latencies (ns) from the send to the ack AND all 20 `order` pushes at the new price on the
    client's own private socket, `runs` sequential batches after `warmup`."""
    prefix = f"raw-v-{time.time_ns() % 10**9}"
    return asyncio.run(_run(emu, orders, runs, warmup, prefix, False, _Proof()))
