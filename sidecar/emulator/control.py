"""The emulator's control API (JSON over HTTP under `/emulator/`), for tests, demos and benchmarks.

Its one job is to translate HTTP bodies into `Hub` actions and answer JSON: prices, faults, the
frame capture, orders, exchange rate limits, the price walk, the exchange clock's offset and how
many closed orders `order/realtime` still shows. Bad input → HTTP 400
`{"error": "..."}`. It must not implement exchange rules itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from sidecar.emulator.faults import FaultError
from sidecar.emulator.hub import Hub

__all__ = ["control_routes"]


class _BadRequest(Exception):
    pass


async def _body(request: web.Request) -> Mapping[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _BadRequest("body must be JSON") from None
    if not isinstance(body, Mapping):
        raise _BadRequest("body must be a JSON object")
    return body


def _decimal(body: Mapping[str, Any], *keys: str) -> Decimal | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _BadRequest(f"{key} must be a decimal string")
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise _BadRequest(f"{key} must be a decimal string") from None
    return None


def _bad(text: str) -> web.Response:
    return web.json_response({"error": text}, status=400)


def control_routes(hub: Hub) -> list[web.RouteDef]:
    """Routes bound to one hub."""

    async def post_prices(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            ticker = hub.set_price(
                str(body.get("category", "")),
                str(body.get("symbol", "")),
                mark_price=_decimal(body, "markPrice"),
                last_price=_decimal(body, "lastPrice"),
                index_price=_decimal(body, "indexPrice"),
                bid_price=_decimal(body, "bid1Price", "bidPrice"),
                ask_price=_decimal(body, "ask1Price", "askPrice"),
                freeze=body.get("freeze", True) is not False,
            )
        except (_BadRequest, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response({"ticker": ticker})

    async def post_faults(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            hub.add_faults(body.get("faults"))
        except (_BadRequest, FaultError) as exc:
            return _bad(str(exc))
        return web.json_response({"faults": hub.faults.active()})

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response({"faults": hub.faults.active()})

    async def delete_faults(_: web.Request) -> web.Response:
        hub.clear_faults()
        return web.json_response({"faults": []})

    async def get_frames(_: web.Request) -> web.Response:
        return web.json_response({"frames": hub.desk.frames()})

    async def get_orders(_: web.Request) -> web.Response:
        return web.json_response({"orders": hub.orders()})

    async def post_orders(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            order = hub.place_order(body)
        except _BadRequest as exc:
            return _bad(str(exc))
        except ValueError as exc:
            code, _, msg = str(exc).partition(": ")
            return web.json_response({"error": msg, "retCode": int(code), "retMsg": msg}, status=400)
        return web.json_response({"order": order})

    async def post_fills(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            order = hub.fill_order(str(body.get("orderId", "")), _decimal(body, "qty"))
        except _BadRequest as exc:
            return _bad(str(exc))
        except ValueError as exc:
            code, _, msg = str(exc).partition(": ")
            return web.json_response({"error": msg, "retCode": int(code), "retMsg": msg}, status=400)
        return web.json_response({"order": order})

    async def post_limits(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            per_second = body.get("perSecond")
            if not isinstance(per_second, int) or isinstance(per_second, bool):
                raise _BadRequest("perSecond must be an integer")
            op = str(body.get("op", ""))
            category = str(body.get("category", "linear"))
            hub.limiter.set_limit(op, category, per_second)
        except (_BadRequest, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response({"op": op, "category": category, "perSecond": per_second})

    async def post_walk(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            enabled = body.get("enabled")
            if not isinstance(enabled, bool):
                raise _BadRequest("enabled must be true or false")
        except _BadRequest as exc:
            return _bad(str(exc))
        hub.exchange.market.walk_enabled = enabled
        return web.json_response({"enabled": enabled})

    async def post_clock(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            hub.clock.set_offset_ms(body.get("offsetMs"))
        except (_BadRequest, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response({"offsetMs": hub.clock.offset_ms, "serverTimeMs": hub.now_ms()})

    async def get_clock(_: web.Request) -> web.Response:
        return web.json_response({"offsetMs": hub.clock.offset_ms, "serverTimeMs": hub.now_ms()})

    async def post_retention(request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            kept = body.get("realtimeClosedOrders")
            if not isinstance(kept, int) or isinstance(kept, bool) or kept < 0:
                raise _BadRequest("realtimeClosedOrders must be an integer >= 0")
        except _BadRequest as exc:
            return _bad(str(exc))
        hub.exchange.realtime_closed_kept = kept
        return web.json_response({"realtimeClosedOrders": kept})

    return [
        web.post("/emulator/clock", post_clock),
        web.get("/emulator/clock", get_clock),
        web.post("/emulator/retention", post_retention),
        web.post("/emulator/prices", post_prices),
        web.post("/emulator/faults", post_faults),
        web.get("/emulator/faults", get_faults),
        web.delete("/emulator/faults", delete_faults),
        web.get("/emulator/frames", get_frames),
        web.get("/emulator/orders", get_orders),
        web.post("/emulator/orders", post_orders),
        web.post("/emulator/fills", post_fills),
        web.post("/emulator/limits", post_limits),
        web.post("/emulator/walk", post_walk),
    ]
