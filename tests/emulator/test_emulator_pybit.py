"""Conformance with the official SDK (pybit 5.17.0), a client nobody here wrote (reference §7).

pybit is threaded (websocket-client, requests): its constructors, calls and `exit()` block, so they
run in worker threads (`asyncio.to_thread`) while the emulator serves on this test's event loop;
callbacks come back through `loop.call_soon_threadsafe` into asyncio queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pybit._websocket_trading as pybit_trading
import pybit.unified_trading as pybit_unified
import pytest
from pybit.exceptions import InvalidRequestError
from pybit.unified_trading import HTTP, WebSocket, WebSocketTrading

from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator

WAIT_S = 5.0
Frame = dict[str, Any]


class CallbackFirstTrading(WebSocketTrading):  # type: ignore[misc]  # pybit has no type hints
    """pybit 5.17.0 sends the frame *before* registering its callback (reference §7.4), so a fast
    ack can be dropped as "unregistered reqId". Tests register first, then send; same frame."""

    def _send_order_operation(
        self, operation: str, callback: Any, request: Any, error_callback: Any = None
    ) -> None:
        request_id = str(uuid.uuid4())
        header: dict[str, Any] = {"X-BAPI-TIMESTAMP": pybit_trading._helpers.generate_timestamp()}
        if self.recv_window:
            header["X-BAPI-RECV-WINDOW"] = self.recv_window
        message = {"reqId": request_id, "header": header, "op": operation, "args": [request]}
        self._set_callback(request_id, callback, error_callback)
        self.ws.send(json.dumps(message))


class SignallingWebSocket(WebSocket):  # type: ignore[misc]  # pybit has no type hints
    """pybit's stream, plus a hook that reports subscribe replies (pybit has no public one)."""

    on_subscribed: Callable[[Frame], None] = staticmethod(lambda frame: None)

    def _process_subscription_message(self, message: Frame) -> None:
        # pybit 5.17 sends the subscribe frame *before* it records the subscription (the same race
        # as its trading client, above): a reply that beats that line finds no entry and pybit's
        # bookkeeping raises KeyError in its thread, so a hook called after it never ran (the
        # test then timed out, ~1 run in 12). Report first; pybit's own step only logs.
        self.on_subscribed(message)
        with contextlib.suppress(KeyError):
            super()._process_subscription_message(message)


