"""Every fault kind of the control API does what docs/emulator.md says (DESIGN §4.4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets

from sidecar.emulator import Emulator
from sidecar.emulator.faults import FaultError
from tests.emulator.emulator_testkit import (
    WsClient,
    is_order_push,
    linear_order,
    op_frame,
    private_session,
    trade_session,
)


def amend_body(order_id: str, price: str) -> dict[str, Any]:
    return {"category": "linear", "symbol": "BTCUSDT", "orderId": order_id, "price": price}


async def next_is_pong(client: WsClient) -> bool:
    """Frames on one socket keep their order: if a ping's pong comes next, nothing was queued before it."""
    await client.send({"op": "ping"})
    op: str = (await client.recv())["op"]
    return op == "pong"


async def test_drop_ack_applies_op_and_pushes(emu: Emulator) -> None:
    emu.add_faults([{"kind": "drop_ack", "count": 1}])
    async with trade_session(emu) as t, private_session(emu) as p:
        await t.send(op_frame("order.create", linear_order(orderLinkId="dropped"), req_id="d-1"))
        assert await next_is_pong(t)  # the ack of d-1 never comes
        (order,) = emu.orders()
        await p.recv_until(is_order_push(order["orderId"], orderStatus="New"))
        ack = await t.request("order.create", linear_order())
        assert ack["retCode"] == 0  # count 1: only one ack dropped
    assert next(f["reqId"] for f in emu.frames() if f["op"] == "order.create") == "d-1"


async def test_drop_ack_op_filter(emu: Emulator) -> None:
    emu.add_faults([{"kind": "drop_ack", "count": 1, "op": "order.amend"}])
    async with trade_session(emu) as t:
        ack = await t.request("order.create", linear_order())
        assert ack["retCode"] == 0
        await t.send(op_frame("order.amend", amend_body(ack["data"]["orderId"], "90000.50"), req_id="amend"))
        assert await next_is_pong(t)
    assert emu.orders()[0]["price"] == "90000.50"


async def test_delay_ack_sends_push_first(emu: Emulator) -> None:
    emu.add_faults([{"kind": "delay_ack", "count": 1, "ms": 300}])
    async with trade_session(emu) as t, private_session(emu) as p:
        await t.send(op_frame("order.create", linear_order(), req_id="slow"))
        assert await next_is_pong(t)  # the ack is not queued yet
        push = await p.recv()
        ack = await t.recv()
        assert ack["reqId"] == "slow" and ack["retCode"] == 0
        assert push["data"][0]["orderId"] == ack["data"]["orderId"]


async def test_reject_single_and_batch_per_item(emu: Emulator) -> None:
    live = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
    emu.add_faults([{"kind": "reject", "count": 2, "code": 110079, "msg": "order is processing"}])
    async with trade_session(emu) as t:
        ack = await t.request("order.amend", amend_body(live["orderId"], "90000.50"))
        assert (ack["retCode"], ack["retMsg"], ack["data"]) == (110079, "order is processing", {})
        items = [{"symbol": "BTCUSDT", "orderId": live["orderId"], "price": "90000.50"}] * 2
        ack = await t.request("order.amend-batch", {"category": "linear", "request": items})
        assert ack["retCode"] == 0
        assert ack["retExtInfo"]["list"] == [{"code": 110079, "msg": "order is processing"}] * 2
        assert emu.orders()[0]["price"] == "90000.00"  # nothing applied
        ack = await t.request("order.amend", amend_body(live["orderId"], "90000.50"))
        assert ack["retCode"] == 0


async def test_rate_limit_fault(emu: Emulator) -> None:
    emu.add_faults([{"kind": "rate_limit", "count": 1}])
    async with trade_session(emu) as t:
        ack = await t.request("order.create", linear_order())
        assert ack["retCode"] == 10006 and ack["header"]["X-Bapi-Limit-Status"] == "0"
        assert emu.orders() == []
        assert (await t.request("order.create", linear_order()))["retCode"] == 0


async def test_disconnect_trade_applies_then_cuts(emu: Emulator) -> None:
    emu.add_faults([{"kind": "disconnect_trade", "count": 1}])
    async with trade_session(emu) as t, private_session(emu) as p:
        await t.send(op_frame("order.create", linear_order(), req_id="lost"))
        with pytest.raises(websockets.ConnectionClosed):
            await t.recv()
        (order,) = emu.orders()  # applied before the cut
        await p.recv_until(is_order_push(order["orderId"]))
    async with trade_session(emu) as again:  # a new connection works; same UID, reqId remembered
        assert (await again.request("order.create", linear_order(), req_id="lost"))["retCode"] == 20006


