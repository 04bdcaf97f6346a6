"""Unit tests for sidecar/stdio_transport.py's pure parts: bounded lines and finding the id."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.stdio_transport import _BoundedLines, _find_id, _Oversized


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
