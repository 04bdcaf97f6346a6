"""The stdio reader a stop can end: lines in order, bounded, pausable, closable while blocked."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from sidecar.stdio_lines import MAX_LINE_BYTES, StdinLines


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


async def _next(it: AsyncIterator[str]) -> str:
    async with asyncio.timeout(10):
        return await anext(it)


async def test_lines_in_order_and_a_last_line_without_newline(pipe: tuple[int, int]) -> None:
    r, w = pipe
    lines = StdinLines(r)
    os.write(w, b'{"a":1}\n{"b":\xff2}\npartial')
    os.close(w)
    async with asyncio.timeout(10):
        got = [line async for line in lines]
    assert got == ['{"a":1}\n', '{"b":\ufffd2}\n', "partial"]


async def test_close_ends_the_stream_while_the_writer_keeps_it_open(pipe: tuple[int, int]) -> None:
    r, w = pipe
    lines = StdinLines(r)
    it = aiter(lines)
    os.write(w, b"one\n")
    assert await _next(it) == "one\n"
    waiting = asyncio.ensure_future(_next(it))  # blocked: the writer sends nothing more
    await asyncio.sleep(0)
    lines.close()
    with pytest.raises(StopAsyncIteration):
        await waiting


async def test_an_oversized_line_is_replaced_and_the_next_one_survives(pipe: tuple[int, int]) -> None:
    r, w = pipe
    lines = StdinLines(r)
    it = aiter(lines)

    async def write() -> None:
        await asyncio.to_thread(os.write, w, b"x" * (MAX_LINE_BYTES + 10) + b"\nnext\n")

    writer = asyncio.ensure_future(write())
    first = await _next(it)
    assert first.startswith("<line longer than") and len(first) < 100
    assert await _next(it) == "next\n"
    await writer


async def test_pause_serves_no_further_line(pipe: tuple[int, int]) -> None:
    r, w = pipe
    lines = StdinLines(r)
    it = aiter(lines)
    os.write(w, b"before\n")
    assert await _next(it) == "before\n"
    lines.pause()
    os.write(w, b"after\n")
    os.close(w)  # end of input: the paused stream ends without yielding "after"
    with pytest.raises(StopAsyncIteration):
        await _next(it)


async def test_many_small_lines_in_one_read(pipe: tuple[int, int]) -> None:
    r, w = pipe
    lines = StdinLines(r)
    payload = b"".join(b"%d\n" % i for i in range(5000))  # one read may carry thousands of lines

    async def write() -> None:
        await asyncio.to_thread(os.write, w, payload)
        os.close(w)

    writer = asyncio.ensure_future(write())
    async with asyncio.timeout(10):
        got = [line async for line in lines]
    await writer
    assert got == [f"{i}\n" for i in range(5000)]
