"""Bybit V5 REST client for *looking*: instruments, tickers, server time, order read-backs.

REST is for checking, never a second write path: this client has GET methods only and no way to
place, amend or cancel an order (amends go over the trade WebSocket, once). Signed GETs follow
reference §4.1 (sorted query string, HMAC headers, timestamp on the clock it is given: the service
gives it the exchange's clock). Lists follow `nextPageCursor` as Bybit hands it out (URL-encoded,
sent back verbatim, non-empty even on a last page) until a page comes back empty. An order that
`order/realtime` no longer shows (it keeps only recent closed orders) is looked up in
`order/history`. Errors raise `RestError` with Bybit's retCode; transport failures raise
`RestTransportError` (ret_code -1). Secrets never appear in logs or exception messages.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import structlog
from pydantic import ValidationError
from yarl import URL

from sidecar.bybit.codec import DecodeError, OrderDecoder
from sidecar.bybit.messages import InstrumentsResult, OrderListResult, TickerItem, TickersResult
from sidecar.bybit.signing import canonical_query, rest_headers
from sidecar.clock import Clock
from sidecar.core.types import Category, Instrument, OrderView
from sidecar.errors import RestError, RestTransportError
from sidecar.logs import register_secret, scrub

__all__ = ["LINEAR_SETTLE_COINS", "RestClient", "RestError", "RestTransportError"]

log = structlog.get_logger()

_MAX_PAGES = 100  # a runaway cursor must not loop forever
# `order/realtime` for linear needs symbol, baseCoin or settleCoin; these are the ones linear has.
LINEAR_SETTLE_COINS: tuple[str, ...] = ("USDT", "USDC")


class RestClient:
    """GET-only Bybit V5 REST client on one aiohttp session (created on first use)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        clock: Clock,
        recv_window_ms: int = 5000,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._api_secret = api_secret
        register_secret(api_key)  # scrubbed from every response (a 10004 echoes the signed string)
        register_secret(api_secret)
        self._clock = clock
        self._recv_window_ms = recv_window_ms
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        # Snapshot rows share equal prices, quantities and labels (a restart reads every open order).
        self._orders = OrderDecoder()

    @property
    def recv_window_ms(self) -> int:
        """The recv window signed into every request from now on."""
        return self._recv_window_ms

    @recv_window_ms.setter
    def recv_window_ms(self, value: int) -> None:
        if value <= 0:
            raise ValueError("recv_window_ms must be positive")
        self._recv_window_ms = value

    def __repr__(self) -> str:  # never show the key or secret
        return f"RestClient({self._base!r})"

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ transport

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _get(self, path: str, params: dict[str, str | None], *, signed: bool) -> Any:
        query = canonical_query(params)
        url = URL(f"{self._base}{path}?{query}" if query else f"{self._base}{path}", encoded=True)
        headers: dict[str, str] = {}
        if signed:
            ts_ms = self._clock.wall_ms()
            headers = rest_headers(self._api_key, self._api_secret, ts_ms, self._recv_window_ms, query)
        try:
            async with self._http().get(url, headers=headers) as resp:
                status = resp.status
                text = scrub(await resp.text())
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("rest.unavailable", path=path, error=type(e).__name__)
            raise RestTransportError(f"{path}: {type(e).__name__}") from None
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict) or "retCode" not in body:
            raise RestError(-1, f"{path}: HTTP {status}, not a Bybit response", status)
        try:
            code = int(body["retCode"])
        except (TypeError, ValueError):
            raise RestError(-1, f"{path}: bad retCode", status) from None
        if code != 0:
            msg = body.get("retMsg")
            log.info("rest.error", path=path, ret_code=code, http_status=status)
            raise RestError(code, msg if isinstance(msg, str) else "", status)
        return body.get("result")

    async def fetch(self, path: str, params: dict[str, str | None], *, signed: bool = False) -> Any:
        """One GET of `path` and its `result`, as every method here sends it (same query building,
        cursor kept verbatim, same signing); for `sidecar probe`, which checks those assumptions page
        by page. Raises RestError / RestTransportError like the others."""
        return await self._get(path, params, signed=signed)

    # ------------------------------------------------------------ public data

    async def server_time_ms(self) -> int:
        """Bybit's clock (GET /v5/market/time)."""
        result = await self._get("/v5/market/time", {}, signed=False)
        if isinstance(result, dict):
            nano = result.get("timeNano")
            if nano is not None:
                return int(nano) // 1_000_000
            sec = result.get("timeSecond")
            if sec is not None:
                return int(sec) * 1000
        raise RestError(-1, "/v5/market/time: no time in result")

    async def instruments(self, category: Category, symbol: str | None = None) -> list[Instrument]:
        """Trading rules (tick, step, min/max qty, price limits); paginates by cursor."""
        out: list[Instrument] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params: dict[str, str | None] = {"category": category.value, "symbol": symbol, "cursor": cursor}
            if category is not Category.SPOT:
                params["limit"] = "1000"
            result = await self._get("/v5/market/instruments-info", params, signed=False)
            try:
                page = InstrumentsResult.model_validate(result)
            except ValidationError as e:
                raise RestError(
                    -1, f"instruments-info: unexpected shape ({e.error_count()} errors)"
                ) from None
            for row in page.rows:
                try:
                    out.append(row.to_instrument(category))
                except ValueError as e:
                    log.warning("rest.instrument_skipped", symbol=row.symbol, reason=str(e))
            cursor = _next_cursor(cursor, page.next_page_cursor, len(page.rows))
            if cursor is None:
                break
        return out

    async def tickers(self, category: Category, symbol: str | None = None) -> list[TickerItem]:
        """Ticker rows (GET /v5/market/tickers)."""
        result = await self._get(
            "/v5/market/tickers", {"category": category.value, "symbol": symbol}, signed=False
        )
        try:
            return TickersResult.model_validate(result).rows
        except ValidationError as e:
            raise RestError(-1, f"tickers: unexpected shape ({e.error_count()} errors)") from None

    # ------------------------------------------------------------ orders (signed)

    async def _orders_page(
        self, category: Category, params: dict[str, str | None], path: str = "/v5/order/realtime"
    ) -> tuple[list[OrderView], str]:
        result = await self._get(path, {"category": category.value, **params}, signed=True)
        try:
            page = OrderListResult.model_validate(result)
        except ValidationError as e:
            raise RestError(-1, f"{path}: unexpected shape ({e.error_count()} errors)") from None
        views: list[OrderView] = []
        for row in page.rows:
            try:
                views.append(self._orders.view(row, category))
            except DecodeError as e:
                raise RestError(-1, f"{path}: {e}") from None
        return views, page.next_page_cursor

    async def get_order(
        self,
        category: Category,
        symbol: str,
        order_id: str | None = None,
        order_link_id: str | None = None,
    ) -> OrderView | None:
        """One order by orderId (preferred) or orderLinkId; closed orders too. None if not found.

        `order/realtime` keeps only recent closed orders (500 per category, cleared by a Bybit
        release), so an order it does not show is looked up in `order/history` before "not found"."""
        if not order_id and not order_link_id:
            raise ValueError("get_order needs order_id or order_link_id")
        params: dict[str, str | None] = {"symbol": symbol}
        if order_id:
            params["orderId"] = order_id
        else:
            params["orderLinkId"] = order_link_id
        for path in ("/v5/order/realtime", "/v5/order/history"):
            views, _ = await self._orders_page(category, params, path)
            for v in views:
                if (order_id and v.order_id == order_id) or (
                    not order_id and v.order_link_id == order_link_id
                ):
                    return v
        return None

    async def open_orders(
        self,
        category: Category,
        symbol: str | None = None,
        *,
        settle_coin: str | None = None,
        base_coin: str | None = None,
    ) -> list[OrderView]:
        """All open orders of a category (or symbol), following `nextPageCursor`, 50 per page.

        Bybit wants symbol, baseCoin or settleCoin for linear: without them every linear settle
        coin is listed (USDT and USDC contracts), never just one."""
        if category is Category.LINEAR and not (symbol or settle_coin or base_coin):
            out: list[OrderView] = []
            for coin in LINEAR_SETTLE_COINS:
                out.extend(await self.open_orders(category, settle_coin=coin))
            return out
        out = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params: dict[str, str | None] = {
                "symbol": symbol,
                "settleCoin": settle_coin,
                "baseCoin": base_coin,
                "openOnly": "0",
                "limit": "50",
                "cursor": cursor,
            }
            views, next_cursor = await self._orders_page(category, params)
            out.extend(views)
            cursor = _next_cursor(cursor, next_cursor, len(views))
            if cursor is None:
                break
        return out


def _next_cursor(sent: str | None, received: str, rows: int) -> str | None:
    """The cursor of the next page, or None when the list is complete: an empty page, an empty
    cursor, or the cursor just sent (Bybit returns a cursor even on the last page)."""
    if rows == 0 or not received or received == sent:
        return None
    return received
