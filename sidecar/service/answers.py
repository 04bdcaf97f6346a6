"""The answers: one result per request, built once from what decided it.

One job: turn a verdict that stopped a request (denied, refused with a reason, throttled, never sent)
or a settled `Pending` entry into the item outcomes and the result body (sidecar/results.py shapes
the body). Pure functions: no I/O, no clock (the latency comes in), no journal; the pending
registry stores and counts what these return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.bybit.retcodes import is_unchanged
from sidecar.core.ratelimit import Throttle
from sidecar.core.types import AmendRequest, DenialCode, ItemVerdict, Outcome, Reason, Verdict
from sidecar.core.validation import refused_whole
from sidecar.results import ItemOutcome, result_body
from sidecar.service.admission import Cleared, Stopped
from sidecar.service.api import Approval, request_digest
from sidecar.service.entries import Pending

__all__ = [
    "Answer",
    "answered",
    "approval_refusal",
    "denied",
    "outcomes_of",
    "preview",
    "rate_reason",
    "refused",
    "throttled",
    "unsent",
]

Answer = tuple[list[ItemOutcome], dict[str, Any]]

# The NO_CHANGE reason on an item Bybit refused as a no-op (10001 "remains unchanged") in a race.
_UNCHANGED_AT_EXCHANGE = Reason(
    DenialCode.NO_CHANGE,
    "Bybit refused the amend as a no-op (10001): the order already held every requested value",
)

_UNSENT_MESSAGES: Mapping[DenialCode, str] = {
    DenialCode.INTERNAL_ERROR: "the sidecar failed before sending, so nothing was sent",
    DenialCode.INVALID_REQUEST: "the request cannot be recorded, so nothing was sent",
    DenialCode.EXCHANGE_UNAVAILABLE: "the exchange connection is not ready, so nothing was sent; "
    "retry when getSafetyPolicy shows the connection is back",
    DenialCode.TRADING_HALTED: "no amend passes until the operator runs `sidecar resume`",
    DenialCode.CANCELLED: "the caller cancelled the call, so nothing was sent",
}


def rate_reason(throttle: Throttle) -> Reason:
    return Reason(DenialCode.RATE_LIMITED, throttle.message)


def denied(request_id: str, verdict: Verdict, latency_ms: float) -> Answer:
    """Every item as the validator decided it (at least one item, even for an unusable request)."""
    outcomes = [ItemOutcome(iv, Outcome.DENIED, iv.reasons) for iv in verdict.items]
    if not outcomes:  # an empty or unusable request still gets an answer
        outcomes = [
            ItemOutcome(ItemVerdict(0, None, None, None, verdict.reasons), Outcome.DENIED, verdict.reasons)
        ]
    body = result_body(
        request_id=request_id,
        items=outcomes,
        reasons=verdict.reasons,
        latency_ms=latency_ms,
        items_omitted=verdict.items_omitted,
    )
    return outcomes, body


def refused(request_id: str, verdict: Verdict, reason: Reason, latency_ms: float) -> Answer:
    """Every item denied with `reason` added (nothing was or will be sent)."""
    outcomes = [ItemOutcome(iv, Outcome.DENIED, (*iv.reasons, reason)) for iv in verdict.items] or [
        ItemOutcome(ItemVerdict(0, None, None, None), Outcome.DENIED, (reason,))
    ]
    body = result_body(
        request_id=request_id,
        items=outcomes,
        reasons=[reason],
        latency_ms=latency_ms,
        items_omitted=verdict.items_omitted,
    )
    return outcomes, body


def throttled(request_id: str, verdict: Verdict, throttle: Throttle, latency_ms: float) -> Answer:
    """The allowed items throttled (with the exact wait), the others denied."""
    reason = rate_reason(throttle)
    outcomes = [
        ItemOutcome(iv, Outcome.THROTTLED, (reason,))
        if iv.allowed
        else ItemOutcome(iv, Outcome.DENIED, iv.reasons)
        for iv in verdict.items
    ]
    body = result_body(
        request_id=request_id,
        items=outcomes,
        reasons=[*verdict.reasons, reason],
        retry_after_ms=throttle.retry_after_ms,
        latency_ms=latency_ms,
    )
    return outcomes, body


def unsent(
    request_id: str,
    request: AmendRequest,
    *,
    code: DenialCode,
    detail: str,
    latency_ms: float,
    verdict: Verdict | None = None,
) -> Answer:
    """Nothing was sent: every item is denied with `code` (fail closed). Without a verdict the
    request's items are listed by index, bounded (core.validation.refused_whole)."""
    reason = Reason(code, f"{_UNSENT_MESSAGES.get(code, 'nothing was sent')} ({detail})")
    if verdict is None:
        verdict = refused_whole(None, len(request.items), ())
    return refused(request_id, verdict, reason, latency_ms)


