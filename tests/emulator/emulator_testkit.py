"""Small helpers for the emulator tests: signed auth frames, request frames, a JSON WebSocket client.

Written from reference/bybit-v5.md, not from sidecar.bybit, so the tests stay an independent check.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import websockets

from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator

RECV_TIMEOUT_S = 5.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def auth_frame(
    key: str = DEFAULT_API_KEY,
    secret: str = DEFAULT_API_SECRET,
    expires: int | str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    exp = expires if expires is not None else now_ms() + 10_000
    return {"op": "auth", "args": [key, exp, hmac_hex(secret, f"GET/realtime{exp}")], **extra}


def op_frame(
    op: str,
    body: dict[str, Any],
    *,
    req_id: str | None = None,
    ts: int | str | None = None,
    recv_window: int | str | None = None,
) -> dict[str, Any]:
    header: dict[str, Any] = {"X-BAPI-TIMESTAMP": ts if ts is not None else now_ms()}
    if recv_window is not None:
        header["X-BAPI-RECV-WINDOW"] = recv_window
    frame: dict[str, Any] = {"header": header, "op": op, "args": [body]}
    if req_id is not None:
        frame["reqId"] = req_id
    return frame


class WsClient:
    """A JSON-in, JSON-out WebSocket client with bounded waits."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self._n = 0

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, wait_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        async with asyncio.timeout(wait_s):
            value: dict[str, Any] = json.loads(await self.ws.recv())
            return value

    async def recv_until(
        self, pred: Callable[[dict[str, Any]], bool], wait_s: float = RECV_TIMEOUT_S
    ) -> dict[str, Any]:
        async with asyncio.timeout(wait_s):
            while True:
                frame: dict[str, Any] = json.loads(await self.ws.recv())
                if pred(frame):
                    return frame

    async def request(self, op: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """Send one order op with a fresh reqId and return its ack."""
        self._n += 1
        req_id = kw.pop("req_id", f"t-{self._n}-{now_ms()}")
        await self.send(op_frame(op, body, req_id=req_id, **kw))
        return await self.recv_until(lambda f: f.get("reqId") == req_id)


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[WsClient]:
    async with websockets.connect(url) as ws:
        yield WsClient(ws)


@asynccontextmanager
async def trade_session(emu: Emulator, *, auth: bool = True) -> AsyncIterator[WsClient]:
    async with connect(emu.ws_url + "/v5/trade") as client:
        if auth:
            await client.send(auth_frame())
            reply = await client.recv()
            assert reply["retCode"] == 0, reply
        yield client


@asynccontextmanager
async def private_session(emu: Emulator, topics: tuple[str, ...] = ("order",)) -> AsyncIterator[WsClient]:
    async with connect(emu.ws_url + "/v5/private") as client:
        await client.send(auth_frame())
        assert (await client.recv())["success"] is True
        await client.send({"op": "subscribe", "req_id": "sub-1", "args": list(topics)})
        reply = await client.recv()
        assert reply["success"] is True, reply
        yield client


def is_order_push(order_id: str, **expect: str) -> Callable[[dict[str, Any]], bool]:
    """Predicate: an `order` push for `order_id` whose fields equal `expect`."""

    def pred(frame: dict[str, Any]) -> bool:
        if not str(frame.get("topic", "")).startswith("order"):
            return False
        return any(
            d.get("orderId") == order_id and all(d.get(k) == v for k, v in expect.items())
            for d in frame["data"]
        )

    return pred


def linear_order(price: object = "90000.00", qty: object = "0.010", **extra: Any) -> dict[str, Any]:
    """An order.create body; `price`/`qty` may be any JSON value, for the validation tests."""
    return {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": qty,
        "price": price,
        **extra,
    }
