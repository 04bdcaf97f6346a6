"""`sidecar emulator`: run the emulator alone until SIGINT/SIGTERM.

Its one job is process plumbing: start the server, print exactly one JSON line
`{"url": "http://HOST:PORT"}` on stdout when ready, log to stderr only, exit 0 on a signal. Logging
is set up by the caller (`sidecar emulator` uses the sidecar's one format), never here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator

__all__ = ["run_standalone"]


async def _serve(host: str, port: int, api_key: str, api_secret: str, seed: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(seed=seed, api_key=api_key, api_secret=api_secret, host=host, port=port) as emu:
        sys.stdout.write(json.dumps({"url": emu.url}) + "\n")
        sys.stdout.flush()
        await stop.wait()
        logging.getLogger("sidecar.emulator").info("emulator.stopping reason=signal")


def run_standalone(
    host: str, port: int, api_key: str | None, api_secret: str | None, seed: int | None
) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code (0)."""
    asyncio.run(_serve(host, port, api_key or DEFAULT_API_KEY, api_secret or DEFAULT_API_SECRET, seed))
    return 0
