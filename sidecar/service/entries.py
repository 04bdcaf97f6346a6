"""The records the service's parts pass between them: a request in flight (`Pending`), what a request
journals before its intent (`Front`), the live settings a reload swaps (`Live`), and the service's
own events (REST read-backs, re-reads).

Data only: no I/O, no decisions. Every other part of the service may import it; it imports none.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sidecar.config import SidecarConfig
from sidecar.core.policy import Policy
from sidecar.core.reconcile import ItemResult, QueryOrder
from sidecar.core.types import Ack, AmendItem, ItemVerdict, OrderView, Verdict
from sidecar.core.validation import PreparedPolicy

__all__ = [
    "Front",
    "Live",
    "Pending",
    "Reread",
    "RestResult",
    "order_id_of",
    "order_keys",
]

# Steps kept per item of a request until its next journal record (order events, read-backs).
_STEPS_PER_ITEM = 8
_BOUNDED_STEPS = frozenset({"order_event", "rest"})


@dataclass
class Live:
    """The settings in force now, shared by every part: a reload replaces the fields between two
    requests (assignments on the loop thread, no await), so every part sees the new ones at once."""

    config: SidecarConfig
    policy: Policy
    prepared: PreparedPolicy
    recv_window_ms: int

    @classmethod
    def of(cls, config: SidecarConfig, policy: Policy) -> Live:
        return cls(config, policy, PreparedPolicy(policy), config.exchange.recv_window_ms)


@dataclass(frozen=True, slots=True)
class RestResult:
    """A REST read-back the reconciler asked for (or why it failed)."""

    query: QueryOrder
    view: OrderView | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Reread:
    """A fresh REST read of an order whose last amend ended unverified (see core/inflight.py)."""

    order_id: str
    view: OrderView | None


@dataclass
class Pending:
    """One sent request from its intent to its last item verdict."""

    request_id: str
    req_id: str
    verdict: Verdict
    started_ns: int
    sent: tuple[ItemVerdict, ...]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    results: dict[int, ItemResult] = field(default_factory=dict)
    ack: Ack | None = None
    answered: bool = False
    recovered: bool = False  # re-tracked after a restart: nobody waits; results go to the journal
    detached: bool = False  # the caller was cancelled: results go to the journal as they come
    unverified_counted: bool = False  # already counted once for the `max_unverified` trip
    # The policy version it was decided under (its intent's): its answer and later verdicts name
    # this one, even after a reload (None: not known, e.g. an intent journaled without one).
    policy_version: str | None = None
    # index -> the orderId this request holds in the in-flight guard (one amend in flight per order)
    orders: dict[int, str] = field(default_factory=dict)
    # Journal (format 2): the intent's items as journaled, the wall ms (this host's clock) of the
    # intent record, which step times count from, and the steps seen since the last record of this
    # request (folded into the next one: journal.bodies). `has_result`: a result is journaled
    # (later changes are deltas); None: ask the journal.
    intent_items: list[dict[str, Any]] = field(default_factory=list)
    journal_ms: int = 0
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    steps_omitted: int = 0
    has_result: bool | None = False
    # index -> what decided the item's latest verdict, and the wall ms it was reached.
    decided: dict[int, tuple[str, int]] = field(default_factory=dict)
    # orderId/orderLinkId -> the item index naming that order (to say whose an order event is).
    index_of: dict[str, int] = field(default_factory=dict)

    def add_step(self, step: tuple[Any, ...]) -> None:
        """Keep a step for the journal. Order events and read-backs (the steps the exchange can
        send without end) are kept up to a bound per item; beyond it they are only counted."""
        if step[0] in _BOUNDED_STEPS and len(self.steps) >= _STEPS_PER_ITEM * len(self.sent) + 16:
            self.steps_omitted += 1
            return
        self.steps.append(step)

    def take_steps(self) -> tuple[list[tuple[Any, ...]], int]:
        """The steps to fold into the record being written (then forgotten), and the count of
        those left out."""
        steps, omitted = self.steps, self.steps_omitted
        self.steps, self.steps_omitted = [], 0
        return steps, omitted


@dataclass(slots=True)
class Front:
    """What a request journals before its intent or its answer (request, verdict, approval): held
    until the sidecar knows what it sends, so the request record can leave out the items the
    intent holds exactly. `recorded` once written."""

    args: dict[str, Any]
    verdict: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    recorded: bool = False
    validated: Verdict | None = None  # the verdict `verdict` was made from
    policy_version: str | None = None  # the policy `validated` was made under


def order_keys(iv: ItemVerdict) -> list[str]:
    """Every id an item names its order by (as sent, and as the order view has it)."""
    keys = [k for k in (iv.order_id, iv.order_link_id) if k]
    if iv.order is not None:
        keys.extend(k for k in (iv.order.order_id, iv.order.order_link_id) if k)
    return keys


def order_id_of(item: AmendItem, before: OrderView | None) -> str | None:
    return item.order_id or (before.order_id if before is not None else None)
