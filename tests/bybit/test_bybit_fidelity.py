"""The client against Bybit's real behaviour (issue 11), on the real emulator over loopback.

Quiet tickers stay fresh while the subscription is provably alive and go stale when it is not; a
reconnect's pongs never vouch for an old quote; the option subscribe reply (no `op`) is recognised;
cursors go back verbatim; linear snapshots cover USDC contracts; closed orders are found in
order/history; the exchange clock follows Bybit's server time.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import structlog

from sidecar.bybit._ws import SocketTiming
from sidecar.bybit.codec import (
    DecodeError,
    PublicControl,
    TickerUpdate,
    decode_public,
    encode_amend,
    order_view_from_wire,
)
from sidecar.bybit.endpoints import resolve_endpoints
from sidecar.bybit.exchange_clock import ExchangeClock, sync_from_rest
from sidecar.bybit.market import MarketData, ping_interval_for
from sidecar.bybit.rest import RestClient, RestError
from sidecar.bybit.signing import canonical_query
from sidecar.bybit.ws_private import PrivateReady, PrivateStream
from sidecar.bybit.ws_trade import TradeConnection, TradeReady
from sidecar.clock import SystemClock
from sidecar.core.market_state import Connected, MarketState, PongSeen, TickerSeen
from sidecar.core.types import Ack, AmendItem, Category
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from sidecar.emulator.instruments import OPTION_SYMBOL
from sidecar.testing import FakeClock
from tests.bybit.bybit_live_helpers import (
    MarketWatch,
    OrderWatch,
    QuoteUpdate,
    fast_backoff,
    next_of,
    running,
)

MINUTE_MS = 60_000
BTC = (Category.LINEAR, "BTCUSDT")


def market(emu: Emulator, clock: Any, rest: RestClient, **kw: Any) -> tuple[MarketData, MarketWatch]:
    """The adapter on the emulator, its events applied to a `MarketState` as the service does."""
    symbols = kw.pop("symbols", [BTC])
    watch = MarketWatch(symbols)
    md = MarketData(
        resolve_endpoints("sim", exchange_url=emu.url),
        rest,
        symbols,
        clock,
        watch.emit,
        backoff_factory=fast_backoff,
        **kw,
    )
    return md, watch


@pytest.fixture
async def rest(emu: Emulator) -> AsyncIterator[RestClient]:
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock()) as r:
        yield r


# ------------------------------------------------------------------------------- quote freshness


def test_ping_interval_keeps_a_third_of_the_max_age() -> None:
    assert ping_interval_for(2000) == pytest.approx(2 / 3)
    assert ping_interval_for(300) == pytest.approx(0.1)
    assert ping_interval_for(1) == 0.1  # never a busy loop
    assert ping_interval_for(600_000) == 10.0  # never rarer than 10 s


async def test_a_frozen_market_stays_fresh_for_minutes_on_pongs_alone(
    emu: Emulator, rest: RestClient
) -> None:
    clock = FakeClock()
    md, watch = market(emu, clock, rest, timing=SocketTiming(ping_interval_s=0.05))
    events, state = watch.events, watch.state
    cs_before: int | None = None
    async with running(md.run()):
        first = await next_of(events, QuoteUpdate)
        cs_before = emu.hub.public._cs.get(("linear", "BTCUSDT"))
        for minute in range(1, 11):  # ten minutes of fake time, no ticker frame at all
            clock.advance_ms(MINUTE_MS)
            assert state.ages_ms(clock.monotonic_ns())[BTC] == MINUTE_MS  # nothing vouched yet
            now_ns = clock.monotonic_ns()

            def fresh(update: QuoteUpdate, since_ns: int = now_ns) -> bool:
                return update.quote.received_ns >= since_ns

            vouched = await next_of(events, QuoteUpdate, fresh)
            assert state.ages_ms(clock.monotonic_ns())[BTC] == 0, minute
            assert (vouched.quote.mark, vouched.quote.last) == (first.quote.mark, first.quote.last)
    assert emu.hub.public._cs.get(("linear", "BTCUSDT")) == cs_before  # the emulator published nothing


async def test_a_silent_feed_ages_and_recovers_after_the_stall(emu: Emulator, rest: RestClient) -> None:
    clock = FakeClock()
    md, watch = market(emu, clock, rest, timing=SocketTiming(ping_interval_s=0.05, pong_timeout_s=0.3))
    events, state = watch.events, watch.state
    async with running(md.run()):
        await next_of(events, QuoteUpdate)
        emu.hub.public_connected.clear()
        emu.add_faults([{"kind": "stall_public", "ms": 60_000}])  # silent from here on
        clock.advance_ms(5000)  # every ping from now on is sent at T + 5 s
        # The heartbeat notices (no pong) and reconnects; the new socket is silent too.
        async with asyncio.timeout(5):
            await emu.hub.public_connected.wait()
        assert events.empty()  # no frame and no pong vouched for the quote during the stall
        assert state.ages_ms(clock.monotonic_ns())[BTC] == 5000  # it aged: validation denies it
        emu.clear_faults()  # the path comes back: the held reply and snapshot arrive
        recovered = await next_of(events, QuoteUpdate, lambda u: u.quote.received_ns == clock.monotonic_ns())
        assert recovered.symbol == "BTCUSDT"
        assert state.ages_ms(clock.monotonic_ns())[BTC] == 0


def _ticker(kind: str, **data: str) -> str:
    return json.dumps(
        {"topic": "tickers.BTCUSDT", "type": kind, "data": {"symbol": "BTCUSDT", **data}, "cs": 1, "ts": 1}
    )


PONG = json.dumps({"success": True, "ret_msg": "pong", "conn_id": "c", "req_id": "", "op": "ping"})


def _seen(text: str, clock: FakeClock) -> TickerSeen:
    """A ticker frame as the adapter reports it (decoded, stamped with its arrival)."""
    u = decode_public(text)
    assert isinstance(u, TickerUpdate)
    return TickerSeen(Category.LINEAR, u.symbol, u.snapshot, u.values, clock.monotonic_ns())


def test_a_reconnects_pongs_never_vouch_for_a_quote_from_before() -> None:
    """Changes may have been missed between two connections: only the new snapshot counts."""
    clock = FakeClock()
    state = MarketState([BTC])
    state.apply(Connected(Category.LINEAR))
    state.apply(_seen(_ticker("snapshot", markPrice="100", lastPrice="100"), clock))
    clock.advance_ms(1000)
    state.apply(PongSeen(Category.LINEAR, clock.monotonic_ns()))
    assert state.ages_ms(clock.monotonic_ns())[BTC] == 0  # same connection: vouched
    state.apply(Connected(Category.LINEAR))  # reconnect
    clock.advance_ms(1000)
    state.apply(PongSeen(Category.LINEAR, clock.monotonic_ns()))
    assert state.ages_ms(clock.monotonic_ns())[BTC] == 1000  # not vouched by the new connection
    state.apply(_seen(_ticker("snapshot", markPrice="101", lastPrice="101"), clock))
    clock.advance_ms(500)
    state.apply(PongSeen(Category.LINEAR, clock.monotonic_ns()))
    assert state.ages_ms(clock.monotonic_ns())[BTC] == 0
    q = state.quote(*BTC)
    assert q is not None and q.mark == Decimal(101)


def test_a_delta_without_mark_keeps_the_mark() -> None:
    """The real frames of ccxt#21451 (a delta with only ask1Price/ask1Size), decoded and applied."""
    clock = FakeClock()
    state = MarketState([BTC])
    state.apply(Connected(Category.LINEAR))
    state.apply(
        _seen(_ticker("snapshot", markPrice="0.13946", lastPrice="0.13947", ask1Price="0.13942"), clock)
    )
    state.apply(_seen(_ticker("delta", ask1Price="0.13941", ask1Size="3691"), clock))
    q = state.quote(*BTC)
    assert q is not None and (q.mark, q.last, q.ask) == (
        Decimal("0.13946"),
        Decimal("0.13947"),
        Decimal("0.13941"),
    )