def outcomes_of(pending: Pending) -> list[ItemOutcome]:
    """The item outcomes of a sent request as known now (items not sent keep their denial)."""
    outcomes: list[ItemOutcome] = []
    sent_index = {iv.index for iv in pending.sent}
    for iv in pending.verdict.items:
        if iv.index not in sent_index:
            outcomes.append(ItemOutcome(iv, Outcome.DENIED, iv.reasons))
            continue
        r = pending.results.get(iv.index)
        if r is None:  # defensive: the reconciler always answers by the verify deadline
            outcomes.append(ItemOutcome(iv, Outcome.UNVERIFIED))
            continue
        reasons: tuple[Reason, ...] = ()
        if r.outcome is Outcome.REJECTED and is_unchanged(r.exchange_code, r.exchange_msg):
            reasons = (_UNCHANGED_AT_EXCHANGE,)
        outcomes.append(ItemOutcome(iv, r.outcome, reasons, r.exchange_code, r.exchange_msg, r.observed))
    return outcomes


def answered(pending: Pending, latency_ms: float, extra: Mapping[str, Any]) -> Answer:
    """The answer of a sent request, from the verdicts its items reached."""
    outcomes = outcomes_of(pending)
    body = result_body(
        request_id=pending.request_id,
        items=outcomes,
        reasons=pending.verdict.reasons,
        ack=pending.ack,
        latency_ms=latency_ms,
        extra=extra,
    )
    return outcomes, body


def preview(outcome: Cleared | Stopped, latency_ms: float) -> Answer:
    """What a submit would answer now, short of sending: `allowed` where it would send."""
    verdict = outcome.verdict
    extra = outcome.reason if isinstance(outcome, Stopped) else None
    throttle = outcome.throttle if isinstance(outcome, Stopped) else None
    outcomes: list[ItemOutcome] = []
    for iv in verdict.items:
        if extra is not None:
            outcomes.append(ItemOutcome(iv, Outcome.DENIED, (*iv.reasons, extra)))
        elif not iv.allowed:
            outcomes.append(ItemOutcome(iv, Outcome.DENIED, iv.reasons))
        elif throttle is not None:
            outcomes.append(ItemOutcome(iv, Outcome.THROTTLED, (rate_reason(throttle),)))
        else:
            outcomes.append(ItemOutcome(iv, Outcome.ALLOWED))
    reasons: list[Reason] = list(verdict.reasons)
    if extra is not None:
        reasons.append(extra)
    if throttle is not None:
        reasons.append(rate_reason(throttle))
    body = result_body(
        request_id="preview",
        items=outcomes,
        reasons=reasons,
        retry_after_ms=throttle.retry_after_ms if throttle is not None else None,
        latency_ms=latency_ms,
        items_omitted=verdict.items_omitted,
    )
    return outcomes, body


def approval_refusal(request: AmendRequest, approval: Approval | None) -> Reason | None:
    """Why a request above the approval threshold may not be sent (None: a human said yes to
    exactly these arguments)."""
    if approval is None:
        return Reason(
            DenialCode.APPROVAL_UNAVAILABLE,
            "this amend is above the approval threshold and needs a human yes, but the client "
            "cannot ask one (no MCP elicitation); nothing was sent",
        )
    if approval.digest != request_digest(request):
        return Reason(
            DenialCode.APPROVAL_UNAVAILABLE,
            "the approval given was for different arguments; nothing was sent",
        )
    if not approval.granted:
        return Reason(approval.code, approval.detail or "the human declined this amend; nothing was sent")
    return None
