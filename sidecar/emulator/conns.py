"""One server-side WebSocket connection with an ordered outbound queue.

Its one job is delivery: frames are queued synchronously (so callers need not await and ordering
is exactly the order of `send` calls) and written by one writer task. `close` flushes first;
`abort` drops the TCP connection at once with no close frame (a network cut); `stall` keeps
frames back until `resume` (a silent path). It must not interpret frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

__all__ = ["Conn"]

log = logging.getLogger("sidecar.emulator")


class Conn:
    """A socket of kind `trade`, `private` or `public`; per-kind state lives in the attributes."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, kind: str, conn_id: str) -> None:
        self.ws = ws
        self.kind = kind
        self.conn_id = conn_id
        self.uid: str | None = None  # private sockets: the authenticated UID
        self.topics: set[str] = set()  # private sockets: subscribed topics
        self.tickers: dict[str, dict[str, str]] = {}  # public sockets: topic -> fields last sent
        self.category = ""  # public sockets: the category in the path
        self.push_seq = 0  # public option sockets: sequence in the push `id`
        self.closed = False
        # While not None the socket is stalled: frames wait here, in order, and nothing is written.
        self.held: list[str] | None = None
        self._request = request
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one JSON frame; frames for a closed connection are dropped."""
        if self.closed:
            return
        text = json.dumps(frame, separators=(",", ":"))
        if self.held is not None:
            self.held.append(text)
        else:
            self._queue.put_nowait(text)

    def stall(self) -> None:
        """Stop writing: frames are kept, in order, until `resume` (a silent network path)."""
        if self.held is None:
            self.held = []

    def resume(self) -> None:
        """Write the frames kept during a stall, then carry on as usual."""
        held, self.held = self.held, None
        if held and not self.closed:
            for text in held:
                self._queue.put_nowait(text)

    def close(self) -> None:
        """Close after the frames already queued are written."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    def abort(self) -> None:
        """Cut the connection now, without a close frame (the client sees an abnormal closure)."""
        self.closed = True
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    async def run_writer(self) -> None:
        while True:
            text = await self._queue.get()
            if text is None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close()
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("emulator.send_failed conn_id=%s error=%s", self.conn_id, exc)
                self.closed = True
                return
