"""The public ticker streams (`/v5/public/{category}`), as Bybit sends them.

Its one job is what a public socket hears: the category's control replies and pongs (option's have
no `op`), a snapshot on subscribe, then pushes **only when something changed**: linear and inverse
send a `delta` with just the changed fields, spot and option a full `snapshot` (reference
ticker.mdx; ccxt#21451, sieblyio/bybit-api#329; a best bid/ask level goes out as price and size
together). A frozen market is silent. It also runs the
`stall_public` fault: every public socket, including one opened during the stall, sends nothing
(no reply, snapshot, push or pong) until the stall ends; what was held is then delivered in order,
as a stalled network path would. It must not change prices or orders.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sidecar.emulator.clock import ExchangeClock
from sidecar.emulator.conns import Conn
from sidecar.emulator.instruments import Instrument
from sidecar.emulator.model import Exchange
from sidecar.emulator.wire import (
    option_ticker_frame,
    public_pong,
    public_reply,
    public_subscribe_reply,
    ticker_frame,
)

__all__ = ["PublicFeed"]

log = logging.getLogger("sidecar.emulator")

_DELTA_CATEGORIES = frozenset({"linear", "inverse"})  # spot and option send snapshots only
# A book level goes out whole: price and size together, as in the real delta of ccxt#21451.
_PAIRED = {"bid1Price": "bid1Size", "bid1Size": "bid1Price", "ask1Price": "ask1Size", "ask1Size": "ask1Price"}


def _parse(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class PublicFeed:
    """Ticker subscriptions and pushes of every public socket of one emulator."""

    def __init__(self, exchange: Exchange, clock: ExchangeClock, conns: Callable[[], Iterable[Conn]]) -> None:
        self._exchange = exchange
        self._clock = clock
        self._conns = conns
        self._cs: dict[tuple[str, str], int] = {}  # cross sequence per instrument
        self._last: dict[tuple[str, str], dict[str, str]] = {}  # the state `_cs` numbers
        self._stall_until: float | None = None  # event-loop time the stall ends
        self._stall_timer: asyncio.TimerHandle | None = None
        self.on_stall_end: Callable[[], None] | None = None

    # ------------------------------------------------------------------ stall fault

    @property
    def stalled(self) -> bool:
        return self._stall_until is not None

    def on_connect(self, conn: Conn) -> None:
        """A socket opened during a stall is stalled too."""
        if self.stalled:
            conn.stall()

    def stall_for(self, ms: int) -> None:
        """Silence every public socket for `ms` (extends a running stall, never shortens it)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + ms / 1000
        if self._stall_until is not None and until <= self._stall_until:
            return
        self._stall_until = until
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._stall_timer = loop.call_at(until, self.end_stall)
        for conn in self._public():
            conn.stall()
        log.info("emulator.fault kind=stall_public ms=%s", ms)

    def end_stall(self) -> None:
        """End the stall now: held frames go out in order."""
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        was = self._stall_until is not None
        self._stall_until = None
        for conn in self._public():
            conn.resume()
        if was:
            log.info("emulator.stall_ended")
            if self.on_stall_end is not None:
                self.on_stall_end()

    # ------------------------------------------------------------------ frames in

    def on_text(self, conn: Conn, text: str) -> None:
        msg = _parse(text)
        cat = conn.category
        if msg is None:
            conn.send(
                public_reply("", conn.conn_id, success=False, ret_msg="error: not a JSON object", req_id=None)
            )
            return
        op = msg.get("op")
        req_id = msg.get("req_id")
        op_text = op if isinstance(op, str) else ""
        if op == "ping":
            conn.send(public_pong(cat, conn.conn_id, req_id, self._clock.now_ms()))
            return
        if op not in ("subscribe", "unsubscribe"):
            conn.send(
                public_reply(
                    op_text, conn.conn_id, success=False, ret_msg=f"Invalid op: {op_text}", req_id=req_id
                )
            )
            return
        args = msg.get("args")
        if not isinstance(args, list) or not args:
            conn.send(
                public_reply(op_text, conn.conn_id, success=False, ret_msg="args missing", req_id=req_id)
            )
            return
        topics = [a if isinstance(a, str) else json.dumps(a) for a in args]
        insts = {t: self._instrument(cat, t) for t in topics}
        failed = [t for t, inst in insts.items() if inst is None]
        conn.send(
            public_subscribe_reply(cat, op_text, conn.conn_id, topics=topics, failed=failed, req_id=req_id)
        )
        if failed and cat != "option":
            return  # a spot/linear/inverse request fails whole
        now = self._clock.now_ms()
        for topic, inst in insts.items():
            if inst is None:
                continue
            if op == "unsubscribe":
                conn.tickers.pop(topic, None)
                continue
            fields = self._exchange.market.stream_ticker(inst, now)
            if fields != self._last.get(inst.key):  # a state not numbered yet
                self._cs[inst.key] = self._cs.get(inst.key, 0) + 1
                self._last[inst.key] = fields
            conn.tickers[topic] = fields
            conn.send(self._frame(inst, topic, "snapshot", fields, self._cs[inst.key], now))

    def _instrument(self, category: str, topic: str) -> Instrument | None:
        if not topic.startswith("tickers."):
            return None
        return self._exchange.instrument(category, topic.removeprefix("tickers."))

    # ------------------------------------------------------------------ pushes out

    def publish(self, now_ms: int, keys: Iterable[tuple[str, str]] | None = None) -> None:
        """Push what changed since each socket's last frame; nothing at all when nothing changed."""
        wanted = set(keys) if keys is not None else None
        current: dict[tuple[str, str], tuple[dict[str, str], int]] = {}
        for conn in self._public():
            for topic, last in list(conn.tickers.items()):
                inst = self._instrument(conn.category, topic)
                if inst is None or (wanted is not None and inst.key not in wanted):
                    continue
                if inst.key not in current:
                    fields = self._exchange.market.stream_ticker(inst, now_ms)
                    if fields != self._last.get(inst.key):  # a new state: the next cross sequence
                        self._cs[inst.key] = self._cs.get(inst.key, 0) + 1
                        self._last[inst.key] = fields
                    current[inst.key] = (fields, self._cs.get(inst.key, 0))
                fields, cs = current[inst.key]
                changed = {k: v for k, v in fields.items() if last.get(k) != v}
                if not changed:
                    continue
                for name in [k for k in changed if k in _PAIRED]:
                    changed.setdefault(_PAIRED[name], fields[_PAIRED[name]])
                if inst.category in _DELTA_CATEGORIES:
                    conn.send(
                        self._frame(inst, topic, "delta", {"symbol": inst.symbol, **changed}, cs, now_ms)
                    )
                else:
                    conn.send(self._frame(inst, topic, "snapshot", fields, cs, now_ms))
                conn.tickers[topic] = fields

    @staticmethod
    def _frame(  # noqa: PLR0917  # one frame's parts, always passed in this order
        inst: Instrument, topic: str, kind: str, data: dict[str, str], cs: int, now_ms: int
    ) -> dict[str, Any]:
        if inst.category == "option":
            return option_ticker_frame(topic, data, cs, now_ms)
        return ticker_frame(topic, kind, data, cs, now_ms)

    def _public(self) -> list[Conn]:
        return [c for c in self._conns() if c.kind == "public" and not c.closed]
