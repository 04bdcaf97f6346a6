"""Connection-level protection of the HTTP transport: read timeouts, a connection cap, quiet logs.

uvicorn's h11 protocol has no deadline for a request head that never ends and no limit on open
connections, so a client can hold descriptors until the process runs out of them (1,100 half-open
requests exhaust a 1,024-descriptor limit). `ConnectionGuard` adds, per server:

- a deadline for each request head (`header_timeout_s`, from its first byte or from the connection's
  start) and for each request body (`body_timeout_s`, from the end of the head); a connection that
  misses one is closed;
- a cap on open connections, below the descriptor limit. A connection over the cap sheds, in this
  order: the oldest unauthenticated idle connection (no authorised request yet, none being served),
  then the oldest authenticated idle one, else the newcomer itself. A request being served is never
  cut, so an authorised call gets through a flood of half-open connections;
- rate-limited logging (`LogLimiter`) of everything a client can cause: shed connections, missed
  deadlines, and uvicorn's own warnings about bad requests.

This module knows HTTP connections only: it must not know about tokens, tools or the service (the
bearer check tells it which connections are authenticated through `mark_authenticated`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from sidecar.clock import Clock, SystemClock
from sidecar.logs import LogLimiter

__all__ = ["ConnectionGuard", "ConnectionLimits", "default_max_connections"]

log = structlog.get_logger("http")

# An MCP endpoint serves one or a few agents: a few hundred connections is plenty.
MAX_CONNECTIONS_CAP = 256


def default_max_connections() -> int:
    """Half the descriptor limit (the rest is for the exchange sockets, the journal, the emulator...),
    at most MAX_CONNECTIONS_CAP and at least 8."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CAP
    return max(8, min(MAX_CONNECTIONS_CAP, soft // 2))


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int | None = None  # None: default_max_connections()


class _LimitedLogFilter(logging.Filter):
    """Drops stdlib records (uvicorn's 'Invalid HTTP request received.') beyond the limiter's budget."""

    def __init__(self, guard: ConnectionGuard) -> None:
        super().__init__()
        self._guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now_ns = self._guard.clock.monotonic_ns()
        return self._guard.limiter.allow(f"uvicorn:{record.msg}", now_ns) is not None


class ConnectionGuard:
    """Shared state of one HTTP server's connections; `protocol_class()` gives uvicorn's `http=`."""

    def __init__(self, limits: ConnectionLimits | None = None, *, clock: Clock | None = None) -> None:
        self.limits = limits if limits is not None else ConnectionLimits()
        self.max_connections = self.limits.max_connections or default_max_connections()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.limiter = LogLimiter()
        # Insertion order is age order: the first idle entry is the oldest one.
        self._live: dict[int, _GuardedProtocol] = {}
        self._by_client: dict[tuple[str, int], _GuardedProtocol] = {}
        self._log_filter = _LimitedLogFilter(self)

    def __len__(self) -> int:
        return len(self._live)

    def protocol_class(self) -> type[H11Protocol]:
        guard = self

        class GuardedProtocol(_GuardedProtocol):
            _guard = guard

        return GuardedProtocol

    def install_log_filter(self) -> None:
        logging.getLogger("uvicorn.error").addFilter(self._log_filter)

    def remove_log_filter(self) -> None:
        logging.getLogger("uvicorn.error").removeFilter(self._log_filter)

    def mark_authenticated(self, client: Any) -> None:
        """The bearer check passed a request from `client` (ASGI scope["client"]): keep it longer."""
        if isinstance(client, list | tuple) and len(client) == 2:
            conn = self._by_client.get((str(client[0]), int(client[1])))
            if conn is not None:
                conn.authenticated = True

    def report(self, event: str, **fields: Any) -> None:
        """Log `event` unless this kind of line is over its budget (then counted and summarised later)."""
        held = self.limiter.allow(event, self.clock.monotonic_ns())
        if held is not None:
            log.warning(event, **fields, **({"suppressed": held} if held else {}))

    def _admit(self, conn: _GuardedProtocol) -> None:
        self._live[id(conn)] = conn
        if conn.client is not None:
            self._by_client[conn.client] = conn
        if len(self._live) > self.max_connections:
            victim = self._victim() or conn
            self._forget(victim)
            victim.transport.abort()  # frees the descriptor now, no lingering close handshake
            self.report(
                "http.connection_shed",
                client=victim.client[0] if victim.client else None,
                authenticated=victim.authenticated,
                newcomer=victim is conn,
                limit=self.max_connections,
            )

    def _victim(self) -> _GuardedProtocol | None:
        idle = [c for c in self._live.values() if c.idle]
        return next((c for c in idle if not c.authenticated), None) or next(iter(idle), None)

    def _forget(self, conn: _GuardedProtocol) -> None:
        self._live.pop(id(conn), None)
        if conn.client is not None and self._by_client.get(conn.client) is conn:
            del self._by_client[conn.client]


class _GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and admission through a `ConnectionGuard`."""

    _guard: ConnectionGuard

    authenticated = False
    _deadline: asyncio.TimerHandle | None = None
    _phase: str | None = None  # "head" or "body": what the current deadline waits for

    @property
    def idle(self) -> bool:
        """No request is being served: nothing received yet, a partial head, or between requests."""
        cycle: RequestResponseCycle | None = self.cycle  # uvicorn types it non-optional; it starts None
        return cycle is None or cycle.response_complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._guard._admit(self)
        if not self.transport.is_closing():
            self._follow_state()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_phase(None)
        self._guard._forget(self)
        super().connection_lost(exc)

    def _follow_state(self) -> None:
        """Arm the deadline the connection's state calls for (head, body, or none while served)."""
        state = self.conn.their_state
        if state is h11.IDLE:
            self._set_phase("head")
        elif state is h11.SEND_BODY:
            self._set_phase("body")
        else:
            self._set_phase(None)

    def _set_phase(self, phase: str | None) -> None:
        if phase == self._phase:
            return  # the deadline runs from the start of the phase, not from the last byte
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            limits = self._guard.limits
            timeout_s = limits.header_timeout_s if phase == "head" else limits.body_timeout_s
            self._deadline = self.loop.call_later(timeout_s, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self._guard.report(
            "http.read_timeout", phase=self._phase, client=self.client[0] if self.client else None
        )
        self._phase = None
        self.transport.close()
