"""TradeConnection against the real emulator: auth gate, acks, heartbeat, faults, no resend."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any

import pytest
import structlog

from sidecar.bybit._ws import SocketTiming
from sidecar.bybit.codec import TradeError, encode_amend, encode_amend_batch
from sidecar.bybit.ws_trade import AckTimeout, ConnectionLost, NotConnected, TradeConnection, TradeReady
from sidecar.clock import SystemClock
from sidecar.core.types import Ack, AmendItem, Category, CodeClass
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from tests.bybit.bybit_live_helpers import assert_quiet, fast_backoff, next_of, running

Events = asyncio.Queue[Any]


def make_conn(emu: Emulator, events: Events, secret: str = DEFAULT_API_SECRET, **kw: Any) -> TradeConnection:
    return TradeConnection(
        f"{emu.ws_url}/v5/trade",
        DEFAULT_API_KEY,
        secret,
        SystemClock(),
        events,
        backoff=fast_backoff(),
        **kw,
    )


def rest_two(emu: Emulator) -> tuple[str, str]:
    a = emu.place_order("linear", "BTCUSDT", "Buy", "0.01", "64000", order_link_id="L-a")
    b = emu.place_order("linear", "BTCUSDT", "Buy", "0.02", "63000", order_link_id="L-b")
    return a["orderId"], b["orderId"]


def batch(req_id: str, *items: AmendItem) -> str:
    return encode_amend_batch(req_id, Category.LINEAR, items, SystemClock().wall_ms(), 5000)


def price_item(order_id: str, price: int) -> AmendItem:
    return AmendItem("BTCUSDT", order_id, None, {"price": Decimal(price)})


def order_frames(emu: Emulator, req_id: str | None = None) -> list[dict[str, Any]]:
    return [
        f
        for f in emu.frames()
        if isinstance(f.get("op"), str)
        and f["op"].startswith("order.")
        and (req_id is None or f.get("reqId") == req_id)
    ]


async def test_auth_then_amend_batch_gets_per_item_codes(emu: Emulator) -> None:
    oid_a, _ = rest_two(emu)
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events)
    async with running(conn.run()):
        ready = await next_of(events, TradeReady)
        assert conn.ready and ready.conn_id
        frame = batch(
            "sc-test-1",
            AmendItem("BTCUSDT", oid_a, None, {"price": Decimal("64100")}),
            AmendItem("BTCUSDT", None, "L-b", {"qty": Decimal("0.030")}),
            AmendItem("BTCUSDT", "no-such-order", None, {"price": Decimal("64100")}),
        )
        await conn.send("sc-test-1", frame, items=3)
        ack = await next_of(events, Ack)
    assert ack.req_id == "sc-test-1" and ack.op == "order.amend-batch" and ack.ret_code == 0
    assert [i.cls for i in ack.items] == [CodeClass.SUCCESS, CodeClass.SUCCESS, CodeClass.AMBIGUOUS]
    assert ack.items[0].order_id == oid_a
    assert ack.items[1].order_link_id == "L-b"
    assert ack.items[2].code == 110001
    assert ack.limit is not None and ack.limit_status is not None and ack.server_time_ms is not None
    assert conn.exchange_clock.synced  # the ack's server time fed the exchange clock
    assert conn.pending_req_ids == ()
    # The wire saw auth first, then exactly one order frame.
    ops = [f["op"] for f in emu.frames() if f.get("op") != "ping"]
    assert ops == ["auth", "order.amend-batch"]


async def test_single_amend_ack(emu: Emulator) -> None:
    oid_a, _ = rest_two(emu)
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events)
    async with running(conn.run()):
        await conn.wait_ready()
        item = AmendItem("BTCUSDT", oid_a, None, {"price": Decimal("64200.0")})
        await conn.send(
            "sc-one", encode_amend("sc-one", Category.LINEAR, item, SystemClock().wall_ms(), 5000)
        )
        ack = await next_of(events, Ack)
    assert ack.op == "order.amend" and [(i.code, i.order_id) for i in ack.items] == [(0, oid_a)]


async def test_nothing_is_sent_before_auth(emu: Emulator) -> None:
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events)
    with pytest.raises(NotConnected):
        await conn.send("sc-early", batch("sc-early", AmendItem("BTCUSDT", "x", None, {"price": Decimal(1)})))
    assert order_frames(emu) == []


async def test_wrong_secret_never_becomes_ready(emu: Emulator) -> None:
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events, secret="wrong-secret")
    async with running(conn.run()):
        err = await next_of(events, TradeError)
        assert err.op == "auth" and err.ret_code == 10004
        assert not conn.ready
        with pytest.raises(NotConnected):
            await conn.send("sc-x", batch("sc-x", AmendItem("BTCUSDT", "x", None, {"price": Decimal(1)})))
        # It keeps retrying auth (with backoff), and never sends an order op.
        await next_of(events, TradeError)
    assert order_frames(emu) == []
    assert all("wrong-secret" not in str(f) for f in emu.frames())


async def test_ping_keeps_the_connection_alive(emu: Emulator) -> None:
    oid_a, _ = rest_two(emu)
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events, timing=SocketTiming(ping_interval_s=0.05, pong_timeout_s=0.5))
    async with running(conn.run()):
        await next_of(events, TradeReady)
        await assert_quiet(events, ConnectionLost, 0.6)
        assert conn.ready
        pings = [f for f in emu.frames() if f.get("op") == "ping"]
        assert len(pings) >= 4
        await conn.send("sc-alive", batch("sc-alive", price_item(oid_a, 64001)))
        ack = await next_of(events, Ack)
    assert ack.req_id == "sc-alive"
    # Only one connection was ever authenticated.
    assert sum(1 for f in emu.frames() if f.get("op") == "auth") == 1


async def test_disconnect_reports_pending_and_never_resends(emu: Emulator) -> None:
    oid_a, _ = rest_two(emu)
    emu.add_faults([{"kind": "disconnect_trade", "count": 1}])
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events)
    async with running(conn.run()):
        await next_of(events, TradeReady)
        await conn.send("sc-lost", batch("sc-lost", price_item(oid_a, 64300)))
        lost = await next_of(events, ConnectionLost)
        assert lost.pending_req_ids == ("sc-lost",)
        assert not conn.ready
        await next_of(events, TradeReady)  # reconnected and re-authenticated
        await conn.send("sc-after", batch("sc-after", price_item(oid_a, 64400)))
        ack = await next_of(events, Ack)
        assert ack.req_id == "sc-after"
    assert len(order_frames(emu, "sc-lost")) == 1  # sent once, never replayed
    assert [f["op"] for f in emu.frames() if f.get("op") != "ping"] == [
        "auth",
        "order.amend-batch",
        "auth",
        "order.amend-batch",
    ]


async def test_dropped_ack_times_out(emu: Emulator) -> None:
    oid_a, _ = rest_two(emu)
    emu.add_faults([{"kind": "drop_ack", "count": 1}])
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events, ack_timeout_ms=300)
    async with running(conn.run()):
        await next_of(events, TradeReady)
        await conn.send("sc-drop", batch("sc-drop", price_item(oid_a, 64500)))
        pending = conn.pending_req_ids  # a local: the property changes across the await below
        assert pending == ("sc-drop",)
        timeout = await next_of(events, AckTimeout)
        assert timeout == AckTimeout(req_id="sc-drop", timeout_ms=300)
        assert conn.pending_req_ids == () and conn.ready
    assert len(order_frames(emu, "sc-drop")) == 1


async def test_reject_fault_gives_every_item_its_code(emu: Emulator) -> None:
    oid_a, oid_b = rest_two(emu)
    emu.add_faults([{"kind": "reject", "count": 1, "code": 110003, "msg": "price out of range"}])
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events)
    async with running(conn.run()):
        await conn.wait_ready()
        frame = batch(
            "sc-rej",
            price_item(oid_a, 64600),
            AmendItem("BTCUSDT", oid_b, None, {"price": Decimal(63600)}),
        )
        await conn.send("sc-rej", frame, items=2)
        ack = await next_of(events, Ack)
    assert [(i.code, i.cls) for i in ack.items] == [(110003, CodeClass.REJECTED)] * 2


async def test_rate_limit_fault_is_classified(emu: Emulator) -> None:
    oid_a, oid_b = rest_two(emu)
    emu.add_faults([{"kind": "rate_limit", "count": 1}])
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events)
    async with running(conn.run()):
        await conn.wait_ready()
        frame = batch(
            "sc-rl",
            price_item(oid_a, 64600),
            AmendItem("BTCUSDT", oid_b, None, {"price": Decimal(63600)}),
        )
        await conn.send("sc-rl", frame, items=2)
        ack = await next_of(events, Ack)
    assert ack.ret_code == 10006 and ack.cls is CodeClass.RATE_LIMITED
    assert [i.cls for i in ack.items] == [CodeClass.RATE_LIMITED] * 2


async def test_reconnect_code_drains_then_reconnects(emu: Emulator) -> None:
    oid_a, _ = rest_two(emu)
    emu.add_faults([{"kind": "reject", "count": 1, "code": 10019, "msg": "service restarting"}])
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events)
    async with running(conn.run()):
        await next_of(events, TradeReady)
        item = price_item(oid_a, 64700)
        await conn.send("sc-r", encode_amend("sc-r", Category.LINEAR, item, SystemClock().wall_ms(), 5000))
        ack = await next_of(events, Ack)
        assert ack.cls is CodeClass.RECONNECT and ack.items[0].cls is CodeClass.RECONNECT
        lost = await next_of(events, ConnectionLost)
        assert lost.pending_req_ids == ()  # the ack arrived before the socket was closed
        await next_of(events, TradeReady)
        assert conn.ready
    assert len(order_frames(emu, "sc-r")) == 1


async def test_logs_never_carry_credentials(emu: Emulator) -> None:
    events: Events = asyncio.Queue()
    conn = make_conn(emu, events, secret="wrong-secret-xyz")
    with structlog.testing.capture_logs() as logs:
        async with running(conn.run()):
            await next_of(events, TradeError)
            await next_of(events, TradeError)
    text = repr(logs) + repr(conn)
    assert any(e["event"] == "ws_trade.auth_failed" for e in logs)
    assert "wrong-secret-xyz" not in text and DEFAULT_API_KEY not in text
    assert not re.search(r"[0-9a-f]{64}", text)  # no signature
