"""Stateful property test of the evidence rules (core/reconcile.py, Rules 1, 2 and 5) against a model
exchange: two or three requests amend ONE order, interleaved, while acks and pushes are lost,
delayed, duplicated and reordered, and the exchange refuses some requests (10006, 10001 unchanged).

The model is the ground truth: it knows which request's amend the exchange really applied. Every
verdict must agree with it: `verified` only for an applied amend, `not_applied` and `rejected` only
for one that was not. The sidecar's view of the order (what a new request is validated against) is
what it has seen: delivered pushes and REST read-backs, as the service's order book.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sidecar.core.reconcile import ItemResult, QueryOrder, Reconciler, ReconcileSettings, TrackedItem
from sidecar.core.types import Ack, AckItem, AmendItem, Category, CodeClass, OrderView, Outcome, Side

MS = 1_000_000
MONO0_NS = 7_000 * MS
WALL0_MS = 1_800_000_000_000
RECV_WINDOW_MS = 5000
SETTINGS = ReconcileSettings(verify_timeout_ms=5000, background_timeout_ms=30_000)
TARGETS = st.sampled_from(["101", "102", "103"])


@dataclass
class Req:
    request_id: str
    req_id: str
    target: Decimal
    sent_ms: int  # wall time on the request (the exchange refuses it after sent_ms + recv window)
    processed: bool = False
    applied: bool = False
    results: tuple[ItemResult, ...] = ()


def _view(price: Decimal, updated_ms: int, status: str = "New") -> OrderView:
    return OrderView(
        Category.LINEAR,
        "BTCUSDT",
        "o1",
        "l1",
        Side.BUY,
        price,
        Decimal(1),
        Decimal(1),
        Decimal(0),
        status,
        updated_ms,
    )


class OneOrderTwoRequests(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r = Reconciler(SETTINGS)
        self.now_ms = 0
        # The exchange (ground truth) and what the sidecar has seen of it.
        self.exchange = _view(Decimal(100), WALL0_MS - 60_000)
        self.seen = self.exchange
        self.reqs: dict[str, Req] = {}
        self.pushes: list[OrderView] = []  # in flight on the private stream (may arrive in any order)
        self.acks: list[Ack] = []  # in flight on the trade socket
        self.queries: list[QueryOrder] = []

    # ---------------------------------------------------------------- helpers

    @property
    def mono_ns(self) -> int:
        return MONO0_NS + self.now_ms * MS

    @property
    def wall_ms(self) -> int:
        return WALL0_MS + self.now_ms

    def drain(self) -> None:
        self.queries.extend(self.r.effects())
        for res in self.r.finished():
            req = self.reqs[res.request_id]
            req.results = (*req.results, res)
            event(f"{res.outcome.value} via {res.evidence}")
        self.r.expired()

    def see(self, view: OrderView) -> None:
        """The sidecar's order book: newer states replace older ones (core/orders.py rule 1)."""
        if view.updated_time_ms >= self.seen.updated_time_ms:
            self.seen = view

    def unprocessed(self) -> list[Req]:
        return [
            q for q in self.reqs.values() if not q.processed and self.wall_ms <= q.sent_ms + RECV_WINDOW_MS
        ]

    def change(self, **fields: Any) -> None:
        self.exchange = replace(
            self.exchange, updated_time_ms=max(self.exchange.updated_time_ms + 1, self.wall_ms), **fields
        )
        self.pushes.append(self.exchange)

    # ---------------------------------------------------------------- the sidecar sends

    @precondition(lambda self: len(self.reqs) < 3)
    @rule(price=TARGETS)
    def send(self, price: str) -> None:
        """A request validated against what the sidecar has seen (its `before`), then sent."""
        if Decimal(price) == self.seen.price:
            return  # NO_CHANGE: the validator never sends a no-op
        n = len(self.reqs)
        req = Req(f"r{n}", f"q{n}", Decimal(price), self.wall_ms)
        self.reqs[req.request_id] = req
        item = TrackedItem(
            0, Category.LINEAR, AmendItem("BTCUSDT", "o1", None, {"price": req.target}), self.seen
        )
        self.r.track(req.request_id, req.req_id, [item], req.sent_ms, RECV_WINDOW_MS, self.mono_ns)
        self.drain()

    # ---------------------------------------------------------------- the exchange

    @precondition(lambda self: bool(self.unprocessed()))
    @rule(data=st.data(), how=st.sampled_from(["apply", "apply", "apply", "rate_limit", "lose"]))
    def exchange_processes(self, data: st.DataObject, how: str) -> None:
        req = data.draw(st.sampled_from(self.unprocessed()))
        req.processed = True
        if how == "lose":
            return  # the frame never reached the exchange: no ack, nothing applied
        if self.exchange.is_terminal:
            code, cls, msg = 110008, CodeClass.ORDER_CLOSED, "order has been filled or cancelled"
        elif how == "rate_limit":
            code, cls, msg = 10006, CodeClass.RATE_LIMITED, "Too many visits!"
        elif self.exchange.price == req.target:
            code, cls, msg = 10001, CodeClass.REJECTED, "The order remains unchanged"
        else:
            code, cls, msg = 0, CodeClass.SUCCESS, "OK"
            req.applied = True
            self.change(price=req.target)
        self.acks.append(Ack(req.req_id, "order.amend", code, msg, cls, (AckItem(code, msg, cls, "o1"),)))

    @rule(now=st.integers(0, 7))
    def someone_else_cancels(self, now: int) -> None:
        if now == 0 and not self.exchange.is_terminal:  # rare: most runs keep the order open
            self.change(order_status="Cancelled")

    # ---------------------------------------------------------------- the wires

    @precondition(lambda self: bool(self.pushes))
    @rule(data=st.data(), fate=st.sampled_from(["deliver", "deliver", "deliver", "drop", "duplicate"]))
    def push(self, data: st.DataObject, fate: str) -> None:
        i = data.draw(st.integers(0, len(self.pushes) - 1))  # any order: delayed, reordered
        view = self.pushes[i] if fate == "duplicate" else self.pushes.pop(i)
        if fate != "drop":
            self.see(view)
            self.r.on_order_update(view, self.mono_ns)
            self.drain()

    @precondition(lambda self: bool(self.acks))
    @rule(data=st.data(), lost=st.booleans())
    def ack(self, data: st.DataObject, lost: bool) -> None:
        ack = self.acks.pop(data.draw(st.integers(0, len(self.acks) - 1)))
        if lost:
            self.r.on_ack_missing(ack.req_id, self.mono_ns)
        else:
            self.r.on_ack(ack, self.mono_ns)
        self.drain()

    @precondition(lambda self: bool(self.queries))
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def read_back(self, data: st.DataObject, ok: bool) -> None:
        q = self.queries.pop(data.draw(st.integers(0, len(self.queries) - 1)))
        if ok:
            self.see(self.exchange)
            self.r.on_rest_result(q, self.exchange, self.mono_ns, self.wall_ms)
        else:
            self.r.on_rest_error(q, self.mono_ns)
        self.drain()

    @rule(ms=st.sampled_from([10, 300, 1500, 3000, 6000]))
    def advance(self, ms: int) -> None:
        self.now_ms += ms
        for req in self.reqs.values():  # a frame not processed in its recv window never will be
            if not req.processed and self.wall_ms > req.sent_ms + RECV_WINDOW_MS:
                req.processed = True
                req.applied = False
        self.r.tick(self.mono_ns, self.wall_ms)
        self.drain()

    # ---------------------------------------------------------------- invariants (ground truth)

    @invariant()
    def every_verdict_agrees_with_what_the_exchange_did(self) -> None:
        for req in self.reqs.values():
            for res in req.results:
                if res.outcome is Outcome.VERIFIED:
                    assert req.applied, f"{req.request_id} verified on evidence it did not cause"
                    assert res.exchange_code in (None, 0, 20006)
                elif res.outcome in (Outcome.NOT_APPLIED, Outcome.REJECTED):
                    assert not req.applied, (
                        f"{req.request_id} {res.outcome.value} but the exchange applied it"
                    )
                elif res.outcome is Outcome.SUPERSEDED:
                    assert not req.applied or self.exchange.is_terminal

    @invariant()
    def a_refused_request_is_never_verified(self) -> None:
        for req in self.reqs.values():
            if any(r.exchange_code in (10006, 10001, 110008) for r in req.results):
                assert all(r.outcome is not Outcome.VERIFIED for r in req.results)

    def teardown(self) -> None:
        self.now_ms += SETTINGS.background_timeout_ms + RECV_WINDOW_MS + 1
        self.r.tick(self.mono_ns, self.wall_ms)
        self.drain()
        assert self.r.in_flight_count() == 0
        self.every_verdict_agrees_with_what_the_exchange_did()


OneOrderTwoRequests.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOneOrderTwoRequests = OneOrderTwoRequests.TestCase
