"""The pending registry: every sent request from its intent to its last item verdict, and the only
place that settles one.

One job: hold the requests in flight (`Pending`), take what the pipeline and the event intake report
about them (sent, send failed, ack, order events, read-backs, item verdicts), and settle: answer the
waiting caller, journal the answer (`final`), later verdicts (`result_update`/`result_delta`) and the
items given up on (`settled`), free each order's in-flight hold as its item settles, count outcomes,
and forget a request once the reconciler is done with it. Answers are built by `answers` (pure),
records by `sidecar.journal.bodies` (pure); this module decides when.

It sends nothing and applies no exchange event to the order book.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, Final

import structlog

from sidecar.clock import Clock
from sidecar.core.reconcile import ExpiredItem, ItemResult, Reconciler
from sidecar.core.trips import CountedEvent
from sidecar.core.types import Ack, Category, OrderView, Outcome
from sidecar.journal import DEFINITIVE_OUTCOMES, JournalError
from sidecar.journal.bodies import final_body, late_body, settled_body
from sidecar.observer import ServiceObserver
from sidecar.results import batch_outcome, is_error, observed_body, result_body
from sidecar.service import answers
from sidecar.service.admission import Leases
from sidecar.service.api import AmendResult
from sidecar.service.entries import Live, Pending, order_keys
from sidecar.service.recorder import Recorder

__all__ = ["ANSWERED_CHECKPOINTS", "CHECKPOINTS", "FINAL_COMMIT_DELAY_S", "Checkpoint", "PendingRegistry"]

log = structlog.get_logger("service")

# A named point on the amend path ("after_intent", "after_send", "after_ack", "before_verdict"),
# reported to an optional hook (the crash-recovery tests kill the process there: sidecar/testing).
Checkpoint = Callable[[str], None]
# The named points of the amend path a checkpoint hears, in the order of work (the crash-recovery
# tests' hook, sidecar.testing.crash, dies at one of them).
CHECKPOINTS: Final = frozenset({"after_intent", "after_send", "after_ack", "before_verdict"})
# Named points after the answer was built (the caller may already have it): the deferred commit of
# a sent request's `final` record.
ANSWERED_CHECKPOINTS: Final = frozenset({"before_final_commit"})
# A sent request's `final` record is built and committed this long after its answer is built, so
# the reply waits for neither (issue 12: only the intent commit stays on the critical path). A
# crash in between loses the record but not the request: its intent is still open, so the next
# start reconciles its items by looking. One timer takes the answers of every request answered
# meanwhile; a read of the journal in this process builds and commits them first; an intent's
# commit leaves them buffered (no send waits for another request's answer record).
FINAL_COMMIT_DELAY_S: Final = 0.002


def _no_checkpoint(point: str) -> None:
    return None


class PendingRegistry:
    """The requests in flight, by request id; the only settler."""

    def __init__(
        self,
        live: Live,
        *,
        reconciler: Reconciler,
        leases: Leases,
        recorder: Recorder,
        clock: Clock,
        count_event: Callable[[CountedEvent, int], None],
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self._live = live
        self._reconciler = reconciler
        self._leases = leases
        self._recorder = recorder
        self._journal = recorder.journal
        self._clock = clock
        self._count_event = count_event
        self.checkpoint: Checkpoint = checkpoint or _no_checkpoint
        self._pending: dict[str, Pending] = {}
        self._by_req_id: dict[str, Pending] = {}  # the same requests by their frame's reqId (acks)
        # orderId/orderLinkId -> the requests in flight naming that order (to journal its events).
        self._tracked_orders: dict[str, set[str]] = {}
        self.counts: dict[str, int] = {}
        self.observer: ServiceObserver | None = None  # metrics hook; None costs nothing
        self._commit_handle: asyncio.TimerHandle | None = None  # the deferred `final` commit

    # ------------------------------------------------------------------ holding

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._pending.values()))

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._pending

    def get(self, request_id: str) -> Pending | None:
        return self._pending.get(request_id)

    def ids(self) -> frozenset[str]:
        return frozenset(self._pending)

    def add(self, pending: Pending) -> None:
        """Hold a request whose intent is committed (or recovered from the journal)."""
        self._pending[pending.request_id] = pending
        self._by_req_id[pending.req_id] = pending
        for iv in pending.sent:
            for key in order_keys(iv):
                self._tracked_orders.setdefault(key, set()).add(pending.request_id)
                pending.index_of.setdefault(key, iv.index)

    def of_req_id(self, req_id: str) -> Pending | None:
        return self._by_req_id.get(req_id)

    def category_of(self, pending: Pending | None) -> Category | None:
        return None if pending is None else pending.verdict.category

    def _release_tracking(self, pending: Pending) -> None:
        for iv in pending.sent:
            for key in order_keys(iv):
                ids = self._tracked_orders.get(key)
                if ids is not None:
                    ids.discard(pending.request_id)
                    if not ids:
                        del self._tracked_orders[key]

    def _forget(self, pending: Pending) -> None:
        if self._pending.pop(pending.request_id, None) is not None:
            self._by_req_id.pop(pending.req_id, None)
            self._release_tracking(pending)
            leftover = self._leases.release_all(pending.request_id)
            if leftover:  # every item settles or moves to a re-read first; never keep an order busy
                log.warning("amend.released_leftover", request_id=pending.request_id, orders=list(leftover))

    # ------------------------------------------------------------------ what the pipeline reports

    def sent(self, pending: Pending) -> None:
        pending.add_step(("sent", self._clock.wall_ms()))

    def unsent(self, pending: Pending, why: str) -> None:
        """The frame never left: stop tracking, free the orders, and close the intent's items so
        recovery never looks at them."""
        request_id = pending.request_id
        self._reconciler.forget(request_id)
        self._release_tracking(pending)
        self._leases.release_all(request_id)
        self._pending.pop(request_id, None)
        self._by_req_id.pop(pending.req_id, None)
        self._recorder.record(
            "not_sent",
            request_id,
            {"reason": why},
            req_id=pending.req_id,
            done=[iv.index for iv in pending.sent],
        )

    def send_failed(self, pending: Pending, why: str) -> None:
        """The send raised after the intent: a frame may have left. Never resend, never deny: the
        items are resolved by looking (stream, then REST), like a lost ack."""
        log.warning("amend.send_failed", request_id=pending.request_id, req_id=pending.req_id, error=why)
        pending.add_step(("send_failed", self._clock.wall_ms(), why))
        self._reconciler.on_ack_missing(pending.req_id, self._clock.monotonic_ns())

    def detach(self, pending: Pending) -> None:
        """Nobody waits for this request any more: its verdicts go to the journal as they come."""
        pending.answered = True
        pending.detached = True
        self._update_stored_result(pending)

    def abandon(self, request_id: str, why: str) -> None:
        """Admission failed half-way: free whatever the request holds; an intent already committed
        is closed as never sent (the frame cannot have left: sending comes after admission)."""
        self._leases.release_all(request_id)
        pending = self._pending.get(request_id)
        if pending is not None:
            self.unsent(pending, why)

    # ------------------------------------------------------------------ what the intake reports

    def order_event(self, view: OrderView, result: str) -> None:
        """An order event: a step of every request in flight naming the order."""
        ids = self._tracked_orders.get(view.order_id, set()) | self._tracked_orders.get(
            view.order_link_id, set()
        )
        if not ids:
            return
        wall_ms = self._clock.wall_ms()  # journal times are this host's
        for request_id in sorted(ids):  # evidence goes with every request it concerns
            pending = self._pending.get(request_id)
            if pending is not None:
                index = pending.index_of.get(view.order_id, pending.index_of.get(view.order_link_id))
                pending.add_step(("order_event", wall_ms, index, result, view))

    def ack(self, ack: Ack) -> Pending | None:
        """The ack of a sent request (a record of its own if the request is no longer held)."""
        pending = self.of_req_id(ack.req_id)
        if pending is not None:
            pending.ack = ack
            pending.add_step(("ack", self._clock.wall_ms(), ack))
            if self.observer is not None:
                self.observer.observe_ack(self._ms_since(pending.started_ns) / 1000)
        else:
            self._recorder.record(
                "ack",
                None,
                {
                    "retCode": ack.ret_code,
                    "retMsg": ack.ret_msg,
                    "items": [{"code": i.code, "msg": i.msg, "orderId": i.order_id} for i in ack.items],
                    "limit": ack.limit,
                    "limitStatus": ack.limit_status,
                    "limitResetMs": ack.limit_reset_ms,
                },
                req_id=ack.req_id,
            )
        return pending

    def trade_step(self, kind: str, req_id: str) -> None:
        """An ack timeout or a lost connection for a sent request: a step of that request (a record
        of its own if the request is no longer held)."""
        pending = self.of_req_id(req_id)
        if pending is not None:
            pending.add_step((kind, self._clock.wall_ms()))
        else:
            self._recorder.record(kind, None, {}, req_id=req_id)

    def rest_step(self, request_id: str, index: int, view: OrderView | None, error: str | None) -> bool:
        """A REST read-back (or its failure): a step of the request that asked for it. False when
        the request is no longer held (the caller journals it on its own)."""
        pending = self._pending.get(request_id)
        if pending is None:
            return False
        pending.add_step(("rest", self._clock.wall_ms(), index, view, error))
        return True

    def expired(self, expired: ExpiredItem) -> str | None:
        """Background reconciliation gave up on an item (still unverified): its order stays busy
        under a re-read hold. Returns the orderId to re-read by REST (None: nothing held)."""
        pending = self._pending.get(expired.request_id)
        order_id = pending.orders.get(expired.index) if pending is not None else expired.order_id
        if not order_id or not self._leases.move_to_reread(expired.request_id, order_id):
            return None
        log.warning("amend.reread_order", request_id=expired.request_id, order_id=order_id)
        return order_id

    def result(self, result: ItemResult) -> None:
        """An item verdict from the reconciler: settle the item."""
        self.checkpoint("before_verdict")
        pending = self._pending.get(result.request_id)
        if pending is None:  # a request no longer held (cannot happen while it is tracked)
            self._recorder.record(
                "late_outcome" if result.late else "item_outcome",
                result.request_id,
                {
                    "outcome": str(result.outcome),
                    "exchangeCode": result.exchange_code,
                    "exchangeMsg": result.exchange_msg,
                    "evidence": result.evidence,
                    "observed": observed_body(result.observed),
                },
                req_id=result.req_id,
                item_idx=result.index,
            )
        else:
            pending.decided[result.index] = (result.evidence, self._clock.wall_ms())
        if result.outcome is not Outcome.UNVERIFIED and pending is not None:
            # This item's amend has settled: its order may take the next amend (core/inflight.py).
            order_id = pending.orders.get(result.index)
            if order_id is not None:
                self._leases.release(result.request_id, order_id)
        if result.outcome is Outcome.UNVERIFIED and (pending is None or not pending.unverified_counted):
            # The trip counts requests, not items: one rate-limited 20-item batch is one incident.
            self._count_event("unverified", self._clock.monotonic_ns())
            if pending is not None:
                pending.unverified_counted = True
        if pending is None:
            return
        pending.results[result.index] = result
        if result.late and not (pending.answered or pending.recovered or pending.detached):
            pass  # changed before the answer was built: the final record holds it (and counts it)
        elif result.late or pending.recovered or pending.detached:
            if result.late:
                self._count(result.outcome)
            self._update_stored_result(pending, result.index)
            log.info(
                "amend.reconciled_late",
                request_id=pending.request_id,
                index=result.index,
                outcome=str(result.outcome),
                recovered=pending.recovered,
            )
        if not pending.done.is_set() and len(pending.results) >= len(pending.sent):
            pending.done.set()

    def release_waiters(self) -> None:
        """Wake every caller still waiting (the watchdog, when the verdicts cannot be drained)."""
        for pending in self._pending.values():
            pending.done.set()

    # ------------------------------------------------------------------ answers

    def _count(self, outcome: Outcome) -> None:
        self.counts[str(outcome)] = self.counts.get(str(outcome), 0) + 1

    def store(
        self,
        request_id: str,
        answer: answers.Answer,
        pending: Pending | None = None,
    ) -> AmendResult:
        """Journal the answer (committed before it is returned) and count it. For a sent request
        the `final` record also holds the steps that led to it (journal.bodies.final_body)."""
        outcomes, body = answer
        # Every answer names the policy version it was decided under (hot reload can change it).
        body.setdefault("policyVersion", self._live.policy.version)
        for o in outcomes:
            self._count(o.outcome)
        if self.observer is not None:
            self.observer.observe_answer(outcomes, body["latencyMs"] / 1000)
        if pending is None:
            self._recorder.record(
                "final", request_id, _compact_or(body, lambda: final_body(body)), final=True
            )
        else:
            # Built, encoded and committed after the answer (journal `record_final_later`), from
            # what is known now: the steps so far, the verdicts' times, the answer's body.
            steps, omitted = pending.take_steps()
            decided = dict(pending.decided)
            journal_ms, intent_items = pending.journal_ms, pending.intent_items
            self._recorder.record_final_later(
                request_id,
                lambda: _compact_or(
                    body,
                    lambda: final_body(
                        body,
                        steps,
                        base_ms=journal_ms,
                        intent_items=intent_items,
                        decided=decided,
                        steps_omitted=omitted,
                    ),
                ),
                outcome=body.get("outcome"),
                done=_closed_items(pending),
            )
            self._commit_soon()
            pending.has_result = True
        return AmendResult(body, is_error(outcomes))

    def _commit_soon(self) -> None:
        """Commit the buffered `final` records FINAL_COMMIT_DELAY_S from now (once for many)."""
        if self._commit_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a synchronous caller): commit now
            self._recorder.flush()
            return
        self._commit_handle = loop.call_later(FINAL_COMMIT_DELAY_S, self._commit_deferred)

    def _commit_deferred(self) -> None:
        self._commit_handle = None
        self.checkpoint("before_final_commit")
        self._recorder.flush()

    def commit_answers(self) -> None:
        """Commit the answers' records now (at stop: nothing is left to a timer)."""
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        self._recorder.flush()

    def answer(self, pending: Pending) -> AmendResult:
        """The caller's answer, once every sent item has a verdict (or the deadline passed)."""
        pending.answered = True
        latency_ms = self._ms_since(pending.started_ns)
        answer = answers.answered(pending, latency_ms, {"policyVersion": self._version_of(pending)})
        body = answer[1]
        log.info(
            "amend.answered",
            request_id=pending.request_id,
            req_id=pending.req_id,
            outcome=body["outcome"],
            latency_ms=body["latencyMs"],
        )
        result = self.store(pending.request_id, answer, pending)
        self.settle()
        return result

    def _version_of(self, pending: Pending) -> str:
        """The policy version a sent request was decided under (a reload since changes nothing)."""
        return pending.policy_version or self._live.policy.version

    def _ms_since(self, started_ns: int) -> float:
        return (self._clock.monotonic_ns() - started_ns) / 1e6

    def _update_stored_result(self, pending: Pending, index: int | None = None) -> None:
        """Journal the verdicts known now (`getAmendOutcome` reads them): the whole result if none is
        journaled yet (`result_update`), else what changed (`result_delta`, about item `index`)."""
        body = result_body(
            request_id=pending.request_id,
            items=answers.outcomes_of(pending),
            reasons=pending.verdict.reasons,
            ack=pending.ack,
            latency_ms=self._ms_since(pending.started_ns),
            extra={"policyVersion": self._version_of(pending), "reconciledLate": True},
        )
        wall_ms = self._clock.wall_ms()
        try:
            stored: Any = None
            if pending.recovered or pending.has_result is not False:
                record = self._journal.get_request(pending.request_id)
                stored = record.result if record is not None else None
            if pending.recovered:
                body["recovered"] = True
                if isinstance(stored, dict) and isinstance(stored.get("items"), list):
                    by_index = {it.get("index"): it for it in stored["items"] if isinstance(it, dict)}
                    by_index.update({it["index"]: it for it in body["items"]})
                    body["items"] = [by_index[k] for k in sorted(by_index, key=lambda k: int(k or 0))]
                    body["outcome"] = str(batch_outcome(Outcome(it["outcome"]) for it in body["items"]))
                    body["ack"] = stored.get("ack")
            steps, omitted = pending.take_steps()
            kw: dict[str, Any] = {
                "base_ms": pending.journal_ms,
                "intent_items": pending.intent_items,
                "decided": pending.decided,
                "steps_omitted": omitted,
            }
            if isinstance(stored, dict):
                delta = late_body(stored, body, steps, **kw)
                self._journal.record_late(
                    pending.request_id, delta, wall_ms, pending.req_id, index, done=_closed_items(pending)
                )
            else:
                self._journal.update_result(
                    pending.request_id,
                    _compact_or(body, lambda: final_body(body, steps, **kw)),
                    wall_ms,
                    done=_closed_items(pending),
                )
            pending.has_result = True
        except JournalError as exc:
            self._recorder.on_failure(exc)

    def settle(self) -> None:
        """Forget answered requests the reconciler has finished with; close the items it gave up on
        (still unverified) in the journal, with the steps seen since the last record."""
        for pending in list(self._pending.values()):
            if not pending.answered or not self._reconciler.is_request_settled(pending.request_id):
                continue
            given_up = [
                iv.index
                for iv in pending.sent
                if (r := pending.results.get(iv.index)) is None or r.outcome is Outcome.UNVERIFIED
            ]
            if given_up or pending.steps or pending.steps_omitted:
                # Recovery must not look at them again at every restart.
                steps, omitted = pending.take_steps()
                self._recorder.record(
                    "settled",
                    pending.request_id,
                    settled_body(
                        given_up,
                        steps,
                        base_ms=pending.journal_ms,
                        intent_items=pending.intent_items,
                        steps_omitted=omitted,
                    ),
                    req_id=pending.req_id,
                    done=given_up,
                )
            self._forget(pending)


def _compact_or(result: dict[str, Any], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A compact journal body, or the result as it is should building it fail (a bug there must
    never cost an answer its record)."""
    try:
        return build()
    except Exception:  # the answer matters more than a compact record
        log.exception("journal.compact_failed", request_id=result.get("requestId"))
        return result


def _closed_items(pending: Pending) -> list[int]:
    """Items of a sent request with a definitive verdict: recovery need not look at them again."""
    return [i for i, r in pending.results.items() if str(r.outcome) in DEFINITIVE_OUTCOMES]
