"""The exchange's clock as the sidecar knows it: what time it is *on Bybit*, not on this host.

One job: estimate Bybit's wall time from the server timestamps that arrive with a known round trip
(trade-socket pong `data[0]`, ack header `Timenow`, private pong `args[0]`, REST `/v5/market/time`)
and hand it out through the `Clock` protocol, so request timestamps (`X-BAPI-TIMESTAMP`, auth
`expires`) and the reconciler's timing (`not_applied` after `sent_ts + recv_window`, evidence
windows) are on the clock that judges them (reference §1.4: accepted iff
`server − recv_window ≤ ts < server + 1000`). A host 1 s ahead of Bybit would otherwise have every
amend refused (10002), and a host behind would shift the `not_applied` timing.

Each sample anchors the server's time to the *monotonic* clock (the server stamped its time about
half a round trip before the reply arrived), and the estimate is the median of recent anchors, so a
jump of the host's wall clock does not move it. Before the first sample it falls back to the host's
wall clock. `offset_ms` (exchange − host) is what `health()` reports; an offset above
`warn_above_ms` is logged once as `exchange_clock.skew` (and its end as `exchange_clock.skew_cleared`).

Time itself comes from the injected `Clock` (only sidecar/clock.py reads time). `sync_from_rest`
and `keep_synced` are the thin I/O around it; the class itself does none.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque
from typing import Protocol

import structlog

from sidecar.bybit.rest import RestError, RestTransportError
from sidecar.clock import Clock

__all__ = ["DEFAULT_WARN_ABOVE_MS", "ExchangeClock", "keep_synced", "sync_from_rest"]

log = structlog.get_logger()

DEFAULT_WARN_ABOVE_MS = 500  # half Bybit's 1 s future tolerance: worth an operator's look
_NS_PER_MS = 1_000_000


class ExchangeClock:
    """Bybit's wall time, estimated; implements `Clock` (monotonic ns are the host's own)."""

    def __init__(self, clock: Clock, *, samples: int = 7, warn_above_ms: int = DEFAULT_WARN_ABOVE_MS) -> None:
        if samples < 1 or warn_above_ms < 0:
            raise ValueError("samples must be >= 1 and warn_above_ms >= 0")
        self._clock = clock
        # server_ms - monotonic_ms at the moment the server stamped it, per sample
        self._anchors: deque[int] = deque(maxlen=samples)
        self._anchor_ms: int | None = None  # their median (read on every request: kept, not recomputed)
        self._last_sample_ns: int | None = None
        self._warn_above_ms = warn_above_ms
        self._skewed = False

    # ------------------------------------------------------------ Clock protocol

    def monotonic_ns(self) -> int:
        return self._clock.monotonic_ns()

    def wall_ms(self) -> int:
        """Unix ms on the exchange's clock (the host's until the first sample)."""
        if self._anchor_ms is None:
            return self._clock.wall_ms()
        return self._clock.monotonic_ns() // _NS_PER_MS + self._anchor_ms

    # ------------------------------------------------------------ views

    @property
    def synced(self) -> bool:
        return self._anchor_ms is not None

    @property
    def offset_ms(self) -> int:
        """Exchange time minus host wall time, ms (0 before the first sample)."""
        return self.wall_ms() - self._clock.wall_ms() if self._anchor_ms is not None else 0

    def sample_age_ms(self) -> int | None:
        """How long ago the last sample arrived (None: never)."""
        if self._last_sample_ns is None:
            return None
        return max(0, (self._clock.monotonic_ns() - self._last_sample_ns) // _NS_PER_MS)

    # ------------------------------------------------------------ samples

    def observe(self, server_ms: int, sent_ns: int) -> None:
        """A server timestamp that answers a request sent at monotonic `sent_ns`, received now.

        The server stamped it about half a round trip before we received it. Nonsense (a reply
        before its request, a non-positive time) is ignored."""
        now_ns = self._clock.monotonic_ns()
        if server_ms <= 0 or sent_ns > now_ns:
            return
        stamped_ns = now_ns - (now_ns - sent_ns) // 2
        self._anchors.append(server_ms - stamped_ns // _NS_PER_MS)
        self._anchor_ms = int(statistics.median(self._anchors))
        self._last_sample_ns = now_ns
        self._check_skew()

    def _check_skew(self) -> None:
        offset = self.offset_ms
        skewed = abs(offset) > self._warn_above_ms
        if skewed and not self._skewed:
            log.warning(
                "exchange_clock.skew",
                offset_ms=offset,
                warn_above_ms=self._warn_above_ms,
                note="request timestamps follow the exchange's clock; check the host's time sync",
            )
        elif self._skewed and not skewed:
            log.info("exchange_clock.skew_cleared", offset_ms=offset)
        self._skewed = skewed


class ServerTime(Protocol):
    """Where Bybit's server time is read (`GET /v5/market/time`: the REST client)."""

    async def server_time_ms(self) -> int: ...


async def sync_from_rest(exchange_clock: ExchangeClock, rest: ServerTime, samples: int = 3) -> bool:
    """Take `samples` readings of `GET /v5/market/time`; False (and a log line) if none worked.
    An unreachable exchange ends it at the first failure (start-up then fails on its own error)."""
    got = 0
    for _ in range(samples):
        sent_ns = exchange_clock.monotonic_ns()
        try:
            server_ms = await rest.server_time_ms()
        except RestTransportError as e:  # unreachable: asking again only delays whoever waits
            log.warning("exchange_clock.sync_failed", ret_code=e.ret_code, ret_msg=e.ret_msg)
            break
        except RestError as e:
            log.warning("exchange_clock.sync_failed", ret_code=e.ret_code, ret_msg=e.ret_msg)
            continue
        exchange_clock.observe(server_ms, sent_ns)
        got += 1
    if got:
        log.info("exchange_clock.synced", offset_ms=exchange_clock.offset_ms, samples=got)
    return got > 0


async def keep_synced(exchange_clock: ExchangeClock, rest: ServerTime, interval_s: float = 60.0) -> None:
    """Re-read the server time every `interval_s` (the sockets add samples in between)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sync_from_rest(exchange_clock, rest, samples=1)
        except Exception as e:  # a supervisor: a bug here must not stop anything else
            log.error("exchange_clock.sync_failed", error=f"{type(e).__name__}: {e}")