async def test_disconnect_private_on_next_update(emu: Emulator) -> None:
    emu.add_faults([{"kind": "disconnect_private", "count": 1}])
    async with private_session(emu) as p1, private_session(emu, ("order.linear",)) as p2:
        emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
        for client in (p1, p2):
            with pytest.raises(websockets.ConnectionClosed):
                await client.recv()
    async with private_session(emu) as p3:  # the fault is spent: the next update arrives
        order = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
        await p3.recv_until(is_order_push(order["orderId"]))


async def test_drop_order_events_with_symbol_filter(emu: Emulator) -> None:
    emu.add_faults([{"kind": "drop_order_events", "count": 1, "symbol": "ETHUSDT"}])
    async with private_session(emu) as p:
        btc = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
        eth = emu.place_order("linear", "ETHUSDT", "Buy", "0.10", "3000.00")
        eth2 = emu.place_order("linear", "ETHUSDT", "Buy", "0.10", "3000.00")
        got = [(await p.recv())["data"][0]["orderId"] for _ in range(2)]
        assert got == [btc["orderId"], eth2["orderId"]]
        assert eth["orderId"] not in got


async def test_delay_order_events(emu: Emulator) -> None:
    emu.add_faults([{"kind": "delay_order_events", "count": 1, "ms": 200}])
    async with private_session(emu) as p:
        slow = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
        fast = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
        first, second = (await p.recv())["data"][0], (await p.recv())["data"][0]
        assert (first["orderId"], second["orderId"]) == (fast["orderId"], slow["orderId"])


async def test_order_events_before_ack(emu: Emulator) -> None:
    emu.add_faults([{"kind": "order_events_before_ack", "count": 1, "ms": 150}])
    loop = asyncio.get_running_loop()
    async with trade_session(emu) as t, private_session(emu) as p:

        async def stamp(client: WsClient) -> tuple[float, dict[str, Any]]:
            frame = await client.recv()
            return loop.time(), frame

        push_task = asyncio.create_task(stamp(p))
        await t.send(op_frame("order.create", linear_order(), req_id="late-ack"))
        ack_at, ack = await stamp(t)
        push_at, push = await push_task
        assert ack["reqId"] == "late-ack" and push["data"][0]["orderId"] == ack["data"]["orderId"]
        assert push_at < ack_at


async def test_duplicate_order_events(emu: Emulator) -> None:
    emu.add_faults([{"kind": "duplicate_order_events", "count": 1}])
    async with private_session(emu) as p:
        order = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
        one, two = await p.recv(), await p.recv()
        assert one == two and one["data"][0]["orderId"] == order["orderId"]
        await p.send({"op": "ping"})
        assert (await p.recv())["op"] == "pong"  # exactly two copies


async def test_fill_before_amend(emu: Emulator) -> None:
    a = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
    b = emu.place_order("linear", "BTCUSDT", "Buy", "0.010", "90000.00")
    emu.set_rate_limit("order.amend-batch", "linear", 100)
    emu.add_faults([{"kind": "fill_before_amend", "count": 1}])
    async with trade_session(emu) as t, private_session(emu) as p:
        items = [
            {"symbol": "BTCUSDT", "orderId": a["orderId"], "price": "90000.50"},
            {"symbol": "BTCUSDT", "orderId": b["orderId"], "price": "90000.50"},
        ]
        ack = await t.request("order.amend-batch", {"category": "linear", "request": items})
        # The order is gone by the time the amend reaches it: "order not exists or too late to replace".
        assert [e["code"] for e in ack["retExtInfo"]["list"]] == [110001, 0]
        assert ack["retExtInfo"]["list"][0]["msg"] == "order not exists or too late to replace"
        filled = await p.recv_until(is_order_push(a["orderId"], orderStatus="Filled"))
        assert filled["data"][0]["price"] == "90000.00"  # filled at the old price
        await p.recv_until(is_order_push(b["orderId"], price="90000.50"))


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "nope"},
        {"kind": "drop_ack", "count": 0},
        {"kind": "drop_ack", "count": "1"},
        {"kind": "delay_ack"},
        {"kind": "reject"},
        {"kind": "drop_ack", "op": "order.fly"},
        {"kind": "drop_order_events", "op": "order.create"},
        {"kind": "drop_ack", "symbol": "BTCUSDT"},
        "drop_ack",
    ],
)
def test_bad_fault_specs_are_refused_whole(spec: Any) -> None:
    emu = Emulator()
    with pytest.raises(FaultError):
        emu.add_faults([{"kind": "drop_ack"}, spec])
    assert emu.hub.faults.active() == []


def test_clear_faults() -> None:
    emu = Emulator()
    emu.add_faults([{"kind": "drop_ack", "count": 3}, {"kind": "delay_ack", "ms": 5}])
    assert len(emu.hub.faults.active()) == 2
    emu.clear_faults()
    assert emu.hub.faults.active() == []
