"""The pure exchange model: unit checks and a property test of book consistency (hypothesis)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.emulator.faults import FaultPlan
from sidecar.emulator.model import Exchange
from sidecar.emulator.orders import TERMINAL_STATUSES
from sidecar.emulator.ratelimit import RateLimiter

T0 = 1_800_000_000_000


def test_seed_makes_walk_and_ids_repeatable() -> None:
    def run(seed: int) -> tuple[list[str], str]:
        ex = Exchange(seed=seed)
        lasts = []
        for i in range(30):
            ex.tick(T0 + 100 * i)
            q = ex.market.quote("linear", "BTCUSDT")
            assert q is not None
            lasts.append(str(q.last))
        return lasts, ex.new_id()

    assert run(7) == run(7)
    assert run(7) != run(8)
    lasts, _ = run(7)
    assert len(set(lasts)) > 1


def test_frozen_price_does_not_walk() -> None:
    ex = Exchange(seed=1)
    ex.set_price("linear", "SOLUSDT", T0, last=Decimal("181.000"), mark=Decimal("181.010"))
    for i in range(20):
        ex.tick(T0 + 100 * i)
    q = ex.market.quote("linear", "SOLUSDT")
    assert q is not None and (q.last, q.mark) == (Decimal("181.000"), Decimal("181.010"))


def test_updated_time_bumps_when_clock_stands_still() -> None:
    ex = Exchange(seed=1)
    item = {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.010", "price": "90000.00"}
    r = ex.create("linear", item, T0)
    assert r.order is not None
    for i in range(5):
        price = f"{90000 + i + 1}.00"
        assert ex.amend("linear", {"symbol": "BTCUSDT", "orderId": r.order.order_id, "price": price}, T0).ok
    pushes = [e.data["updatedTime"] for e in ex.drain() if e.topic == "order"]
    assert [int(t) for t in pushes] == [T0 + i for i in range(6)]


def test_rate_limiter_rolls_and_grants_partially() -> None:
    rl = RateLimiter()
    assert rl.admit("u", "order.amend-batch", "linear", 7, T0).granted == 7
    adm = rl.admit("u", "order.amend-batch", "inverse", 7, T0 + 10)  # inverse shares linear's budget
    assert (adm.granted, adm.remaining, adm.reset_ms) == (3, 0, T0 + 1000)
    assert rl.admit("u", "order.amend-batch", "spot", 20, T0 + 10).granted == 20  # spot has its own
    assert rl.admit("u", "order.amend-batch", "linear", 1, T0 + 999).granted == 0
    assert rl.admit("u", "order.amend-batch", "linear", 10, T0 + 1000).granted == 7
    assert rl.admit("other", "order.amend-batch", "linear", 10, T0 + 1000).granted == 10


def test_fault_plan_counts_and_filters() -> None:
    plan = FaultPlan()
    plan.add([{"kind": "reject", "code": 10016, "count": 2, "op": "order.amend"}])
    assert plan.take("reject", op="order.create") is None
    first = plan.take("reject", op="order.amend")
    assert first is not None and first.code == 10016 and first.count == 1
    assert plan.take("reject", op="order.amend") is not None
    assert plan.take("reject", op="order.amend") is None


# ------------------------------------------------------------------------------- property test

_SYMBOLS = [
    ("linear", "BTCUSDT", Decimal("95000")),
    ("linear", "SOLUSDT", Decimal("180")),
    ("spot", "BTCUSDT", Decimal("95000")),
]

_pct = st.integers(-300, 300)  # basis points away from the reference price
_op = st.one_of(
    st.tuples(
        st.just("create"),
        st.integers(0, 2),
        st.sampled_from(["Buy", "Sell"]),
        _pct,
        st.integers(1, 50),
        st.booleans(),
    ),
    st.tuples(st.just("amend"), st.integers(0, 40), _pct, st.integers(0, 60)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("fill"), st.integers(0, 40), st.integers(0, 10)),
    st.tuples(st.just("price"), st.integers(0, 2), _pct),
    st.tuples(st.just("tick"), st.integers(0, 5)),
)


def _check_book(ex: Exchange, seen_updated: dict[str, int], terminal: dict[str, dict[str, Any]]) -> None:
    for oid, order in ex.orders.items():
        assert order.cum_exec_qty >= 0 and order.cum_exec_qty <= order.qty
        assert order.leaves_qty >= 0
        if order.is_open:
            assert order.leaves_qty == order.qty - order.cum_exec_qty
        else:
            assert order.leaves_qty == 0
        assert order.updated_ms >= seen_updated.get(oid, 0)
        seen_updated[oid] = order.updated_ms
        if oid in terminal:
            assert order.to_wire() == terminal[oid]  # terminal states are absorbing
        elif order.status in TERMINAL_STATUSES:
            terminal[oid] = order.to_wire()
    for ev in ex.drain():
        if ev.topic == "order":
            wire = ev.data
            assert int(wire["updatedTime"]) >= int(wire["createdTime"])
            assert Decimal(wire["cumExecQty"]) <= Decimal(wire["qty"])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**16), ops=st.lists(_op, max_size=40))
def test_random_sequences_keep_the_book_consistent(seed: int, ops: list[tuple[Any, ...]]) -> None:
    ex = Exchange(seed=seed, partial_fill_pct=50)
    now = T0
    ids: list[str] = []
    seen: dict[str, int] = {}
    terminal: dict[str, dict[str, Any]] = {}
    for op in ops:
        now += 7
        kind = op[0]
        if kind == "create":
            cat, sym, ref = _SYMBOLS[op[1]]
            inst = ex.instrument(cat, sym)
            assert inst is not None
            price = inst.round_price(ref * (1 + Decimal(op[3]) / 10_000))
            qty = inst.min_qty * op[4] if cat == "linear" else Decimal("0.000100") * op[4]
            item = {
                "symbol": sym,
                "side": op[2],
                "orderType": "Limit" if op[5] else "Market",
                "qty": inst.fmt_qty(qty),
                "price": inst.fmt_price(price),
            }
            result = ex.create(cat, item, now)
            if result.order is not None:
                ids.append(result.order.order_id)
        elif kind in ("amend", "cancel", "fill") and ids:
            order = ex.orders[ids[op[1] % len(ids)]]
            base = {"symbol": order.symbol, "orderId": order.order_id}
            if kind == "amend":
                price = order.inst.round_price(order.price * (1 + Decimal(op[2]) / 10_000))
                fields = {"price": order.inst.fmt_price(price)}
                if op[3]:
                    fields["qty"] = order.inst.fmt_qty(order.inst.min_qty * op[3])
                ex.amend(order.category, {**base, **fields}, now)
            elif kind == "cancel":
                ex.cancel(order.category, base, now)
            else:
                ex.fill_now(order, now, None if op[2] == 0 else order.inst.step * op[2])
        elif kind == "price":
            cat, sym, ref = _SYMBOLS[op[1]]
            inst = ex.instrument(cat, sym)
            assert inst is not None
            last = inst.round_price(ref * (1 + Decimal(op[2]) / 10_000))
            ex.set_price(cat, sym, now, last=last, mark=last, freeze=bool(op[2] % 2))
        elif kind == "tick":
            for _ in range(op[1]):
                now += 100
                ex.tick(now)
        _check_book(ex, seen, terminal)
