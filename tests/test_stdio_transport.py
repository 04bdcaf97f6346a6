"""Unit tests for sidecar/stdio_transport.py: bounded lines, finding the id, and the per-call timing
hook (over real pipes to `serve_stdio` with an SDK server in this process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer

from sidecar.stdio_transport import _BoundedLines, _find_id, _Oversized, serve_stdio
from sidecar.testing.pipes import PipeClient


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":7,"method":"x"}', 7),
        (b'{"id": "abc", "params": {"id": 9}}', "abc"),
        (b'{"params":{"id":9},"id":3}', 3),  # an "id" inside params is not the message's
        (b'{"method":"id","params":["id"]}', None),
        (b'{"jsonrpc":"2.0","method":"x","params":{"a":"' + b"A" * 1000, None),
        (b'{"a":"say \\"id\\"","id":-4}', -4),
        (b'{"id":true}', None),
        (b"", None),
        (b"[[[[", None),
    ],
)
def test_find_id(head: bytes, expected: object) -> None:
    assert _find_id(head) == expected


async def lines_of(data: bytes, limit: int) -> list[bytes | _Oversized]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    lines = _BoundedLines(reader, limit)
    out: list[bytes | _Oversized] = []
    while (line := await lines.next()) is not None:
        out.append(line)
    return out


async def test_lines_are_split_and_an_oversized_one_is_skipped_whole() -> None:
    big = b'{"id":5,"x":"' + b"z" * 300_000 + b'"}'
    got = await lines_of(b"a\n" + big + b"\nb\nc", 1000)
    assert got[0] == b"a"
    assert isinstance(got[1], _Oversized) and got[1].size == len(big) and _find_id(got[1].head) == 5
    assert got[2:] == [b"b", b"c"]


async def test_an_oversized_last_line_without_newline_is_reported_at_eof() -> None:
    got = await lines_of(b"x" * 5000, 1000)
    assert len(got) == 1 and isinstance(got[0], _Oversized) and got[0].size == 5000


# ------------------------------------------------------------------------ per-call timing (on_call)


class StepClock:
    """A clock that moves 1 ms at every reading: the order of the readings is in their values."""

    def __init__(self) -> None:
        self.readings = 0

    def monotonic_ns(self) -> int:
        self.readings += 1
        return self.readings * 1_000_000

    def wall_ms(self) -> int:
        return 1_700_000_000_000


def echo_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("timing-test")

    @server.tool(name="echo")
    async def echo(text: str) -> str:
        return text

    return server


async def test_on_call_times_each_tools_call_from_line_read_to_answer_written() -> None:
    client = PipeClient()
    await client.open()
    timed: list[tuple[int, int]] = []
    clock = StepClock()
    serving = asyncio.create_task(
        serve_stdio(
            echo_server(),
            wire=client.wire,
            on_call=lambda read_ns, written_ns: timed.append((read_ns, written_ns)),
            clock=clock,
        )
    )
    try:
        await client.initialize()
        client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
        await client.answer(2)
        assert timed == []  # only tool calls are timed
        for n in (3, 4):
            client.send(
                {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": f"hi {n}"}},
                }
            )
            answer = await client.answer(n)
            assert answer["result"]["content"][0]["text"] == f"hi {n}"
            assert len(timed) == n - 2  # reported by the time the answer can be read
        # Each call: read before written, and the second call read after the first was written.
        (r1, w1), (r2, w2) = timed
        assert r1 < w1 < r2 < w2
        # An unknown tool is still a tools/call answered on this wire: timed as well.
        client.send(
            {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}
        )
        await client.answer(5)
        assert len(timed) == 3
    finally:
        await client.close(serving)


async def test_without_on_call_the_clock_is_never_read() -> None:
    client = PipeClient()
    await client.open()
    clock = StepClock()
    serving = asyncio.create_task(serve_stdio(echo_server(), wire=client.wire, clock=clock))
    try:
        await client.initialize()
        client.send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "x"}},
            }
        )
        await client.answer(2)
        assert clock.readings == 0
    finally:
        await client.close(serving)


async def test_an_answer_holding_a_lone_surrogate_is_written_escaped_and_the_server_keeps_serving() -> None:
    # A result may carry a lone surrogate that did not come from the agent's line (the stdio parser
    # refuses those): e.g. an exchange message parsed by the stdlib, which accepts "\ud800".
    # It cannot be UTF-8 encoded as it is; writing it must not end the server.
    server = echo_server()

    @server.tool(name="odd")
    async def odd() -> str:
        return "a\ud800b"

    client = PipeClient()
    await client.open()
    serving = asyncio.create_task(serve_stdio(server, wire=client.wire))
    try:
        await client.initialize()
        client.send(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "odd", "arguments": {}}}
        )
        answer = await client.answer(2)
        assert answer["result"]["content"][0]["text"] == "a\ud800b"  # escaped on the wire, read back
        client.send(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "ok"}},
            }
        )
        assert (await client.answer(3))["result"]["content"][0]["text"] == "ok"
    finally:
        await client.close(serving)
