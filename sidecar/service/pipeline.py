"""The amend pipeline: admit → commit the intent → dispatch → await the verdicts.

One job: take one request from the caller to its answer, safe against any exception:
1. admission (service/admission.py: validate and hold the orders here, approval, then the
   coordinator: trading state, order leases, rate limits). Everything up to the intent runs without
   an await (check and hold are atomic here), except the shared store's decision with Redis, the
   one await before the intent is committed; every way out of it settles the request.
2. journal the request (with its verdict and approval) and commit the intent: write-ahead, nothing
   leaves before it is durable;
3. track the items in the reconciler and hand the frame to the trade socket;
4. wait until the pending registry has every sent item's verdict (or the deadline passed), and
   answer.
An error before anything could leave denies (INTERNAL_ERROR, EXCHANGE_UNAVAILABLE); an error or a
cancellation once a frame may have left is resolved by looking, never `denied`.

It decides no verdict and applies no exchange event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from sidecar.bybit.codec import encode_amend, encode_amend_batch
from sidecar.bybit.exchange_clock import ExchangeClock
from sidecar.bybit.ids import ReqIdFactory
from sidecar.bybit.ws_trade import NotConnected
from sidecar.clock import Clock
from sidecar.coordination import Coordinator
from sidecar.core.numbers import plain_decimal
from sidecar.core.reconcile import Reconciler, TrackedItem
from sidecar.core.types import AmendRequest, DenialCode, Reason, TradingState, Verdict
from sidecar.journal import JournalError, JournalInputError
from sidecar.journal.bodies import args_in_intent, intent_item, request_args, verdict_body
from sidecar.results import is_error
from sidecar.service import answers
from sidecar.service.admission import Cleared, Gate, Leases, Stopped
from sidecar.service.api import AmendResult, Approval, request_digest
from sidecar.service.entries import Front, Live, Pending
from sidecar.service.pending import PendingRegistry
from sidecar.service.ports import TradePort
from sidecar.service.recorder import Recorder
from sidecar.service.safety import KillSwitch

__all__ = ["Pipeline"]

log = structlog.get_logger("service")


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A request that passed every check, holds its orders and has its intent committed."""

    pending: Pending
    frame: str
    op: str
    items: int | None


@dataclass(frozen=True, slots=True)
class _Deciding:
    """A request validated and holding its orders here, waiting for the shared store's decision."""

    verdict: Verdict
    state: TradingState  # what it was validated under
    front: Front  # what it journals before its intent or answer


