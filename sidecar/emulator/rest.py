"""The emulator's REST subset: market time, instruments-info, tickers, signed order/realtime and
order/history.

Its one job is the REST envelope (`retCode/retMsg/result/retExtInfo/time`), the signature check
(HMAC of timestamp + key + recv window + raw query string: 10003 unknown key, 10004 bad signature,
10002 outside the recv window, all on the exchange's clock) and the query rules of reference §4,
including Bybit-shaped cursors: opaque, URL-encoded (`…%3A…%2C…` for orders, `first%3D…%26last%3D…`
for instruments), non-empty whenever the page has rows, to be sent back verbatim; a cursor that
does not decode (e.g. encoded twice) is refused with 10001. It must not change state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from sidecar.emulator.hub import Hub
from sidecar.emulator.instruments import CATEGORIES, Instrument
from sidecar.emulator.orders import Order
from sidecar.emulator.signing import rest_payload, signature_ok
from sidecar.emulator.wire import rest_envelope

__all__ = ["decode_order_cursor", "order_cursor", "rest_routes"]

_ORDERS_MAX = 50
_INSTRUMENTS_DEFAULT, _INSTRUMENTS_MAX = 500, 1000
_CURSOR_INVALID = "params error: cursor invalid"


def order_cursor(first: Order, last: Order) -> str:
    """`{firstId}:{created},{lastId}:{created}`, URL-encoded, as in Bybit's order lists (CCXT-FIX)."""
    raw = f"{first.order_id}:{first.created_ms},{last.order_id}:{last.created_ms}"
    return quote(raw, safe="")


def decode_order_cursor(cursor: str) -> tuple[int, str] | None:
    """The (createdTime, orderId) a page ended at, from a cursor the server has URL-decoded once."""
    _, sep, tail = cursor.rpartition(",")
    order_id, colon, created = tail.rpartition(":")
    if not sep or not colon or not order_id or not created.isdigit():
        return None
    return int(created), order_id


def _order_key(order: Order) -> tuple[int, str]:
    return (order.created_ms, order.order_id)