async def test_option_subscribe_reply_is_recognised_and_the_socket_stays(
    emu: Emulator, rest: RestClient
) -> None:
    """The option reply has no `op`; before issue 11 the session waited for one and reconnected."""
    opt = (Category.OPTION, OPTION_SYMBOL)
    md, watch = market(
        emu,
        SystemClock(),
        rest,
        symbols=[opt],
        timing=SocketTiming(reply_timeout_s=0.3, ping_interval_s=0.05),
    )
    events = watch.events
    async with running(md.run()):
        snap = await next_of(events, QuoteUpdate)
        assert snap.quote.bid is not None and snap.quote.ask is not None and snap.quote.mark == Decimal(2500)
        for _ in range(12):  # > 0.5 s of answered pings: longer than the subscribe timeout
            await next_of(events, QuoteUpdate)
    assert emu.hub.public_connects == 1  # one connection, never re-opened


def test_decoding_option_frames() -> None:
    reply = decode_public(
        '{"success":true,"conn_id":"x","data":{"failTopics":[],"successTopics":["tickers.A"]},"type":"COMMAND_RESP"}'
    )
    assert reply == PublicControl(op="subscribe", success=True, ret_msg="", conn_id="x")
    failed = decode_public(
        '{"success":true,"data":{"failTopics":["tickers.B"],"successTopics":[]},"type":"COMMAND_RESP"}'
    )
    assert isinstance(failed, PublicControl) and not failed.success and "tickers.B" in failed.ret_msg
    pong = decode_public('{"args":["1672916271846"],"op":"pong"}')
    assert isinstance(pong, PublicControl) and pong.op == "pong"
    tick = decode_public(
        '{"id":"t","topic":"tickers.X","ts":1,"type":"snapshot","data":{"symbol":"X","bidPrice":"5","askPrice":"10","markPrice":"7.5"}}'
    )
    assert isinstance(tick, TickerUpdate) and tick.values == {"bid": 5, "ask": 10, "mark": Decimal("7.5")}
    with pytest.raises(DecodeError):
        decode_public('{"topic":"tickers.X","data":{"symbol":"X","bidPrice":"x"}}')


