"""The one long-lived, authenticated connection to Bybit's WebSocket Trade API (`/v5/trade`).

Job: carry frames the service has already encoded and journaled, and report what came back.

* `send()` works only when the connection is *ready* (connected, authenticated); otherwise it
  raises `NotConnected` and nothing is sent. It records the reqId as pending, with its ack
  deadline, *before* the frame is written.
* Every pending request ends in exactly one of: an `Ack` event, an `AckTimeout` event, or a place
  in a `ConnectionLost` event. A late ack after a timeout is still reported as an `Ack`.
* There is no send buffer. Nothing is ever replayed after a reconnect: a frame whose fate is
  unknown is resolved by looking at the order (stream, REST), never by sending it again.
* App-level `{"op":"ping"}` every `ping_interval_s`, pong deadline `pong_timeout_s`; missing pong
  → the connection is dead → reconnect with jittered backoff (0.5 s → 5 s, ×1.5).
* 10016/10019 (node restarting): stop taking new sends, let in-flight acks arrive (or time out),
  then reconnect. An auth-class error frame without reqId fails the connection at once.

This module must not decide anything about amends and must never log keys, secrets or signatures.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import structlog
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from sidecar.bybit._ws import (
    DEFAULT_TIMING,
    STOP_REASON,
    Backoff,
    SessionEnded,
    SocketTiming,
    first_done,
    heartbeat,
    reconnect_forever,
)
from sidecar.bybit.codec import AuthReply, Pong, TradeError, decode_trade_obj, encode_auth
from sidecar.bybit.exchange_clock import ExchangeClock
from sidecar.bybit.retcodes import AUTH_FAILURE_CODES
from sidecar.bybit.signing import ws_auth_args
from sidecar.clock import Clock
from sidecar.core.types import Ack
from sidecar.errors import NotConnected
from sidecar.logs import register_secret, scrub

__all__ = [
    "AckTimeout",
    "ConnectionLost",
    "NotConnected",
    "TradeConnection",
    "TradeError",
    "TradeEvent",
    "TradeReady",
]

log = structlog.get_logger()

_RECONNECT_CODES = frozenset({10016, 10019})


@dataclass(frozen=True, slots=True)
class TradeReady:
    """Connected and authenticated; `send()` works from now on."""

    conn_id: str


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """No ack within the deadline for this request: its outcome is unknown (look, don't resend)."""

    req_id: str
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection ended. Every request still in flight is listed: outcome unknown, not resent."""

    pending_req_ids: tuple[str, ...]
    reason: str


TradeEvent = TradeReady | Ack | AckTimeout | ConnectionLost | TradeError


@dataclass(slots=True)
class _Pending:
    items: int | None
    sent_ns: int
    timer: asyncio.TimerHandle


class TradeConnection:
    """Owns the `/v5/trade` socket; emits `TradeEvent`s on `events` (an unbounded queue)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        clock: Clock,
        events: asyncio.Queue[TradeEvent],
        *,
        timing: SocketTiming = DEFAULT_TIMING,
        ack_timeout_ms: int = 3000,
        backoff: Backoff | None = None,
        exchange_clock: ExchangeClock | None = None,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._api_secret = api_secret
        register_secret(api_key)  # scrubbed from every frame we receive (a 10004 echoes the key)
        register_secret(api_secret)
        self._clock = clock
        # Pong and ack server times feed it; auth `expires` is on it (it is Bybit's clock that judges).
        self.exchange_clock = exchange_clock if exchange_clock is not None else ExchangeClock(clock)
        self._events = events
        self._ack_timeout_ms = ack_timeout_ms
        self._timing = timing
        self._backoff = backoff if backoff is not None else Backoff()

        self._ws: ClientConnection | None = None
        self._ready = False
        self._announced = False  # TradeReady emitted for the current connection
        self._ready_event = asyncio.Event()
        # Set when the exchange refused our credentials, so start-up can fail fast with the code.
        self.auth_failed = asyncio.Event()
        self.auth_error_code: int | None = None
        self._pending: dict[str, _Pending] = {}
        self._pong = asyncio.Event()
        self._drained = asyncio.Event()
        self._draining = False
        self._ping_sent_ns = 0
        self._conn_id = ""

    def __repr__(self) -> str:  # never show credentials
        return f"TradeConnection({self._url!r}, ready={self._ready})"

    # ------------------------------------------------------------ public surface

    @property
    def ack_timeout_ms(self) -> int:
        """How long a sent frame waits for its ack before AckTimeout (frames sent from now on)."""
        return self._ack_timeout_ms

    @ack_timeout_ms.setter
    def ack_timeout_ms(self, value: int) -> None:
        if value <= 0:
            raise ValueError("ack_timeout_ms must be positive")
        self._ack_timeout_ms = value

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def pending_req_ids(self) -> tuple[str, ...]:
        return tuple(self._pending)

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def send(self, req_id: str, frame: str, *, items: int | None = None) -> None:
        """Write one already-encoded order frame. Raises NotConnected (nothing sent) if not ready.

        `items`: the number of orders in a batch frame. With it, a failed batch ack that carries no
        per-item lists still yields one AckItem (top-level code) per item; without it such an Ack
        has no items and `Ack.cls` applies to all. A write error after this point does not raise:
        the request stays pending and ends in `ConnectionLost` (its fate is unknown).
        """
        ws = self._ws
        if not self._ready or ws is None or ws.state is not State.OPEN:
            raise NotConnected("trade connection not ready")
        if req_id in self._pending:
            raise ValueError(f"reqId {req_id!r} is already in flight")
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._ack_timeout_ms / 1000, self._on_ack_timeout, req_id)
        self._pending[req_id] = _Pending(items=items, sent_ns=self._clock.monotonic_ns(), timer=timer)
        try:
            await ws.send(frame)
        except Exception as e:
            log.warning("ws_trade.send_failed", req_id=req_id, error=type(e).__name__)

    async def run(self) -> None:
        """Connect, authenticate, serve; reconnect with backoff until cancelled."""
        await reconnect_forever(
            name="ws_trade",
            url=self._url,
            open_timeout_s=self._timing.open_timeout_s,
            backoff=self._backoff,
            session=self._session,
            lost=self._lost,
            was_ready=lambda: self._announced,
            log=log,
        )

    # ------------------------------------------------------------ session

    async def _session(self, ws: ClientConnection) -> None:
        expires_ms = self.exchange_clock.wall_ms() + self._timing.auth_expiry_ms
        await ws.send(encode_auth(ws_auth_args(self._api_key, self._api_secret, expires_ms)))
        reply = await self._await_auth(ws)
        if not reply.ok:
            self._emit(TradeError(reply.ret_code, reply.ret_msg, "auth", reply.conn_id))
            log.error("ws_trade.auth_failed", ret_code=reply.ret_code, ret_msg=reply.ret_msg)
            self.auth_error_code = reply.ret_code
            self.auth_failed.set()
            raise SessionEnded(f"auth failed: retCode {reply.ret_code}")
        self._conn_id = reply.conn_id
        self._ws = ws
        self._draining = False
        self._drained.clear()
        self._ready = True
        self._announced = True
        self._ready_event.set()
        log.info("ws_trade.authenticated", conn_id=reply.conn_id)
        self._emit(TradeReady(conn_id=reply.conn_id))
        await first_done(
            self._reader(ws),
            heartbeat(
                ws, self._timing.ping_interval_s, self._timing.pong_timeout_s, self._pong, self._on_ping
            ),
            self._drain_watch(),
        )
        raise SessionEnded("drained for reconnect" if self._draining else "connection closed")

    async def _await_auth(self, ws: ClientConnection) -> AuthReply:
        try:
            async with asyncio.timeout(self._timing.reply_timeout_s):
                while True:
                    text = await ws.recv()
                    try:
                        msg = json.loads(scrub(text))
                    except ValueError:
                        continue
                    r = decode_trade_obj(msg)
                    if isinstance(r, AuthReply):
                        return r
                    if isinstance(r, TradeError):
                        self._emit(r)
                        if r.ret_code in AUTH_FAILURE_CODES:
                            raise SessionEnded(f"auth failed: retCode {r.ret_code}")
        except TimeoutError:
            raise SessionEnded("no auth reply") from None

    async def _reader(self, ws: ClientConnection) -> None:
        async for text in ws:
            self._on_frame(text)

    async def _drain_watch(self) -> None:
        await self._drained.wait()

    def _on_frame(self, text: str | bytes) -> None:
        try:
            msg = json.loads(scrub(text))  # the exchange's own words may echo the key
        except ValueError:
            self._emit(TradeError(-1, "undecodable frame"))
            log.warning("ws_trade.undecodable")
            return
        req_id = msg.get("reqId") if isinstance(msg, dict) else None
        pend = self._pending.pop(req_id, None) if isinstance(req_id, str) and req_id else None
        if pend is not None:
            pend.timer.cancel()
        r = decode_trade_obj(msg, pend.items if pend is not None else None)
        if isinstance(r, Ack):
            if r.server_time_ms is not None and pend is not None:
                self._observe_offset(r.server_time_ms, pend.sent_ns)
            if pend is None:
                log.info("ws_trade.late_ack", req_id=r.req_id, ret_code=r.ret_code)
            self._emit(r)
            if r.ret_code in _RECONNECT_CODES:
                self._start_draining(r.ret_code)
            self._check_drained()
        elif isinstance(r, Pong):
            if r.server_time_ms is not None and self._ping_sent_ns:
                self._observe_offset(r.server_time_ms, self._ping_sent_ns)
            self._pong.set()
        elif isinstance(r, TradeError):
            self._emit(r)
            log.warning("ws_trade.error_frame", ret_code=r.ret_code, ret_msg=r.ret_msg, op=r.op)
            if r.ret_code in AUTH_FAILURE_CODES:
                raise SessionEnded(f"auth-class error without reqId: retCode {r.ret_code}")
            if r.ret_code in _RECONNECT_CODES:
                self._start_draining(r.ret_code)
                self._check_drained()
        # A second AuthReply (e.g. 20001) needs no action.

    def _on_ping(self) -> None:
        self._ping_sent_ns = self._clock.monotonic_ns()

    def _observe_offset(self, server_ms: int, sent_ns: int) -> None:
        self.exchange_clock.observe(server_ms, sent_ns)

    def _start_draining(self, code: int) -> None:
        if not self._draining:
            log.warning("ws_trade.draining", ret_code=code, pending=len(self._pending))
        self._draining = True
        self._ready = False
        self._ready_event.clear()

    def _check_drained(self) -> None:
        if self._draining and not self._pending:
            self._drained.set()

    def _on_ack_timeout(self, req_id: str) -> None:
        if self._pending.pop(req_id, None) is None:
            return
        log.warning("ws_trade.ack_timeout", req_id=req_id, timeout_ms=self._ack_timeout_ms)
        self._emit(AckTimeout(req_id=req_id, timeout_ms=self._ack_timeout_ms))
        self._check_drained()

    def _lost(self, reason: str) -> None:
        announced = self._announced
        self._ready = False
        self._announced = False
        self._ready_event.clear()
        self._ws = None
        self._draining = False
        pending = tuple(self._pending)
        for p in self._pending.values():
            p.timer.cancel()
        self._pending.clear()
        if announced or pending:
            # Our own stop with nothing in flight is routine; anything else deserves a warning.
            quiet = reason == STOP_REASON and not pending
            report = log.info if quiet else log.warning
            report("ws_trade.connection_lost", reason=reason, pending=len(pending))
            self._emit(ConnectionLost(pending_req_ids=pending, reason=reason))

    def _emit(self, event: TradeEvent) -> None:
        self._events.put_nowait(event)
