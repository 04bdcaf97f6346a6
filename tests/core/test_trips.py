"""The kill switch's automatic trip rules (core/trips.py), pure and on explicit times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.trips import SEVERITY, TripReason, TripRules, TripSettings, stricter
from sidecar.core.types import TradingState

S = 1_000_000_000
MS = 1_000_000
ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
UP = {"trade": True, "private": True}
FRESH: list[int | None] = []  # no symbols: the stale rule has nothing to judge


def rules(**kw: int) -> TripRules:
    return TripRules(TripSettings(**kw), started_ns=0)


def test_a_socket_trips_only_after_it_stayed_down_longer_than_the_limit() -> None:
    r = rules(socket_down_trip_s=30)
    down = {"trade": False, "private": True}
    assert r.check(100 * S, ACTIVE, down, FRESH) is None  # first sighting: the outage starts now
    assert r.check(130 * S, ACTIVE, down, FRESH) is None  # exactly the limit: not more than it
    trip = r.check(130 * S + 1, ACTIVE, down, FRESH)
    assert trip is not None and trip.reason is TripReason.SOCKET_DOWN and trip.state is HALTED
    assert trip.message == "trade socket down for more than 30 s"


def test_a_socket_that_came_back_starts_counting_again() -> None:
    r = rules(socket_down_trip_s=30)
    r.check(0, ACTIVE, {"trade": False}, FRESH)
    r.check(20 * S, ACTIVE, {"trade": True}, FRESH)
    assert r.check(25 * S, ACTIVE, {"trade": False}, FRESH) is None
    assert r.check(50 * S, ACTIVE, {"trade": False}, FRESH) is None  # 25 s of the new outage
    assert r.check(56 * S, ACTIVE, {"trade": False}, FRESH) is not None


def test_stale_references_trip_only_when_every_symbol_is_stale() -> None:
    r = rules(stale_reference_trip_ms=1000)
    now = 10 * S
    assert r.check(now, ACTIVE, UP, [now - 2000 * MS, now - 10 * MS]) is None  # one is fresh
    trip = r.check(now, ACTIVE, UP, [now - 2000 * MS, now - 1001 * MS])
    assert trip is not None and trip.reason is TripReason.STALE_REFERENCES
    assert trip.message == "reference prices stale for all symbols (> 1000 ms)"


def test_a_symbol_never_priced_counts_from_the_start() -> None:
    r = TripRules(TripSettings(stale_reference_trip_ms=1000), started_ns=5 * S)
    assert r.check(5 * S + 1000 * MS, ACTIVE, UP, [None]) is None
    assert r.check(5 * S + 1001 * MS, ACTIVE, UP, [None]) is not None


def test_unverified_results_trip_when_more_than_the_maximum_fall_in_the_window() -> None:
    r = rules(max_unverified=2, unverified_window_s=10)
    for t in (1, 2, 3):
        r.record("unverified", t * S)
    trip = r.check(3 * S, ACTIVE, UP, FRESH)
    assert trip is not None and trip.reason is TripReason.UNVERIFIED and trip.state is HALTED
    assert trip.message == "more than 2 requests with unverified items in 10 s"
    assert r.check(12 * S, ACTIVE, UP, FRESH) is None  # the first left the window


def test_bybit_rate_limits_move_an_active_sidecar_to_reducing_only() -> None:
    r = rules(max_exchange_rate_limited=1, rate_limited_window_s=60)
    r.record("rate_limited", 1 * S)
    r.record("rate_limited", 2 * S)
    trip = r.check(2 * S, ACTIVE, UP, FRESH)
    assert trip is not None and trip.reason is TripReason.EXCHANGE_RATE_LIMITED and trip.state is REDUCING
    assert r.check(2 * S, REDUCING, UP, FRESH) is None  # already reducing: nothing stricter to do
    assert r.check(2 * S, HALTED, UP, FRESH) is None


def test_counted_rules_are_the_accounts_with_shared_coordination() -> None:
    r = rules(max_unverified=0)
    r.record("unverified", 1)
    assert r.check(1, ACTIVE, UP, FRESH, count_here=False) is None
    trip = r.account_trip("unverified", 1, ACTIVE)
    assert trip is not None and trip.message.endswith("(counted over every sidecar on this account)")
    assert r.account_trip("unverified", 0, ACTIVE) is None
    assert r.account_trip("rate_limited", 99, REDUCING) is None


def test_rules_fire_in_their_documented_order() -> None:
    r = rules(socket_down_trip_s=0, stale_reference_trip_ms=0, max_unverified=0)
    r.record("unverified", 0)
    r.check(0, ACTIVE, {"trade": False}, [None])
    trip = r.check(1, ACTIVE, {"trade": False}, [None])
    assert trip is not None and trip.reason is TripReason.SOCKET_DOWN
    trip = r.check(2, ACTIVE, UP, [None])
    assert trip is not None and trip.reason is TripReason.STALE_REFERENCES
    trip = r.check(3, ACTIVE, UP, FRESH)
    assert trip is not None and trip.reason is TripReason.UNVERIFIED


@pytest.mark.parametrize("state", list(TradingState))
def test_nothing_trips_while_halted(state: TradingState) -> None:
    r = rules(socket_down_trip_s=0, stale_reference_trip_ms=0, max_unverified=0, max_exchange_rate_limited=0)
    r.record("unverified", 0)
    r.record("rate_limited", 0)
    r.check(0, state, {"trade": False}, [None])
    trip = r.check(1, state, {"trade": False}, [None])
    assert (trip is None) == (state is HALTED)


@given(st.sampled_from(list(TradingState)), st.sampled_from(list(TradingState)))
def test_stricter_follows_the_severity_scale(a: TradingState, b: TradingState) -> None:
    assert stricter(a, b) == (SEVERITY[a] > SEVERITY[b])
    assert not (stricter(a, b) and stricter(b, a))


@given(
    st.lists(st.tuples(st.integers(0, 100), st.booleans()), max_size=30), st.sampled_from(list(TradingState))
)
def test_a_trip_never_loosens_the_state(events: list[tuple[int, bool]], state: TradingState) -> None:
    r = rules(socket_down_trip_s=1, stale_reference_trip_ms=1, max_unverified=1, max_exchange_rate_limited=1)
    now = 0
    for dt_s, up in sorted(events):
        now = max(now, dt_s * S)
        r.record("unverified" if up else "rate_limited", now)
        trip = r.check(now, state, {"trade": up}, [0])
        if trip is not None:
            assert stricter(trip.state, state)
