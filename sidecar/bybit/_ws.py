"""Plumbing shared by the three WebSocket adapters: backoff, connect options, heartbeat, task races.

The backoff is pure (its random source is injected). The rest is thin asyncio glue; it must not
decode Bybit messages or decide anything about orders.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from sidecar.bybit.codec import encode_ping

__all__ = [
    "DEFAULT_TIMING",
    "STOP_REASON",
    "Backoff",
    "HeartbeatTimeout",
    "SessionEnded",
    "SocketTiming",
    "first_done",
    "heartbeat",
    "open_ws",
    "reconnect_forever",
]


# The reason a session ends when the adapter itself is stopped (task cancelled): not a fault.
STOP_REASON = "cancelled"


class HeartbeatTimeout(Exception):
    """No pong within the deadline: the connection is treated as dead."""


class SessionEnded(Exception):
    """A session decided to end itself (auth failure, reconnect code, drained); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SocketTiming:
    """How a socket keeps time with Bybit: a ping every `ping_interval_s` (Bybit closes a silent
    connection after 20 s: reference bybit-v5 D-CONN), a pong within `pong_timeout_s` or the
    connection is dead, `open_timeout_s` to connect, `reply_timeout_s` for the auth (trade,
    private) or subscribe (public) reply, and an auth signature valid for `auth_expiry_ms`."""

    ping_interval_s: float = 10.0
    pong_timeout_s: float = 5.0
    open_timeout_s: float = 5.0
    reply_timeout_s: float = 5.0
    auth_expiry_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.ping_interval_s > 20:
            raise ValueError("Bybit wants a ping at least every 20 s")
        if min(self.ping_interval_s, self.pong_timeout_s, self.open_timeout_s, self.reply_timeout_s) <= 0:
            raise ValueError("socket timings must be > 0")
        if self.auth_expiry_ms < 1:
            raise ValueError("auth_expiry_ms must be >= 1")


DEFAULT_TIMING = SocketTiming()


class Backoff:
    """Reconnect delays: `initial_s`, ×`factor` per failure up to `max_s`, ±`jitter_s` (never < 0).

    Defaults are NautilusTrader's Bybit values (reference reliability §2.2): 0.5 s → 5 s, ×1.5,
    ±250 ms. Call `reset()` after a connection that became ready.
    """

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 5.0,
        factor: float = 1.5,
        jitter_s: float = 0.25,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s < 0 or max_s < initial_s or factor < 1 or jitter_s < 0:
            raise ValueError("bad backoff parameters")
        self._initial_s = initial_s
        self._max_s = max_s
        self._factor = factor
        self._jitter_s = jitter_s
        self._rng = rng if rng is not None else random.Random()
        self._next_s = initial_s

    def next_s(self) -> float:
        base = self._next_s
        self._next_s = min(self._max_s, base * self._factor)
        return max(0.0, base + self._rng.uniform(-self._jitter_s, self._jitter_s))

    def reset(self) -> None:
        self._next_s = self._initial_s


def open_ws(url: str, open_timeout_s: float) -> connect:
    """`websockets` client connect with the sidecar's options.

    Protocol pings 20 s / 20 s are the backup heartbeat (the app-level ping is the primary one);
    no proxy from the environment; no compression (latency over bytes on small frames).
    """
    return connect(
        url,
        open_timeout=open_timeout_s,
        ping_interval=20,
        ping_timeout=20,
        close_timeout=2,
        proxy=None,
        compression=None,
        max_size=8 * 1024 * 1024,
        max_queue=1024,
    )


async def heartbeat(
    ws: ClientConnection,
    interval_s: float,
    timeout_s: float,
    pong: asyncio.Event,
    on_ping: Callable[[], None] | None = None,
) -> None:
    """Send `{"op":"ping"}` every `interval_s`; raise HeartbeatTimeout if `pong` is not set within
    `timeout_s` after a ping. The reader sets `pong` when a pong arrives."""
    while True:
        await asyncio.sleep(interval_s)
        pong.clear()
        if on_ping is not None:
            on_ping()
        await ws.send(encode_ping())
        try:
            async with asyncio.timeout(timeout_s):
                await pong.wait()
        except TimeoutError:
            raise HeartbeatTimeout(f"no pong within {timeout_s:g} s") from None


async def first_done(*coros: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
    """Run the coroutines until the first one finishes; cancel the others; re-raise its error."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        exc = t.exception()
        if exc is not None:
            raise exc


async def reconnect_forever(
    *,
    name: str,
    url: str,
    open_timeout_s: float,
    backoff: Backoff,
    session: Callable[[ClientConnection], Awaitable[None]],
    lost: Callable[[str], None],
    was_ready: Callable[[], bool],
    log: Any,
) -> None:
    """Connect, run `session`, and reconnect with `backoff` until cancelled.

    `lost(reason)` is called when a session ends, before the close handshake (which may wait on a
    dead peer); `was_ready()` says whether that session got ready, which resets the backoff.
    Nothing is replayed: whatever a session had in flight is the caller's to reconcile.
    """
    while True:
        reason = "closed"
        became_ready = False
        try:
            async with open_ws(url, open_timeout_s) as ws:
                log.info(f"{name}.connected", url=url)
                try:
                    await session(ws)
                except SessionEnded as e:
                    reason = e.reason
                except asyncio.CancelledError:
                    reason = STOP_REASON
                    raise
                except Exception as e:
                    reason = f"{type(e).__name__}: {e}"
                finally:
                    became_ready = was_ready()
                    lost(reason)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            reason = f"connect failed: {type(e).__name__}: {e}"
        if became_ready:
            backoff.reset()
        delay_s = backoff.next_s()
        log.info(f"{name}.reconnecting", reason=reason, delay_s=round(delay_s, 3))
        await asyncio.sleep(delay_s)
