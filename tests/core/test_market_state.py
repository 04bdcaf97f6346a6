"""MarketState: the quote and instrument rules the market adapter's events are applied by (pure)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.market_state import Connected, InstrumentsLoaded, MarketState, PongSeen, TickerSeen
from sidecar.core.types import Category, Instrument

BTC = (Category.LINEAR, "BTCUSDT")
ETH = (Category.LINEAR, "ETHUSDT")
SPOT = (Category.SPOT, "BTCUSDT")


def ticker(key: tuple[Category, str], at_ns: int, snapshot: bool = True, **values: str | None) -> TickerSeen:
    return TickerSeen(
        key[0], key[1], snapshot, {k: None if v is None else Decimal(v) for k, v in values.items()}, at_ns
    )


def test_a_snapshot_sets_the_quote_and_a_delta_merges_into_it() -> None:
    state = MarketState([BTC])
    state.apply(Connected(Category.LINEAR))
    made = state.apply(ticker(BTC, 10, mark="100", last="101", bid="99", ask="102"))
    assert [k for k, _ in made] == [BTC]
    state.apply(ticker(BTC, 20, snapshot=False, ask="103"))
    q = state.quote(*BTC)
    assert q is not None and (q.mark, q.last, q.bid, q.ask, q.received_ns) == (
        Decimal(100),
        Decimal(101),
        Decimal(99),
        Decimal(103),
        20,
    )


def test_a_blank_field_in_a_delta_clears_it() -> None:
    state = MarketState([BTC])
    state.apply(ticker(BTC, 10, mark="100", bid="99"))
    state.apply(ticker(BTC, 20, snapshot=False, bid=None))
    q = state.quote(*BTC)
    assert q is not None and q.bid is None and q.mark == Decimal(100)


def test_a_new_snapshot_replaces_every_field() -> None:
    state = MarketState([BTC])
    state.apply(ticker(BTC, 10, mark="100", bid="99"))
    state.apply(ticker(BTC, 20, mark="105"))
    q = state.quote(*BTC)
    assert q is not None and q.mark == Decimal(105) and q.bid is None


def test_unconfigured_symbols_and_categories_are_ignored() -> None:
    state = MarketState([BTC])
    assert state.apply(ticker(ETH, 10, mark="1")) == []
    assert state.apply(ticker(SPOT, 10, last="1")) == []
    assert state.quote(*ETH) is None and state.quote(*SPOT) is None
    assert state.apply(PongSeen(Category.SPOT, 50)) == []
    state.apply(Connected(Category.SPOT))  # no error for a category without symbols
    assert state.ages_ms(0) == {BTC: None}


def test_a_pong_vouches_only_for_quotes_snapshotted_on_the_current_connection() -> None:
    state = MarketState([BTC, ETH])
    state.apply(Connected(Category.LINEAR))
    state.apply(ticker(BTC, 10, mark="100"))
    state.apply(ticker(ETH, 10, snapshot=False, mark="5"))  # a delta before any snapshot
    vouched = state.apply(PongSeen(Category.LINEAR, 1_000_000_000))
    assert [k for k, _ in vouched] == [BTC]  # ETH never had a snapshot on this connection
    assert state.ages_ms(1_000_000_000) == {BTC: 0, ETH: 999}
    state.apply(Connected(Category.LINEAR))  # reconnect: nothing vouched until its own snapshot
    assert state.apply(PongSeen(Category.LINEAR, 2_000_000_000)) == []
    assert state.ages_ms(2_000_000_000)[BTC] == 1000


def test_a_reconnect_forgets_the_raw_fields_a_delta_would_merge_into() -> None:
    state = MarketState([BTC])
    state.apply(ticker(BTC, 10, mark="100", bid="99"))
    state.apply(Connected(Category.LINEAR))
    state.apply(ticker(BTC, 20, snapshot=False, ask="101"))  # the new connection's first frame
    q = state.quote(*BTC)
    assert q is not None and q.ask == Decimal(101) and q.mark is None and q.bid is None


def test_instruments_loaded_replace_the_ones_listed_and_keep_the_others() -> None:
    state = MarketState([BTC, ETH])
    btc = Instrument(
        Category.LINEAR, "BTCUSDT", Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal(100)
    )
    eth = Instrument(
        Category.LINEAR, "ETHUSDT", Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal(1000)
    )
    state.apply(InstrumentsLoaded({BTC: btc, ETH: eth}))
    btc2 = Instrument(
        Category.LINEAR, "BTCUSDT", Decimal("0.5"), Decimal("0.001"), Decimal("0.001"), Decimal(100)
    )
    state.apply(InstrumentsLoaded({BTC: btc2}))
    assert state.instrument(*BTC) == btc2 and state.instrument(*ETH) == eth


@given(st.lists(st.tuples(st.sampled_from(["tick", "pong", "connect"]), st.integers(0, 10**12)), max_size=40))
def test_a_quote_is_never_vouched_backwards(steps: list[tuple[str, int]]) -> None:
    """Whatever the order of frames, pongs and reconnects, a pong never makes a quote look older."""
    state = MarketState([BTC])
    for kind, at_ns in steps:
        before = state.quote(*BTC)
        if kind == "tick":
            state.apply(ticker(BTC, at_ns, mark="1"))
        elif kind == "pong":
            state.apply(PongSeen(Category.LINEAR, at_ns))
            after = state.quote(*BTC)
            if before is not None:
                assert after is not None and after.received_ns >= before.received_ns
        else:
            state.apply(Connected(Category.LINEAR))
            assert state.quote(*BTC) == before  # a reconnect keeps the quote (it ages)
