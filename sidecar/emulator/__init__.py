"""A faithful Bybit V5 exchange emulator (a subset) on one base URL, for tests, demos and benchmarks.

It serves `/v5/trade`, `/v5/private`, `/v5/public/{category}`, a REST subset and a control API on one
aiohttp port, keeps real order state, walks prices and injects faults. It imports nothing from
`sidecar.core` or `sidecar.bybit`: the wire format is implemented twice, so one bug cannot hide in both.
Operator guide: docs/emulator.md.

    async with Emulator(seed=7) as emu:
        emu.url      # "http://127.0.0.1:PORT"  (REST + control API)
        emu.ws_url   # "ws://127.0.0.1:PORT"    (+ /v5/trade, /v5/private, /v5/public/linear)

The Python control methods mirror the HTTP control API; call them from the event loop's thread.
"""

from __future__ import annotations

from decimal import Decimal
from types import TracebackType
from typing import Any

from sidecar.emulator.hub import Hub
from sidecar.emulator.server import EmulatorServer

__all__ = ["DEFAULT_API_KEY", "DEFAULT_API_SECRET", "Emulator"]

DEFAULT_API_KEY = "emulator-key"
DEFAULT_API_SECRET = "emulator-secret"  # noqa: S105 - a well-known test credential, not a secret

_Number = Decimal | str | int | None


def _dec(value: _Number) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class Emulator:
    """The emulator as an async context manager (or `await start()` / `await stop()`)."""

    def __init__(
        self,
        seed: int | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        walk: bool = True,
        tick_ms: int = 100,
    ) -> None:
        self.hub = Hub(seed=seed, credentials={api_key: api_secret}, walk=walk)
        self._server = EmulatorServer(self.hub, host=host, port=port, tick_ms=tick_ms)
        self.host = host
        self._started = False

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        """REST and control base URL, e.g. `http://127.0.0.1:PORT`."""
        return f"http://{self._url_host()}:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket base URL, e.g. `ws://127.0.0.1:PORT` (append `/v5/trade` etc.)."""
        return f"ws://{self._url_host()}:{self.port}"

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    async def start(self) -> Emulator:
        if not self._started:
            await self._server.start()
            self._started = True
        return self

    async def stop(self) -> None:
        if self._started:
            await self._server.stop()
            self._started = False

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ control (same as HTTP)

    def set_price(
        self,
        category: str,
        symbol: str,
        *,
        mark_price: _Number = None,
        last_price: _Number = None,
        index_price: _Number = None,
        bid_price: _Number = None,
        ask_price: _Number = None,
        freeze: bool = True,
    ) -> dict[str, str]:
        """Set and (by default) freeze a symbol's prices; returns its ticker fields."""
        return self.hub.set_price(
            category,
            symbol,
            mark_price=_dec(mark_price),
            last_price=_dec(last_price),
            index_price=_dec(index_price),
            bid_price=_dec(bid_price),
            ask_price=_dec(ask_price),
            freeze=freeze,
        )

    def add_faults(self, faults: list[dict[str, Any]]) -> None:
        """Same specs as `POST /emulator/faults`; raises `ValueError` on a bad spec."""
        self.hub.add_faults(faults)

    def clear_faults(self) -> None:
        self.hub.clear_faults()

    def set_clock_offset(self, offset_ms: int) -> None:
        """Run the exchange's clock `offset_ms` off the host's (same as `POST /emulator/clock`)."""
        self.hub.clock.set_offset_ms(offset_ms)

    def server_time_ms(self) -> int:
        """The exchange's wall clock now (host time + the offset)."""
        return self.hub.now_ms()

    def set_realtime_retention(self, closed_orders: int) -> None:
        """How many recent closed orders per category `order/realtime` still shows (Bybit: 500;
        0 = as after a Bybit release, closed orders only through `order/history`)."""
        if closed_orders < 0:
            raise ValueError("closed_orders must be >= 0")
        self.hub.exchange.realtime_closed_kept = closed_orders

    def frames(self) -> list[dict[str, Any]]:
        """Every inbound trade-socket frame so far (auth key and signature redacted)."""
        return self.hub.desk.frames()

    def orders(self) -> list[dict[str, Any]]:
        """Every order, with the fields of an `order` push."""
        return self.hub.orders()

    def place_order(
        self,
        category: str,
        symbol: str,
        side: str,
        qty: str,
        price: str | None = None,
        *,
        order_link_id: str | None = None,
        order_type: str = "Limit",
        **extra: Any,
    ) -> dict[str, Any]:
        """Rest an order without auth (pushes the create event); `ValueError("code: msg")` if refused."""
        fields: dict[str, Any] = {
            "category": category,
            "symbol": symbol,
            "side": side,
            "qty": qty,
            "orderType": order_type,
            **extra,
        }
        if price is not None:
            fields["price"] = price
        if order_link_id is not None:
            fields["orderLinkId"] = order_link_id
        return self.hub.place_order(fields)

    def fill_order(self, order_id: str, qty: _Number = None) -> dict[str, Any]:
        """Execute `qty` (default: all that is left) of an open order at its price; pushes the fill."""
        return self.hub.fill_order(order_id, _dec(qty))

    def set_rate_limit(self, op: str, category: str, per_second: int) -> None:
        """Raise or lower an exchange limit, e.g. `("order.amend-batch", "linear", 1000)`."""
        self.hub.limiter.set_limit(op, category, per_second)

    def last_price(self, category: str, symbol: str) -> str:
        """The symbol's current last price (plain decimal string); `KeyError` if unknown."""
        quote = self.hub.exchange.market.quote(category, symbol)
        if quote is None:
            raise KeyError(f"{category}:{symbol}")
        return format(quote.last, "f")

    def tick_size(self, category: str, symbol: str) -> str:
        """The symbol's tick size (plain decimal string); `KeyError` if unknown."""
        inst = self.hub.exchange.instrument(category, symbol)
        if inst is None:
            raise KeyError(f"{category}:{symbol}")
        return format(inst.tick, "f")

    def set_walk(self, enabled: bool) -> None:
        """Start or stop the price walk for every symbol (a still market's tickers are silent)."""
        self.hub.exchange.market.walk_enabled = enabled