def test_reject_reason_is_decoded() -> None:
    row = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderId": "o",
        "orderStatus": "Cancelled",
        "updatedTime": "1",
        "price": "1",
        "qty": "1",
        "rejectReason": "EC_PostOnlyWillTakeLiquidity",
    }
    view = order_view_from_wire(row)
    assert view.reject_reason == "EC_PostOnlyWillTakeLiquidity" and view.refused_by_engine
    assert not order_view_from_wire({**row, "rejectReason": "EC_NoError"}).refused_by_engine


# ------------------------------------------------------------------------------- REST


def test_a_cursor_goes_back_verbatim() -> None:
    # ccxt's captured fixture (CCXT-FIX): "{orderId}%3A{createdTime}%2C{orderId}%3A{createdTime}"
    oid = "3606515b-e4d7-4ea4-b096-bb247d0661ae"
    cursor = f"{oid}%3A1758189775648%2C{oid}%3A1758189775648"
    q = canonical_query({"category": "linear", "cursor": cursor, "limit": "50"})
    assert q == f"category=linear&cursor={cursor}&limit=50"  # not %253A
    assert canonical_query({"cursor": "a b&c"}) == "cursor=a%20b%26c"  # unsafe characters still escaped
    assert canonical_query({"orderLinkId": "a%b"}) == "orderLinkId=a%25b"  # other values: encoded


async def test_120_open_orders_page_by_cursor_and_usdc_contracts_are_listed(
    emu: Emulator, rest: RestClient
) -> None:
    placed = {
        emu.place_order("linear", "ETHUSDT", "Buy", "0.01", f"{3000 + i}.00")["orderId"] for i in range(120)
    }
    usdc = emu.place_order("linear", "BTCPERP", "Buy", "0.001", "60000.00")["orderId"]
    views = await rest.open_orders(Category.LINEAR)
    assert {v.order_id for v in views} == placed | {usdc}
    assert len(views) == 121
    pages = [f for f in emu.hub.desk.frames() if f["path"] != "/v5/trade"]  # REST is not captured
    assert pages == []


async def test_a_closed_order_is_found_in_history_once_realtime_forgot_it(
    emu: Emulator, rest: RestClient
) -> None:
    order = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000", order_link_id="gone-1")
    emu.fill_order(order["orderId"])
    emu.set_realtime_retention(0)  # as after a Bybit release
    view = await rest.get_order(Category.LINEAR, "BTCUSDT", order["orderId"])
    assert view is not None and view.order_status == "Filled"
    by_link = await rest.get_order(Category.LINEAR, "BTCUSDT", order_link_id="gone-1")
    assert by_link is not None and by_link.order_id == order["orderId"]
    assert await rest.get_order(Category.LINEAR, "BTCUSDT", "no-such-order") is None


async def test_the_private_snapshot_finds_an_order_that_closed_out_of_sight(
    emu: Emulator, rest: RestClient
) -> None:
    order = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000")
    watch = OrderWatch()
    book, events = watch.book, watch.events
    stream = PrivateStream(
        f"{emu.ws_url}/v5/private", DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock(), book.open_orders,
        rest, [Category.LINEAR], watch.emit, backoff=fast_backoff(),
    )  # fmt: skip
    async with running(stream.run()):
        await next_of(events, PrivateReady)
        emu.set_realtime_retention(0)
        emu.add_faults([{"kind": "drop_order_events", "count": 10}])  # the fill is never pushed
        emu.fill_order(order["orderId"])
        for conn in list(emu.hub.conns):
            if conn.kind == "private":
                conn.abort()
        await next_of(events, PrivateReady)
    held = book.find(Category.LINEAR, "BTCUSDT", order["orderId"], None)
    assert held is not None and held.order_status == "Filled"  # no ghost "open" order