class Bridge:
    """Thread-safe callbacks that land in asyncio queues."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queues: dict[str, asyncio.Queue[Frame]] = {}

    def callback(self, name: str) -> Callable[[Frame], None]:
        queue = self.queues.setdefault(name, asyncio.Queue())

        def deliver(frame: Frame) -> None:
            self.loop.call_soon_threadsafe(queue.put_nowait, frame)

        return deliver

    async def get(self, name: str, pred: Callable[[Frame], bool] = lambda f: True) -> Frame:
        queue = self.queues.setdefault(name, asyncio.Queue())
        async with asyncio.timeout(WAIT_S):
            while True:
                frame = await queue.get()
                if pred(frame):
                    return frame


@pytest.fixture
async def emu(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulator]:
    async with Emulator(seed=3, walk=False) as emulator:
        # Module constants are read by the constructors (reference §7.2): patch before constructing.
        monkeypatch.setattr(pybit_trading, "TRADE_WSS", emulator.ws_url + "/v5/trade")
        monkeypatch.setattr(pybit_unified, "PRIVATE_WSS", emulator.ws_url + "/v5/private")
        monkeypatch.setattr(pybit_unified, "PUBLIC_WSS", emulator.ws_url + "/v5/public/{CHANNEL_TYPE}")
        yield emulator


def creds(secret: str = DEFAULT_API_SECRET) -> dict[str, Any]:
    return {"testnet": False, "api_key": DEFAULT_API_KEY, "api_secret": secret}


async def test_pybit_trades_and_sees_the_order_stream(emu: Emulator) -> None:
    bridge = Bridge()
    private = await asyncio.to_thread(SignallingWebSocket, "private", **creds())
    trade = await asyncio.to_thread(CallbackFirstTrading, recv_window=5000, **creds())
    try:
        private.on_subscribed = bridge.callback("subscribed")
        await asyncio.to_thread(private.order_stream, bridge.callback("order"))
        assert (await bridge.get("subscribed"))["success"] is True

        ok, err = bridge.callback("ack"), bridge.callback("err")
        base = {"category": "linear", "symbol": "BTCUSDT"}
        await asyncio.to_thread(
            trade.place_order,
            ok,
            err,
            **base,
            side="Buy",
            orderType="Limit",
            qty="0.010",
            price="90000.00",
            orderLinkId="py-1",
        )
        ack = await bridge.get("ack")
        assert ack["retCode"] == 0 and ack["op"] == "order.create"
        oid = ack["data"]["orderId"]

        def pushed(**expect: str) -> Callable[[Frame], bool]:
            return lambda f: any(
                d["orderId"] == oid and all(d[k] == v for k, v in expect.items()) for d in f["data"]
            )

        await bridge.get("order", pushed(orderStatus="New", price="90000.00"))

        await asyncio.to_thread(trade.amend_order, ok, err, **base, orderId=oid, price="90000.50")
        assert (await bridge.get("ack"))["op"] == "order.amend"
        await bridge.get("order", pushed(price="90000.50", qty="0.010"))

        batch = [
            {"symbol": "BTCUSDT", "orderLinkId": "py-1", "qty": "0.020"},
            {"symbol": "BTCUSDT", "orderId": "nope", "price": "1"},
        ]
        await asyncio.to_thread(trade.amend_batch_order, ok, err, category="linear", request=batch)
        ack = await bridge.get("ack")
        assert ack["op"] == "order.amend-batch" and ack["retCode"] == 0
        assert [e["code"] for e in ack["retExtInfo"]["list"]] == [0, 110001]
        await bridge.get("order", pushed(price="90000.50", qty="0.020", leavesQty="0.020"))

        await asyncio.to_thread(trade.amend_order, ok, err, **base, orderId="missing", price="1")
        failure = await bridge.get("err")  # pybit routes retCode != 0 to error_callback
        assert failure["retCode"] == 110001

        await asyncio.to_thread(trade.cancel_order, ok, err, **base, orderId=oid)
        assert (await bridge.get("ack"))["op"] == "order.cancel"
        await bridge.get("order", pushed(orderStatus="Cancelled"))
    finally:
        await asyncio.to_thread(trade.exit)
        await asyncio.to_thread(private.exit)
    ops = [f["op"] for f in emu.frames()]
    assert ops[0] == "auth" and ops[1:] == [
        "order.create",
        "order.amend",
        "order.amend-batch",
        "order.amend",
        "order.cancel",
    ]
    assert all(isinstance(f["header"]["X-BAPI-TIMESTAMP"], int) for f in emu.frames()[1:])  # pybit sends ints


async def test_pybit_public_tickers(emu: Emulator) -> None:
    bridge = Bridge()
    public = await asyncio.to_thread(WebSocket, "linear", testnet=False)
    try:
        await asyncio.to_thread(public.ticker_stream, "BTCUSDT", bridge.callback("ticker"))
        await bridge.get("ticker")
        emu.set_price("linear", "BTCUSDT", mark_price="97000.00", last_price="97000.20")
        merged = await bridge.get("ticker", lambda f: f["data"].get("lastPrice") == "97000.20")
        # pybit merges deltas into its snapshot: the full field set survives
        assert merged["data"]["markPrice"] == "97000.00" and "bid1Size" in merged["data"]
    finally:
        await asyncio.to_thread(public.exit)


async def test_pybit_http_reads(emu: Emulator) -> None:
    order = emu.place_order("linear", "BTCUSDT", "Sell", "0.005", "99000.00", order_link_id="http-1")
    http = HTTP(**creds())
    http.endpoint = emu.url  # the constructor builds https://api.bybit.com; the attribute is the base URL
    try:
        info = await asyncio.to_thread(http.get_instruments_info, category="linear", symbol="SOLUSDT")
        assert info["result"]["list"][0]["lotSizeFilter"]["qtyStep"] == "0.1"
        tickers = await asyncio.to_thread(http.get_tickers, category="linear", symbol="BTCUSDT")
        assert tickers["result"]["list"][0]["symbol"] == "BTCUSDT"
        open_orders = await asyncio.to_thread(http.get_open_orders, category="linear", symbol="BTCUSDT")
        assert [o["orderId"] for o in open_orders["result"]["list"]] == [order["orderId"]]
        by_link = await asyncio.to_thread(http.get_open_orders, category="linear", orderLinkId="http-1")
        assert by_link["result"]["list"][0]["orderLinkId"] == "http-1"
    finally:
        http.client.close()
    wrong = HTTP(**creds(secret="not-the-secret"))
    wrong.endpoint = emu.url
    try:
        with pytest.raises(InvalidRequestError) as info_err:
            await asyncio.to_thread(wrong.get_open_orders, category="linear", symbol="BTCUSDT")
        assert info_err.value.status_code == 10004
    finally:
        wrong.client.close()
