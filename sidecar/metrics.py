"""Health and metrics of one running service (DESIGN.md §4.7): `GET /healthz` and `GET /metrics`.

Gauges are read from the service when scraped (`Service.health()`, the journal's files); the outcome
counter and the latency histograms are fed by the service's observer hook (sidecar/observer.py) and,
for the MCP call time on stdio, by the transport's per-call timing hook (`observe_mcp_call`).
Every `Observability` has its own CollectorRegistry, so several servers can live in one process, and
the exposition is prometheus_client's own. `serve --metrics-port N` serves both paths on 127.0.0.1:N
without a token (`observing`); the HTTP transport serves them on its own port (sidecar/http_transport.py).

This module reports; it must not decide anything about orders. /healthz shows no secrets and no
order data: states, socket status, reference ages and why amends cannot pass.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar import __version__
from sidecar.core.types import Outcome
from sidecar.errors import StartupError
from sidecar.logs import scrub
from sidecar.results import ItemOutcome
from sidecar.service import Service

__all__ = ["Observability", "health_verdict", "observing"]

log = structlog.get_logger("metrics")

TRADING_STATES = ("active", "reducing", "halted")
# Outcomes of items that were sent: their request's answer time is a verification time.
SENT_OUTCOMES = frozenset(
    {Outcome.VERIFIED, Outcome.REJECTED, Outcome.NOT_APPLIED, Outcome.SUPERSEDED, Outcome.UNVERIFIED}
)
# Decisions take tens of µs to a few ms (journal commit included); verification ms to seconds.
DECISION_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
VERIFICATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# An ack is one round trip after the decision: from ~0.5 ms on loopback to seconds when Bybit is slow.
ACK_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A tool call is a read (sub-ms) or an amend to its verdict; an approval question can take minutes.
MCP_CALL_BUCKETS_S = (0.0005, *VERIFICATION_BUCKETS_S, 60.0, 300.0)


def health_verdict(health: Mapping[str, Any], max_reference_age_ms: int) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /healthz from a `Service.health()` snapshot.

    200 while amends can pass (`active`, or `reducing`: risk-reducing amends pass); 503 with the
    reasons when trading is halted, a socket is down, every reference price is stale, or the shared
    coordination store cannot be reached (sends are refused COORDINATION_UNAVAILABLE meanwhile). A
    stale reference for some symbols only is listed but not fatal: the other symbols still trade.
    """
    reasons: list[str] = []
    state = str(health.get("tradingState"))
    if state == "halted":
        reasons.append(f"trading is halted: {scrub(health.get('haltReason') or 'no reason given')}")
    if health.get("tradeSocket") != "up":
        reasons.append("the trade socket is down")
    if health.get("privateSocket") != "up":
        reasons.append("the private order stream is down")
    coordination: Mapping[str, Any] = health.get("coordination") or {}
    if coordination.get("available") is False:
        reasons.append(
            "the coordination store (Redis) cannot be reached: amends are refused (COORDINATION_UNAVAILABLE)"
        )
    ages: Mapping[str, int | None] = health.get("referenceAgesMs") or {}
    stale = sorted(k for k, age in ages.items() if age is None or age > max_reference_age_ms)
    if ages and len(stale) == len(ages):
        reasons.append(f"reference prices are stale for every symbol (> {max_reference_age_ms} ms)")
    body = {
        "status": "unavailable" if reasons else "ok",
        "tradingState": state,
        "reasons": reasons,
        "tradeSocket": health.get("tradeSocket"),
        "privateSocket": health.get("privateSocket"),
        "staleReferences": stale,
        "coordination": {
            "backend": coordination.get("backend", "local"),
            "available": coordination.get("available", True),
        },
        # Bybit's clock minus this host's (None until a server time was seen); informational.
        "clockOffsetMs": health.get("clockOffsetMs"),
        "policyVersion": health.get("policyVersion"),
        "version": __version__,
    }
    return (503 if reasons else 200), body


def _item_code(o: ItemOutcome) -> str:
    """The code an item's outcome is counted under: its first reason, else Bybit's code, else none."""
    if o.reasons:
        return str(o.reasons[0].code)
    if o.exchange_code not in (None, 0):
        return str(o.exchange_code)
    return "none"


def _journal_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total


