"""Build the amend tools' result body (DESIGN.md §4.3) from verdicts and item outcomes.

Plain JSON-ready dicts with camelCase keys: the same body goes to the agent (structured content),
the journal, and `getAmendOutcome`. This module must not do I/O or decide outcomes; it only shapes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.core.numbers import plain_decimal
from sidecar.core.types import Ack, ItemVerdict, OrderView, Outcome, Reason

__all__ = [
    "ERROR_OUTCOMES",
    "ItemOutcome",
    "ack_body",
    "batch_outcome",
    "is_error",
    "item_body",
    "observed_body",
    "reason_body",
    "result_body",
]

# A result with any of these item outcomes is returned with isError: true (DESIGN.md §4.3).
ERROR_OUTCOMES = frozenset({Outcome.DENIED, Outcome.THROTTLED, Outcome.REJECTED, Outcome.UNVERIFIED})


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """The final word on one item of a request."""

    verdict: ItemVerdict
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    exchange_code: int | None = None
    exchange_msg: str | None = None
    observed: OrderView | None = None


def reason_body(reason: Reason) -> dict[str, str]:
    return {"code": str(reason.code), "message": reason.message}


def observed_body(view: OrderView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "price": plain_decimal(view.price),
        "qty": plain_decimal(view.qty),
        "orderStatus": view.order_status,
        "updatedTime": str(view.updated_time_ms),
    }


def item_body(o: ItemOutcome) -> dict[str, Any]:
    v = o.verdict
    return {
        "index": v.index,
        "symbol": v.symbol,
        "orderId": v.order_id or (o.observed.order_id if o.observed else None),
        "orderLinkId": v.order_link_id or (o.observed.order_link_id if o.observed else None),
        "outcome": str(o.outcome),
        "reasons": [reason_body(r) for r in o.reasons],
        "exchangeCode": o.exchange_code,
        "exchangeMsg": o.exchange_msg,
        "observed": observed_body(o.observed),
    }


def ack_body(ack: Ack | None) -> dict[str, Any] | None:
    if ack is None:
        return None
    return {"retCode": ack.ret_code, "retMsg": ack.ret_msg, "retExtInfo": dict(ack.ret_ext_info)}


def batch_outcome(outcomes: Iterable[Outcome]) -> Outcome:
    """The item outcome when all agree, else `partial`."""
    distinct = set(outcomes)
    if len(distinct) == 1:
        return distinct.pop()
    return Outcome.PARTIAL if distinct else Outcome.DENIED


def is_error(items: Sequence[ItemOutcome]) -> bool:
    return any(o.outcome in ERROR_OUTCOMES for o in items)


def result_body(
    *,
    request_id: str,
    items: Sequence[ItemOutcome],
    reasons: Sequence[Reason] = (),
    ack: Ack | None = None,
    retry_after_ms: int | None = None,
    latency_ms: float = 0.0,
    extra: Mapping[str, Any] | None = None,
    items_omitted: int = 0,
) -> dict[str, Any]:
    """The result body. `items_omitted`: items of a request refused whole that are not listed
    (their outcome and reasons are those of the batch); the key appears only when it is > 0."""
    ordered = sorted(items, key=lambda o: o.verdict.index)
    body: dict[str, Any] = {
        "requestId": request_id,
        "outcome": str(batch_outcome(o.outcome for o in ordered)),
        "reasons": [reason_body(r) for r in reasons],
        "items": [item_body(o) for o in ordered],
        "ack": ack_body(ack),
        "retryAfterMs": retry_after_ms,
        "latencyMs": round(latency_ms, 3),
    }
    if items_omitted > 0:
        body["itemsOmitted"] = items_omitted
    if extra:
        body.update(extra)
    return body
