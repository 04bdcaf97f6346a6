"""Secrets stay secret: a full session with a known fake key and secret, then every place a
secret could leak is searched for them: the server's logs, the journal files (database and WAL),
every tool output, the emulator's frame capture, and the error texts of a failed authentication.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.e2e_kit import ROOT, emulator_process

pytestmark = pytest.mark.slow

KEY = "FAKEKEY9d2c7b1e"
SECRET = "FAKESECRET4a8f0c6e2b9d17"


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    data["exchange"]["env"] = "custom"
    data["exchange"]["rest_url"] = "http://127.0.0.1:1"  # replaced by --exchange-url
    data["exchange"]["ws_url"] = "ws://127.0.0.1:1"
    data["verification"] = {"timeout_ms": 2000, "ack_timeout_ms": 500}
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _params(config: Path, url: str, secret: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_")}
    env |= {"BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": secret}
    args = ["-m", "sidecar", "serve", "--config", str(config), "--exchange-url", url]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=ROOT)


async def test_no_secret_appears_anywhere(tmp_path: Path) -> None:
    outputs: list[str] = []
    async with emulator_process(api_key=KEY, api_secret=SECRET) as emu:
        url = emu.url
        async with aiohttp.ClientSession() as http:
            await http.post(
                f"{url}/emulator/prices",
                json={"category": "linear", "symbol": "BTCUSDT", "markPrice": "95000", "lastPrice": "95000"},
            )
            for link in ("s-1", "s-2"):  # two orders: s-1 stays busy while its unverified amend is looked at
                await http.post(
                    f"{url}/emulator/orders",
                    json={
                        "category": "linear",
                        "symbol": "BTCUSDT",
                        "side": "Buy",
                        "qty": "0.01",
                        "price": "94000",
                        "orderLinkId": link,
                    },
                )
            await http.post(
                f"{url}/emulator/faults",
                json={
                    "faults": [
                        {"kind": "reject", "code": 10001, "msg": "bad params", "count": 1},
                        {"kind": "disconnect_trade", "count": 1},
                    ]
                },
            )
        config = _config(tmp_path)
        with (tmp_path / "stderr.log").open("w+") as errlog:
            async with (
                asyncio.timeout(60),
                Client(stdio_client(_params(config, url, SECRET), errlog=errlog)) as c,
            ):
                calls: list[tuple[str, dict[str, Any]]] = [
                    ("getSafetyPolicy", {}),
                    (
                        "wsBatchAmendOrders",
                        {
                            "category": "linear",
                            "request": [{"symbol": "BTCUSDT", "orderLinkId": "s-1", "price": "94100"}],
                        },
                    ),
                    (
                        "wsBatchAmendOrders",
                        {
                            "category": "linear",
                            "request": [{"symbol": "BTCUSDT", "orderLinkId": "s-2", "price": "94200"}],
                        },
                    ),
                    (
                        "wsAmendOrder",
                        {
                            "category": "linear",
                            "symbol": "BTCUSDT",
                            "orderLinkId": "s-1",
                            "price": "94300",
                            "apiKey": KEY,
                        },
                    ),
                    ("wsBatchAmendOrders", {"category": "linear", "request": "junk"}),
                    ("getOrderState", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "s-1"}),
                ]
                for tool, args in calls:
                    result = await c.call_tool(tool, args)
                    outputs.append(
                        json.dumps(result.structured_content)
                        + json.dumps([getattr(b, "text", "") for b in result.content])
                    )
            # A server with the wrong secret: the authentication failure must not echo either value.
            wrong = SECRET[::-1]
            with pytest.raises(Exception):  # noqa: B017 -- it cannot start: any client error
                async with (
                    asyncio.timeout(30),
                    Client(stdio_client(_params(config, url, wrong), errlog=errlog)),
                ):
                    pass
            errlog.seek(0)
            logs = errlog.read()
        async with aiohttp.ClientSession() as http:
            frames = await (await http.get(f"{url}/emulator/frames")).text()
    emulator_stderr = emu.stderr

    assert any('"verified"' in o or '"rejected"' in o for o in outputs), outputs  # the session really traded
    journal_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert journal_bytes, "the journal was written"
    places = {
        "server logs": logs,
        "tool outputs": "\n".join(outputs),
        "emulator frames": frames,
        "emulator logs": emulator_stderr,
        "journal": journal_bytes.decode("latin-1"),
    }
    for value in (SECRET, SECRET[::-1]):
        leaks = [where for where, text in places.items() if value in text]
        assert leaks == [], f"secret found in {leaks}"
    # The key identifies the account; it must not be logged or stored either (the agent's own
    # echo of it in the denied wsAmendOrder call is the only place it may appear: the tool output).
    key_leaks = [where for where, text in places.items() if KEY in text and where != "tool outputs"]
    assert key_leaks == [], f"api key found in {key_leaks}"
