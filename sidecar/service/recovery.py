"""Crash recovery: take up every journaled intent that has no final verdict (after a crash or kill -9).

One job: at start, before any new amend is admitted, put each unfinished intent back into the
pending registry and the reconciler as "sent, ack lost": its items are looked at (order stream, then
REST by orderId/orderLinkId), never resent, and its orders stay busy until they settle. New amends
wait until recovery has answered or its deadline passed. An intent it cannot read back is closed
as unrecoverable (said in the log and the journal) so it is not taken up at every start.

It sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog

from sidecar.clock import Clock
from sidecar.core.reconcile import Reconciler, TrackedItem
from sidecar.core.types import Category, ItemVerdict, Verdict
from sidecar.journal import JournalError
from sidecar.journal.bodies import recovered_item
from sidecar.service.admission import Leases
from sidecar.service.entries import Pending, order_id_of
from sidecar.service.pending import PendingRegistry
from sidecar.service.recorder import Recorder

__all__ = ["Recovery"]

log = structlog.get_logger("service")


class Recovery:
    """Takes up the unfinished intents once, at start."""

    def __init__(
        self,
        *,
        recorder: Recorder,
        registry: PendingRegistry,
        reconciler: Reconciler,
        leases: Leases,
        clock: Clock,
        wake: Callable[[], None],
        unreadable: Callable[[JournalError], None],
    ) -> None:
        self._recorder = recorder
        self._journal = recorder.journal
        self._registry = registry
        self._reconciler = reconciler
        self._leases = leases
        self._clock = clock
        self._wake = wake
        self._unreadable = unreadable  # the kill switch: a journal that cannot be read halts
        self.recovered_requests = 0

    async def run(self, deadline_s: float) -> None:
        """Re-track every unfinished intent and wait (at most `deadline_s`) for their verdicts."""
        try:
            intents = self._journal.unfinished_intents()
        except JournalError as exc:
            self._unreadable(exc)
            return
        if not intents:
            return
        now = self._clock.monotonic_ns()
        self._recorder.record("recovery_start", None, {"intents": len(intents)})
        log.warning("recovery.start", intents=len(intents))
        waiting: list[Pending] = []
        for rec in intents:
            try:
                category = Category(rec.category)
            except ValueError:
                self._close_unrecoverable(
                    rec.request_id, rec.req_id, rec.pending, f"category {rec.category!r}"
                )
                continue
            verdicts: list[ItemVerdict] = []
            tracked: list[TrackedItem] = []
            for pos, raw in enumerate(rec.items):
                index = int(raw.get("index", pos))
                if index not in rec.pending:
                    continue
                item, before = recovered_item(raw, category)
                verdicts.append(
                    ItemVerdict(
                        index, item.symbol, item.order_id, item.order_link_id, item=item, order=before
                    )
                )
                tracked.append(TrackedItem(index, category, item, before))
            missing = set(rec.pending) - {t.index for t in tracked}
            if missing:
                self._close_unrecoverable(
                    rec.request_id, rec.req_id, sorted(missing), "items not in the intent"
                )
            if not tracked:
                continue
            pending = Pending(
                rec.request_id,
                rec.req_id,
                Verdict(category, tuple(verdicts)),
                now,
                tuple(verdicts),
                answered=True,
                recovered=True,
                intent_items=[dict(i) for i in rec.items],
                journal_ms=rec.wall_ms,
                has_result=None,
                policy_version=rec.policy_version,
            )
            self._registry.add(pending)
            # Its orders stay busy until the recovered amends settle (one amend in flight per order).
            pending.orders = {t.index: oid for t in tracked if (oid := order_id_of(t.item, t.before))}
            self._leases.adopt(rec.request_id, list(pending.orders.values()))
            self._reconciler.track(
                rec.request_id, rec.req_id, tracked, rec.sent_ts_ms, rec.recv_window_ms, now
            )
            # The ack (if any) was lost with the old process: the items are ambiguous until looked at.
            self._reconciler.on_ack_missing(rec.req_id, now)
            waiting.append(pending)
            self.recovered_requests += 1
        self._wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline_s):
                for p in waiting:
                    await p.done.wait()
        self._recorder.record(
            "recovery_done",
            None,
            {"requests": len(waiting), "answered": sum(p.done.is_set() for p in waiting)},
        )
        log.warning("recovery.done", requests=len(waiting))

    def _close_unrecoverable(self, request_id: str, req_id: str, indices: Sequence[int], why: str) -> None:
        """An intent recovery cannot look at (it cannot read it back): say so and close its items,
        so it is not taken up again at every start and does not hold up pruning forever."""
        log.error("recovery.unrecoverable", request_id=request_id, why=why)
        self._recorder.record(
            "settled",
            request_id,
            {"unverified": list(indices), "unrecoverable": why},
            req_id=req_id,
            done=indices,
        )
