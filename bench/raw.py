"""The floor: a minimal raw `websockets` asyncio client, request → ack, nothing else.

It authenticates once, then sends the same `order.amend-batch` frame the sidecar sends (compact
JSON, string header values; only reqId and timestamp change per request) and waits for the
matching ack, one request at a time. No validation, no journal, no verification: whatever this
takes is the emulator plus loopback plus the websockets library, which no client can go below.
It must not share code with the sidecar's send path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.common import CATEGORY, RECV_WINDOW_MS, EmulatorProcess, OrderSet, auth_frame, wall_ms

__all__ = ["body_text", "frame_text", "measure_raw_ack"]


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


async def _drain_private(url: str, ready: asyncio.Event) -> None:
    """A private `order` subscriber that reads and discards (the work a verifying client has)."""
    async with connect(url + "/v5/private", compression=None) as ws:
        await ws.send(auth_frame(wall_ms()))
        await ws.recv()
        await ws.send('{"op":"subscribe","req_id":"s1","args":["order"]}')
        await ws.recv()
        ready.set()
        async for _ in ws:
            pass


async def _run(
    emu: EmulatorProcess, orders: OrderSet, runs: int, warmup: int, prefix: str, with_stream: bool
) -> list[int]:
    # The 20 items are fixed per target price: build them once (a real client would keep them too).
    bodies = [body_text(orders.items(0)), body_text(orders.items(1))]
    samples: list[int] = []
    drain: asyncio.Task[None] | None = None
    if with_stream:
        ready = asyncio.Event()
        drain = asyncio.create_task(_drain_private(emu.ws_url, ready))
        await asyncio.wait_for(ready.wait(), 10)
    try:
        async with connect(emu.ws_url + "/v5/trade", compression=None) as ws:
            await _auth(ws)
            for i in range(warmup + runs):
                req_id = f"{prefix}-{i}"
                t0 = time.perf_counter_ns()
                await ws.send(frame_text(req_id, wall_ms(), bodies[i % 2]))
                while True:
                    msg: dict[str, Any] = json.loads(await ws.recv())
                    if msg.get("reqId") == req_id:
                        break
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
