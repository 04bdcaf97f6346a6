"""The service's façade: builds the parts, wires them, and is the one API the transports call.

One job: wiring. `Service` owns no rule and no state of its own; every call goes to the part whose
job it is (docs/architecture.md has the map):

    runtime   the exchange adapters' life (built by a factory: Bybit's, or a test's)
    intake    the adapters' events, applied in order; the only writer of the book and the quotes
    pipeline  admit → commit intent → dispatch → await (submit, preview)
    pending   every request in flight; the only settler (answers, journal records, holds)
    recovery  unfinished intents taken up at start
    safety    the kill switch: state, operator, trips (rules in core/trips.py)
    upkeep    the once-a-second chores
    views     getSafetyPolicy, getOrderState, health (pure)

Use as an async context manager: entering starts the adapters' tasks and waits until the exchange
connections are ready.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import structlog

from sidecar.bybit.endpoints import Endpoints
from sidecar.bybit.ids import make_boot_token
from sidecar.clock import Clock
from sidecar.config import SidecarConfig
from sidecar.coordination import LocalCoordinator
from sidecar.core.inflight import InFlight
from sidecar.core.market_state import MarketState
from sidecar.core.orders import OrderBook
from sidecar.core.policy import Policy
from sidecar.core.ratelimit import BudgetView, RateLimiter
from sidecar.core.reconcile import Reconciler, ReconcileSettings
from sidecar.core.types import AmendRequest, Category, TradingState
from sidecar.core.validation import PreparedPolicy
from sidecar.env import Credentials
from sidecar.journal import Journal
from sidecar.observer import ServiceObserver
from sidecar.service import views
from sidecar.service.admission import Gate, Leases
from sidecar.service.api import AmendResult, Approval
from sidecar.service.coordination_link import open_coordinator, remember
from sidecar.service.entries import Live
from sidecar.service.intake import Intake, adapter_sinks
from sidecar.service.pending import Checkpoint, PendingRegistry
from sidecar.service.pipeline import Pipeline
from sidecar.service.ports import AdapterFactory
from sidecar.service.recorder import Recorder
from sidecar.service.recovery import Recovery
from sidecar.service.runtime import Runtime, bybit_adapters
from sidecar.service.safety import KillSwitch
from sidecar.service.tasks import TaskSet, cancel_and_wait
from sidecar.service.upkeep import Upkeep

__all__ = ["Service"]

log = structlog.get_logger("service")

# A shared order lease lives this much longer than a frame can be applied by Bybit (its recv
# window): renewed every heartbeat while its holder lives, so only a dead sidecar's leases expire,
# and by then Bybit refuses that sidecar's last frame anyway (docs/coordination.md).
_LEASE_MARGIN_MS = 10_000


def _lease_ttl_ms(config: SidecarConfig) -> int:
    return config.exchange.recv_window_ms + _LEASE_MARGIN_MS


def reconcile_settings(config: SidecarConfig) -> ReconcileSettings:
    v = config.verification
    return ReconcileSettings(
        # A backstop: the trade adapter's own (journaled) AckTimeout normally decides first.
        ack_timeout_ms=v.ack_timeout_ms + 250,
        verify_timeout_ms=v.timeout_ms,
        not_applied_margin_ms=v.not_applied_margin_ms,
        background_timeout_ms=v.background_timeout_ms,
        rest_fallback=v.rest_fallback,
    )


class Service:
    """The sidecar's public API: `preview`, `submit`, `outcome`, `order_state`, `policy_view`,
    `health`, `halt`/`resume`, `reload`."""

    def __init__(
        self,
        config: SidecarConfig,
        *,
        clock: Clock,
        journal: Journal,
        endpoints: Endpoints | None = None,
        credentials: Credentials | None = None,
        adapters: AdapterFactory | None = None,
        policy: Policy | None = None,
        checkpoint: Checkpoint | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`adapters` builds the exchange adapters (default: Bybit's at `endpoints`, signing with
        `credentials`). `checkpoint` hears the named points of the amend path (pending.CHECKPOINTS).
        `env` is where `coordination.url_env` is looked up (the process environment by default).

        Raises:
            ConfigError: coordination.backend redis without the redis extra, or its url_env unset.
        """
        if adapters is None:
            if endpoints is None or credentials is None:
                raise ValueError("Service needs endpoints and credentials, or an adapter factory")
            adapters = bybit_adapters(endpoints, credentials)
        self.clock = clock
        self.journal = journal
        self.endpoints = endpoints
        live = self.live = Live.of(config, policy if policy is not None else config.to_policy())
        self.book = OrderBook()
        self.in_flight = InFlight()
        self.market_state = MarketState(sorted(live.policy.symbols))
        self.reconciler = Reconciler(reconcile_settings(config))
        self.lookups = TaskSet()  # REST read-backs, re-reads, the journal check: cancelled at stop
        self.background = TaskSet()  # shared-store calls off the request path: cancelled at stop
        self.recorder = Recorder(journal, clock)

        # The state several sidecars share (DESIGN §4.8): local (in-process) unless the config names
        # Redis. Request ids come from it (fleet-unique with Redis; `r<boot>-<token>-<n>` locally).
        boot_token = make_boot_token(clock.wall_ms(), os.urandom(3))
        self.coordination = open_coordinator(
            config,
            live.policy,
            journal=journal,
            clock=clock,
            in_flight=self.in_flight,
            request_id_prefix=f"r{journal.next_boot():x}-{boot_token}",
            env=env,
        )
        # The in-process limiter (local backend only; with Redis every budget is the store's).
        self.limiter: RateLimiter | None = (
            self.coordination.limiter if isinstance(self.coordination, LocalCoordinator) else None
        )
        lease_ttl_ms = _lease_ttl_ms(config)
        shared = not isinstance(self.coordination, LocalCoordinator)
        self.gate = Gate(
            self.coordination,
            self.in_flight,
            self.market_state,
            self.book,
            live.prepared,
            now_ns=clock.monotonic_ns,
            lease_ttl_ms=lease_ttl_ms,
        )
        self.leases = Leases(self.in_flight, self.coordination, shared=shared, lease_ttl_ms=lease_ttl_ms)
        self.safety = KillSwitch(
            config,
            coordination=self.coordination,
            journal=journal,
            recorder=self.recorder,
            clock=clock,
            background=self.background,
        )
        self.recorder.on_failure = self.safety.journal_failed
        self.pending = PendingRegistry(
            live,
            reconciler=self.reconciler,
            leases=self.leases,
            recorder=self.recorder,
            clock=clock,
            count_event=self.safety.count,
            checkpoint=checkpoint,
        )
        queue: asyncio.Queue[Any] = asyncio.Queue()
        built = adapters(config, live.policy, clock, adapter_sinks(queue, self.book, self.market_state))
        self.exchange_clock = built.exchange_clock
        self.rest = built.rest
        self.market = built.market
        self.trade = built.trade
        self.private = built.private
        self.intake = Intake(
            queue=queue,
            book=self.book,
            market=self.market_state,
            reconciler=self.reconciler,
            registry=self.pending,
            recorder=self.recorder,
            leases=self.leases,
            safety=self.safety,
            coordination=self.coordination,
            limiter=self.limiter,
            clock=clock,
            exchange_clock=built.exchange_clock,
            rest=built.rest,
            lookups=self.lookups,
            background=self.background,
        )
        self.runtime = Runtime(built, self.market_state, endpoints.rest_url if endpoints else "the exchange")
        self.pipeline = Pipeline(
            live=live,
            gate=self.gate,
            leases=self.leases,
            registry=self.pending,
            recorder=self.recorder,
            safety=self.safety,
            reconciler=self.reconciler,
            coordination=self.coordination,
            trade=built.trade,
            exchange_clock=built.exchange_clock,
            clock=clock,
            wake=self.intake.wake,
            boot_token=boot_token,
        )
        self.recovery = Recovery(
            recorder=self.recorder,
            registry=self.pending,
            reconciler=self.reconciler,
            leases=self.leases,
            clock=clock,
            wake=self.intake.wake,
            unreadable=self.safety.journal_unreadable,
        )
        self.upkeep = Upkeep(
            live=live,
            safety=self.safety,
            recorder=self.recorder,
            book=self.book,
            clock=clock,
            sockets_up=self._sockets_up,
            quotes_received_ns=self._quotes_received_ns,
            health=self.health,
            in_flight=self.pending.ids,
        )
        self._upkeep_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ settings in force

    @property
    def config(self) -> SidecarConfig:
        return self.live.config

    @property
    def policy(self) -> Policy:
        return self.live.policy

    @property
    def observer(self) -> ServiceObserver | None:
        """The metrics hook (sidecar/metrics.py); None costs nothing on the amend path."""
        return self.pending.observer

    @observer.setter
    def observer(self, value: ServiceObserver | None) -> None:
        self.pending.observer = value

    @property
    def counts(self) -> dict[str, int]:
        return self.pending.counts

    @property
    def recovered_requests(self) -> int:
        return self.recovery.recovered_requests

    def _sockets_up(self) -> dict[str, bool]:
        return {"trade": self.trade.ready, "private": self.private.ready}

    def _quotes_received_ns(self) -> list[int | None]:
        quotes = (self.market_state.quote(c, sym) for c, sym in self.live.policy.symbols)
        return [None if q is None else q.received_ns for q in quotes]

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Service:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # a failed start must not leave sockets or an HTTP session open
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, ready_timeout_s: float = 15.0) -> None:
        # First: with Redis, the shared state is read (and this instance registered) before any
        # call; an unreachable Redis does not stop the start (sends are denied until it answers).
        await self.coordination.start()
        self.pipeline.refresh_req_ids()
        remember(self.journal, self.coordination, self.live.config.coordination.namespace)
        self.intake.start()
        await self.runtime.start(ready_timeout_s)
        await self.runtime.wait_for_quotes(self.live.policy.symbols, ready_timeout_s)
        self.recorder.record("policy", None, {"version": self.live.policy.version, "event": "start"})
        await self.recovery.run(self.live.config.verification.timeout_ms / 1000 + 1)
        self._upkeep_task = asyncio.create_task(self.upkeep.run(), name="safety")
        # One-off, like the REST look-ups: cancelled with them at stop, gone when done.
        self.lookups.spawn(self.upkeep.check_journal(), name="journal-check")
        log.info("service.started", trade=self.endpoints.trade_ws_url if self.endpoints else None,
                 policy_version=self.live.policy.version)  # fmt: skip

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The service's long-running tasks (the event task, the once-a-second upkeep), for
        liveness checks: none of them may be done while the service runs."""
        return [t for t in (self.intake.task, self._upkeep_task) if t is not None]

    async def stop(self) -> None:
        self.safety.stopping = True
        self.intake.stopping = True
        await cancel_and_wait((self._upkeep_task, self.intake.task))
        await self.lookups.cancel_all()
        await self.background.cancel_all()
        await self.runtime.stop()
        self.pending.commit_answers()  # the answers' records a timer would have committed
        await self.coordination.stop()
        log.info("service.stopped")

    # ------------------------------------------------------------------ the amend tools

    async def submit(self, request: AmendRequest, approval: Approval | None = None) -> AmendResult:
        """Validate, rate-limit, journal, send and verify one amend request (pipeline.py)."""
        return await self.pipeline.submit(request, approval)

    async def preview(self, request: AmendRequest) -> AmendResult:
        """The verdicts a submit would get now; sends nothing, consumes no budget, journals nothing."""
        return await self.pipeline.preview(request)

    def approval_needed(self, request: AmendRequest) -> str | None:
        return self.pipeline.approval_needed(request)

    # ------------------------------------------------------------------ views

    def outcome(self, request_id: str) -> dict[str, Any] | None:
        """The journaled result of a request, including later reconciliation."""
        record = self.journal.get_request(request_id)
        if record is None:
            return None
        result = record.result
        if result is None:
            return {"requestId": request_id, "outcome": "pending", "status": record.status}
        return dict(result)

    def order_state(
        self, category: str, symbol: str, order_id: str | None, order_link_id: str | None
    ) -> dict[str, Any] | None:
        try:
            cat = Category(category)
        except ValueError:
            return None
        view = self.book.find(cat, symbol, order_id, order_link_id)
        return views.order_body(view) if view is not None else None

    async def policy_view(self, category: str | None = None, symbol: str | None = None) -> dict[str, Any]:
        """getSafetyPolicy: the limits in force now, with every rate budget's remaining units (with
        Redis: the shared budgets, read now; if Redis cannot be reached, every budget shows 0 left
        and `coordination.available` is false: nothing can be sent)."""
        local = self.limiter.snapshot(self.clock.monotonic_ns()) if self.limiter is not None else None
        policy = self.live.policy
        budgets = await self.safety.budgets_read(local, lambda: RateLimiter(policy).snapshot(0))
        return views.policy_body(
            self.live.policy,
            self.market_state,
            self.clock.monotonic_ns(),
            state=self.safety.trading_state(),
            budgets=budgets,
            coordination=self.safety.coordination_health(),
            category=category,
            symbol=symbol,
        )

    def health(self) -> dict[str, Any]:
        """Connection health, reference ages, trading state, budgets and outcome counts."""
        now_ns = self.clock.monotonic_ns()
        xc = self.exchange_clock
        return views.health_body(
            updated_ms=self.clock.wall_ms(),
            pid=os.getpid(),
            state=self.safety.trading_state(),
            sockets_up=self._sockets_up(),
            clock_offset_ms=xc.offset_ms if xc.synced else None,
            clock_sample_age_ms=xc.sample_age_ms(),
            reference_ages_ms=self.market_state.ages_ms(now_ns),
            in_flight_items=self.reconciler.in_flight_count(),
            outcomes=self.pending.counts,
            recovered_requests=self.recovery.recovered_requests,
            policy_version=self.live.policy.version,
            budgets=self._budgets_now(now_ns),
            coordination=self.safety.coordination_health(),
        )

    def _budgets_now(self, now_ns: int) -> list[BudgetView]:
        """The local limiter's budgets, or the shared ones as last read (each second) with Redis
        (health() never waits for a store)."""
        if self.limiter is not None:
            return self.limiter.snapshot(now_ns)
        return list(self.safety.shared_budgets)

    # ------------------------------------------------------------------ the kill switch

    def trading_state(self) -> tuple[TradingState, str]:
        return self.safety.trading_state()

    async def halt(self, reason: str, who: str = "operator") -> None:
        await self.safety.halt(reason, who)

    async def resume(self, who: str = "operator") -> None:
        await self.safety.resume(who)

    def check_trips(self, now_ns: int) -> None:
        """Apply the automatic kill-switch trips due at `now_ns` (upkeep calls it once a second)."""
        self.upkeep.check_trips(now_ns)

    async def check_shared_trips(self) -> None:
        await self.safety.check_shared()

    # ------------------------------------------------------------------ hot reload

    def reload(self, config: SidecarConfig) -> bool:
        """Swap in a new config's policy and runtime settings between requests (atomic: assignments
        on the loop thread, no await). The caller (`sidecar.reload`) keeps restart-only settings.

        Returns False (and keeps the old policy) when the new policy cannot be used as it is.
        """
        live = self.live
        policy = config.to_policy()
        added = set(policy.symbols) - set(live.policy.symbols)
        old = live.policy.version
        live.config, live.policy, live.prepared = config, policy, PreparedPolicy(policy)
        self.gate.prepared = live.prepared
        if self.limiter is not None:
            self.limiter.replace_policy(policy)  # the local backend's own limiter: in force now
        else:
            # Redis: later decisions use the new budgets; the new fingerprint is announced now.
            self.background.spawn(self.coordination.replace_policy(policy))
        # The reloadable settings outside the policy: the recv window of frames and REST calls sent
        # from now on, the trade adapter's ack timeout, the reconciler's deadlines (for items
        # tracked from now on; those in flight keep theirs) and the trip thresholds.
        live.recv_window_ms = config.exchange.recv_window_ms
        self.rest.recv_window_ms = config.exchange.recv_window_ms
        # Leases granted from now on outlive the new window (held ones are renewed while we live).
        self.gate.lease_ttl_ms = self.leases.lease_ttl_ms = _lease_ttl_ms(config)
        self.trade.ack_timeout_ms = config.verification.ack_timeout_ms
        self.reconciler.replace_settings(reconcile_settings(config))
        self.safety.replace_config(config)
        self.recorder.record("policy", None, {"version": policy.version, "previous": old, "event": "reload"})
        log.info("config.reloaded", policy_version=policy.version, previous=old)
        if added:
            # The ticker subscriptions are fixed at start: new symbols stay denied (no reference
            # price, fail closed) until a restart subscribes them.
            log.warning("config.symbols_need_restart", symbols=sorted(f"{c}:{s}" for c, s in added))
        return True
