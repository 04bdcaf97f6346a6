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
import contextlib
import json
import os
from typing import Any

from bench.common import CATEGORY, OrderSet, check_verified
from bench.timing import PerfClock, Timings

__all__ = ["measure_server_overhead"]

READ_TIMEOUT_S = 30.0
_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}


class _Pipes:
    """The client's ends: lines written to the server's input, answers read from its output."""

    def __init__(self) -> None:
        self.server_in, self.client_out = os.pipe()
        self.client_in, self.server_out = os.pipe()
        self.reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        self._transport: asyncio.ReadTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self.reader), os.fdopen(self.client_in, "rb", 0)
        )

    def send(self, message: dict[str, Any]) -> None:
        # One line of a few KB into an empty pipe (64 KiB): the write never blocks.
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self.client_out, view) :]

    async def answer(self, request_id: int) -> dict[str, Any]:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise RuntimeError("the MCP server closed its output")
                message: dict[str, Any] = json.loads(line)
                if message.get("id") == request_id:
                    return message

    def end_input(self) -> None:
        os.close(self.client_out)

    def close(self) -> None:
        for fd in (self.server_in, self.server_out):
            os.close(fd)
        if self._transport is not None:
            self._transport.close()  # and client_in with it


async def measure_server_overhead(
    service: Any, timings: Timings, orders: OrderSet, runs: int, warmup: int
) -> dict[str, list[int]]:
    """ns per call after `warmup`: `total` (read → written), `overhead` (total minus the service's
    latency), `in` and `out` (its two parts). `timings` must be the service's observer."""
    from sidecar.mcp_server import build_server  # noqa: PLC0415
    from sidecar.stdio_transport import serve_stdio  # noqa: PLC0415

    pipes = _Pipes()
    await pipes.open()
    timed: list[tuple[int, int]] = []
    serving = asyncio.create_task(
        serve_stdio(
            build_server(service),
            wire=(pipes.server_in, pipes.server_out),
            on_call=lambda read_ns, written_ns: timed.append((read_ns, written_ns)),
            clock=PerfClock(),
        ),
        name="bench-mcp-pipes",
    )
    out: dict[str, list[int]] = {"total": [], "overhead": [], "in": [], "out": []}
    try:
        pipes.send(_INITIALIZE)
        if "result" not in await pipes.answer(0):
            raise RuntimeError("the MCP server refused initialize")
        pipes.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
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
        pipes.end_input()  # end of input: the server returns
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.shield(serving)
        if not serving.done():
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        pipes.close()
    return out
