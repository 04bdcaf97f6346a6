"""Issue 9: over stdio, an oversized message or over-deep JSON gets a JSON-RPC error, never silence,
and the server keeps serving. Raw JSON-RPC lines to `sidecar serve` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.e2e_kit import ROOT

pytestmark = pytest.mark.slow

READ_TIMEOUT_S = 30


class RawStdio:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send_line(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data + b"\n")
        await self.proc.stdin.drain()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_line(json.dumps(message).encode())

    async def answer_to(self, request_id: object) -> dict[str, Any]:
        """The next message answering `request_id` (notifications and other ids are skipped)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(READ_TIMEOUT_S):
            while True:
                line = await self.proc.stdout.readline()
                assert line, "the server closed stdout"
                message = json.loads(line)
                if message.get("id") == request_id and ("result" in message or "error" in message):
                    return dict(message)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RawStdio]:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    config = tmp_path / "sidecar.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "serve",
        "--config",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        limit=16 * 1024 * 1024,
    )
    raw = RawStdio(proc)
    try:
        await raw.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            }
        )
        assert "result" in await raw.answer_to(1)
        await raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield raw
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def still_serving(raw: RawStdio, request_id: int) -> None:
    await raw.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": {}})
    answer = await raw.answer_to(request_id)
    assert any(t["name"] == "wsBatchAmendOrders" for t in answer["result"]["tools"])


async def test_over_deep_json_gets_a_json_rpc_error(server: RawStdio) -> None:
    deep = "[" * 1000 + "]" * 1000
    line = (
        '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"wsBatchAmendOrders",'
        '"arguments":{"category":"linear","request":' + deep + "}}}"
    )
    await server.send_line(line.encode())
    answer = await server.answer_to(7)
    assert answer["error"]["code"] in (-32700, -32600)
    assert "deep" in answer["error"]["message"] or "nest" in answer["error"]["message"]
    await still_serving(server, 8)


async def test_an_oversized_message_gets_a_json_rpc_error(server: RawStdio) -> None:
    filler = "A" * (5 * 1024 * 1024)
    line = (
        '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"wsBatchAmendOrders",'
        '"arguments":{"category":"linear","request":[{"symbol":"' + filler + '"}]}}}'
    )
    await server.send_line(line.encode())
    answer = await server.answer_to(9)
    assert answer["error"]["code"] == -32600
    assert "too large" in answer["error"]["message"]
    assert len(json.dumps(answer)) < 4096
    await still_serving(server, 10)


async def test_unparseable_json_gets_a_parse_error(server: RawStdio) -> None:
    await server.send_line(b'{"jsonrpc":"2.0","id":11,"method":')
    answer = await server.answer_to(11)  # the id is found in what did arrive
    assert answer["error"]["code"] == -32700
    await server.send_line(b"not json at all")
    answer = await server.answer_to(None)  # no id to be found: JSON-RPC's null id
    assert answer["error"]["code"] == -32700
    await still_serving(server, 12)
