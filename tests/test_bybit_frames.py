"""Real Bybit frames (tests/fixtures/bybit_frames/) as test vectors for both wire implementations.

Each frame is decoded by the client codec (`sidecar.bybit`) with the values checked, and compared
in shape (keys, nesting, value types) with what the emulator (`sidecar.emulator`) emits for the same
event over a real socket or HTTP. The emulator and the client never share code; both must match
what Bybit sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from yarl import URL

from sidecar.bybit.codec import (
    AuthReply,
    Pong,
    PrivateControl,
    PublicControl,
    TickerUpdate,
    decode_private,
    decode_public,
    decode_trade,
    encode_auth,
    order_view_from_wire,
)
from sidecar.bybit.messages import InstrumentsResult, OrderListResult
from sidecar.bybit.signing import canonical_query, rest_headers, ws_auth_args
from sidecar.clock import SystemClock
from sidecar.core.types import Ack, Category, CodeClass
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from sidecar.emulator.instruments import OPTION_SYMBOL

FRAMES = Path(__file__).parent / "fixtures" / "bybit_frames"


def load(file: str) -> dict[str, dict[str, Any]]:
    entries = json.loads((FRAMES / file).read_text())
    assert all(e["source"] and e["name"] for e in entries)
    return {e["name"]: e["frame"] for e in entries}


PUBLIC = load("public_streams.json")
PRIVATE = load("private_stream.json")
TRADE = load("trade_socket.json")
REST = load("rest.json")


def shape(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def keys(value: dict[str, Any]) -> set[str]:
    return set(value)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=3, walk=False) as e:
        yield e


class Ws:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    async def ask(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        return await self.recv()

    async def recv(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(await self.ws.recv(decode=True))
        return value


async def public(emu: Emulator, category: str) -> Any:
    return websockets.connect(f"{emu.ws_url}/v5/public/{category}")


# ------------------------------------------------------------------------------- public streams


def test_client_decodes_the_real_tickers() -> None:
    snap = decode_public(json.dumps(PUBLIC["linear_ticker_snapshot"]))
    assert isinstance(snap, TickerUpdate) and snap.snapshot and snap.ts_ms == 1760325052630
    assert snap.values == {
        "mark": Decimal("66666.60"),
        "last": Decimal("66666.60"),
        "index": Decimal("115418.19"),
        "bid": Decimal("66666.60"),
        "ask": Decimal("66666.70"),
    }
    delta = decode_public(json.dumps(PUBLIC["linear_ticker_mainnet_delta"]))
    assert isinstance(delta, TickerUpdate) and not delta.snapshot
    assert delta.values == {"ask": Decimal("0.13942")}  # only what the frame carries: merged later
    spot = decode_public(json.dumps(PUBLIC["spot_ticker_snapshot"]))
    assert isinstance(spot, TickerUpdate) and spot.values == {"last": Decimal("21109.77")}
    option = decode_public(json.dumps(PUBLIC["option_ticker_snapshot"]))
    assert isinstance(option, TickerUpdate) and option.symbol == "BTC-6JAN23-17500-C"
    assert option.values == {
        "mark": Decimal("7.86976724"),
        "last": Decimal(10),
        "index": Decimal("16823.73"),
        "bid": Decimal(0),
        "ask": Decimal(10),
    }


def test_client_decodes_the_real_public_control_frames() -> None:
    for name in ("spot_subscribe_reply", "linear_subscribe_reply", "option_subscribe_reply"):
        reply = decode_public(json.dumps(PUBLIC[name]))
        assert isinstance(reply, PublicControl) and reply.op == "subscribe" and reply.success, name
    for name in ("spot_pong", "linear_pong", "option_pong"):
        pong = decode_public(json.dumps(PUBLIC[name]))
        assert isinstance(pong, PublicControl) and (pong.op == "pong" or pong.ret_msg == "pong"), name


async def test_emulator_linear_ticker_matches_the_real_snapshot_and_delta(emu: Emulator) -> None:
    async with await public(emu, "linear") as raw:
        ws = Ws(raw)
        reply = await ws.ask({"op": "subscribe", "args": ["tickers.BTCUSDT"]})
        assert shape(reply) == shape(PUBLIC["linear_subscribe_reply"])
        snap = await ws.recv()
        assert shape(snap) == shape(PUBLIC["linear_ticker_snapshot"])
        emu.set_price("linear", "BTCUSDT", mark_price="95000.00", last_price="95000.00", ask_price="95000.30")
        delta = await ws.recv()
        real = PUBLIC["linear_ticker_mainnet_delta"]
        assert keys(delta) == keys(real) and delta["type"] == "delta"
        assert keys(delta["data"]) == keys(real["data"])  # {symbol, ask1Price, ask1Size}: the level only
        pong = await ws.ask({"op": "ping"})
        assert shape(pong) == shape(PUBLIC["linear_pong"])


async def test_emulator_spot_and_option_frames_match_the_real_ones(emu: Emulator) -> None:
    async with await public(emu, "spot") as raw:
        ws = Ws(raw)
        reply = await ws.ask({"op": "subscribe", "req_id": "10001", "args": ["tickers.BTCUSDT"]})
        assert shape(reply) == shape(PUBLIC["spot_subscribe_reply"])
        assert shape(await ws.recv()) == shape(PUBLIC["spot_ticker_snapshot"])
        assert shape(await ws.ask({"op": "ping"})) == shape(PUBLIC["spot_pong"])
    async with await public(emu, "option") as raw:
        ws = Ws(raw)
        reply = await ws.ask({"op": "subscribe", "args": [f"tickers.{OPTION_SYMBOL}"]})
        assert shape(reply) == shape(PUBLIC["option_subscribe_reply"])
        snap = await ws.recv()
        assert shape(snap) == shape(PUBLIC["option_ticker_snapshot"])
        assert shape(await ws.ask({"op": "ping"})) == shape(PUBLIC["option_pong"])


# ------------------------------------------------------------------------------- private stream


def test_client_decodes_the_real_private_frames() -> None:
    auth = decode_private(json.dumps(PRIVATE["private_auth_reply"]))
    assert isinstance(auth, PrivateControl) and (auth.op, auth.success) == ("auth", True)
    pong = decode_private(json.dumps(PRIVATE["private_pong"]))
    assert isinstance(pong, PrivateControl) and pong.server_time_ms == 1675418560633
    [view] = decode_private(json.dumps(PRIVATE["order_push"]))  # type: ignore[misc]
    assert (view.category, view.order_status, view.price, view.cum_exec_qty) == (
        Category.OPTION,
        "Filled",
        Decimal("72.5"),
        Decimal(1),
    )
    assert view.leaves_qty == 0 and view.updated_time_ms == 1672364262457 and not view.refused_by_engine


async def test_emulator_private_frames_match_the_real_ones(emu: Emulator) -> None:
    async with websockets.connect(f"{emu.ws_url}/v5/private") as raw:
        ws = Ws(raw)
        expires = emu.server_time_ms() + 10_000
        auth = await ws.ask(encode_auth(ws_auth_args(DEFAULT_API_KEY, DEFAULT_API_SECRET, expires)))
        assert shape(auth) == shape(PRIVATE["private_auth_reply"])
        assert shape(await ws.ask({"op": "subscribe", "args": ["order"]})) == shape(
            PRIVATE["private_subscribe_reply"]
        )
        assert shape(await ws.ask({"req_id": "test", "op": "ping"})) == shape(PRIVATE["private_pong"])
        emu.place_order("option", OPTION_SYMBOL, "Sell", "1.00", "2600", order_link_id="frames-1")
        push = await ws.recv()
    real = PRIVATE["order_push"]
    assert keys(push) == keys(real)
    extra = keys(real["data"][0]) - keys(push["data"][0])
    assert extra == set(), f"real order fields the emulator does not send: {extra}"
    for name, value in real["data"][0].items():
        assert type(push["data"][0][name]) is type(value), name


# ------------------------------------------------------------------------------- trade socket


def test_client_decodes_the_real_trade_frames() -> None:
    assert decode_trade(json.dumps(TRADE["trade_auth_reply"])) == AuthReply(
        0, "OK", "cnt5leec0hvan15eukcg-2t"
    )
    assert decode_trade(json.dumps(TRADE["trade_pong"])) == Pong(1711002002529, "cnt5leec0hvan15eukcg-2v")
    ack = decode_trade(json.dumps(TRADE["single_ack"]))
    assert isinstance(ack, Ack) and ack.cls is CodeClass.SUCCESS
    assert (ack.limit, ack.limit_status, ack.limit_reset_ms, ack.server_time_ms) == (
        10,
        9,
        1711001595208,
        1711001595209,
    )
    assert ack.items[0].order_id == "a4c1718e-fe53-4659-a118-1f6ecce04ad9"
    batch = decode_trade(json.dumps({**TRADE["batch_ack_items_failed"], "reqId": "b"}))
    assert isinstance(batch, Ack) and batch.ret_code == 0  # top-level OK ...
    assert [i.cls for i in batch.items] == [CodeClass.REJECTED] * 3  # ... every item refused
    assert [i.order_link_id for i in batch.items] == ["batch-000", "batch-001", "batch-002"]
    err = decode_trade(json.dumps(TRADE["single_error_ack"]))
    assert isinstance(err, Ack) and (err.ret_code, err.cls) == (170131, CodeClass.REJECTED)


async def test_emulator_trade_frames_match_the_real_ones(emu: Emulator) -> None:
    async with websockets.connect(f"{emu.ws_url}/v5/trade") as raw:
        ws = Ws(raw)
        expires = emu.server_time_ms() + 10_000
        auth = await ws.ask(encode_auth(ws_auth_args(DEFAULT_API_KEY, DEFAULT_API_SECRET, expires)))
        assert shape(auth) == shape(TRADE["trade_auth_reply"])
        assert shape(await ws.ask({"op": "ping"})) == shape(TRADE["trade_pong"])
        header = {"X-BAPI-TIMESTAMP": str(emu.server_time_ms()), "X-BAPI-RECV-WINDOW": "8000"}
        order = {"symbol": "ETHUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.2", "price": "2800"}
        create = {"reqId": "test-005", "header": header, "op": "order.create"}
        ack = await ws.ask({**create, "args": [{**order, "category": "linear", "timeInForce": "PostOnly"}]})
        assert shape(ack) == shape(TRADE["single_ack"])
        items = [{**order, "orderLinkId": f"batch-00{i}", "positionIdx": 1} for i in range(3)]
        batch = await ws.ask(
            {"op": "order.create-batch", "header": header, "args": [{"category": "linear", "request": items}]}
        )
        real = TRADE["batch_ack_items_failed"]
        assert shape(batch) == shape(real)
        assert batch["retExtInfo"] == real["retExtInfo"]  # the same refusal, word for word
        error = await ws.ask(
            {**create, "reqId": "e-1", "args": [{**order, "category": "linear", "qty": "0.001"}]}
        )
        assert (
            keys(TRADE["single_error_ack"]) <= keys(error)
            and error["data"] == {}
            and error["retCode"] == 10001
        )


# ------------------------------------------------------------------------------- REST


def test_client_decodes_the_real_rest_rows() -> None:
    for name, status in (("open_order_row", "New"), ("closed_order_row", "Filled")):
        page = OrderListResult.model_validate(REST[name]["result"])
        [view] = [order_view_from_wire(r, Category.LINEAR) for r in page.rows]
        assert view.order_status == status and view.qty == Decimal("0.001")
        # the cursor goes back exactly as it came
        assert f"cursor={page.next_page_cursor}" in canonical_query({"cursor": page.next_page_cursor})
    history = OrderListResult.model_validate(REST["history_postonly_cancelled"]["result"])
    killed = order_view_from_wire(history.rows[0], Category.LINEAR)
    assert killed.refused_by_engine and killed.reject_reason == "EC_PostOnlyWillTakeLiquidity"
    assert killed.take_profit == 0 and killed.trigger_price == 0  # "0.00": unset
    bio = InstrumentsResult.model_validate(REST["instruments_linear_one_symbol_cursor"]["result"])
    assert bio.next_page_cursor == "first%3DBIOUSDT%26last%3DBIOUSDT"
    inst = bio.rows[0].to_instrument(Category.LINEAR)
    assert (inst.tick_size, inst.qty_step, inst.min_qty) == (Decimal("0.0001"), Decimal(1), Decimal(1))
    spot = (
        InstrumentsResult.model_validate(REST["instruments_spot"]["result"])
        .rows[0]
        .to_instrument(Category.SPOT)
    )
    assert spot.min_qty == spot.qty_step == Decimal("0.000001")  # not the deprecated minOrderQty
    option = InstrumentsResult.model_validate(REST["instruments_option"]["result"]).rows[0]
    assert option.to_instrument(Category.OPTION).tick_size == 5


async def signed_get(emu: Emulator, path: str, params: dict[str, str | None]) -> dict[str, Any]:
    query = canonical_query(params)
    headers = rest_headers(DEFAULT_API_KEY, DEFAULT_API_SECRET, SystemClock().wall_ms(), 5000, query)
    async with (
        aiohttp.ClientSession() as s,
        s.get(URL(f"{emu.url}{path}?{query}", encoded=True), headers=headers) as r,
    ):
        body: dict[str, Any] = await r.json()
        return body


async def test_emulator_rest_rows_match_the_real_ones(emu: Emulator) -> None:
    emu.place_order("linear", "BTCUSDT", "Buy", "0.001", "94000.0")
    closed = emu.place_order("linear", "BTCUSDT", "Buy", "0.001", "99000.0")  # crosses: fills at once
    body = await signed_get(emu, "/v5/order/realtime", {"category": "linear", "symbol": "BTCUSDT"})
    real_row = REST["open_order_row"]["result"]["list"][0]
    row = body["result"]["list"][0]
    assert keys(real_row) - keys(row) == set()
    cursor = body["result"]["nextPageCursor"]
    assert re.fullmatch(r"[0-9a-f-]{36}%3A\d{13}%2C[0-9a-f-]{36}%3A\d{13}", cursor)  # the real form
    assert re.fullmatch(
        r"[0-9a-f-]{36}%3A\d{13}%2C[0-9a-f-]{36}%3A\d{13}", REST["open_order_row"]["result"]["nextPageCursor"]
    )
    one = await signed_get(emu, "/v5/order/realtime", {"category": "linear", "orderId": closed["orderId"]})
    assert one["result"]["list"][0]["orderStatus"] == "Filled" and one["result"]["nextPageCursor"]
    history = await signed_get(emu, "/v5/order/history", {"category": "linear", "orderId": closed["orderId"]})
    assert keys(REST["history_postonly_cancelled"]["result"]["list"][0]) - keys(
        history["result"]["list"][0]
    ) <= {"extraFees"}


async def test_emulator_instruments_match_the_real_ones(emu: Emulator) -> None:
    async def info(query: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{emu.url}/v5/market/instruments-info?{query}") as r:
            body: dict[str, Any] = await r.json()
            return body

    linear = await info("category=linear&symbol=BTCUSDT")
    real = REST["instruments_linear_one_symbol_cursor"]
    assert shape(linear)["result"].keys() == shape(real)["result"].keys()
    assert keys(real["result"]["list"][0]) - keys(linear["result"]["list"][0]) == set()
    assert linear["result"]["nextPageCursor"] == "first%3DBTCUSDT%26last%3DBTCUSDT"  # as BIOUSDT's
    spot = await info("category=spot&symbol=BTCUSDT")
    assert shape(spot["result"]["list"][0]) == shape(REST["instruments_spot"]["result"]["list"][0])
    option = await info("category=option")
    assert shape(option["result"]["list"][0]) == shape(REST["instruments_option"]["result"]["list"][0])
