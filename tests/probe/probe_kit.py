"""Probe test kit: a standalone `sidecar emulator` and `sidecar probe` as real subprocesses, the
emulator's control API over HTTP, and a config with one symbol of each category the probe watches.

Every wait on another process is bounded by a deadline; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # the longest a probe run may take here (it takes ~10 s on an idle machine)
POLL_S = 0.05


def probe_env() -> dict[str, str]:
    """The test's environment without exchange keys (the emulator's defaults are used)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_"))}


def write_config(path: Path, **exchange: Any) -> Path:
    """The shipped sim config plus an inverse symbol (so the inverse feed is watched too)."""
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(path.parent / "journal.sqlite3")
    data["symbols"].append(
        {
            "category": "inverse",
            "symbol": "BTCUSD",
            "max_qty": "1000",
            "max_notional": "1000",
            "price_band_bps": "150",
        }
    )
    data["exchange"].update(exchange)
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Standalone:
    proc: asyncio.subprocess.Process
    url: str

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as s, s.get(self.url + path) as r:
            return await r.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with aiohttp.ClientSession() as s, s.post(self.url + path, json=body) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def orders(self) -> list[dict[str, Any]]:
        return list((await self.get("/emulator/orders"))["orders"])


@contextlib.asynccontextmanager
async def standalone_emulator(seed: int = 11) -> AsyncIterator[Standalone]:
    """`sidecar emulator --port 0` (price walk on, as users run it), stopped with SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "emulator", "--port", "0", "--seed", str(seed),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=probe_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(WAIT_S):
            line = await proc.stdout.readline()
        yield Standalone(proc, json.loads(line)["url"])
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(WAIT_S):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def start_probe(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "probe", *args,
        cwd=cwd, env=probe_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        async with asyncio.timeout(WAIT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"probe did not finish in {WAIT_S} s: {err.decode()}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_probe(*args: str, cwd: Path) -> tuple[int, str, str]:
    return await finish(await start_probe(*args, cwd=cwd))


async def until(check: Callable[[], Any], what: str) -> Any:
    """Poll another process's state until `check()` returns something truthy (bounded)."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                value = await check()
                if value:
                    return value
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


OPEN = frozenset({"New", "PartiallyFilled", "Untriggered"})


def open_probe_orders(orders: list[dict[str, Any]]) -> list[str]:
    return [
        o["orderLinkId"] for o in orders if o["orderLinkId"].startswith("probe-") and o["orderStatus"] in OPEN
    ]
