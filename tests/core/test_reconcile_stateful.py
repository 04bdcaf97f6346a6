"""Stateful property test of core/reconcile.py: acks, pushes, read-backs, lost acks and time in any order.

The machine keeps its own record of everything it fed in, and checks the verdicts against that record
(an independent oracle), never against the reconciler's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sidecar.core.reconcile import (
    ItemResult,
    QueryOrder,
    Reconciler,
    ReconcileSettings,
    TrackedItem,
)
from sidecar.core.types import (
    Ack,
    AckItem,
    AmendItem,
    Category,
    CodeClass,
    OrderView,
    Outcome,
    Side,
)

MS = 1_000_000
MONO0_NS = 5_000 * MS
WALL0_MS = 1_700_000_000_000
RECV_WINDOW_MS = 5000
SETTINGS = ReconcileSettings()
ORDERS = ("o1", "o2", "o3")
BEFORE_PRICE = Decimal("100")
BEFORE_QTY = Decimal("1")
CODES = {
    CodeClass.SUCCESS: 0,
    CodeClass.REJECTED: 110003,
    CodeClass.ORDER_CLOSED: 110008,
    CodeClass.AMBIGUOUS: 20006,
    CodeClass.RATE_LIMITED: 10006,
    CodeClass.RECONNECT: 10016,
}
# Code 0 is the common case, and the one that must never end `not_applied`: weight it up.
ITEM_CLASSES = [CodeClass.SUCCESS, CodeClass.SUCCESS, *CODES]
ORDERS_ST = st.lists(st.sampled_from(ORDERS), min_size=1, max_size=3, unique=True)
PRICE_ST = st.sampled_from(["100", "101", "102"])
QTY_ST = st.sampled_from([None, "1", "2"])
AGE_ST = st.sampled_from([0, 1, 5000])
BOOL_ST = st.booleans()
DEFINITIVE = {Outcome.VERIFIED, Outcome.REJECTED, Outcome.SUPERSEDED, Outcome.NOT_APPLIED}


@dataclass
class Fed:
    """What the machine fed for one item."""

    tracked: TrackedItem
    sent_ts_ms: int
    answer_deadline_ns: int
    views: list[tuple[str, OrderView, int]] = field(default_factory=list)  # (source, view, wall_ms)
    ack_classes: list[CodeClass] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)


def _shows_target(f: Fed, v: OrderView) -> bool:
    t = f.tracked
    if v.category is not t.category or v.symbol != t.item.symbol or v.order_id != t.item.order_id:
        return False
    targets = t.item.targets()
    if not targets or any(v.value_of(k) != x for k, x in targets.items()):
        return False
    if t.before is not None:
        return v.updated_time_ms > t.before.updated_time_ms
    return v.updated_time_ms >= f.sent_ts_ms - SETTINGS.skew_ms


def _unchanged(f: Fed, v: OrderView) -> bool:
    b = f.tracked.before
    return (
        b is not None
        and v.is_open
        and all(v.value_of(k) == b.value_of(k) for k in f.tracked.item.targets())
        and any(b.value_of(k) != x for k, x in f.tracked.item.targets().items())
    )


class ReconcileMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r = Reconciler(SETTINGS)
        self.now_ms = 0
        self.fed: dict[tuple[str, int], Fed] = {}
        self.requests: list[tuple[str, str, list[tuple[str, int]]]] = []  # (request_id, req_id, keys)
        self.queries: list[QueryOrder] = []
        self.last_stream: OrderView | None = None
        self.exchange_ms = WALL0_MS - 10_000  # the venue's own updatedTime clock

    # ---------------------------------------------------------------- helpers

    @property
    def mono_ns(self) -> int:
        return MONO0_NS + self.now_ms * MS

    @property
    def wall_ms(self) -> int:
        return WALL0_MS + self.now_ms

    def drain(self) -> None:
        for e in self.r.effects():
            assert isinstance(e, QueryOrder), f"only read-backs, never a send: {e!r}"
            self.queries.append(e)
        for res in self.r.finished():
            self.fed[(res.request_id, res.index)].results.append(res)
            event(f"{res.outcome.value} via {res.evidence}{' (late)' if res.late else ''}")

    def live_keys(self) -> list[tuple[str, int]]:
        return [k for k, f in self.fed.items() if not any(x.outcome in DEFINITIVE for x in f.results)]

    def next_exchange_ms(self) -> int:
        self.exchange_ms = max(self.exchange_ms + 1, self.wall_ms)
        return self.exchange_ms

    # ---------------------------------------------------------------- rules

    @initialize(orders=ORDERS_ST, price=PRICE_ST, qty=QTY_ST, before_known=BOOL_ST, before_age_ms=AGE_ST)
    def first_request(
        self, orders: list[str], price: str, qty: str | None, before_known: bool, before_age_ms: int
    ) -> None:
        self.track(orders, price, qty, before_known, before_age_ms)

    @precondition(lambda self: len(self.requests) < 4)
    @rule(orders=ORDERS_ST, price=PRICE_ST, qty=QTY_ST, before_known=BOOL_ST, before_age_ms=AGE_ST)
    def track(
        self, orders: list[str], price: str, qty: str | None, before_known: bool, before_age_ms: int
    ) -> None:
        n = len(self.requests)
        request_id, req_id = f"r{n}", f"q{n}"
        values: dict[str, Decimal | str] = {"price": Decimal(price)}
        if qty is not None:
            values["qty"] = Decimal(qty)
        items: list[TrackedItem] = []
        for i, oid in enumerate(orders):
            before = None
            if before_known:
                before = OrderView(
                    Category.LINEAR,
                    "BTCUSDT",
                    oid,
                    "",
                    Side.BUY,
                    BEFORE_PRICE,
                    BEFORE_QTY,
                    BEFORE_QTY,
                    Decimal(0),
                    "New",
                    self.wall_ms - before_age_ms,
                )
            items.append(TrackedItem(i, Category.LINEAR, AmendItem("BTCUSDT", oid, None, values), before))
        self.r.track(request_id, req_id, items, self.wall_ms, RECV_WINDOW_MS, self.mono_ns)
        keys = []
        for t in items:
            self.fed[(request_id, t.index)] = Fed(
                t, self.wall_ms, self.mono_ns + SETTINGS.verify_timeout_ms * MS
            )
            keys.append((request_id, t.index))
        self.requests.append((request_id, req_id, keys))
        self.drain()

    @precondition(lambda self: bool(self.requests))
    @rule(
        data=st.data(),
        batch_code=st.sampled_from([None, None, CodeClass.REJECTED, CodeClass.RATE_LIMITED]),
    )
    def ack(self, data: st.DataObject, batch_code: CodeClass | None) -> None:
        _, req_id, keys = data.draw(st.sampled_from(self.requests))
        if batch_code is not None:
            classes = [batch_code] * len(keys)
            ack = Ack(req_id, "order.amend-batch", CODES[batch_code], "batch", batch_code, ())
        else:
            n = len(keys)
            classes = data.draw(st.lists(st.sampled_from(ITEM_CLASSES), min_size=n, max_size=n))
            items = tuple(AckItem(CODES[c], c.value, c) for c in classes)
            ack = Ack(req_id, "order.amend-batch", 0, "OK", CodeClass.SUCCESS, items)
        live = set(self.live_keys())
        for key, cls in zip(keys, classes, strict=True):
            if key in live:  # acks after the verdict cannot have caused it
                self.fed[key].ack_classes.append(cls)
        self.r.on_ack(ack, self.mono_ns)
        self.drain()

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data())
    def ack_missing(self, data: st.DataObject) -> None:
        _, req_id, _ = data.draw(st.sampled_from(self.requests))
        self.r.on_ack_missing(req_id, self.mono_ns)
        self.drain()

    def _feed_stream(self, v: OrderView) -> None:
        for f in self.fed.values():
            if f.tracked.item.order_id == v.order_id:
                f.views.append(("order_stream", v, self.wall_ms))
        self.last_stream = v
        self.r.on_order_update(v, self.mono_ns)
        self.drain()

    def _view_for(self, f: Fed, at_target: bool, status: str, updated_ms: int) -> OrderView:
        t = f.tracked
        price = t.item.price if at_target and t.item.price is not None else BEFORE_PRICE
        qty = t.item.qty if at_target and t.item.qty is not None else BEFORE_QTY
        oid = t.item.order_id or ""
        return OrderView(
            Category.LINEAR, "BTCUSDT", oid, "", Side.BUY, price, qty, qty, Decimal(0), status, updated_ms
        )

    @precondition(lambda self: bool(self.fed))
    @rule(
        data=st.data(),
        at_target=st.booleans(),
        status=st.sampled_from(["New", "New", "PartiallyFilled", "Filled", "Cancelled"]),
        timing=st.sampled_from(["now", "now", "before", "before_plus_1", "old"]),
    )
    def order_update(self, data: st.DataObject, at_target: bool, status: str, timing: str) -> None:
        f = self.fed[data.draw(st.sampled_from(sorted(self.fed)))]
        before_ms = f.tracked.before.updated_time_ms if f.tracked.before else f.sent_ts_ms
        updated = {
            "now": self.next_exchange_ms(),
            "before": before_ms,
            "before_plus_1": before_ms + 1,
            "old": f.sent_ts_ms - 3 * SETTINGS.skew_ms,
        }[timing]
        self._feed_stream(self._view_for(f, at_target, status, updated))

    @precondition(lambda self: self.last_stream is not None)
    @rule()
    def duplicate_update(self) -> None:
        assert self.last_stream is not None
        self._feed_stream(self.last_stream)

    @precondition(lambda self: self.last_stream is not None)
    @rule(price=st.sampled_from(["100", "101", "102"]))
    def stale_update(self, price: str) -> None:
        assert self.last_stream is not None
        v = self.last_stream
        self._feed_stream(replace(v, price=Decimal(price), updated_time_ms=v.updated_time_ms - 5))

    @precondition(lambda self: bool(self.queries))
    @rule(
        data=st.data(),
        kind=st.sampled_from(["target", "unchanged", "unchanged", "other", "closed", "not_found", "error"]),
    )
    def rest_result(self, data: st.DataObject, kind: str) -> None:
        q = self.queries.pop(data.draw(st.integers(0, len(self.queries) - 1)))
        f = self.fed[(q.request_id, q.index)]
        if kind == "error":
            self.r.on_rest_error(q, self.mono_ns)
            self.drain()
            return
        v: OrderView | None
        if kind == "not_found":
            v = None
        elif kind == "other":
            v = replace(self._view_for(f, False, "New", self.next_exchange_ms()), price=Decimal("99"))
        else:
            status = "Filled" if kind == "closed" else "New"
            v = self._view_for(f, kind == "target", status, self.next_exchange_ms())
        if v is not None:
            f.views.append(("rest", v, self.wall_ms))
        self.r.on_rest_result(q, v, self.mono_ns, self.wall_ms)
        self.drain()

    @rule(ms=st.sampled_from([1, 10, 100, 100, 500, 1000, 1500, 3000, 7000, 20_000]))
    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.r.tick(self.mono_ns, self.wall_ms)
        self.drain()
        for f in self.fed.values():
            if self.mono_ns >= f.answer_deadline_ns:
                assert f.results, "an item passed its answer deadline without any report"

    @rule()
    def tick_at_next_deadline(self) -> None:
        nd = self.r.next_deadline_ns()
        if nd is None:
            return
        assert nd >= MONO0_NS
        self.now_ms = max(self.now_ms, -(-(nd - MONO0_NS) // MS))
        self.r.tick(self.mono_ns, self.wall_ms)
        self.drain()

    # ---------------------------------------------------------------- invariants

    @invariant()
    def each_item_has_one_verdict_plus_at_most_one_late_upgrade(self) -> None:
        for f in self.fed.values():
            outcomes = [x.outcome for x in f.results]
            assert len(outcomes) <= 2
            if len(outcomes) == 2:
                assert outcomes[0] is Outcome.UNVERIFIED and outcomes[1] in DEFINITIVE
                assert not f.results[0].late and f.results[1].late
            elif outcomes:
                assert not f.results[0].late

    @invariant()
    def verified_only_with_fresh_matching_evidence_that_was_fed(self) -> None:
        for f in self.fed.values():
            for res in f.results:
                if res.outcome is not Outcome.VERIFIED:
                    continue
                assert res.evidence in ("order_stream", "rest")
                assert res.observed is not None and _shows_target(f, res.observed)
                assert any(src == res.evidence and v == res.observed for src, v, _ in f.views)
                # an ack, if one came first, said 0 or was ambiguous
                if f.ack_classes:
                    assert f.ack_classes[0] not in (CodeClass.REJECTED, CodeClass.ORDER_CLOSED)

    @invariant()
    def not_applied_only_from_a_late_unchanged_read_back(self) -> None:
        threshold_of = RECV_WINDOW_MS + SETTINGS.not_applied_margin_ms
        for f in self.fed.values():
            for res in f.results:
                if res.outcome is not Outcome.NOT_APPLIED:
                    continue
                assert res.evidence == "rest" and res.observed is not None
                assert any(
                    src == "rest" and v == res.observed and wall > f.sent_ts_ms + threshold_of
                    for src, v, wall in f.views
                )
                assert _unchanged(f, res.observed)
                assert CodeClass.SUCCESS not in f.ack_classes, "an acked amend is never not_applied"

    @invariant()
    def rejected_only_from_a_rejecting_ack(self) -> None:
        for f in self.fed.values():
            for res in f.results:
                if res.outcome is Outcome.REJECTED:
                    assert res.evidence == "ack" and CodeClass.REJECTED in f.ack_classes
                    assert res.exchange_code == CODES[CodeClass.REJECTED]

    @invariant()
    def superseded_only_from_a_closed_code_or_a_closed_order(self) -> None:
        for f in self.fed.values():
            for res in f.results:
                if res.outcome is Outcome.SUPERSEDED:
                    assert CodeClass.ORDER_CLOSED in f.ack_classes or any(
                        v.is_terminal for _, v, _ in f.views
                    )

    def teardown(self) -> None:
        # Run the clock past every deadline: everything ends reported, nothing stays tracked.
        self.now_ms += SETTINGS.background_timeout_ms + 1
        self.r.tick(self.mono_ns, self.wall_ms)
        self.drain()
        assert self.r.in_flight_count() == 0 and self.r.next_deadline_ns() is None
        assert self.r.pending_requests() == set()
        for f in self.fed.values():
            assert f.results


ReconcileMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestReconcileMachine = ReconcileMachine.TestCase
