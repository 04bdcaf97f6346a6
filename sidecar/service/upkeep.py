"""Upkeep, once a second and once after start: the automatic trips, the shared state, the health
snapshot, bounded memory, the journal's checkpoint, retention and integrity check.

One job: run the periodic chores off the request path (the journal's fsync, pruning and the
integrity check run in a worker thread, each bounded). Writing the health snapshot also commits any
journal records still held by group commit, so late evidence is durable within a second even when
no request arrives. It must survive anything (a supervisor: log, go on).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from sidecar.clock import Clock
from sidecar.core.orders import OrderBook
from sidecar.core.trips import Trip, TripReason
from sidecar.core.types import TradingState
from sidecar.journal import Journal, JournalError
from sidecar.service.entries import Live
from sidecar.service.recorder import Recorder
from sidecar.service.safety import KillSwitch

__all__ = ["Upkeep"]

log = structlog.get_logger("service")

# Automatic pruning, per tick: at most this many requests (one write transaction of ~6 ms, which an
# intent commit may wait behind; 200/s is 4x a busy agent's 50 batches/s), and this many freed
# pages given back (16 KiB pages: 2 MiB, ~3 ms).
_PRUNE_REQUESTS_PER_TICK = 200
_RECLAIM_PAGES_PER_TICK = 128
_KEEP_TERMINAL_ORDERS = 10_000


class Upkeep:
    """The once-a-second loop and the one-off integrity check."""

    def __init__(
        self,
        *,
        live: Live,
        safety: KillSwitch,
        recorder: Recorder,
        book: OrderBook,
        clock: Clock,
        sockets_up: Callable[[], Mapping[str, bool]],
        quotes_received_ns: Callable[[], Iterable[int | None]],
        health: Callable[[], dict[str, Any]],
        in_flight: Callable[[], frozenset[str]],
    ) -> None:
        self._live = live
        self._safety = safety
        self._recorder = recorder
        self._journal: Journal = recorder.journal
        self._book = book
        self._clock = clock
        self._sockets_up = sockets_up
        self._quotes_received_ns = quotes_received_ns
        self._health = health
        self._in_flight = in_flight

    def check_trips(self, now_ns: int) -> None:
        """Apply the automatic kill-switch trips due at `now_ns`."""
        self._safety.check(now_ns, self._sockets_up(), self._quotes_received_ns())

    async def run(self) -> None:
        while True:
            try:
                self.check_trips(self._clock.monotonic_ns())
                if self._safety.shared:
                    await self._safety.keep_shared_state()
                self._recorder.control("health", json.dumps(self._health(), default=str))
                # Bound memory in a long run: keep the newest closed orders, drop older ones.
                self._book.forget_terminal(keep_last=_KEEP_TERMINAL_ORDERS)
                # The WAL checkpoint (fsync) and retention run in a worker thread, off the request
                # path, each bounded (one short write transaction at most).
                await asyncio.to_thread(self._journal.checkpoint)
                await self._retain()
            except JournalError as exc:
                log.warning("journal.upkeep_failed", error=str(exc))
            except Exception:  # a supervisor: the loop must survive anything
                log.exception("safety.loop_failed")
            await asyncio.sleep(1.0)

    async def _retain(self) -> None:
        """Prune settled requests older than `journal.retain_days` (a bounded batch per call; the
        requests this server still tracks are kept too) and give freed pages back to the disk."""
        days = self._live.config.journal.retain_days
        if days is None:
            return
        wall_ms = self._clock.wall_ms()
        cutoff_ms = wall_ms - int(days * 86_400_000)
        pruned = await asyncio.to_thread(
            self._journal.prune,
            cutoff_ms,
            wall_ms,
            keep=self._in_flight(),
            max_requests=_PRUNE_REQUESTS_PER_TICK,
        )
        if pruned.records:
            released = await asyncio.to_thread(self._journal.reclaim, _RECLAIM_PAGES_PER_TICK)
            log.info(
                "journal.pruned",
                requests=pruned.requests,
                records=pruned.records,
                pinned=pruned.pinned,
                more=pruned.more,
                pages_released=released,
            )

    async def check_journal(self) -> None:
        """The full integrity check of the journal file, in a worker thread after start (it reads
        every page, so it is not part of starting). A damaged journal halts trading."""
        try:
            problems = await asyncio.to_thread(self._journal.integrity_check)
        except JournalError as exc:
            log.warning("journal.integrity_unchecked", error=str(exc))
            return
        if problems:
            log.error("journal.integrity_failed", problems=problems[:5])
            self._safety.trip(
                Trip(
                    TripReason.JOURNAL_DAMAGED,
                    TradingState.HALTED,
                    f"the journal failed its integrity check: {'; '.join(problems[:3])}",
                )
            )
        else:
            log.info("journal.integrity_checked")
