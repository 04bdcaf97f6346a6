"""The emulator's aiohttp server: REST, WebSockets and the control API on one port.

Its one job is I/O: accept sockets on `/v5/trade`, `/v5/private` and `/v5/public/{category}`,
feed their text frames to the `Hub`, run the 100 ms market tick, and start/stop cleanly. A handler
error answers the frame with an error and never kills the connection. It must not hold exchange
rules (see `model.py`, `trade.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web

from sidecar.emulator.conns import Conn
from sidecar.emulator.control import control_routes
from sidecar.emulator.hub import Hub
from sidecar.emulator.instruments import CATEGORIES
from sidecar.emulator.rest import rest_routes
from sidecar.emulator.trade import TradeSession
from sidecar.emulator.wire import private_reply, trade_reply

__all__ = ["EmulatorServer"]

log = logging.getLogger("sidecar.emulator")


class EmulatorServer:
    """Owns the aiohttp runner, the open sockets and the tick task of one hub."""

    def __init__(self, hub: Hub, *, host: str, port: int, tick_ms: int = 100) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self.tick_ms = tick_ms
        self._runner: web.AppRunner | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v5/trade", self._trade),
                web.get("/v5/private", self._private),
                web.get("/v5/public/{category}", self._public),
                *rest_routes(self.hub),
                *control_routes(self.hub),
            ]
        )
        return app

    async def start(self) -> int:
        """Bind and serve; returns the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.port
        self._tick_task = asyncio.create_task(self._tick_loop(), name="emulator-tick")
        log.info("emulator.started host=%s port=%s", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        for conn in list(self.hub.conns):
            conn.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("emulator.stopped port=%s", self.port)

    async def _tick_loop(self) -> None:
        # Deadline-based so the period stays tick_ms (a ticker change must go out within 100 ms)
        # however long a tick takes; after a stall it resumes without a burst of catch-up ticks.
        loop = asyncio.get_running_loop()
        period_s = self.tick_ms / 1000
        next_at = loop.time() + period_s
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + period_s, loop.time())
            try:
                self.hub.on_tick()
            except Exception:  # a bug in one tick must not stop the market
                log.exception("emulator.tick_failed")

    # ------------------------------------------------------------------ sockets

    async def _trade(self, request: web.Request) -> web.WebSocketResponse:
        session: TradeSession | None = None

        def on_text(conn: Conn, text: str) -> None:
            nonlocal session
            if session is None:
                session = TradeSession(conn.conn_id)
            self.hub.on_trade_text(conn, session, text)

        def on_error(conn: Conn) -> None:
            conn.send(trade_reply(op="", conn_id=conn.conn_id, ret_code=10016, ret_msg="Internal error"))

        return await self._serve(request, "trade", on_text, on_error)

    async def _private(self, request: web.Request) -> web.WebSocketResponse:
        def on_error(conn: Conn) -> None:
            conn.send(private_reply("", conn.conn_id, success=False, ret_msg="Internal error", req_id=None))

        return await self._serve(request, "private", self.hub.on_private_text, on_error)

    async def _public(self, request: web.Request) -> web.StreamResponse:
        category = request.match_info["category"]
        if category not in CATEGORIES:
            raise web.HTTPNotFound(text=f"unknown category {category}")

        def on_error(conn: Conn) -> None:
            conn.send(private_reply("", conn.conn_id, success=False, ret_msg="Internal error", req_id=None))

        return await self._serve(request, "public", self.hub.on_public_text, on_error, category=category)

    async def _serve(
        self,
        request: web.Request,
        kind: str,
        on_text: Callable[[Conn, str], None],
        on_error: Callable[[Conn], None],
        *,
        category: str = "",
    ) -> web.WebSocketResponse:
        # Public sockets answer protocol pings themselves, so a stalled socket can stay silent.
        public = kind == "public"
        ws = web.WebSocketResponse(autoping=not public)
        await ws.prepare(request)
        conn = Conn(ws, request, kind, self.hub.ids.conn_id())
        conn.category = category
        self.hub.add_conn(conn)
        writer = asyncio.create_task(conn.run_writer(), name=f"emulator-writer-{conn.conn_id}")
        log.info("emulator.connected kind=%s conn_id=%s", kind, conn.conn_id)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        on_text(conn, msg.data)
                    except Exception:  # answer the frame, keep the connection
                        log.exception("emulator.frame_failed kind=%s conn_id=%s", kind, conn.conn_id)
                        on_error(conn)
                elif msg.type == WSMsgType.BINARY:
                    on_text(conn, "\x00not-json")
                elif msg.type == WSMsgType.PING:
                    if conn.held is None:  # a stalled socket answers nothing
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    continue
                else:
                    break
        finally:
            self.hub.conns.discard(conn)
            conn.closed = True
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            log.info("emulator.disconnected kind=%s conn_id=%s", kind, conn.conn_id)
        return ws
