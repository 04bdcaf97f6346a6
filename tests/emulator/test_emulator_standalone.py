"""`python -m sidecar emulator --port 0`: one JSON line on stdout when ready, exit 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp
import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_standalone_prints_url_and_stops_cleanly(sig: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "emulator", "--port", "0", "--seed", "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        ready = json.loads(line)
        assert list(ready) == ["url"] and ready["url"].startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as s, s.get(ready["url"] + "/v5/market/time") as r:
            assert (await r.json())["retCode"] == 0
        proc.send_signal(sig)
        async with asyncio.timeout(20):
            rest, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert rest == b""  # exactly one line on stdout; logs go to stderr
        assert b"emulator.started" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
