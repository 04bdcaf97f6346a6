"""Unit tests for core/inflight.py: one amend in flight per order (DESIGN.md §3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.inflight import InFlight, is_reread, reread_holder


def test_acquire_is_all_or_nothing() -> None:
    g = InFlight()
    assert g.try_acquire("r1", ["a", "b"]) == ()
    assert g.try_acquire("r2", ["c", "b"]) == ("b",)
    assert g.holder("c") is None  # nothing of r2's was taken
    assert g.holder("a") == g.holder("b") == "r1"
    assert g.try_acquire("r1", ["a"]) == ()  # the holder may name its own order again


def test_only_the_holder_releases() -> None:
    g = InFlight()
    g.try_acquire("r1", ["a"])
    assert not g.release("r2", "a")
    assert g.holder("a") == "r1"
    assert g.release("r1", "a")
    assert g.holder("a") is None and len(g) == 0
    assert not g.release("r1", "a")


def test_release_all_and_held_by() -> None:
    g = InFlight()
    g.try_acquire("r1", ["a", "b"])
    g.try_acquire("r2", ["c"])
    assert g.held_by("r1") == {"a", "b"}
    assert g.release_all("r1") == ("a", "b")
    assert g.held_by("r1") == frozenset() and g.holder("c") == "r2"


def test_an_expired_hold_moves_to_a_re_read_that_stays_busy() -> None:
    g = InFlight()
    g.try_acquire("r1", ["a"])
    assert g.move_to_reread("r1", "a")
    holder = g.holder("a")
    assert holder == reread_holder("a") and is_reread(holder)
    assert g.try_acquire("r2", ["a"]) == ("a",)
    assert not g.move_to_reread("r1", "a")  # r1 no longer holds it
    assert g.release(reread_holder("a"), "a")
    assert g.try_acquire("r2", ["a"]) == ()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["acquire", "release", "release_all", "reread"]),
            st.sampled_from(["r1", "r2", "r3"]),
            st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3),
        ),
        max_size=60,
    )
)
def test_no_order_ever_has_two_holders(ops: list[tuple[str, str, list[str]]]) -> None:
    """Stateful: whatever the interleaving, each order has at most one holder, and a holder only
    ever gains orders that were free (or its own)."""
    g = InFlight()
    model: dict[str, str] = {}
    for op, holder, orders in ops:
        if op == "acquire":
            free = all(model.get(o, holder) == holder for o in orders)
            busy = g.try_acquire(holder, orders)
            assert (busy == ()) is free
            if free:
                model.update(dict.fromkeys(orders, holder))
        elif op == "release":
            for o in orders:
                assert g.release(holder, o) is (model.get(o) == holder)
                if model.get(o) == holder:
                    del model[o]
        elif op == "release_all":
            g.release_all(holder)
            model = {o: h for o, h in model.items() if h != holder}
        else:
            for o in orders:
                moved = g.move_to_reread(holder, o)
                assert moved is (model.get(o) == holder)
                if moved:
                    model[o] = reread_holder(o)
        assert {o: g.holder(o) for o in "abcd" if g.holder(o)} == model