# ------------------------------------------------------------------------------- exchange clock


def test_exchange_clock_anchors_server_time_to_the_monotonic_clock() -> None:
    clock = FakeClock(monotonic_ns=10_000_000_000, wall_ms=1_700_000_000_000)
    xc = ExchangeClock(clock)
    assert xc.wall_ms() == clock.wall_ms() and xc.offset_ms == 0 and not xc.synced
    sent = clock.monotonic_ns()
    clock.advance_ms(100)  # a 100 ms round trip; the server stamped its time at the middle
    xc.observe(1_700_000_000_050 - 2500, sent)
    assert xc.wall_ms() == clock.wall_ms() - 2500 and xc.offset_ms == -2500
    clock._wall_ms += 3_600_000  # the host's wall clock jumps an hour: Bybit's time does not
    assert xc.wall_ms() == 1_700_000_000_100 - 2500
    assert xc.sample_age_ms() == 0
    clock.advance_ms(40)
    assert xc.sample_age_ms() == 40


def test_exchange_clock_takes_the_median_and_ignores_nonsense() -> None:
    clock = FakeClock()
    xc = ExchangeClock(clock, samples=3)
    for offset in (-1000, -1000, 5000):  # one outlier
        xc.observe(clock.wall_ms() + offset, clock.monotonic_ns())
    assert xc.offset_ms == -1000
    xc.observe(0, clock.monotonic_ns())  # not a time
    xc.observe(clock.wall_ms(), clock.monotonic_ns() + 1)  # a reply before its request
    assert xc.offset_ms == -1000


def test_a_large_offset_is_logged_once() -> None:
    clock = FakeClock()
    xc = ExchangeClock(clock, warn_above_ms=500)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            xc.observe(clock.wall_ms() - 2500, clock.monotonic_ns())
        for _ in range(7):
            xc.observe(clock.wall_ms(), clock.monotonic_ns())
    events = [e["event"] for e in logs if e["event"].startswith("exchange_clock")]
    assert events == ["exchange_clock.skew", "exchange_clock.skew_cleared"]
    assert next(e for e in logs if e["event"] == "exchange_clock.skew")["offset_ms"] == -2500


async def test_rest_and_sockets_measure_an_exchange_2500_ms_behind(emu: Emulator) -> None:
    emu.set_clock_offset(-2500)
    xc = ExchangeClock(SystemClock())
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock()) as host_clocked:
        with pytest.raises(RestError) as refused:
            await host_clocked.open_orders(Category.LINEAR, "BTCUSDT")
        assert refused.value.ret_code == 10002  # signed on the host's clock: too far ahead
    async with RestClient(emu.url, DEFAULT_API_KEY, DEFAULT_API_SECRET, xc) as rest:
        assert await sync_from_rest(xc, rest)
        assert abs(xc.offset_ms + 2500) < 150
        assert await rest.open_orders(Category.LINEAR, "BTCUSDT") == []  # signed on Bybit's clock
    events: asyncio.Queue[Any] = asyncio.Queue()
    trade_clock = xc  # synced from /v5/market/time, as the service does at start
    trade = TradeConnection(
        f"{emu.ws_url}/v5/trade", DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock(), events,
        timing=SocketTiming(ping_interval_s=0.05), exchange_clock=trade_clock,
    )  # fmt: skip
    order = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000")
    item = AmendItem("BTCUSDT", order["orderId"], None, {"price": Decimal("64100")})
    async with running(trade.run()):
        await next_of(events, TradeReady)
        await trade.send("xc-1", encode_amend("xc-1", Category.LINEAR, item, trade_clock.wall_ms(), 5000))
        ack = await next_of(events, Ack)
    assert (
        ack.ret_code == 0
    )  # timestamped on Bybit's clock (the pong before it, or `expires`, did not matter)
    assert trade.exchange_clock.synced
    assert abs(trade.exchange_clock.offset_ms + 2500) < 150


async def test_an_unreachable_exchange_ends_the_clock_sync_at_the_first_failure() -> None:
    """Start-up asks for the server time first: a silent host must not cost three timeouts."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        loop = asyncio.get_running_loop()
        async with RestClient(url, DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock(), timeout_s=0.3) as rest:
            started = loop.time()
            assert await sync_from_rest(ExchangeClock(SystemClock()), rest) is False
            assert loop.time() - started < 0.6  # one timeout, not three (0.9 s)
