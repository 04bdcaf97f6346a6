"""The probe's WebSocket connections: raw frames in, kept as they came, so checks can look at shapes.

Each socket is opened with the sidecar's own connect options (`_ws.open_ws`), authenticated with its
own `encode_auth`/`ws_auth_args`, and sends frames built by the caller (the sidecar's codec wherever
it has an encoder). A reader task keeps every inbound frame, parsed after secrets are scrubbed, with
its arrival time; `FrameLog.wait_for` finds one in bounded time. Nothing here judges a frame.

This module must not decide anything about checks and must never log keys, secrets or signatures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Self

import structlog
from websockets.asyncio.client import ClientConnection

from sidecar.bybit._ws import open_ws
from sidecar.bybit.codec import decode_trade_obj, encode_auth, encode_ping, encode_subscribe
from sidecar.bybit.signing import ws_auth_args
from sidecar.clock import Clock
from sidecar.core.types import Ack
from sidecar.logs import scrub

__all__ = [
    "Frame",
    "FrameLog",
    "PrivateSocket",
    "TradeSocket",
    "ack_of",
    "item_codes",
    "opened",
    "reply_code",
    "reply_msg",
    "wire_decimal",
]

_log = structlog.get_logger("probe")

OPEN_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 5.0
_MAX_FRAMES = 200_000  # a runaway feed must not eat the host's memory


@dataclass(frozen=True, slots=True)
class Frame:
    """One inbound frame: when it arrived (monotonic ns) and its JSON value (None if not JSON)."""

    recv_ns: int
    msg: Any
    text: str

    def get(self, key: str) -> Any:
        return self.msg.get(key) if isinstance(self.msg, dict) else None


def reply_code(frame: Frame | None) -> int | str:
    """A trade reply's retCode, or why there is none ("no reply", a code that is not a number)."""
    if frame is None:
        return "no reply"
    code = frame.get("retCode")
    return code if isinstance(code, int) else f"retCode {code!r}"


def reply_msg(frame: Frame | None) -> str:
    return str(frame.get("retMsg")) if frame is not None else ""


def wire_decimal(value: object) -> Decimal | None:
    """A number field of a frame as a Decimal; None when absent, blank or not a number."""
    if value is None or value == "" or isinstance(value, bool | float):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def ack_of(frame: Frame | None, items: int | None = None) -> Ack | None:
    """A trade reply as the sidecar's decoder reads it (None: no reply, or not an ack); `items` is
    the batch size sent."""
    decoded = decode_trade_obj(frame.msg, items) if frame is not None else None
    return decoded if isinstance(decoded, Ack) else None


def item_codes(frame: Frame | None, items: int) -> list[tuple[int, str]]:
    """(code, msg) of each item of a batch reply, as the sidecar's decoder reads them."""
    ack = ack_of(frame, items)
    return [(i.code, i.msg) for i in ack.items] if ack is not None else []


