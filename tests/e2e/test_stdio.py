"""`sidecar serve` as a subprocess over stdio, through the SDK's stdio client.

Once with the shipped sim config (emulator in-process, no keys, no network), once with
`--exchange-url` against a standalone `sidecar emulator` process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.e2e_kit import ROOT, emulator_process

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _params(*args: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_")}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "sidecar", "serve", *args], env=env, cwd=ROOT
    )


async def _amend_inside_band(client: Client, category: str, symbol: str, link: str) -> dict[str, Any]:
    policy = (
        await client.call_tool("getSafetyPolicy", {"category": category, "symbol": symbol})
    ).structured_content
    assert policy is not None
    [rule] = policy["symbols"]
    tick = Decimal(rule["tickSize"])
    # 0.3 % below the reference: inside the band, on the tick, and clear of the market.
    price = (Decimal(rule["referencePrice"]) * Decimal("0.997") / tick).to_integral_value(ROUND_DOWN) * tick
    result = await client.call_tool(
        "wsBatchAmendOrders",
        {"category": category, "request": [{"symbol": symbol, "orderLinkId": link, "price": str(price)}]},
    )
    body = result.structured_content
    assert isinstance(body, dict), result.content
    assert not result.is_error, body
    assert body["items"][0]["outcome"] == "verified"
    assert Decimal(body["items"][0]["observed"]["price"]) == price
    return body


async def test_serve_over_stdio_on_the_builtin_emulator(tmp_path: Path) -> None:
    params = _params("--config", str(_config(tmp_path)))
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with asyncio.timeout(60), Client(stdio_client(params, errlog=errlog)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"wsBatchAmendOrders", "getSafetyPolicy"} <= names
            body = await _amend_inside_band(client, "linear", "BTCUSDT", "sim-btc-buy-1")
            later = await client.call_tool("getAmendOutcome", {"requestId": body["requestId"]})
            assert later.structured_content is not None
            assert later.structured_content["outcome"] == "verified"
        errlog.seek(0)
        stderr = errlog.read()
    assert "bybit order-safety sidecar" in stderr  # the human banner goes to stderr, never stdout
    assert "built-in emulator" in stderr
    json_lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "amend.answered" for e in json_lines)
    assert "emulator-secret" not in stderr


@pytest.fixture
async def standalone_emulator() -> AsyncIterator[str]:
    async with emulator_process(seed=5) as emu:
        yield emu.url
        assert emu.proc.returncode is None  # still serving at the end of the test


async def test_serve_with_exchange_url_talks_to_a_standalone_emulator(
    tmp_path: Path, standalone_emulator: str
) -> None:
    url = standalone_emulator
    async with aiohttp.ClientSession() as http:
        await (
            await http.post(
                f"{url}/emulator/prices",
                json={"category": "linear", "symbol": "ETHUSDT", "markPrice": "3500", "lastPrice": "3500"},
            )
        ).json()
        resp = await http.post(
            f"{url}/emulator/orders",
            json={
                "category": "linear",
                "symbol": "ETHUSDT",
                "side": "Buy",
                "qty": "0.1",
                "price": "3400",
                "orderLinkId": "remote-1",
            },
        )
        assert resp.status == 200, await resp.text()
    params = _params("--config", str(_config(tmp_path)), "--exchange-url", url)
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with asyncio.timeout(60), Client(stdio_client(params, errlog=errlog)) as client:
            await _amend_inside_band(client, "linear", "ETHUSDT", "remote-1")
        errlog.seek(0)
        assert "built-in emulator" not in errlog.read()
    async with aiohttp.ClientSession() as http:
        frames = (await (await http.get(f"{url}/emulator/frames")).json())["frames"]
    assert [f["op"] for f in frames if f["op"].startswith("order.")] == ["order.amend-batch"]