class _ServiceCollector(Collector):
    """Gauges read from the service at scrape time (on the event loop's thread, like every scrape)."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        health = service.health()
        info = InfoMetricFamily("sidecar_build", "Version of the sidecar and of the policy in force.")
        info.add_metric([], {"version": __version__, "policy_version": str(health["policyVersion"])})
        yield info
        state = GaugeMetricFamily(
            "sidecar_trading_state", "1 for the kill switch's current state.", labels=["state"]
        )
        for name in TRADING_STATES:
            state.add_metric([name], 1.0 if health["tradingState"] == name else 0.0)
        yield state
        sockets = GaugeMetricFamily(
            "sidecar_socket_up", "1 when the exchange socket is up.", labels=["socket"]
        )
        sockets.add_metric(["trade"], 1.0 if health["tradeSocket"] == "up" else 0.0)
        sockets.add_metric(["private"], 1.0 if health["privateSocket"] == "up" else 0.0)
        yield sockets
        ages = GaugeMetricFamily(
            "sidecar_reference_age_seconds",
            "Age of each symbol's reference price (+Inf before the first price).",
            labels=["category", "symbol"],
        )
        for key, age_ms in health["referenceAgesMs"].items():
            category, _, symbol = str(key).partition(":")
            ages.add_metric([category, symbol], math.inf if age_ms is None else age_ms / 1000)
        yield ages
        remaining = GaugeMetricFamily(
            "sidecar_rate_limit_remaining", "Units left in each rate budget now.", labels=["scope", "key"]
        )
        capacity = GaugeMetricFamily(
            "sidecar_rate_limit_max", "Capacity of each rate budget in force now.", labels=["scope", "key"]
        )
        for budget in health["rateLimits"]:
            labels = [str(budget["scope"]), str(budget["key"])]
            remaining.add_metric(labels, float(budget["remaining"]))
            capacity.add_metric(labels, float(budget["max"]))
        yield remaining
        yield capacity
        coordination = health["coordination"]
        up = GaugeMetricFamily(
            "sidecar_coordination_up",
            "1 while the coordination backend can decide sends (always 1 for local).",
            labels=["backend"],
        )
        up.add_metric([str(coordination["backend"])], 1.0 if coordination["available"] else 0.0)
        yield up
        offset_ms = health.get("clockOffsetMs")
        if offset_ms is not None:  # no sample before the first server time was seen
            yield GaugeMetricFamily(
                "sidecar_exchange_clock_offset_seconds",
                "Bybit's clock minus this host's, as measured from server times.",
                value=offset_ms / 1000,
            )
        yield GaugeMetricFamily(
            "sidecar_in_flight_items",
            "Sent amend items without a final verdict.",
            value=health["inFlightItems"],
        )
        yield GaugeMetricFamily(
            "sidecar_journal_bytes",
            "Size of the journal database with its WAL and shared-memory files.",
            value=_journal_bytes(Path(service.journal.path)),
        )


class Observability:
    """Metrics registry and health of one service; also its `ServiceObserver` once `attach`ed."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.registry = CollectorRegistry()
        self._outcomes = Counter(
            "sidecar_item_outcomes",
            "Item verdicts answered to the agent, by outcome and code (denial code or Bybit retCode).",
            ["outcome", "code"],
            registry=self.registry,
        )
        self._decision_s = Histogram(
            "sidecar_decision_seconds",
            "From a call's arrival to its decision: the frame handed to the trade socket, or the refusal.",
            buckets=DECISION_BUCKETS_S,
            registry=self.registry,
        )
        self._ack_s = Histogram(
            "sidecar_ack_seconds",
            "From a sent call's arrival to the exchange's ack of its frame being applied.",
            buckets=ACK_BUCKETS_S,
            registry=self.registry,
        )
        self._mcp_call_s = Histogram(
            "sidecar_mcp_call_seconds",
            "MCP tools/call on stdio: from the request line read to the answer line written.",
            buckets=MCP_CALL_BUCKETS_S,
            registry=self.registry,
        )
        self._verification_s = Histogram(
            "sidecar_verification_seconds",
            "From a sent call's arrival to its verified answer (what the agent waits: latencyMs).",
            buckets=VERIFICATION_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service))

    def attach(self) -> None:
        self._service.observer = self

    def detach(self) -> None:
        if self._service.observer is self:
            self._service.observer = None

    # ServiceObserver: cheap and never raising (it runs on the amend path)
    def observe_sent(self, decision_s: float) -> None:
        self._decision_s.observe(decision_s)

    def observe_ack(self, elapsed_s: float) -> None:
        self._ack_s.observe(elapsed_s)

    def observe_answer(self, outcomes: Sequence[ItemOutcome], latency_s: float) -> None:
        sent = False
        for o in outcomes:
            self._outcomes.labels(str(o.outcome), _item_code(o)).inc()
            sent = sent or o.outcome in SENT_OUTCOMES
        # A refused call's answer is its decision; a sent call's decision was observed at the send.
        (self._verification_s if sent else self._decision_s).observe(latency_s)

    # stdio_transport.OnCallTimed (the clock is the service's)
    def observe_mcp_call(self, read_ns: int, written_ns: int) -> None:
        self._mcp_call_s.observe((written_ns - read_ns) / 1e9)

    # what /healthz and /metrics serve
    def health(self) -> tuple[int, dict[str, Any]]:
        return health_verdict(self._service.health(), self._service.policy.reference_max_age_ms)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _metrics_app(source: Observability, port: int) -> web.Application:
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}

    @web.middleware
    async def loopback_host(request: web.Request, handler: Any) -> web.StreamResponse:
        # DNS rebinding: a browser page must not read this through a name that resolves to 127.0.0.1.
        if request.host.lower() not in hosts:
            return web.Response(status=421, text="misdirected request (Host)")
        response: web.StreamResponse = await handler(request)
        return response

    async def healthz(_request: web.Request) -> web.Response:
        status, body = source.health()
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    async def metrics(request: web.Request) -> web.Response:
        data, content_type = source.exposition(request.headers.get("Accept"))
        return web.Response(body=data, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app = web.Application(middlewares=[loopback_host])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


@contextlib.asynccontextmanager
async def observing(
    service: Service, *, http_transport: bool, metrics_port: int | None
) -> AsyncIterator[Observability | None]:
    """Metrics for a running `service` when something serves them (the HTTP transport, or a
    `--metrics-port` on 127.0.0.1, started here); None otherwise (no cost on the amend path)."""
    if not http_transport and metrics_port is None:
        yield None
        return
    observability = Observability(service)
    observability.attach()
    runner: web.AppRunner | None = None
    try:
        if metrics_port is not None:
            try:
                sock = socket.create_server(("127.0.0.1", metrics_port))
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                where = f"127.0.0.1:{metrics_port}"
                raise StartupError(f"cannot listen on {where} for --metrics-port: {why}") from None
            port = sock.getsockname()[1]
            runner = web.AppRunner(_metrics_app(observability, port), access_log=None, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            log.info(
                "metrics.listening", url=f"http://127.0.0.1:{port}", port=port, paths=["/healthz", "/metrics"]
            )
        yield observability
    finally:
        if runner is not None:
            await runner.cleanup()
        observability.detach()