class Pipeline:
    """submit and preview."""

    def __init__(
        self,
        *,
        live: Live,
        gate: Gate,
        leases: Leases,
        registry: PendingRegistry,
        recorder: Recorder,
        safety: KillSwitch,
        reconciler: Reconciler,
        coordination: Coordinator,
        trade: TradePort,
        exchange_clock: ExchangeClock,
        clock: Clock,
        wake: Callable[[], None],
        boot_token: str,
    ) -> None:
        self._live = live
        self._gate = gate
        self._leases = leases
        self._registry = registry
        self._recorder = recorder
        self._journal = recorder.journal
        self._safety = safety
        self._reconciler = reconciler
        self._coordination = coordination
        self._trade = trade
        self._exchange_clock = exchange_clock
        self._clock = clock
        self._wake = wake
        self._req_ids = ReqIdFactory(boot_token)

    def _ms_since(self, started_ns: int) -> float:
        return (self._clock.monotonic_ns() - started_ns) / 1e6

    def refresh_req_ids(self) -> None:
        """Bybit reqIds named after this instance's fleet-unique id once it has one (Redis), so two
        sidecars on one account can never send the same reqId (Bybit: 20006)."""
        token = self._coordination.id_token
        if token and token != self._req_ids.boot_token:
            self._req_ids = ReqIdFactory(token)

    # ------------------------------------------------------------------ preview and approval

    async def preview(self, request: AmendRequest) -> AmendResult:
        """The verdicts a submit would get now. Sends nothing, consumes no budget, journals nothing
        (with Redis: one read of the shared state, budgets and leases)."""
        now_ns = self._clock.monotonic_ns()
        state = self._safety.validation_state()
        verdict = self._gate.validate(request, now_ns, state)
        outcome: Cleared | Stopped = Cleared(verdict, {})
        if verdict.any_allowed:
            decided = self._gate.preview_now(request, verdict, state)
            outcome = decided if decided is not None else await self._gate.preview(request, verdict, state)
        outcomes, body = answers.preview(outcome, self._ms_since(now_ns))
        return AmendResult(body, is_error(outcomes))

    def approval_needed(self, request: AmendRequest) -> str | None:
        """A prompt for a human when this request would send an item above `approval.above_notional`."""
        threshold = self._live.policy.approval_above_notional
        if threshold is None:
            return None
        verdict = self._gate.validate(request, self._clock.monotonic_ns(), self._safety.validation_state())
        big = [iv for iv in verdict.allowed_items if iv.notional is not None and iv.notional > threshold]
        if not big:
            return None
        lines = [
            f"{iv.symbol} {iv.order_link_id or iv.order_id}: "
            + ", ".join(f"{k}={v}" for k, v in (iv.item.values.items() if iv.item else ()))
            + f" (notional {plain_decimal(iv.notional) if iv.notional is not None else None})"
            for iv in big
        ]
        total = len(verdict.allowed_items)
        return (
            f"Approve this {request.tool} on {verdict.category}? A yes sends all {total} item(s) of the "
            f"request; {len(big)} of them are above the approval threshold {plain_decimal(threshold)}: "
            + "; ".join(lines)
        )

    # ------------------------------------------------------------------ submit

    async def submit(self, request: AmendRequest, approval: Approval | None = None) -> AmendResult:
        """Validate, rate-limit, journal, send and verify one amend request.

        When `approval.above_notional` applies, `approval` must carry a human's yes bound to
        `request_digest(request)`; otherwise the request is denied APPROVAL_UNAVAILABLE (no answer)
        or with the approval's code (a no). Every request ends with an answer and a final record.
        """
        started_ns = self._clock.monotonic_ns()
        request_id = self._coordination.next_request_id()
        deciding: _Deciding | None = None
        try:
            admitted = self._admit(request_id, request, approval, started_ns)
            if isinstance(admitted, _Deciding):
                # The shared store decides (Redis): the one await before the intent is committed.
                deciding = admitted
                outcome = await self._gate.admit(request, request_id, deciding.verdict, deciding.state)
                outcome = self._still_clear(request_id, outcome)
                admitted = self._cleared(request_id, request, outcome, started_ns, deciding.front)
        except asyncio.CancelledError:
            # The caller went away while the shared store decided: nothing was sent. Free what the
            # request holds (here and in the store) and leave a final record, then let it go.
            if deciding is not None:
                self._ensure_front(request_id, request, deciding.front)
            self._registry.abandon(request_id, "cancelled before sending")
            self._unsent(
                request_id,
                request,
                started_ns,
                code=DenialCode.CANCELLED,
                detail="the call was cancelled while its admission was decided",
            )
            raise
        except Exception as exc:  # a bug before sending must deny, never send or hang
            log.exception("amend.admit_failed", request_id=request_id)
            if deciding is not None:
                self._ensure_front(request_id, request, deciding.front)
            self._registry.abandon(request_id, f"{type(exc).__name__}: {exc}")
            return self._unsent(
                request_id,
                request,
                started_ns,
                code=DenialCode.INTERNAL_ERROR,
                detail=f"the sidecar failed before sending ({type(exc).__name__})",
            )
        if isinstance(admitted, AmendResult):
            return admitted
        return await self._dispatch(admitted, request)

    def _admit(
        self, request_id: str, request: AmendRequest, approval: Approval | None, started_ns: int
    ) -> AmendResult | _Admitted | _Deciding:
        """Everything before the send that needs no await (so check and hold are atomic here):
        validate against the orders not in flight, approval, hold the orders, then the coordinator
        (local: kill switch and rate limit, at once), then journal the request (with its verdict)
        and commit the intent. Returns the refusal, what to send, or `_Deciding` when the shared
        store must be asked first."""
        blocked = self._safety.journal_blocked()
        if blocked is not None:
            # The journal is broken: nothing can be recorded, so nothing may be sent (fail closed).
            return self._unsent(
                request_id,
                request,
                started_ns,
                code=DenialCode.TRADING_HALTED,
                detail=f"trading is halted: {blocked}",
            )
        front = Front(request_args(request))
        try:
            return self._admit_checked(request_id, request, approval, started_ns, front)
        except Exception:
            self._ensure_front(request_id, request, front)  # the INTERNAL_ERROR answer needs it
            raise

    def _ensure_front(self, request_id: str, request: AmendRequest, front: Front) -> None:
        """Journal the request if nothing has yet (before an answer that did not go through the
        usual paths: an exception, a cancellation)."""
        if not front.recorded:
            front.recorded = True
            with contextlib.suppress(JournalError):
                self._journal.record_request(request_id, request.tool, front.args, self._clock.wall_ms())

    def _admit_checked(
        self, request_id: str, request: AmendRequest, approval: Approval | None, started_ns: int, front: Front
    ) -> AmendResult | _Admitted | _Deciding:
        state = self._safety.validation_state()
        verdict = self._gate.validate(request, started_ns, state)
        front.verdict, front.validated = verdict_body(verdict), verdict
        front.policy_version = self._live.policy.version
        if not verdict.any_allowed:
            return self._record_front(request_id, request, started_ns, front) or self._denied(
                request_id, verdict, started_ns
            )

        threshold = self._live.policy.approval_above_notional
        if threshold is not None and any(
            iv.notional is not None and iv.notional > threshold for iv in verdict.allowed_items
        ):
            refusal = answers.approval_refusal(request, approval)
            front.approval = {
                "digest": request_digest(request),
                "granted": refusal is None,
                "code": None if refusal is None else str(refusal.code),
            }
            if refusal is not None:
                return self._record_front(request_id, request, started_ns, front) or self._refused(
                    request_id, verdict, refusal, started_ns
                )

        busy = self._gate.hold(request_id, verdict)
        if busy is not None:
            return self._cleared(request_id, request, busy, started_ns, front)
        outcome = self._gate.admit_now(request, request_id, verdict, state)
        if outcome is None:
            return _Deciding(verdict, state, front)
        return self._cleared(request_id, request, outcome, started_ns, front)

    def _still_clear(self, request_id: str, outcome: Cleared | Stopped) -> Cleared | Stopped:
        """After the await on the shared store: a halt this instance took meanwhile (a trip not yet
        in Redis, a failed journal) still stops the request (its leases are handed back)."""
        if isinstance(outcome, Cleared) and self._safety.validation_state() is TradingState.HALTED:
            self._leases.release_all(request_id)
            reason = Reason(
                DenialCode.TRADING_HALTED,
                f"trading is halted ({self._safety.trading_state()[1]}); "
                "no amend is sent until `sidecar resume`",
            )
            return Stopped(outcome.verdict, reason)
        return outcome

    def _cleared(
        self,
        request_id: str,
        request: AmendRequest,
        outcome: Cleared | Stopped,
        started_ns: int,
        front: Front,
    ) -> AmendResult | _Admitted:
        """The admission's outcome: answer a stop (nothing sent), or journal the request and commit
        the intent of what is cleared (write-ahead) and start tracking it. Synchronous."""
        if outcome.verdict is not front.validated:  # validated again (Busy, Reducing): journal that
            front.verdict, front.validated = verdict_body(outcome.verdict), outcome.verdict
            front.policy_version = self._live.policy.version  # validated again, now
        if isinstance(outcome, Stopped):
            refused = self._record_front(request_id, request, started_ns, front)
            if refused is not None:
                return refused
            latency_ms = self._ms_since(started_ns)
            if outcome.throttle is not None:
                throttle = outcome.throttle
                log.info(
                    "amend.throttled",
                    request_id=request_id,
                    key=throttle.key,
                    retry_after_ms=throttle.retry_after_ms,
                )
                return self._registry.store(
                    request_id, answers.throttled(request_id, outcome.verdict, throttle, latency_ms)
                )
            if outcome.reason is not None:
                return self._refused(request_id, outcome.verdict, outcome.reason, started_ns)
            return self._denied(request_id, outcome.verdict, started_ns)
        verdict, orders = outcome.verdict, outcome.orders
        category = verdict.category
        assert category is not None  # an allowed item implies a valid category
        to_send = verdict.allowed_items
        self.refresh_req_ids()
        req_id = self._req_ids.next()
        ts_ms = self._exchange_clock.wall_ms()
        recv_window_ms = self._live.recv_window_ms
        items = [iv.item for iv in to_send if iv.item is not None]
        if request.batch:
            op = "order.amend-batch"
            frame = encode_amend_batch(req_id, category, items, ts_ms, recv_window_ms)
        else:
            op = "order.amend"
            frame = encode_amend(req_id, category, items[0], ts_ms, recv_window_ms)
        intent_items = [intent_item(iv) for iv in to_send]
        refused = self._record_front(
            request_id, request, started_ns, front, in_intent=args_in_intent(front.args, intent_items)
        )
        if refused is not None:
            self._leases.release_all(request_id)
            return refused
        journal_ms = self._clock.wall_ms()
        # The policy its items were checked under (a reload during the shared store's decision
        # changes nothing about what is sent: the intent and the answer name that policy).
        policy_version = front.policy_version or self._live.policy.version
        try:
            self._journal.record_intent(
                request_id,
                req_id,
                op,
                str(category),
                intent_items,
                ts_ms,  # the request's timestamp, on the exchange's clock (recovery's timing)
                recv_window_ms,
                policy_version,
                journal_ms,  # the record's own time, like every other journal record
            )
        except JournalError as exc:
            # Write-ahead: an intent that is not durable is never sent.
            self._leases.release_all(request_id)
            return self._journal_failed(request_id, request, started_ns, exc)

        self._registry.checkpoint("after_intent")
        pending = Pending(
            request_id,
            req_id,
            verdict,
            started_ns,
            to_send,
            orders=orders,
            intent_items=intent_items,
            journal_ms=journal_ms,
            policy_version=policy_version,
        )
        self._registry.add(pending)
        self._reconciler.track(
            request_id,
            req_id,
            [TrackedItem(iv.index, category, iv.item, iv.order) for iv in to_send if iv.item is not None],
            ts_ms,
            recv_window_ms,
            started_ns,
        )
        return _Admitted(pending, frame, op, len(to_send) if request.batch else None)

    def _record_front(
        self,
        request_id: str,
        request: AmendRequest,
        started_ns: int,
        front: Front,
        *,
        in_intent: Sequence[int] = (),
    ) -> AmendResult | None:
        """Journal the request (leaving out the items at `in_intent`, which the intent holds),
        its verdict and approval (buffered: the intent or the answer commits them). Returns the
        refusal when the journal cannot take them (then nothing may be sent), else None."""
        front.recorded = True
        try:
            self._journal.record_request(
                request_id, request.tool, front.args, self._clock.wall_ms(), in_intent=in_intent
            )
        except JournalInputError as exc:
            # This input cannot be recorded: refuse this request only (no agent input halts trading).
            return self._unsent(
                request_id, request, started_ns, code=DenialCode.INVALID_REQUEST, detail=str(exc)
            )
        except JournalError as exc:
            return self._journal_failed(request_id, request, started_ns, exc)
        if front.verdict is not None:
            self._recorder.record("verdict", request_id, front.verdict)
        if front.approval is not None:
            self._recorder.record("approval", request_id, front.approval)
        return None

    async def _dispatch(self, admitted: _Admitted, request: AmendRequest) -> AmendResult:
        """Send the frame and wait for every item's verdict. Safe against any exception."""
        pending = admitted.pending
        request_id, req_id = pending.request_id, pending.req_id
        try:
            await self._trade.send(req_id, admitted.frame, items=admitted.items)
        except NotConnected as exc:
            # Nothing left (the adapter refuses before writing): deny, and forget the intent.
            self._registry.unsent(pending, str(exc))
            return self._unsent(
                request_id,
                request,
                pending.started_ns,
                code=DenialCode.EXCHANGE_UNAVAILABLE,
                detail=str(exc),
                verdict=pending.verdict,
            )
        except asyncio.CancelledError:
            self._send_failed(pending, "cancelled")
            self._registry.detach(pending)
            raise
        except Exception as exc:
            self._send_failed(pending, type(exc).__name__)
        else:
            observer = self._registry.observer
            if observer is not None:  # the frame is handed over now; what follows is after the send
                observer.observe_sent(self._ms_since(pending.started_ns) / 1000)
            self._registry.sent(pending)
            log.info(
                "amend.sent", request_id=request_id, req_id=req_id, items=len(pending.sent), op=admitted.op
            )
        self._registry.checkpoint("after_send")

        try:
            await pending.done.wait()
        except asyncio.CancelledError:
            # The caller went away (MCP request cancelled): nobody waits any more, but the items
            # were sent, so their verdicts are still reached and stored for getAmendOutcome.
            self._registry.detach(pending)
            raise
        return self._registry.answer(pending)

    def _send_failed(self, pending: Pending, why: str) -> None:
        self._registry.send_failed(pending, why)
        self._wake()

    # ------------------------------------------------------------------ refusals

    def _journal_failed(
        self, request_id: str, request: AmendRequest, started_ns: int, exc: JournalError
    ) -> AmendResult:
        """The journal refused a write before anything was sent: halt and deny (fail closed)."""
        self._safety.journal_failed(exc)
        return self._unsent(request_id, request, started_ns, code=DenialCode.INTERNAL_ERROR, detail=str(exc))

    def _denied(self, request_id: str, verdict: Verdict, started_ns: int) -> AmendResult:
        answer = answers.denied(request_id, verdict, self._ms_since(started_ns))
        log.info(
            "amend.denied",
            request_id=request_id,
            codes=sorted({r.code for o in answer[0] for r in o.reasons}),
        )
        return self._registry.store(request_id, answer)

    def _refused(self, request_id: str, verdict: Verdict, reason: Reason, started_ns: int) -> AmendResult:
        log.info("amend.denied", request_id=request_id, codes=[str(reason.code)])
        return self._registry.store(
            request_id, answers.refused(request_id, verdict, reason, self._ms_since(started_ns))
        )

    def _unsent(
        self,
        request_id: str,
        request: AmendRequest,
        started_ns: int,
        *,
        code: DenialCode,
        detail: str,
        verdict: Verdict | None = None,
    ) -> AmendResult:
        log.info("amend.denied", request_id=request_id, codes=[str(code)])
        answer = answers.unsent(
            request_id,
            request,
            code=code,
            detail=detail,
            latency_ms=self._ms_since(started_ns),
            verdict=verdict,
        )
        return self._registry.store(request_id, answer)
