"""The MCP server's own time per tool call, outside the service, measured on the server's side.

`serve_stdio(build_server(service), wire=(fd_in, fd_out))` runs in this process over two pipes, with
the running service of bench/sidecar_path.py behind it; a raw JSON-RPC client on the other ends
writes one `tools/call` line (`wsBatchAmendOrders`, 20 items, to a verified result) and waits for
its answer line, one call at a time, doing nothing while the server works.

Per call, from the product's own hooks (no wrapping, no patching): the transport's per-call timing
(`on_call`: request line read → answer line written, on the bench clock) minus the service's time
for the call (the observer's `latency_s`: submit entry → answer built, the agent's `latencyMs`).
Its two parts: `in` (line read → submit entry: decoding, the SDK's dispatch and argument checks) and
`out` (answer built → line written: the final journal record `submit` commits before it returns,
the tool result's forms, serialisation, the write). It must not measure anything the client does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import CATEGORY, OrderSet, check_verified
from bench.timing import PerfClock, Timings

__all__ = ["measure_server_overhead"]

READ_TIMEOUT_S = 30.0


async def measure_server_overhead(
    service: Any, timings: Timings, orders: OrderSet, runs: int, warmup: int
) -> dict[str, list[int]]:
    """ns per call after `warmup`: `total` (read → written), `overhead` (total minus the service's
    latency), `in` and `out` (its two parts). `timings` must be the service's observer."""
    from sidecar.mcp_server import build_server  # noqa: PLC0415
    from sidecar.stdio_transport import serve_stdio  # noqa: PLC0415
    from sidecar.testing.pipes import PipeClient  # noqa: PLC0415

    pipes = PipeClient(read_timeout_s=READ_TIMEOUT_S)
    await pipes.open()
    timed: list[tuple[int, int]] = []
    serving = asyncio.create_task(
        serve_stdio(
            build_server(service),
            wire=pipes.wire,
            on_call=lambda read_ns, written_ns: timed.append((read_ns, written_ns)),
            clock=PerfClock(),
        ),
        name="bench-mcp-pipes",
    )
    out: dict[str, list[int]] = {"total": [], "overhead": [], "in": [], "out": []}
    try:
        await pipes.initialize(request_id=0)
        for i in range(warmup + runs):
            call_id = i + 1
            arguments = {"category": CATEGORY, "request": orders.items(i)}
            timings.clear()
            before = len(timed)
            pipes.send(
                {
                    "jsonrpc": "2.0",
                    "id": call_id,
                    "method": "tools/call",
                    "params": {"name": "wsBatchAmendOrders", "arguments": arguments},
                }
            )
            answer = await pipes.answer(call_id)
            check_verified(answer.get("result", {}).get("structuredContent") or {}, f"mcp pipe call {i}")
            if len(timed) != before + 1 or len(timings.answer_ns) != 1:
                raise RuntimeError(
                    f"mcp pipe call {i}: timed {len(timed) - before} calls, {len(timings.answer_ns)} answers"
                )
            if i < warmup:
                continue
            read_ns, written_ns = timed[-1]
            service_ns = round(timings.latency_s[0] * 1e9)
            answered_ns = timings.answer_ns[0]
            out["total"].append(written_ns - read_ns)
            out["overhead"].append(written_ns - read_ns - service_ns)
            out["in"].append(answered_ns - service_ns - read_ns)
            out["out"].append(written_ns - answered_ns)
    finally:
        await pipes.close(serving, must_return=False)  # end of input: the server returns
    return out