def rest_routes(hub: Hub) -> list[web.RouteDef]:
    """Routes bound to one hub."""

    def error(code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(rest_envelope({}, hub.now_ms(), code, msg), headers=headers)

    async def market_time(_: web.Request) -> web.Response:
        now_ns = hub.clock.now_ns()
        result = {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}
        return web.json_response(rest_envelope(result, now_ns // 1_000_000))

    async def instruments_info(request: web.Request) -> web.Response:
        q = request.query
        category = q.get("category", "")
        if category not in CATEGORIES:
            return error(10001, "params error: Illegal category")
        symbol, status = q.get("symbol", ""), q.get("status", "")
        items = sorted(
            (
                inst
                for inst in hub.exchange.instruments.values()
                if inst.category == category
                and (not symbol or inst.symbol == symbol)
                and (not status or inst.info.get("status") == status)
            ),
            key=lambda i: i.symbol,
        )
        if category in ("spot", "option"):  # spot ignores paging; the option example shows ""
            result = {"category": category, "list": [i.info for i in items], "nextPageCursor": ""}
            return web.json_response(rest_envelope(result, hub.now_ms()))
        page = _instruments_page(items, q.get("limit", ""), q.get("cursor", ""))
        if isinstance(page, str):
            return error(10001, page)
        rows, cursor = page
        result = {"category": category, "list": [i.info for i in rows], "nextPageCursor": cursor}
        return web.json_response(rest_envelope(result, hub.now_ms()))

    async def tickers(request: web.Request) -> web.Response:
        category = request.query.get("category", "")
        if category not in CATEGORIES:
            return error(10001, "params error: Illegal category")
        symbol = request.query.get("symbol", "")
        now = hub.now_ms()
        insts = [
            inst
            for inst in hub.exchange.instruments.values()
            if inst.category == category and (not symbol or inst.symbol == symbol)
        ]
        if symbol and not insts:
            return error(10001, "Not supported symbols")
        result = {"category": category, "list": [hub.exchange.market.ticker(i, now) for i in insts]}
        return web.json_response(rest_envelope(result, now))

    def signed(
        path_op: str, query: Callable[[Mapping[str, str]], tuple[list[Order], str] | str]
    ) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            now = hub.now_ms()
            key = request.headers.get("X-BAPI-API-KEY", "")
            ts = request.headers.get("X-BAPI-TIMESTAMP", "")
            sign = request.headers.get("X-BAPI-SIGN", "")
            window = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
            if key not in hub.credentials:
                return error(10003, "API key is invalid.")
            origin = rest_payload(ts, key, window, request.rel_url.raw_query_string)
            if not signature_ok(hub.credentials[key], origin, sign):
                return error(10004, f"error sign! origin_string[{origin}]")
            if not ts.isdigit() or not window.isdigit() or not (now - int(window) <= int(ts) < now + 1000):
                return error(
                    10002,
                    "invalid request, please check your server timestamp or recv_window param. "
                    f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]",
                )
            adm = hub.limiter.admit(key, path_op, "all", 1, now)
            headers = {
                "X-Bapi-Limit": str(adm.limit),
                "X-Bapi-Limit-Status": str(adm.remaining),
                "X-Bapi-Limit-Reset-Timestamp": str(adm.reset_ms),
            }
            if adm.granted == 0:
                return error(10006, "Too many visits!", headers)
            found = query(request.query)
            if isinstance(found, str):
                return error(10001, found, headers)
            page, next_cursor = found
            category = request.query.get("category", "")
            result = {
                "list": [o.to_wire() for o in page],
                "nextPageCursor": next_cursor,
                "category": category,
            }
            return web.json_response(rest_envelope(result, now), headers=headers)

        return handler

    return [
        web.get("/v5/market/time", market_time),
        web.get("/v5/market/instruments-info", instruments_info),
        web.get("/v5/market/tickers", tickers),
        web.get("/v5/order/realtime", signed("order.realtime", lambda q: _orders(hub, q, history=False))),
        web.get("/v5/order/history", signed("order.history", lambda q: _orders(hub, q, history=True))),
    ]


def _limit(text: str, default: int, maximum: int) -> int | str:
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        return f"params error: limit must be within [1, {maximum}]"
    return int(text)


def _instruments_page(
    items: list[Instrument], limit_text: str, cursor: str
) -> tuple[list[Instrument], str] | str:
    """One page of instruments after the cursor's `last` symbol; the cursor names the page's first
    and last symbols (`first=A&last=B`, sent URL-encoded) and is "" only for an empty page."""
    limit = _limit(limit_text, _INSTRUMENTS_DEFAULT, _INSTRUMENTS_MAX)
    if isinstance(limit, str):
        return limit
    if cursor:
        parts = dict(p.partition("=")[::2] for p in cursor.split("&") if p)
        last = parts.get("last")
        if not last or set(parts) != {"first", "last"}:
            return _CURSOR_INVALID
        items = [i for i in items if i.symbol > last]
    page = items[:limit]
    if not page:
        return [], ""
    return page, quote(f"first={page[0].symbol}&last={page[-1].symbol}", safe="")


def _orders(hub: Hub, query: Mapping[str, str], *, history: bool) -> tuple[list[Order], str] | str:
    """One page of `order/realtime` (open orders, or recent closed ones, by id or filter) or
    `order/history` (every order), newest first, and the page's cursor; a string is a parameter
    error. By id, realtime knows an order only while it is open or among the recent closed ones."""
    category = query.get("category", "")
    if category not in CATEGORIES:
        return "params error: Illegal category"
    limit = _limit(query.get("limit", ""), 20, _ORDERS_MAX)
    if isinstance(limit, str):
        return limit
    cursor = query.get("cursor", "")
    after: tuple[int, str] | None = None
    if cursor:
        after = decode_order_cursor(cursor)
        if after is None:
            return _CURSOR_INVALID
    ex = hub.exchange
    order_id = query.get("orderId", "")
    link = query.get("orderLinkId", "")
    if order_id or link:  # by id openOnly is ignored
        found = ex.find(category, order_id=order_id, order_link_id="" if order_id else link)
        if not history:
            found = [o for o in found if ex.on_realtime(o)]
    else:
        symbol = query.get("symbol", "")
        base = query.get("baseCoin", "")
        settle = query.get("settleCoin", "")
        if not history and category == "linear" and not (symbol or base or settle):
            return "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin"
        if history:
            status = query.get("orderStatus", "")
            pool = [o for o in ex.orders.values() if not status or o.status == status]
        elif query.get("openOnly", "0") == "0":
            pool = ex.open_orders()
        else:
            pool = ex.recent_closed(category)
        found = [
            o
            for o in pool
            if o.category == category
            and (not symbol or o.symbol == symbol)
            and (not base or o.inst.base_coin == base)
            and (not settle or o.inst.settle_coin == settle)
        ]
    ordered = sorted(found, key=_order_key, reverse=True)
    if after is not None:
        ordered = [o for o in ordered if _order_key(o) < after]
    page = ordered[:limit]
    return page, (order_cursor(page[0], page[-1]) if page else "")