class FrameLog:
    """Every frame one socket received, in order; waiters are woken on each arrival."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.frames: list[Frame] = []
        self.closed = False
        self._changed = asyncio.Condition()

    async def add(self, text: str | bytes) -> None:
        clean = scrub(text)  # the exchange's words may echo the key
        try:
            msg = json.loads(clean)
        except ValueError:
            msg = None
        async with self._changed:
            if len(self.frames) < _MAX_FRAMES:
                self.frames.append(Frame(self._clock.monotonic_ns(), msg, clean))
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()

    def mark(self) -> int:
        """The index the next frame will get (wait for frames after this point)."""
        return len(self.frames)

    async def wait_for(
        self, pred: Callable[[Frame], bool], *, start: int = 0, timeout_s: float = REPLY_TIMEOUT_S
    ) -> Frame | None:
        """The first frame at or after `start` that matches; None on timeout or a closed socket."""
        index = start
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                while True:
                    while index < len(self.frames):
                        frame = self.frames[index]
                        index += 1
                        if pred(frame):
                            return frame
                    if self.closed:
                        return None
                    await self._changed.wait()
        except TimeoutError:
            return None


@contextlib.asynccontextmanager
async def opened(url: str, clock: Clock) -> AsyncIterator[tuple[ClientConnection, FrameLog]]:
    """A connection and the log its reader task fills; the task stops when the block ends."""
    async with open_ws(url, OPEN_TIMEOUT_S) as ws:
        log = FrameLog(clock)

        async def read() -> None:
            try:
                async for text in ws:
                    await log.add(text)
            except Exception as e:  # a dropped connection ends the log; checks see `closed`
                _log.debug("probe.socket_closed", url=url, error=type(e).__name__)
            finally:
                await log.close()

        reader = asyncio.create_task(read())
        try:
            yield ws, log
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


class _Socket:
    """One open connection and the log of every frame it received."""

    def __init__(self, ws: ClientConnection, log: FrameLog, clock: Clock) -> None:
        self.ws = ws
        self.log = log
        self._clock = clock

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, clock: Clock) -> AsyncIterator[Self]:
        async with opened(url, clock) as (ws, log):
            yield cls(ws, log, clock)


class TradeSocket(_Socket):
    """One `/v5/trade` connection: frames sent as given, replies found by `reqId` or by shape."""

    async def auth(self, api_key: str, api_secret: str, expires_ms: int) -> Frame | None:
        """Authenticate as the sidecar does; the `auth` reply (None: no reply in time)."""
        start = self.log.mark()
        await self.ws.send(encode_auth(ws_auth_args(api_key, api_secret, expires_ms)))
        return await self.log.wait_for(lambda f: f.get("op") == "auth", start=start)

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def request(self, req_id: str, text: str, timeout_s: float = REPLY_TIMEOUT_S) -> Frame | None:
        """Send one request and wait for the frame that echoes its `reqId` (None: none in time)."""
        start = self.log.mark()
        await self.ws.send(text)
        return await self.log.wait_for(lambda f: f.get("reqId") == req_id, start=start, timeout_s=timeout_s)

    async def ping(self, timeout_s: float = REPLY_TIMEOUT_S) -> tuple[int, Frame | None]:
        """`{"op":"ping"}`; the send time (monotonic ns) and the pong (None: none in time)."""
        start = self.log.mark()
        sent_ns = self._clock.monotonic_ns()
        await self.ws.send(encode_ping())
        return sent_ns, await self.log.wait_for(
            lambda f: f.get("op") == "pong", start=start, timeout_s=timeout_s
        )


class PrivateSocket(_Socket):
    """One `/v5/private` connection, authenticated and subscribed to `order` by `ready()`."""

    async def ready(self, api_key: str, api_secret: str, expires_ms: int) -> str | None:
        """Authenticate and subscribe `order`; None when ready, else what went wrong."""
        start = self.log.mark()
        await self.ws.send(encode_auth(ws_auth_args(api_key, api_secret, expires_ms), "probe-auth"))
        reply = await self.log.wait_for(lambda f: f.get("op") == "auth", start=start)
        if reply is None or reply.get("success") is not True:
            return f"private auth refused: {reply.text if reply else 'no reply'}"
        start = self.log.mark()
        await self.ws.send(encode_subscribe(["order"], "probe-sub"))
        reply = await self.log.wait_for(lambda f: f.get("op") == "subscribe", start=start)
        if reply is None or reply.get("success") is not True:
            return f"order subscription refused: {reply.text if reply else 'no reply'}"
        return None

    async def ping(self, timeout_s: float = REPLY_TIMEOUT_S) -> tuple[int, Frame | None]:
        start = self.log.mark()
        sent_ns = self._clock.monotonic_ns()
        await self.ws.send(encode_ping())
        return sent_ns, await self.log.wait_for(
            lambda f: f.get("op") == "pong" or f.get("ret_msg") == "pong", start=start, timeout_s=timeout_s
        )

    def order_items(self, start: int = 0) -> list[tuple[int, int, dict[str, Any]]]:
        """(frame index, items in that push, item) of every `order` push item from `start` on."""
        out: list[tuple[int, int, dict[str, Any]]] = []
        for index in range(start, len(self.log.frames)):
            frame = self.log.frames[index]
            topic = frame.get("topic")
            data = frame.get("data")
            if isinstance(topic, str) and topic.split(".")[0] == "order" and isinstance(data, list):
                out.extend((index, len(data), item) for item in data if isinstance(item, dict))
        return out

    async def wait_order(
        self,
        pred: Callable[[dict[str, Any]], bool],
        *,
        start: int = 0,
        timeout_s: float = REPLY_TIMEOUT_S,
    ) -> dict[str, Any] | None:
        """The first `order` push item from `start` on that matches (None: none in time)."""

        def matches(frame: Frame) -> bool:
            data = frame.get("data")
            topic = frame.get("topic")
            if not (isinstance(topic, str) and topic.split(".")[0] == "order" and isinstance(data, list)):
                return False
            return any(isinstance(item, dict) and pred(item) for item in data)

        frame = await self.log.wait_for(matches, start=start, timeout_s=timeout_s)
        if frame is None:
            return None
        return next(item for item in frame.get("data") if isinstance(item, dict) and pred(item))
