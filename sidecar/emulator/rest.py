"""The emulator's REST subset: market time, instruments-info, tickers and signed order/realtime.

Its one job is the REST envelope (`retCode/retMsg/result/retExtInfo/time`), the signature check
(HMAC of timestamp + key + recv window + raw query string: 10003 unknown key, 10004 bad signature,
10002 outside the recv window) and the query rules of reference §4. It must not change state.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from sidecar.emulator.hub import Hub, wall_ms
from sidecar.emulator.instruments import CATEGORIES
from sidecar.emulator.orders import Order
from sidecar.emulator.signing import rest_payload, signature_ok
from sidecar.emulator.wire import rest_envelope

__all__ = ["rest_routes"]

_REALTIME_MAX = 50
_CLOSED_KEPT = 500


def _json(body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, headers=headers)


def _error(code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json(rest_envelope({}, wall_ms(), code, msg), headers)


def rest_routes(hub: Hub) -> list[web.RouteDef]:
    """Routes bound to one hub."""

    async def market_time(_: web.Request) -> web.Response:
        now_ns = time.time_ns()
        result = {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}
        return _json(rest_envelope(result, now_ns // 1_000_000))

    async def instruments_info(request: web.Request) -> web.Response:
        category = request.query.get("category", "")
        if category not in CATEGORIES:
            return _error(10001, "params error: Illegal category")
        symbol = request.query.get("symbol", "")
        status = request.query.get("status", "")
        items = [
            inst.info
            for inst in hub.exchange.instruments.values()
            if inst.category == category
            and (not symbol or inst.symbol == symbol)
            and (not status or inst.info.get("status") == status)
        ]
        result = {"category": category, "list": items, "nextPageCursor": ""}
        return _json(rest_envelope(result, wall_ms()))

    async def tickers(request: web.Request) -> web.Response:
        category = request.query.get("category", "")
        if category not in CATEGORIES:
            return _error(10001, "params error: Illegal category")
        symbol = request.query.get("symbol", "")
        now = wall_ms()
        insts = [
            inst
            for inst in hub.exchange.instruments.values()
            if inst.category == category and (not symbol or inst.symbol == symbol)
        ]
        if symbol and not insts:
            return _error(10001, "Not supported symbols")
        result = {"category": category, "list": [hub.exchange.market.ticker(i, now) for i in insts]}
        return _json(rest_envelope(result, now))

    async def order_realtime(request: web.Request) -> web.Response:
        now = wall_ms()
        key = request.headers.get("X-BAPI-API-KEY", "")
        ts = request.headers.get("X-BAPI-TIMESTAMP", "")
        sign = request.headers.get("X-BAPI-SIGN", "")
        window = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        query_string = request.rel_url.raw_query_string
        if key not in hub.credentials:
            return _error(10003, "API key is invalid.")
        origin = rest_payload(ts, key, window, query_string)
        if not signature_ok(hub.credentials[key], origin, sign):
            return _error(10004, f"error sign! origin_string[{origin}]")
        if not ts.isdigit() or not window.isdigit() or not (now - int(window) <= int(ts) < now + 1000):
            return _error(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]",
            )
        adm = hub.limiter.admit(key, "order.realtime", "all", 1, now)
        headers = {
            "X-Bapi-Limit": str(adm.limit),
            "X-Bapi-Limit-Status": str(adm.remaining),
            "X-Bapi-Limit-Reset-Timestamp": str(adm.reset_ms),
        }
        if adm.granted == 0:
            return _error(10006, "Too many visits!", headers)
        found = _query_orders(hub, request.query)
        if isinstance(found, str):
            return _error(10001, found, headers)
        page, next_cursor = found
        category = request.query.get("category", "")
        result = {"list": [o.to_wire() for o in page], "nextPageCursor": next_cursor, "category": category}
        return _json(rest_envelope(result, now), headers)

    return [
        web.get("/v5/market/time", market_time),
        web.get("/v5/market/instruments-info", instruments_info),
        web.get("/v5/market/tickers", tickers),
        web.get("/v5/order/realtime", order_realtime),
    ]


def _query_orders(hub: Hub, query: Any) -> tuple[list[Order], str] | str:
    """One page of orders for `GET /v5/order/realtime`, newest first, and the next page's cursor
    ("" on the last page); a string is a parameter error. The cursor is opaque to clients (here it
    is the offset of the next page, prefixed so a client cannot mistake it for a number)."""
    category = query.get("category", "")
    if category not in CATEGORIES:
        return "params error: Illegal category"
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        return "params error: limit invalid"
    if not 1 <= limit <= _REALTIME_MAX:
        return "params error: limit must be within [1, 50]"
    cursor = query.get("cursor", "")
    offset = 0
    if cursor:
        if not cursor.startswith("page-") or not cursor[5:].isdigit():
            return "params error: cursor invalid"
        offset = int(cursor[5:])
    ex = hub.exchange
    order_id = query.get("orderId", "")
    link = query.get("orderLinkId", "")
    if order_id or link:  # by id the order is returned even when closed (openOnly is ignored)
        found = ex.find(category, order_id=order_id, order_link_id="" if order_id else link)
    else:
        symbol = query.get("symbol", "")
        base = query.get("baseCoin", "")
        settle = query.get("settleCoin", "")
        if category in ("linear", "inverse") and not (symbol or base or settle):
            return "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin"
        if query.get("openOnly", "0") == "0":
            pool = ex.open_orders()
        else:
            pool = [o for o in ex.orders.values() if not o.is_open][-_CLOSED_KEPT:]
        found = [
            o
            for o in pool
            if o.category == category
            and (not symbol or o.symbol == symbol)
            and (not base or o.inst.base_coin == base)
            and (not settle or o.inst.quote_coin == settle)
        ]
    ordered = [o for _, o in sorted(enumerate(found), key=lambda p: (p[1].created_ms, p[0]), reverse=True)]
    page = ordered[offset : offset + limit]
    more = offset + limit < len(ordered)
    return page, (f"page-{offset + limit}" if more else "")
