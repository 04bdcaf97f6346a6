"""Reconciliation: turn acks, order events, REST read-backs and deadlines into one verdict per item.

Sans-I/O, like the protocol objects of `websockets` and h11's state machine: the service feeds
events in (`on_ack`, `on_ack_missing`, `on_order_update`, `on_rest_result`, `on_rest_error`, `tick`)
and drains what to do (`effects()`: REST read-backs) and what was decided (`finished()`: item
results). This module must not do I/O, read a clock, send anything, or validate amends. An *item* is
one order in one sent request; every item runs its own small state machine.

RULES. Everything that changes an item's state lives in `TRANSITIONS`; the rest of this file only
classifies inputs into `ItemEvent`s (by the evidence rules below) and keeps deadlines.

Evidence rules (a verdict rests only on evidence its own request caused):
Rule 1: Only own evidence verifies. An order view (a private-stream push or a REST read-back) is
  target evidence for an item iff
  (a) it shows every target field (`AmendItem.targets()`: every field the agent set, numbers
      compared as Decimals, enums as text; every amendable field is decoded, so none is beyond
      proof);
  (b) it is newer than the state the request was validated on (`updatedTime > before.updatedTime`),
      or, when the sidecar did not know the order, `updatedTime >= sent_ts - skew`;
  (c) the item was never *contested*: no other request's item on the same order was tracked at
      any time while this one was. Once two amends of one order overlap, a view that shows a
      target may be either's doing, even one that arrives after the other has settled, so it
      proves nothing for either; such an item ends `rejected`/`superseded` by its ack,
      `not_applied` by Rule 5, or `unverified`. (The service never lets amends overlap,
      `ORDER_BUSY`; this rule keeps verdicts honest when something else does.)
  An ack with code 0 alone never verifies (Bybit: the response "is acknowledgment only").
Rule 2: The exchange's word on our own request decides. A definitive item code alone decides:
  REJECTED -> `rejected`, ORDER_CLOSED -> `superseded`. A refusal that still has to be looked at
  (RATE_LIMITED, RECONNECT: 10006, 10016, 10019 ...) puts the item in REFUSED: Bybit says this
  request changed nothing, so it is never `verified`, whatever the order shows later; it ends
  `not_applied` (Rule 5), `superseded` (Rule 6) or `unverified`.
Rule 3: Events arrive in any order. Real world possibility: the order push arrives before the ack
  (trade socket and private stream are different connections). Target evidence seen before the ack
  is held (state SENT_SEEN) and the ack decides; a missing or ambiguous ack lets the evidence speak.
  A (state, event) pair missing from `TRANSITIONS` changes nothing. Terminal states have no
  entries, so they are absorbing. Duplicate and stale order events (older than the newest view this
  item has seen) are dropped before classification.
Rule 4: An acked amend (item code 0) should land. A read-back that still shows the old values keeps
  it ACKED and querying; it never becomes `not_applied`.
Rule 5: `not_applied` (the verdict that lets an agent send again) comes only from a REST read-back,
  in AMBIGUOUS or REFUSED, showing the order open, every target field at its pre-amend value AND
  the pre-amend `updatedTime` (the order provably did not change since it was validated), read
  after `sent_ts + recv_window + margin` on the exchange's clock: only then can a lost request no
  longer be accepted (reference/reliability.md §2.1). Without a known pre-amend state there is no
  `not_applied`. A changed `updatedTime` with the old values back (a second change) is not proof.
Rule 6: A closed order (terminal status) seen before the target -> `superseded`. A closed order that
  shows the target counts as target evidence only when the target visibly differs from the
  pre-amend values and the engine refused nothing (`rejectReason` EC_NoError); otherwise it is
  `superseded` (never a doubtful `verified`).
Rule 7: At the answer deadline (`verify_timeout_ms` after sending) an unfinished item is reported
  once as `unverified` and tracking goes on; a later verdict is reported again with `late=True`.
  At `background_timeout_ms` tracking stops (the item stays unverified) and the item is listed in
  `expired()`, so the owner can re-read the order before it accepts another amend of it.
Rule 8: Nothing here ever sends an amend. The only effect is `QueryOrder` (look, never resend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Final, TypeAlias

from sidecar.core.types import AMEND_FIELDS, Ack, AmendItem, Category, CodeClass, OrderView, Outcome

__all__ = [
    "EVIDENCE_ACK",
    "EVIDENCE_DEADLINE",
    "EVIDENCE_ORDER_STREAM",
    "EVIDENCE_REST",
    "TRANSITIONS",
    "Effect",
    "ExpiredItem",
    "ItemEvent",
    "ItemResult",
    "ItemState",
    "QueryOrder",
    "ReconcileSettings",
    "Reconciler",
    "TrackedItem",
]

_NS_PER_MS: Final = 1_000_000

EVIDENCE_ORDER_STREAM: Final = "order_stream"
EVIDENCE_REST: Final = "rest"
EVIDENCE_ACK: Final = "ack"
EVIDENCE_DEADLINE: Final = "deadline"


# --------------------------------------------------------------------------------------------
# Values in and out


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """Deadlines of the verification pipeline (all relative to the send, unless said otherwise)."""

    ack_timeout_ms: int = 3000
    rest_after_ms: int = 1500  # no verdict this long after the later of send and ack -> read back by REST
    rest_retry_ms: int = 1000  # next read-back after an inconclusive one
    verify_timeout_ms: int = 5000  # answer deadline: still unknown -> `unverified` to the agent
    not_applied_margin_ms: int = 2000  # added to recv_window before "unchanged" may mean not applied
    background_timeout_ms: int = 60000  # stop looking; the item stays unverified
    skew_ms: int = 1000  # clock allowance when the pre-amend state is unknown
    rest_fallback: bool = True
    rest_retry_max_ms: int = 8000  # after the answer deadline read-backs back off (doubling) up to this
    rest_query_timeout_ms: int = 5000  # a read-back unanswered this long counts as lost

    def __post_init__(self) -> None:
        for name in (
            "ack_timeout_ms",
            "rest_after_ms",
            "rest_retry_ms",
            "verify_timeout_ms",
            "not_applied_margin_ms",
            "background_timeout_ms",
            "skew_ms",
            "rest_retry_max_ms",
            "rest_query_timeout_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.rest_retry_ms <= 0 or self.rest_query_timeout_ms <= 0:
            raise ValueError("rest_retry_ms and rest_query_timeout_ms must be > 0")
        if self.verify_timeout_ms > self.background_timeout_ms:
            raise ValueError("verify_timeout_ms must not exceed background_timeout_ms")


@dataclass(frozen=True, slots=True)
class TrackedItem:
    """One item of a sent request. `index` is its position in the agent's request (for answers);
    `before` is the order as the sidecar saw it when validating (None if it did not know it)."""

    index: int
    category: Category
    item: AmendItem
    before: OrderView | None


@dataclass(frozen=True, slots=True)
class QueryOrder:
    """Effect: read one order back by REST (`GET /v5/order/realtime`), then call `on_rest_result`
    (or `on_rest_error`) with this same value."""

    category: Category
    symbol: str
    order_id: str | None
    order_link_id: str | None
    request_id: str
    index: int


# The only effect there is. Rule 8: there is no SendAmend.
Effect: TypeAlias = QueryOrder


@dataclass(frozen=True, slots=True)
class ExpiredItem:
    """An item whose tracking stopped without a verdict (it stays `unverified`; Rule 7)."""

    request_id: str
    index: int
    category: Category
    symbol: str
    order_id: str | None
    order_link_id: str | None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """A verdict on one item. `late` is True when it follows an earlier `unverified` report.

    `evidence` says what decided it: "order_stream", "rest", "ack" or "deadline" (unverified).
    """

    request_id: str
    req_id: str
    index: int
    outcome: Outcome
    exchange_code: int | None
    exchange_msg: str | None
    observed: OrderView | None
    evidence: str
    late: bool


# --------------------------------------------------------------------------------------------
# The state machine


class ItemState(StrEnum):
    SENT = "SENT"  # the frame is out; no ack yet, no target seen
    SENT_SEEN = "SENT_SEEN"  # no ack yet, but target evidence is held (Rule 2)
    ACKED = "ACKED"  # item code 0; waiting for evidence (Rule 4)
    AMBIGUOUS = "AMBIGUOUS"  # ack lost or ambiguous code; resolve by looking, never by resending
    REFUSED = "REFUSED"  # refused, but to be looked at (Rule 2): never verified
    # Terminal:
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"
    SUPERSEDED = "SUPERSEDED"
    NOT_APPLIED = "NOT_APPLIED"
    EXPIRED = "EXPIRED"  # background timeout: stopped looking; stays unverified (no result)


class ItemEvent(StrEnum):
    ACK_OK = "ACK_OK"  # item code class SUCCESS
    ACK_REJECTED = "ACK_REJECTED"  # class REJECTED (definitive)
    ACK_ORDER_CLOSED = "ACK_ORDER_CLOSED"  # class ORDER_CLOSED (definitive: filled/cancelled first)
    ACK_AMBIGUOUS = "ACK_AMBIGUOUS"  # class AMBIGUOUS, or an ack we cannot map
    ACK_REFUSED = "ACK_REFUSED"  # RATE_LIMITED, RECONNECT: nothing applied, but look (Rule 2)
    ACK_MISSING = "ACK_MISSING"  # ack timeout, or connection lost before the ack
    SAW_TARGET = "SAW_TARGET"  # a fresh view showing every target (Rule 1)
    SAW_CLOSED = "SAW_CLOSED"  # a terminal view without the target (Rule 6)
    REST_UNCHANGED_LATE = "REST_UNCHANGED_LATE"  # REST: open, old values, recv window passed (Rule 5)
    ANSWER_DEADLINE = "ANSWER_DEADLINE"  # verify_timeout_ms after send (Rule 7)
    BACKGROUND_DEADLINE = "BACKGROUND_DEADLINE"  # background_timeout_ms after send


_S = ItemState
_E = ItemEvent

# Every transition of an item, and nothing else. Missing pair = no change (Rule 3).
TRANSITIONS: Final[Mapping[tuple[ItemState, ItemEvent], ItemState]] = {
    # SENT: the frame is out.
    (_S.SENT, _E.ACK_OK): _S.ACKED,
    (_S.SENT, _E.ACK_REJECTED): _S.REJECTED,
    (_S.SENT, _E.ACK_ORDER_CLOSED): _S.SUPERSEDED,
    (_S.SENT, _E.ACK_AMBIGUOUS): _S.AMBIGUOUS,
    (_S.SENT, _E.ACK_REFUSED): _S.REFUSED,
    (_S.SENT, _E.ACK_MISSING): _S.AMBIGUOUS,
    (_S.SENT, _E.SAW_TARGET): _S.SENT_SEEN,  # Real world possibility: the push beats the ack.
    (_S.SENT, _E.SAW_CLOSED): _S.SUPERSEDED,  # closed before our amend could apply; it cannot now
    (_S.SENT, _E.ANSWER_DEADLINE): _S.SENT,
    (_S.SENT, _E.BACKGROUND_DEADLINE): _S.EXPIRED,
    # SENT_SEEN: target evidence held; the ack decides, or its absence lets the evidence speak.
    (_S.SENT_SEEN, _E.ACK_OK): _S.VERIFIED,
    (_S.SENT_SEEN, _E.ACK_REJECTED): _S.REJECTED,  # the venue's word on *our* request wins
    (_S.SENT_SEEN, _E.ACK_ORDER_CLOSED): _S.SUPERSEDED,
    (_S.SENT_SEEN, _E.ACK_AMBIGUOUS): _S.VERIFIED,
    (_S.SENT_SEEN, _E.ACK_REFUSED): _S.REFUSED,  # the held evidence was not ours (Rule 2)
    (_S.SENT_SEEN, _E.ACK_MISSING): _S.VERIFIED,
    (_S.SENT_SEEN, _E.ANSWER_DEADLINE): _S.SENT_SEEN,
    (_S.SENT_SEEN, _E.BACKGROUND_DEADLINE): _S.EXPIRED,
    # ACKED: accepted; only evidence finishes it.
    (_S.ACKED, _E.SAW_TARGET): _S.VERIFIED,
    (_S.ACKED, _E.SAW_CLOSED): _S.SUPERSEDED,
    (_S.ACKED, _E.ANSWER_DEADLINE): _S.ACKED,
    (_S.ACKED, _E.BACKGROUND_DEADLINE): _S.EXPIRED,
    # AMBIGUOUS: may or may not have applied; look.
    (_S.AMBIGUOUS, _E.ACK_OK): _S.ACKED,  # a late ack still tells us it was accepted (Rule 4)
    (_S.AMBIGUOUS, _E.ACK_REJECTED): _S.REJECTED,
    (_S.AMBIGUOUS, _E.ACK_ORDER_CLOSED): _S.SUPERSEDED,
    (_S.AMBIGUOUS, _E.ACK_REFUSED): _S.REFUSED,
    (_S.AMBIGUOUS, _E.SAW_TARGET): _S.VERIFIED,
    (_S.AMBIGUOUS, _E.SAW_CLOSED): _S.SUPERSEDED,
    (_S.AMBIGUOUS, _E.REST_UNCHANGED_LATE): _S.NOT_APPLIED,
    (_S.AMBIGUOUS, _E.ANSWER_DEADLINE): _S.AMBIGUOUS,
    (_S.AMBIGUOUS, _E.BACKGROUND_DEADLINE): _S.EXPIRED,
    # REFUSED: Bybit says nothing was applied; prove it or see the order close. Never verified.
    (_S.REFUSED, _E.SAW_CLOSED): _S.SUPERSEDED,
    (_S.REFUSED, _E.REST_UNCHANGED_LATE): _S.NOT_APPLIED,
    (_S.REFUSED, _E.ANSWER_DEADLINE): _S.REFUSED,
    (_S.REFUSED, _E.BACKGROUND_DEADLINE): _S.EXPIRED,
}

_VERDICTS: Final[Mapping[ItemState, Outcome]] = {
    _S.VERIFIED: Outcome.VERIFIED,
    _S.REJECTED: Outcome.REJECTED,
    _S.SUPERSEDED: Outcome.SUPERSEDED,
    _S.NOT_APPLIED: Outcome.NOT_APPLIED,
}
_TERMINAL: Final = frozenset({*_VERDICTS, _S.EXPIRED})
_AWAITING_ACK: Final = frozenset({_S.SENT, _S.SENT_SEEN})
# States in which a read-back can still tell us something (SENT_SEEN waits for the ack instead).
_QUERYING: Final = frozenset({_S.SENT, _S.ACKED, _S.AMBIGUOUS, _S.REFUSED})

_ACK_EVENTS: Final[Mapping[CodeClass, ItemEvent]] = {
    CodeClass.SUCCESS: _E.ACK_OK,
    CodeClass.REJECTED: _E.ACK_REJECTED,
    CodeClass.ORDER_CLOSED: _E.ACK_ORDER_CLOSED,
    CodeClass.AMBIGUOUS: _E.ACK_AMBIGUOUS,
    CodeClass.RATE_LIMITED: _E.ACK_REFUSED,  # this item was refused; look, but never verify it
    CodeClass.RECONNECT: _E.ACK_REFUSED,
}

# Bybit reports a removed TP/SL/trigger as "0" (or empty): a target of 0 matches an unset value.
_ZERO_MEANS_UNSET: Final = frozenset(k for k, f in AMEND_FIELDS.items() if f.zero_means_unset)


def _value(view: OrderView, bybit_field: str) -> Decimal | str | None:
    v = view.value_of(bybit_field)
    if v is None and bybit_field in _ZERO_MEANS_UNSET:
        return Decimal(0)
    return v


# --------------------------------------------------------------------------------------------
# Per-item bookkeeping


@dataclass(slots=True)
class _Item:
    request_id: str
    req_id: str
    position: int  # position in the sent frame (ack.items[position])
    tracked: TrackedItem
    order_id: str | None  # the item's orderId, else the one the sidecar knew before sending
    sent_ts_ms: int
    recv_window_ms: int
    ack_deadline_ns: int
    answer_deadline_ns: int
    background_deadline_ns: int
    query_due_ns: int | None
    state: ItemState = ItemState.SENT
    last_view: OrderView | None = None  # newest view seen (stale/duplicate filter)
    held: tuple[str, OrderView] | None = None  # target evidence (source, view)
    closed_seen: bool = False
    ack_seen: bool = False
    ack_code: int | None = None
    ack_msg: str | None = None
    reported_unverified: bool = False
    query_outstanding_until_ns: int | None = None
    queries_sent: int = 0
    background_retries: int = 0
    # Rule 1(b): evidence must be newer than this (None: `updatedTime >= sent_ts - skew` instead).
    baseline_ms: int | None = None
    contested: bool = False  # Rule 1(c): another request's amend of this order overlapped it

    @property
    def key(self) -> tuple[str, int]:
        return (self.request_id, self.tracked.index)

    @property
    def targets(self) -> Mapping[str, Decimal | str]:
        return self.tracked.item.targets()

    def shows_target(self, view: OrderView, skew_ms: int) -> bool:
        """Rule 1 (a), (b) and (c) as far as this item knows (the reconciler marks `contested`)."""
        targets = self.targets
        if self.contested or not targets or any(_value(view, f) != t for f, t in targets.items()):
            return False
        if self.baseline_ms is not None:
            return view.updated_time_ms > self.baseline_ms
        return view.updated_time_ms >= self.sent_ts_ms - skew_ms

    def target_differs_from_before(self) -> bool:
        before = self.tracked.before
        return before is not None and any(_value(before, f) != t for f, t in self.targets.items())

    def unchanged_since_before(self, view: OrderView) -> bool:
        """Rule 5: the view is the very state the request was validated on (same `updatedTime`, every
        target field at its pre-amend value) and that state is not the target."""
        before = self.tracked.before
        if before is None or not self.target_differs_from_before():
            return False
        if view.updated_time_ms != before.updated_time_ms:
            return False
        return all(_value(view, f) == _value(before, f) for f in self.targets)


@dataclass(slots=True)
class _Request:
    req_id: str
    keys: list[tuple[str, int]]  # in frame order
    unanswered: set[int] = field(default_factory=set)  # indices without any report yet
    live: set[int] = field(default_factory=set)  # indices still tracked


# --------------------------------------------------------------------------------------------


class Reconciler:
    """Tracks sent items until each has a verdict. Not thread-safe; one owner (the service).

    After every call the owner drains `effects()` (run them) and `finished()` (answer and journal),
    and sleeps until `next_deadline_ns()` at the latest before calling `tick`.
    """

    def __init__(self, settings: ReconcileSettings) -> None:
        self._s = settings
        self._items: dict[tuple[str, int], _Item] = {}
        self._requests: dict[str, _Request] = {}
        self._by_req_id: dict[str, str] = {}
        # (category, symbol, orderId) and (category, symbol, orderLinkId) -> item keys
        self._by_order_id: dict[tuple[Category, str, str], set[tuple[str, int]]] = {}
        self._by_link_id: dict[tuple[Category, str, str], set[tuple[str, int]]] = {}
        self._effects: list[Effect] = []
        self._finished: list[ItemResult] = []
        self._expired: list[ExpiredItem] = []

    def replace_settings(self, settings: ReconcileSettings) -> None:
        """Use `settings` from now on (a config reload). Items already tracked keep the ack, answer
        and background deadlines they were given when sent; the other settings apply at once."""
        self._s = settings

    # ---------------------------------------------------------------- Inputs

    def track(  # noqa: PLR0917 -- the service's agreed positional signature
        self,
        request_id: str,
        req_id: str,
        items: Sequence[TrackedItem],
        sent_ts_ms: int,
        recv_window_ms: int,
        now_ns: int,
    ) -> None:
        """Start tracking a request; call right before its frame is written (after the intent).

        Raises:
            ValueError: the request or reqId is already tracked, or two items share an index
                (programming errors, not business outcomes).
        """
        if request_id in self._requests or req_id in self._by_req_id:
            raise ValueError(f"request {request_id!r} / reqId {req_id!r} is already tracked")
        if len({t.index for t in items}) != len(items):
            raise ValueError("tracked items must have distinct indices")
        if not items:
            return
        s = self._s
        # The same deadlines for every item of the request: computed once, not per item.
        ack_deadline_ns = now_ns + s.ack_timeout_ms * _NS_PER_MS
        answer_deadline_ns = now_ns + s.verify_timeout_ms * _NS_PER_MS
        background_deadline_ns = now_ns + s.background_timeout_ms * _NS_PER_MS
        query_due_ns = now_ns + s.rest_after_ms * _NS_PER_MS
        req = _Request(req_id=req_id, keys=[])
        for position, t in enumerate(items):
            order_id = t.item.order_id or (t.before.order_id if t.before is not None else None) or None
            it = _Item(
                request_id=request_id,
                req_id=req_id,
                position=position,
                tracked=t,
                order_id=order_id,
                sent_ts_ms=sent_ts_ms,
                recv_window_ms=recv_window_ms,
                ack_deadline_ns=ack_deadline_ns,
                answer_deadline_ns=answer_deadline_ns,
                background_deadline_ns=background_deadline_ns,
                query_due_ns=query_due_ns,
                closed_seen=t.before is not None and t.before.is_terminal,
                baseline_ms=t.before.updated_time_ms if t.before is not None else None,
            )
            key = it.key
            self._items[key] = it
            req.keys.append(key)
            req.unanswered.add(t.index)
            req.live.add(t.index)
            self._mark_contested(it, [self._items[k] for k in self._order_keys(it) if k[0] != request_id])
            if order_id:
                self._by_order_id.setdefault((t.category, t.item.symbol, order_id), set()).add(key)
            elif t.item.order_link_id:
                link = (t.category, t.item.symbol, t.item.order_link_id)
                self._by_link_id.setdefault(link, set()).add(key)
        self._requests[request_id] = req
        self._by_req_id[req_id] = request_id

    def forget(self, request_id: str) -> None:
        """Stop tracking a request whose frame was never written (the send failed before leaving).

        Only for that case: a request that may have reached the exchange is never forgotten, it is
        reconciled. Nothing is reported for a forgotten request.
        """
        req = self._requests.pop(request_id, None)
        if req is None:
            return
        self._by_req_id.pop(req.req_id, None)
        for key in req.keys:
            it = self._items.pop(key, None)
            if it is None:
                continue
            t = it.tracked
            for index, ident in ((self._by_order_id, it.order_id), (self._by_link_id, t.item.order_link_id)):
                if ident:
                    keys = index.get((t.category, t.item.symbol, ident))
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del index[(t.category, t.item.symbol, ident)]
        self._effects = [e for e in self._effects if getattr(e, "request_id", None) != request_id]

    def on_ack(self, ack: Ack, now_ns: int) -> None:
        """Apply the trade-socket response to the request with this reqId (unknown reqIds: ignored).

        Items map by position (ack.items[i] <-> the i-th tracked item). A non-zero batch retCode
        applies to every item. An item the ack does not cover, or whose echoed ids contradict the
        tracked order, is treated as ambiguous (we cannot trust the mapping).
        """
        request_id = self._by_req_id.get(ack.req_id)
        if request_id is None:
            return
        for key in list(self._requests[request_id].keys):
            it = self._items.get(key)
            if it is None:
                continue
            code: int | None
            msg: str | None
            if ack.ret_code != 0:
                code, msg, cls = ack.ret_code, ack.ret_msg, ack.cls
            elif it.position < len(ack.items):
                ai = ack.items[it.position]
                code, msg, cls = ai.code, ai.msg, ai.cls
                if self._contradicts(it, ai.order_id, ai.order_link_id):
                    cls = CodeClass.AMBIGUOUS
            else:
                code, msg, cls = None, "no ack item for this position", CodeClass.AMBIGUOUS
            event = _ACK_EVENTS[cls]
            nxt = TRANSITIONS.get((it.state, event))
            if not it.ack_seen or (nxt is not None and nxt is not it.state):
                # The code reported with a verdict is the one of the ack that decided it.
                it.ack_code, it.ack_msg = code, msg
            if not it.ack_seen:
                it.ack_seen = True
                if it.queries_sent == 0 and it.query_due_ns is not None:
                    # "No event this long after the ack": give the push its chance first.
                    it.query_due_ns = max(it.query_due_ns, now_ns + self._s.rest_after_ms * _NS_PER_MS)
            self._fire(it, event, None)

    def on_ack_missing(self, req_id: str, now_ns: int) -> None:
        """The ack will not come (timeout, or the trade connection dropped before it)."""
        request_id = self._by_req_id.get(req_id)
        if request_id is None:
            return
        for key in list(self._requests[request_id].keys):
            it = self._items.get(key)
            if it is not None and it.state in _AWAITING_ACK:
                self._fire(it, _E.ACK_MISSING, None)

    def on_order_update(self, view: OrderView, now_ns: int) -> None:
        """Apply one private-stream `order` push to every tracked item of that order."""
        matching = self._matching(view)
        if len({it.request_id for it in matching}) > 1:  # Rule 1(c)
            for it in matching:
                it.contested = True
        for it in matching:
            if it.key not in self._items:
                continue  # decided by this very view for another item of the same request
            last = it.last_view
            if last is not None and (view.updated_time_ms < last.updated_time_ms or view == last):
                continue  # stale or duplicate: changes nothing (Rule 3)
            it.last_view = view
            self._observe(it, view, EVIDENCE_ORDER_STREAM, wall_ms=None)

    def on_rest_result(self, query: QueryOrder, view: OrderView | None, now_ns: int, wall_ms: int) -> None:
        """Apply the answer to a `QueryOrder` (None = the exchange does not know the order)."""
        it = self._items.get((query.request_id, query.index))
        if it is None:
            return  # already decided or no longer tracked
        it.query_outstanding_until_ns = None
        if view is None:
            # Not found proves nothing by itself (id mix-up, history lag) unless we saw it close.
            if it.closed_seen:
                self._fire(it, _E.SAW_CLOSED, (EVIDENCE_REST, it.last_view))
        elif self._same_order(it, view):
            last = it.last_view
            if last is None or view.updated_time_ms >= last.updated_time_ms:
                it.last_view = view
                self._mark_contested(it, [o for o in self._matching(view) if o.request_id != it.request_id])
                self._observe(it, view, EVIDENCE_REST, wall_ms=wall_ms)
            # else: a lagging snapshot older than what the stream showed: inconclusive
        self._schedule_retry(it, now_ns)

    def answer_now(self) -> None:
        """Report every item nobody has answered yet as `unverified` now, as its answer deadline
        would (Rule 7), and keep tracking it. For the owner's watchdog: when the task that feeds
        this reconciler dies, no caller may wait for ever."""
        for it in list(self._items.values()):
            if not it.reported_unverified:
                self._fire(it, _E.ANSWER_DEADLINE, None)

    def on_rest_error(self, query: QueryOrder, now_ns: int) -> None:
        """The read-back failed (network, rate limit, bad response): try again later."""
        it = self._items.get((query.request_id, query.index))
        if it is None:
            return
        it.query_outstanding_until_ns = None
        self._schedule_retry(it, now_ns)

    def tick(self, now_ns: int, wall_ms: int) -> None:
        """Fire due deadlines and emit due read-backs."""
        for it in list(self._items.values()):
            if it.state in _AWAITING_ACK and now_ns >= it.ack_deadline_ns:
                self._fire(it, _E.ACK_MISSING, None)
            if not it.reported_unverified and now_ns >= it.answer_deadline_ns:
                self._fire(it, _E.ANSWER_DEADLINE, None)
            if now_ns >= it.background_deadline_ns:
                self._fire(it, _E.BACKGROUND_DEADLINE, None)
            if it.state in _TERMINAL:
                continue
            if it.query_outstanding_until_ns is not None and now_ns >= it.query_outstanding_until_ns:
                it.query_outstanding_until_ns = None  # lost: ask again now
                it.query_due_ns = now_ns
            if (
                self._s.rest_fallback
                and it.state in _QUERYING
                and it.query_outstanding_until_ns is None
                and it.query_due_ns is not None
                and now_ns >= it.query_due_ns
            ):
                t = it.tracked
                self._effects.append(
                    QueryOrder(
                        category=t.category,
                        symbol=t.item.symbol,
                        order_id=it.order_id,
                        order_link_id=t.item.order_link_id,
                        request_id=it.request_id,
                        index=t.index,
                    )
                )
                it.queries_sent += 1
                it.query_due_ns = None
                it.query_outstanding_until_ns = now_ns + self._s.rest_query_timeout_ms * _NS_PER_MS

    # ---------------------------------------------------------------- Outputs

    def effects(self) -> list[Effect]:
        """Drain the effects to run (only `QueryOrder`; never a send)."""
        out, self._effects = self._effects, []
        return out

    def finished(self) -> list[ItemResult]:
        """Drain the verdicts reached since the last call, in the order they were reached."""
        out, self._finished = self._finished, []
        return out

    def expired(self) -> list[ExpiredItem]:
        """Drain the items whose tracking stopped without a verdict (Rule 7): still unverified."""
        out, self._expired = self._expired, []
        return out

    def pending_requests(self) -> set[str]:
        """Requests with at least one item not yet reported (the agent is still waiting)."""
        return {rid for rid, r in self._requests.items() if r.unanswered}

    def is_request_done(self, request_id: str) -> bool:
        """True when every item has been reported (a verdict, or `unverified` at the deadline)."""
        req = self._requests.get(request_id)
        return req is None or not req.unanswered

    def is_request_settled(self, request_id: str) -> bool:
        """True when nothing more will be reported for this request (no background tracking)."""
        return request_id not in self._requests

    def in_flight_count(self) -> int:
        """Items still tracked, including those reported `unverified` and still being looked at."""
        return len(self._items)

    def state_of(self, request_id: str, index: int) -> ItemState | None:
        """The state of a tracked item (None once it is no longer tracked)."""
        it = self._items.get((request_id, index))
        return it.state if it is not None else None

    def next_deadline_ns(self) -> int | None:
        """The earliest time `tick` has something to do (None when nothing is tracked)."""
        best: int | None = None
        for it in self._items.values():
            cands = [it.background_deadline_ns]
            if it.state in _AWAITING_ACK:
                cands.append(it.ack_deadline_ns)
            if not it.reported_unverified:
                cands.append(it.answer_deadline_ns)
            if it.query_outstanding_until_ns is not None:
                cands.append(it.query_outstanding_until_ns)
            elif self._s.rest_fallback and it.state in _QUERYING and it.query_due_ns is not None:
                cands.append(it.query_due_ns)
            m = min(cands)
            best = m if best is None else min(best, m)
        return best

    # ---------------------------------------------------------------- Internals

    def _matching(self, view: OrderView) -> list[_Item]:
        keys: set[tuple[str, int]] = set()
        if view.order_id:
            keys |= self._by_order_id.get((view.category, view.symbol, view.order_id), set())
        if view.order_link_id:
            keys |= self._by_link_id.get((view.category, view.symbol, view.order_link_id), set())
        items = [self._items[k] for k in keys if k in self._items]
        items.sort(key=lambda i: i.key)  # deterministic order of results
        return items

    @staticmethod
    def _same_order(it: _Item, view: OrderView) -> bool:
        t = it.tracked
        if view.category is not t.category or view.symbol != t.item.symbol:
            return False
        if it.order_id:
            return view.order_id == it.order_id
        return bool(t.item.order_link_id) and view.order_link_id == t.item.order_link_id

    @staticmethod
    def _contradicts(it: _Item, order_id: str, order_link_id: str) -> bool:
        if order_id and it.order_id and order_id != it.order_id:
            return True
        link = it.tracked.item.order_link_id
        return bool(order_link_id and link and order_link_id != link)

    def _observe(self, it: _Item, view: OrderView, source: str, wall_ms: int | None) -> None:
        """Classify a (new, non-stale) view into an event for this item, then fire it."""
        if view.is_terminal:
            it.closed_seen = True
        at_target = it.shows_target(view, self._s.skew_ms)
        event: ItemEvent | None = None
        if view.is_terminal:
            # Rule 6: a closed order proves the amend only if the change itself is visible, and not
            # when the engine killed it (a crossing PostOnly amend: Cancelled, PostOnlyWillTakeLiquidity).
            landed = at_target and it.target_differs_from_before() and not view.refused_by_engine
            event = _E.SAW_TARGET if landed else _E.SAW_CLOSED
        elif at_target:
            event = _E.SAW_TARGET
        elif (
            source == EVIDENCE_REST
            and wall_ms is not None
            and view.is_open
            and wall_ms > it.sent_ts_ms + it.recv_window_ms + self._s.not_applied_margin_ms
            and it.unchanged_since_before(view)
        ):
            event = _E.REST_UNCHANGED_LATE
        if event is not None:
            self._fire(it, event, (source, view))

    def _schedule_retry(self, it: _Item, now_ns: int) -> None:
        if it.state in _TERMINAL or it.query_outstanding_until_ns is not None:
            return
        s = self._s
        if it.reported_unverified:
            delay_ms = min(s.rest_retry_ms * (2**it.background_retries), max(s.rest_retry_max_ms, 1))
            it.background_retries += 1
        else:
            delay_ms = s.rest_retry_ms
        it.query_due_ns = now_ns + delay_ms * _NS_PER_MS

    def _fire(self, it: _Item, event: ItemEvent, seen: tuple[str, OrderView | None] | None) -> None:
        """Apply one event through `TRANSITIONS`; the only place an item's state changes."""
        nxt = TRANSITIONS.get((it.state, event))
        if nxt is None:
            return  # Rule 3
        prev, it.state = it.state, nxt
        if event is _E.ANSWER_DEADLINE:
            self._report_unverified(it)
        if nxt is _S.SENT_SEEN and prev is _S.SENT and seen is not None and seen[1] is not None:
            it.held = (seen[0], seen[1])
        outcome = _VERDICTS.get(nxt)
        if outcome is not None:
            if outcome is Outcome.VERIFIED and event not in (_E.SAW_TARGET,):
                # Verified by an ack (or its absence) on top of held target evidence (Rule 2).
                assert it.held is not None, "VERIFIED without held evidence: transition table bug"
                seen = it.held
            if seen is None:
                evidence, observed = EVIDENCE_ACK, it.last_view
            else:
                evidence, observed = seen[0], seen[1]
            self._emit(it, outcome, evidence, observed)
            self._forget(it)
        elif nxt is _S.EXPIRED:
            if not it.reported_unverified:
                self._report_unverified(it)
            t = it.tracked
            self._expired.append(
                ExpiredItem(
                    it.request_id, t.index, t.category, t.item.symbol, it.order_id, t.item.order_link_id
                )
            )
            self._forget(it)

    def _order_keys(self, it: _Item) -> set[tuple[str, int]]:
        """Keys of every tracked item indexed under this item's order (by orderId or link id)."""
        t = it.tracked
        keys: set[tuple[str, int]] = set()
        if it.order_id:
            keys |= self._by_order_id.get((t.category, t.item.symbol, it.order_id), set())
        if t.item.order_link_id:
            keys |= self._by_link_id.get((t.category, t.item.symbol, t.item.order_link_id), set())
        return keys

    @staticmethod
    def _mark_contested(it: _Item, others: Sequence[_Item]) -> None:
        """Rule 1(c): amends of one order from different requests overlap: none may be verified."""
        if others:
            it.contested = True
            for other in others:
                other.contested = True

    def _report_unverified(self, it: _Item) -> None:
        if it.reported_unverified:
            return
        it.reported_unverified = True
        self._emit(it, Outcome.UNVERIFIED, EVIDENCE_DEADLINE, it.last_view, late=False)

    def _emit(
        self, it: _Item, outcome: Outcome, evidence: str, observed: OrderView | None, late: bool | None = None
    ) -> None:
        self._finished.append(
            ItemResult(
                request_id=it.request_id,
                req_id=it.req_id,
                index=it.tracked.index,
                outcome=outcome,
                exchange_code=it.ack_code,
                exchange_msg=it.ack_msg,
                observed=observed,
                evidence=evidence,
                late=it.reported_unverified if late is None else late,
            )
        )
        self._requests[it.request_id].unanswered.discard(it.tracked.index)

    def _forget(self, it: _Item) -> None:
        key = it.key
        self._items.pop(key, None)
        t = it.tracked
        for index, ikey in (
            (self._by_order_id, (t.category, t.item.symbol, it.order_id or "")),
            (self._by_link_id, (t.category, t.item.symbol, t.item.order_link_id or "")),
        ):
            keys = index.get(ikey)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[ikey]
        req = self._requests[it.request_id]
        req.live.discard(t.index)
        if not req.live:
            del self._requests[it.request_id]
            self._by_req_id.pop(req.req_id, None)
