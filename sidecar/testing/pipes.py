"""A raw JSON-RPC client on two pipes to `serve_stdio(server, wire=(...))` in the same process: the
one used by the stdio transport's tests, the MCP fast path's tests and the MCP-overhead benchmark.

It writes request lines and reads answer lines; it never interprets a tool's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

__all__ = ["PipeClient"]


class PipeClient:
    """The client's ends of two pipes; `server_in`/`server_out` are the server's (`wire=`)."""

    def __init__(self, read_timeout_s: float = 10.0) -> None:
        self.server_in, self.client_out = os.pipe()
        self.client_in, self.server_out = os.pipe()
        self.reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        self._read_timeout_s = read_timeout_s
        self._transport: asyncio.ReadTransport | None = None
        self._input_open = True

    @property
    def wire(self) -> tuple[int, int]:
        """What `serve_stdio(..., wire=)` takes: the server's input and output."""
        return self.server_in, self.server_out

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self.reader), os.fdopen(self.client_in, "rb", 0)
        )

    def send(self, message: dict[str, Any]) -> None:
        """One JSON line, written whole (a line larger than the pipe's buffer takes several writes)."""
        view = memoryview(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        while view:
            view = view[os.write(self.client_out, view) :]

    async def line(self) -> bytes:
        """The next line the server wrote (b"" once it closed its output)."""
        async with asyncio.timeout(self._read_timeout_s):
            return await self.reader.readline()

    async def answer(self, request_id: int) -> dict[str, Any]:
        """The answer to `request_id` (other lines before it are skipped)."""
        while True:
            line = await self.line()
            if not line:
                raise RuntimeError("the MCP server closed its output")
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == request_id:
                return message

    async def initialize(self, protocol_version: str = "2025-06-18", request_id: int = 1) -> dict[str, Any]:
        """The MCP handshake, then `notifications/initialized`; the server's answer to `initialize`."""
        self.send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "initialize",
                "params": {
                    "protocolVersion": protocol_version,
                    "capabilities": {},
                    "clientInfo": {"name": "sidecar-testing", "version": "0"},
                },
            }
        )
        answer = await self.answer(request_id)
        if "result" not in answer:
            raise RuntimeError(f"the MCP server refused initialize: {answer}")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def end_input(self) -> None:
        """End the server's input (it returns once it has answered what it read)."""
        if self._input_open:
            self._input_open = False
            os.close(self.client_out)

    async def close(self, serving: asyncio.Task[Any], *, must_return: bool = True) -> None:
        """End the input, wait for the server to return, close every fd of the two pipes. A server
        still running after the timeout is cancelled; with `must_return` that is an error."""
        self.end_input()
        hung = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._read_timeout_s):
                await asyncio.shield(serving)
        if not serving.done():
            hung = True
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        for fd in (self.server_in, self.server_out):
            os.close(fd)
        if self._transport is not None:
            self._transport.close()  # and client_in with it
        if hung and must_return:
            raise RuntimeError("the server did not return at the end of its input")
