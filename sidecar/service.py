"""The orchestrator: owns the core objects and the exchange adapters, runs their tasks, and turns
one amend request into one honest result.

Pipeline of `submit` (each step journaled): admission (`sidecar/admission.py`: validate and hold
the orders here, then the coordination backend: trading state, order leases, rate limits) → journal
the intent (committed before anything leaves) → track in the reconciler → send over the trade
socket → wait until every sent item has a verdict (verified, rejected, not_applied, superseded) or
the verification deadline passes (unverified; reconciliation continues in the background and the
journal records late verdicts).

Single ownership (as in NautilusTrader): validation, the local hold, the local backend's rate limit
and tracking run synchronously on the event loop without awaiting in between, so no locks are
needed; with Redis the one await is the admission's round trip, after the orders are held here and
before the intent is committed (every way out of it settles the request). Exchange events arrive on
one queue and are applied by one task (`_event_loop`), which drains the reconciler's effects and
finished verdicts after every event, the way websockets' I/O layer drains `data_to_send()`.

This module must not contain validation, rate-limit or reconciliation rules (they live in
`sidecar/core/`), nor speak the wire format (that is `sidecar/bybit/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from sidecar.admission import Cleared, Gate, Leases, Stopped
from sidecar.bybit.codec import encode_amend, encode_amend_batch
from sidecar.bybit.endpoints import Endpoints
from sidecar.bybit.exchange_clock import ExchangeClock, keep_synced, sync_from_rest
from sidecar.bybit.ids import ReqIdFactory, make_boot_token
from sidecar.bybit.market import MarketData, ping_interval_for
from sidecar.bybit.rest import RestClient, RestError
from sidecar.bybit.retcodes import is_unchanged
from sidecar.bybit.ws_private import OrderUpdate, PrivateLost, PrivateReady, PrivateStream
from sidecar.bybit.ws_trade import (
    AckTimeout,
    ConnectionLost,
    NotConnected,
    TradeConnection,
    TradeError,
    TradeReady,
)
from sidecar.clock import Clock
from sidecar.config import SidecarConfig
from sidecar.coordination import CoordinationUnavailable, LocalCoordinator
from sidecar.coordination_link import open_coordinator, remember
from sidecar.core.inflight import InFlight, reread_holder
from sidecar.core.orders import OrderBook
from sidecar.core.policy import Policy
from sidecar.core.ratelimit import BudgetView, RateLimiter, Throttle
from sidecar.core.reconcile import (
    ExpiredItem,
    ItemResult,
    QueryOrder,
    Reconciler,
    ReconcileSettings,
    TrackedItem,
)
from sidecar.core.types import (
    Ack,
    AmendItem,
    AmendRequest,
    Category,
    CodeClass,
    DenialCode,
    ItemVerdict,
    OrderView,
    Outcome,
    Reason,
    TradingState,
    Verdict,
)
from sidecar.core.validation import PreparedPolicy
from sidecar.journal import DEFINITIVE_OUTCOMES, Journal, JournalError, JournalInputError
from sidecar.journal_bodies import (
    args_in_intent,
    final_body,
    intent_item,
    late_body,
    recovered_item,
    request_args,
    settled_body,
    verdict_body,
)
from sidecar.logs import scrub
from sidecar.observer import ServiceObserver
from sidecar.results import ItemOutcome, batch_outcome, is_error, observed_body, result_body

__all__ = [
    "CRASH_POINTS",
    "AmendResult",
    "Approval",
    "CoordinationError",
    "Credentials",
    "Service",
    "StartupError",
    "request_digest",
]

# Points where `crash_at` kills the process with SIGKILL (crash-recovery tests only; never set in use).
CRASH_POINTS = frozenset({"after_intent", "after_send", "after_ack", "before_verdict"})
# The watchdog restarts a dead event task this often at most (then it stays halted and says so).
_MAX_EVENT_TASK_RESTARTS = 3
# While the journal is failed, reopening it to read the operator's `resume` is tried this often.
_REOPEN_EVERY_NS = 1_000_000_000
# A request refused whole before per-item work lists at most this many items (DESIGN §4.3).
_LISTED_ITEMS_MAX = 20
# A shared order lease lives this much longer than a frame can be applied by Bybit (its recv
# window): renewed every heartbeat while its holder lives, so only a dead sidecar's leases expire,
# and by then Bybit refuses that sidecar's last frame anyway (docs/coordination.md).
_LEASE_MARGIN_MS = 10_000
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
# Steps kept per item of a request until its next journal record (order events, read-backs).
_STEPS_PER_ITEM = 8
_BOUNDED_STEPS = frozenset({"order_event", "rest"})
# Automatic pruning, per safety tick: at most this many requests (one write transaction of ~6 ms,
# which an intent commit may wait behind; 200/s is 4x a busy agent's 50 batches/s), and this many
# freed pages given back (16 KiB pages: 2 MiB, ~3 ms).
_PRUNE_REQUESTS_PER_TICK = 200
_RECLAIM_PAGES_PER_TICK = 128

log = structlog.get_logger("service")


@dataclass(frozen=True, slots=True)
class Credentials:
    """API key and secret. The repr never shows them."""

    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return "Credentials(api_key='[redacted]', api_secret='[redacted]')"


@dataclass(frozen=True, slots=True)
class AmendResult:
    """What the agent gets back: the structured body and whether it is an error result."""

    body: dict[str, Any]
    is_error: bool


class StartupError(Exception):
    """The service could not start (bad credentials, exchange unreachable). The message says why."""


class CoordinationError(Exception):
    """The shared coordination store refused or could not take a state change. The message says why."""


@dataclass(frozen=True, slots=True)
class Approval:
    """A human's answer to an approval prompt, bound to the digest of the exact arguments."""

    digest: str
    granted: bool
    code: DenialCode = DenialCode.APPROVAL_DECLINED  # why not granted
    detail: str = ""


def request_digest(request: AmendRequest) -> str:
    """sha256 of the canonical JSON of the exact arguments (tool, category, items)."""
    try:
        text = json.dumps(
            {"tool": request.tool, "category": request.category, "items": list(request.items)},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
    except (TypeError, ValueError):
        text = repr((request.tool, request.category, request.items))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _RestResult:
    query: QueryOrder
    view: OrderView | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Reread:
    """A fresh REST read of an order whose last amend ended unverified (see core/inflight.py)."""

    order_id: str
    view: OrderView | None


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A request that passed every check, holds its orders and has its intent committed."""

    pending: _Pending
    frame: str
    op: str
    items: int | None


@dataclass(frozen=True, slots=True)
class _Deciding:
    """A request validated and holding its orders here, waiting for the shared store's decision."""

    verdict: Verdict
    state: TradingState  # what it was validated under
    front: _Front  # what it journals before its intent or answer


@dataclass
class _Pending:
    """One sent request waiting for its item verdicts."""

    request_id: str
    req_id: str
    verdict: Verdict
    started_ns: int
    sent: tuple[ItemVerdict, ...]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    results: dict[int, ItemResult] = field(default_factory=dict)
    ack: Ack | None = None
    answered: bool = False
    recovered: bool = False  # re-tracked after a restart: nobody waits; results go to the journal
    detached: bool = False  # the caller was cancelled: results go to the journal as they come
    unverified_counted: bool = False  # already counted once for the `max_unverified` trip
    # index -> the orderId this request holds in `Service.in_flight` (one amend in flight per order)
    orders: dict[int, str] = field(default_factory=dict)
    # Journal (format 2): the intent's items as journaled, the wall ms (this host's clock) of the
    # intent record, which step times count from, and the steps seen since the last record of this
    # request (folded into the next one: journal_bodies). `has_result`: a result is journaled
    # (later changes are deltas); None: ask the journal.
    intent_items: list[dict[str, Any]] = field(default_factory=list)
    journal_ms: int = 0
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    steps_omitted: int = 0
    has_result: bool | None = False
    # index -> what decided the item's latest verdict, and the wall ms it was reached.
    decided: dict[int, tuple[str, int]] = field(default_factory=dict)
    # orderId/orderLinkId -> the item index naming that order (to say whose an order event is).
    index_of: dict[str, int] = field(default_factory=dict)

    def add_step(self, step: tuple[Any, ...]) -> None:
        """Keep a step for the journal. Order events and read-backs (the steps the exchange can
        send without end) are kept up to a bound per item; beyond it they are only counted."""
        if step[0] in _BOUNDED_STEPS and len(self.steps) >= _STEPS_PER_ITEM * len(self.sent) + 16:
            self.steps_omitted += 1
            return
        self.steps.append(step)

    def take_steps(self) -> tuple[list[tuple[Any, ...]], int]:
        """The steps to fold into the record being written (then forgotten), and the count of
        those left out."""
        steps, omitted = self.steps, self.steps_omitted
        self.steps, self.steps_omitted = [], 0
        return steps, omitted


@dataclass(slots=True)
class _Front:
    """What a request journals before its intent or its answer (request, verdict, approval): held
    until the sidecar knows what it sends, so the request record can leave out the items the
    intent holds exactly. `recorded` once written."""

    args: dict[str, Any]
    verdict: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    recorded: bool = False
    validated: Verdict | None = None  # the verdict `verdict` was made from


class Service:
    """The sidecar's public API: `preview`, `submit`, `outcome`, `order_state`, `policy_view`,
    `halt`/`resume`. Use as an async context manager: entering starts the adapters' tasks and waits
    until the exchange connections are ready."""

    def __init__(
        self,
        config: SidecarConfig,
        *,
        clock: Clock,
        endpoints: Endpoints,
        credentials: Credentials,
        journal: Journal,
        policy: Policy | None = None,
        crash_at: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env` is where `coordination.url_env` is looked up (the process environment by default).

        Raises:
            ConfigError: coordination.backend redis without the redis extra, or its url_env unset.
        """
        if crash_at is not None and crash_at not in CRASH_POINTS:
            raise ValueError(f"crash_at must be one of {sorted(CRASH_POINTS)}")
        self._crash_at = crash_at
        self.config = config
        self.clock = clock
        self.endpoints = endpoints
        self.journal = journal
        self.policy = policy if policy is not None else config.to_policy()
        self.prepared = PreparedPolicy(self.policy)  # rebuilt with the policy on reload
        self.book = OrderBook()
        self.in_flight = InFlight()
        v = config.verification
        self.reconciler = Reconciler(_reconcile_settings(config))
        self.recv_window_ms = config.exchange.recv_window_ms
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        # Bybit's clock, estimated from server times: request timestamps and verification timing
        # follow it (the exchange judges them by its own clock, not this host's).
        self.exchange_clock = ExchangeClock(clock)
        self.rest = RestClient(
            endpoints.rest_url,
            credentials.api_key,
            credentials.api_secret,
            self.exchange_clock,
            self.recv_window_ms,
        )
        self.market = MarketData(
            endpoints,
            self.rest,
            sorted(self.policy.symbols),
            clock,
            ping_interval_s=ping_interval_for(self.policy.reference_max_age_ms),
        )
        self.trade = TradeConnection(
            endpoints.trade_ws_url,
            credentials.api_key,
            credentials.api_secret,
            clock,
            self._events,
            ack_timeout_ms=v.ack_timeout_ms,
            exchange_clock=self.exchange_clock,
        )
        self.private = PrivateStream(
            endpoints.private_ws_url,
            credentials.api_key,
            credentials.api_secret,
            clock,
            self.book,
            self.rest,
            sorted(self.policy.categories),
            self._events,
            exchange_clock=self.exchange_clock,
        )
        boot = journal.next_boot()
        token = make_boot_token(clock.wall_ms(), os.urandom(3))
        self._req_ids = ReqIdFactory(token)
        # The state several sidecars share (DESIGN §4.8): local (in-process) unless the config names
        # Redis. Request ids come from it (fleet-unique with Redis; `r<boot>-<token>-<n>` locally).
        self.coordination = open_coordinator(
            config,
            self.policy,
            journal=journal,
            clock=clock,
            in_flight=self.in_flight,
            request_id_prefix=f"r{boot:x}-{token}",
            env=env,
        )
        self._shared = not isinstance(self.coordination, LocalCoordinator)
        # The in-process limiter (local backend only; with Redis every budget is the store's).
        self.limiter: RateLimiter | None = (
            self.coordination.limiter if isinstance(self.coordination, LocalCoordinator) else None
        )
        lease_ttl_ms = config.exchange.recv_window_ms + _LEASE_MARGIN_MS
        self.gate = Gate(
            self.coordination,
            self.in_flight,
            self.market,
            self.book,
            self.prepared,
            now_ns=clock.monotonic_ns,
            lease_ttl_ms=lease_ttl_ms,
        )
        self.leases = Leases(
            self.in_flight, self.coordination, shared=self._shared, lease_ttl_ms=lease_ttl_ms
        )
        # Redis only: trips not yet written to the shared state (in force here meanwhile), trip
        # events not yet counted there, the budgets as last read (for health()), background calls.
        self._pending_trips: list[tuple[TradingState, str]] = []
        self._unreported: dict[str, int] = {}
        self._shared_budgets: list[BudgetView] = []
        self._journaled_epoch = -1
        self._headers: dict[tuple[str, Category], tuple[tuple[str, Category, int, int, int], int]] = {}
        self._feeding = False
        self._background: set[asyncio.Task[Any]] = set()
        self._pending: dict[str, _Pending] = {}
        # orderId/orderLinkId -> the in-flight requests naming that order (to journal its events).
        self._tracked_orders: dict[str, set[str]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._rest_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._event_task_restarts = 0
        self.counts: dict[str, int] = {}
        self._unverified_ns: deque[int] = deque()
        self._rate_limited_ns: deque[int] = deque()
        self._down_since_ns: dict[str, int | None] = {"trade": None, "private": None}
        self.recovered_requests = 0
        self._started_ns = clock.monotonic_ns()
        # Metrics hook (sidecar/metrics.py); None costs nothing on the amend path.
        self.observer: ServiceObserver | None = None

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
        self._refresh_req_ids()
        remember(self.journal, self.coordination, self.config.coordination.namespace)
        await sync_from_rest(self.exchange_clock, self.rest)  # before anything signed is sent
        await self.market.load_instruments()
        self._tasks = [
            asyncio.create_task(keep_synced(self.exchange_clock, self.rest), name="exchange_clock"),
            asyncio.create_task(self.market.run(), name="market"),
            asyncio.create_task(self.trade.run(), name="ws_trade"),
            asyncio.create_task(self.private.run(), name="ws_private"),
            self._start_event_task(),
        ]
        ready = asyncio.ensure_future(self.trade.wait_ready())
        refused = asyncio.ensure_future(self.trade.auth_failed.wait())
        try:
            async with asyncio.timeout(ready_timeout_s):
                await asyncio.wait({ready, refused}, return_when=asyncio.FIRST_COMPLETED)
                if refused.done():
                    raise StartupError(
                        f"the exchange refused the API credentials (retCode {self.trade.auth_error_code}); "
                        "check BYBIT_API_KEY and BYBIT_API_SECRET"
                    )
                await self.private.wait_ready()
        except TimeoutError:
            raise StartupError(
                f"the exchange at {self.endpoints.rest_url} did not become ready "
                f"within {ready_timeout_s:.0f} s"
            ) from None
        finally:
            ready.cancel()
            refused.cancel()
        await self._wait_for_quotes(ready_timeout_s)
        self._journal_quiet("policy", None, {"version": self.policy.version, "event": "start"})
        await self._recover()
        self._tasks.append(asyncio.create_task(self._safety_loop(), name="safety"))
        # One-off, like the REST look-ups: cancelled with them at stop, gone when done.
        check = asyncio.create_task(self._check_journal(), name="journal-check")
        self._rest_tasks.add(check)
        check.add_done_callback(self._rest_tasks.discard)
        log.info("service.started", trade=self.endpoints.trade_ws_url, policy_version=self.policy.version)

    async def _wait_for_quotes(self, timeout_s: float) -> None:
        """Give the ticker streams a moment to deliver a first price for every symbol.

        Not fatal: a symbol without a fresh price is simply denied (fail closed) until one arrives.
        """
        missing = set(self.policy.symbols)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while missing:
                    missing = {k for k in missing if self.market.quote(*k) is None}
                    if missing:
                        await asyncio.sleep(0.01)  # startup only; ticker pushes arrive every ~100 ms
        if missing:
            log.warning("service.quotes_missing", symbols=sorted(f"{c}:{s}" for c, s in missing))

    def _start_event_task(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self._event_loop(), name="events")
        task.add_done_callback(self._on_event_task_done)
        return task

    def _on_event_task_done(self, task: asyncio.Task[None]) -> None:
        """The watchdog: the task that applies exchange events must never die silently. If it
        does, trading halts, every waiting call is answered (`unverified`: nothing is lost, the
        journal keeps looking), and the task is started again so reconciliation goes on."""
        if self._stopping:
            return
        error = "cancelled" if task.cancelled() else repr(task.exception())
        log.error("service.event_task_died", error=error, restarts=self._event_task_restarts)
        self._trip(f"the exchange-event task stopped ({error}); pending amends were answered unverified")
        now = self.clock.monotonic_ns()
        try:
            self.reconciler.answer_now()
            self._drain(now)
        except Exception:  # the answers above matter more than a clean log
            log.exception("service.watchdog_failed")
            for pending in self._pending.values():
                pending.done.set()
        if self._event_task_restarts < _MAX_EVENT_TASK_RESTARTS:
            self._event_task_restarts += 1
            self._tasks = [t for t in self._tasks if t is not task]
            self._tasks.append(self._start_event_task())

    async def stop(self) -> None:
        self._stopping = True
        for task in [*self._tasks, *self._rest_tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._rest_tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.coordination.stop()
        await self.rest.close()
        log.info("service.stopped")

    # ------------------------------------------------------------------ recovery and safety

    def _crash(self, point: str) -> None:
        """Crash-recovery tests only: die here like `kill -9` would (no cleanup, no flush)."""
        if self._crash_at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    def _journal_control(self, key: str, value: str) -> None:
        try:
            self.journal.set_control(key, value)
        except JournalError as exc:
            self._trip(f"journal write failed: {exc}", journal_broken=True)

    async def _recover(self) -> None:
        """Reconcile every journaled intent without a final verdict (after a crash or kill -9).

        The items are looked at (order stream, then REST by orderId/orderLinkId), never resent.
        New amends wait until recovery has answered or its deadline passed.
        """
        try:
            intents = self.journal.unfinished_intents()
        except JournalError as exc:
            self._trip(f"journal unreadable at start: {exc}", journal_broken=True)
            return
        if not intents:
            return
        now = self.clock.monotonic_ns()
        self._journal_quiet("recovery_start", None, {"intents": len(intents)})
        log.warning("recovery.start", intents=len(intents))
        waiting: list[_Pending] = []
        for rec in intents:
            try:
                category = Category(rec.category)
            except ValueError:
                self._close_unrecoverable(
                    rec.request_id, rec.req_id, rec.pending, f"category {rec.category!r}"
                )
                continue
            verdicts: list[ItemVerdict] = []
            tracked: list[TrackedItem] = []
            for pos, raw in enumerate(rec.items):
                index = int(raw.get("index", pos))
                if index not in rec.pending:
                    continue
                item, before = recovered_item(raw, category)
                verdicts.append(
                    ItemVerdict(
                        index, item.symbol, item.order_id, item.order_link_id, item=item, order=before
                    )
                )
                tracked.append(TrackedItem(index, category, item, before))
            missing = set(rec.pending) - {t.index for t in tracked}
            if missing:
                self._close_unrecoverable(
                    rec.request_id, rec.req_id, sorted(missing), "items not in the intent"
                )
            if not tracked:
                continue
            pending = _Pending(
                rec.request_id,
                rec.req_id,
                Verdict(category, tuple(verdicts)),
                now,
                tuple(verdicts),
                answered=True,
                recovered=True,
                intent_items=[dict(i) for i in rec.items],
                journal_ms=rec.wall_ms,
                has_result=None,
            )
            self._pending[rec.request_id] = pending
            self._track_orders(pending)
            # Its orders stay busy until the recovered amends settle (one amend in flight per order).
            pending.orders = {t.index: oid for t in tracked if (oid := _order_id_of(t.item, t.before))}
            self.leases.adopt(rec.request_id, list(pending.orders.values()))
            self.reconciler.track(
                rec.request_id, rec.req_id, tracked, rec.sent_ts_ms, rec.recv_window_ms, now
            )
            # The ack (if any) was lost with the old process: the items are ambiguous until looked at.
            self.reconciler.on_ack_missing(rec.req_id, now)
            waiting.append(pending)
            self.recovered_requests += 1
        self._wake_loop()
        deadline_s = self.config.verification.timeout_ms / 1000 + 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline_s):
                for p in waiting:
                    await p.done.wait()
        self._journal_quiet(
            "recovery_done",
            None,
            {"requests": len(waiting), "answered": sum(p.done.is_set() for p in waiting)},
        )
        log.warning("recovery.done", requests=len(waiting))

    def _close_unrecoverable(self, request_id: str, req_id: str, indices: Sequence[int], why: str) -> None:
        """An intent recovery cannot look at (it cannot read it back): say so and close its items,
        so it is not taken up again at every start and does not hold up pruning forever."""
        log.error("recovery.unrecoverable", request_id=request_id, why=why)
        self._journal_quiet(
            "settled",
            request_id,
            {"unverified": list(indices), "unrecoverable": why},
            req_id=req_id,
            done=indices,
        )

    def _wake_loop(self) -> None:
        self._events.put_nowait(None)

    async def _safety_loop(self) -> None:
        """Once a second: publish health for `sidecar status` and check the automatic trips.

        Writing the health snapshot also commits any journal records still held by group commit,
        so late evidence is durable within a second even when no request arrives.
        """
        while True:
            try:
                self.check_trips(self.clock.monotonic_ns())
                if self._shared:
                    await self._keep_shared_state()
                self._journal_control("health", json.dumps(self.health(), default=str))
                # Bound memory in a long run: keep the newest closed orders, drop older ones.
                self.book.forget_terminal(keep_last=10_000)
                # The WAL checkpoint (fsync) and retention run in a worker thread, off the request
                # path, each bounded (one short write transaction at most).
                await asyncio.to_thread(self.journal.checkpoint)
                await self._retain()
            except JournalError as exc:
                log.warning("journal.upkeep_failed", error=str(exc))
            except Exception:  # a supervisor: the loop must survive anything
                log.exception("safety.loop_failed")
            await asyncio.sleep(1.0)

    async def _retain(self) -> None:
        """Prune settled requests older than `journal.retain_days` (a bounded batch per call; the
        requests this server still tracks are kept too) and give freed pages back to the disk."""
        days = self.config.journal.retain_days
        if days is None:
            return
        wall_ms = self.clock.wall_ms()
        cutoff_ms = wall_ms - int(days * 86_400_000)
        keep = frozenset(self._pending)
        pruned = await asyncio.to_thread(
            self.journal.prune, cutoff_ms, wall_ms, keep=keep, max_requests=_PRUNE_REQUESTS_PER_TICK
        )
        if pruned.records:
            released = await asyncio.to_thread(self.journal.reclaim, _RECLAIM_PAGES_PER_TICK)
            log.info(
                "journal.pruned",
                requests=pruned.requests,
                records=pruned.records,
                pinned=pruned.pinned,
                more=pruned.more,
                pages_released=released,
            )

    async def _check_journal(self) -> None:
        """The full integrity check of the journal file, in a worker thread after start (it reads
        every page, so it is not part of starting). A damaged journal halts trading."""
        try:
            problems = await asyncio.to_thread(self.journal.integrity_check)
        except JournalError as exc:
            log.warning("journal.integrity_unchecked", error=str(exc))
            return
        if problems:
            log.error("journal.integrity_failed", problems=problems[:5])
            self._trip(f"the journal failed its integrity check: {'; '.join(problems[:3])}")
        else:
            log.info("journal.integrity_checked")

    def check_trips(self, now_ns: int) -> None:
        """Apply the automatic kill-switch trips of `safety` (called once a second)."""
        cfg = self.config.safety
        state = self._effective_state()
        # Sockets down too long.
        for name, up in (("trade", self.trade.ready), ("private", self.private.ready)):
            since = self._down_since_ns[name]
            if up:
                self._down_since_ns[name] = None
            elif since is None:
                self._down_since_ns[name] = now_ns
            elif now_ns - since > cfg.socket_down_trip_s * 1_000_000_000 and state is not TradingState.HALTED:
                self._trip(f"{name} socket down for more than {cfg.socket_down_trip_s} s")
                return
        # Reference prices stale for every symbol (a symbol never priced counts from service start).
        limit_ns = cfg.stale_reference_trip_ms * 1_000_000
        ages = [
            now_ns - (q.received_ns if q is not None else self._started_ns)
            for q in (self.market.quote(c, sym) for c, sym in self.policy.symbols)
        ]
        if ages and min(ages) > limit_ns and state is not TradingState.HALTED:
            self._trip(f"reference prices stale for all symbols (> {cfg.stale_reference_trip_ms} ms)")
            return
        if self._shared:
            return  # the counters below are the account's: `check_shared_trips` counts them
        # Too many unverified results.
        window = cfg.unverified_window_s * 1_000_000_000
        while self._unverified_ns and now_ns - self._unverified_ns[0] > window:
            self._unverified_ns.popleft()
        if len(self._unverified_ns) > cfg.max_unverified and state is not TradingState.HALTED:
            self._trip(
                f"more than {cfg.max_unverified} requests with unverified items "
                f"in {cfg.unverified_window_s} s"
            )
            return
        # Repeated 10006 from Bybit: our shaping is wrong; only risk-reducing amends from now on.
        window = cfg.rate_limited_window_s * 1_000_000_000
        while self._rate_limited_ns and now_ns - self._rate_limited_ns[0] > window:
            self._rate_limited_ns.popleft()
        if len(self._rate_limited_ns) > cfg.max_exchange_rate_limited and state is TradingState.ACTIVE:
            self._trip(
                f"Bybit rate-limited (10006) more than {cfg.max_exchange_rate_limited} times in "
                f"{cfg.rate_limited_window_s} s",
                TradingState.REDUCING,
            )

    # ------------------------------------------------------------------ shared state (Redis)

    async def _keep_shared_state(self) -> None:
        """Once a second with Redis: write pending trips, count the account's trip events, read
        the budgets for health(), journal state changes seen, remember the state for a restart."""
        await self._flush_trips()
        await self.check_shared_trips()
        budgets = await self.coordination.budgets()
        if not isinstance(budgets, CoordinationUnavailable):
            self._shared_budgets = budgets
        view = self.coordination.trading_state()
        if view.known and view.epoch != self._journaled_epoch:
            self._journaled_epoch = view.epoch
            self._journal_quiet(
                "state",
                None,
                {"state": str(view.state), "reason": view.reason, "who": view.who, "sharedEpoch": view.epoch},
            )
        remember(self.journal, self.coordination, self.config.coordination.namespace)

    async def _flush_trips(self) -> None:
        """Write the trips taken here to the shared state (only ever stricter); kept while Redis
        cannot be reached, in force here meanwhile."""
        for trip in list(self._pending_trips):  # two flushes may overlap: writing twice is harmless
            if isinstance(await self.coordination.trip(*trip), CoordinationUnavailable):
                return
            with contextlib.suppress(ValueError):
                self._pending_trips.remove(trip)

    async def check_shared_trips(self) -> None:
        """The account-level trips: unverified results and Bybit's 10006 answers, counted over every
        sidecar on the account (a counter this instance cannot report now is kept for the next turn)."""
        cfg = self.config.safety
        checks = (
            ("unverified", cfg.unverified_window_s, cfg.max_unverified, TradingState.HALTED,
             f"more than {cfg.max_unverified} requests with unverified items in {cfg.unverified_window_s} s "
             "(counted over every sidecar on this account)"),
            ("rate_limited", cfg.rate_limited_window_s, cfg.max_exchange_rate_limited, TradingState.REDUCING,
             f"Bybit rate-limited (10006) more than {cfg.max_exchange_rate_limited} times in "
             f"{cfg.rate_limited_window_s} s (counted over every sidecar on this account)"),
        )  # fmt: skip
        for name, window_s, most, state, reason in checks:
            add = self._unreported.get(name, 0)
            total = await self.coordination.count_event(name, window_s * 1000, add=add)
            if isinstance(total, CoordinationUnavailable):
                continue
            self._unreported[name] = 0
            current = self.trading_state()[0]
            if total > most and _SEVERITY[state] > _SEVERITY[current]:
                self._trip(reason, state)

    def _trip_event(self, name: str, now_ns: int) -> None:
        """One event a trip counts (`unverified`, `rate_limited`): here (local), or for the account
        (Redis: reported with the next `check_shared_trips`)."""
        if self._shared:
            self._unreported[name] = self._unreported.get(name, 0) + 1
        elif name == "unverified":
            self._unverified_ns.append(now_ns)
        else:
            self._rate_limited_ns.append(now_ns)

    def _spawn(self, coro: Any) -> None:
        """Run a shared-store call in the background (an ack's budget headers): never awaited on the
        event path; cancelled on stop."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _refresh_req_ids(self) -> None:
        """Bybit reqIds named after this instance's fleet-unique id once it has one (Redis), so two
        sidecars on one account can never send the same reqId (Bybit: 20006)."""
        token = self.coordination.id_token
        if token and token != self._req_ids.boot_token:
            self._req_ids = ReqIdFactory(token)

    def health(self) -> dict[str, Any]:
        """Connection health, reference ages, trading state, budgets and outcome counts."""
        now_ns = self.clock.monotonic_ns()
        state, reason = self.trading_state()
        ages = {f"{c}:{sym}": age for (c, sym), age in sorted(self.market.ages_ms(now_ns).items())}
        return {
            "updatedMs": self.clock.wall_ms(),
            "pid": os.getpid(),
            "tradingState": str(state),
            "haltReason": reason or None,
            "tradeSocket": "up" if self.trade.ready else "down",
            # Exchange clock minus this host's, ms (None until a server time was seen).
            "clockOffsetMs": self.exchange_clock.offset_ms if self.exchange_clock.synced else None,
            "clockSampleAgeMs": self.exchange_clock.sample_age_ms(),
            "privateSocket": "up" if self.private.ready else "down",
            "referenceAgesMs": ages,
            "inFlightItems": self.reconciler.in_flight_count(),
            "outcomes": dict(self.counts),
            "recoveredRequests": self.recovered_requests,
            "policyVersion": self.policy.version,
            "rateLimits": [
                {"scope": b.scope, "key": b.key, "remaining": b.remaining, "max": b.max}
                for b in self._budgets_now(now_ns)
            ],
            "coordination": self.coordination_health(),
        }

    def coordination_health(self) -> dict[str, Any]:
        """The coordination backend and whether sends can be decided now (no URL, no password)."""
        body: dict[str, Any] = {
            "backend": self.coordination.backend,
            "available": self.coordination.available,
        }
        if self._shared:
            view = self.coordination.trading_state()
            body["namespace"] = self.config.coordination.namespace
            body["stateKnown"] = view.known
            body["stateFresh"] = view.fresh
        return body

    def _budgets_now(self, now_ns: int) -> list[BudgetView]:
        """The budgets for health(): the local limiter's, or the shared ones as last read (each
        second) with Redis (health() never waits for a store)."""
        if self.limiter is not None:
            return self.limiter.snapshot(now_ns)
        return list(self._shared_budgets)

    def reload(self, config: SidecarConfig) -> bool:
        """Swap in a new config's policy and runtime settings between requests (atomic: assignments
        on the loop thread, no await). The caller (`sidecar.reload`) keeps restart-only settings.

        Returns False (and keeps the old policy) when the new policy cannot be used as it is.
        """
        policy = config.to_policy()
        added = set(policy.symbols) - set(self.policy.symbols)
        old = self.policy.version
        self.config = config
        self.policy = policy
        self.prepared = PreparedPolicy(policy)
        self.gate.prepared = self.prepared
        if self.limiter is not None:
            self.limiter.replace_policy(policy)  # the local backend's own limiter: in force now
        else:
            # Redis: later decisions use the new budgets; the new fingerprint is announced now.
            self._spawn(self.coordination.replace_policy(policy))
        self._apply_runtime_settings(config)
        self._journal_quiet("policy", None, {"version": policy.version, "previous": old, "event": "reload"})
        log.info("config.reloaded", policy_version=policy.version, previous=old)
        if added:
            # The ticker subscriptions are fixed at start: new symbols stay denied (no reference
            # price, fail closed) until a restart subscribes them.
            log.warning("config.symbols_need_restart", symbols=sorted(f"{c}:{s}" for c, s in added))
        return True

    def _apply_runtime_settings(self, config: SidecarConfig) -> None:
        """The reloadable settings outside the policy: the recv window of frames and REST calls sent
        from now on, the trade adapter's ack timeout and the reconciler's deadlines (for items
        tracked from now on; those in flight keep the deadlines they were sent with)."""
        self.recv_window_ms = config.exchange.recv_window_ms
        self.rest.recv_window_ms = config.exchange.recv_window_ms
        self.trade.ack_timeout_ms = config.verification.ack_timeout_ms
        self.reconciler.replace_settings(_reconcile_settings(config))

    def approval_needed(self, request: AmendRequest) -> str | None:
        """A prompt for a human when this request would send an item above `approval.above_notional`."""
        threshold = self.policy.approval_above_notional
        if threshold is None:
            return None
        verdict = self.gate.validate(request, self.clock.monotonic_ns(), self._validation_state())
        big = [iv for iv in verdict.allowed_items if iv.notional is not None and iv.notional > threshold]
        if not big:
            return None
        lines = [
            f"{iv.symbol} {iv.order_link_id or iv.order_id}: "
            + ", ".join(f"{k}={v}" for k, v in (iv.item.values.items() if iv.item else ()))
            + f" (notional {_s(iv.notional)})"
            for iv in big
        ]
        total = len(verdict.allowed_items)
        return (
            f"Approve this {request.tool} on {verdict.category}? A yes sends all {total} item(s) of the "
            f"request; {len(big)} of them are above the approval threshold {_s(threshold)}: "
            + "; ".join(lines)
        )

    # ------------------------------------------------------------------ public API

    def trading_state(self) -> tuple[TradingState, str]:
        """The kill switch: as the coordination backend holds it (local: the journal database,
        shared with `sidecar halt`; Redis: the fleet's state, as this instance's view has it), made
        stricter by trips taken here and not yet written to Redis, or halted in memory after the
        journal itself failed, until the operator resumes."""
        if self._forced_halt is not None and not self._resumed_after_forced_halt():
            return TradingState.HALTED, self._forced_halt
        view = self.coordination.trading_state()
        state, reason = view.state, view.reason
        for trip_state, trip_reason in self._pending_trips:
            if _SEVERITY[trip_state] > _SEVERITY[state]:
                state, reason = trip_state, trip_reason
        return state, reason

    def _validation_state(self) -> TradingState:
        """The state items are validated under. With Redis the admission script reads the fleet's
        state itself (in the same step that takes the budget), so this instance's view only picks
        the stricter validation when it shows `reducing`; a halt (or a resume) written a moment ago
        is the script's to apply, with its reason, even before this instance's view has it. A trip
        taken here and not yet in Redis, or a failed journal, still stops every call here."""
        state = self._effective_state()
        if not self._shared or self._forced_halt is not None or self._pending_trips:
            return state
        return TradingState.REDUCING if state is TradingState.REDUCING else TradingState.ACTIVE

    async def halt(self, reason: str, who: str = "operator") -> None:
        """The operator's halt, in force for the next call before this returns (with Redis: for
        every sidecar on the account). Raises CoordinationError or JournalError if not stored."""
        await self._set_state(TradingState.HALTED, reason, who)
        log.warning("safety.halted", reason=reason, who=who)

    async def resume(self, who: str = "operator") -> None:
        """The operator's resume. Raises CoordinationError or JournalError if not stored (then
        trading stays halted)."""
        if self.journal.failed is not None:
            self.journal.reopen()  # raises JournalError (still broken): then trading stays halted
        await self._set_state(TradingState.ACTIVE, "", who)
        self._pending_trips.clear()
        self._forced_halt = None
        log.info("safety.resumed", who=who)

    async def _set_state(self, state: TradingState, reason: str, who: str) -> None:
        if not self._shared:
            self.journal.set_trading_state(state, reason, who, self.clock.wall_ms())
            return
        view = await self.coordination.set_trading_state(state, reason, who)
        if isinstance(view, CoordinationUnavailable):
            raise CoordinationError(
                view.message.replace(": nothing was sent", "") + f": {state} was not stored"
            )

    def _trip(
        self, reason: str, state: TradingState = TradingState.HALTED, *, journal_broken: bool = False
    ) -> None:
        """Automatic trip (fail closed), journaled with its reason; only the operator resumes.

        A halt because the journal itself failed (`journal_broken`) is also held in memory, since
        the journal may not be writable to record it; `sidecar resume` from another process still
        clears it (see `_effective_state`).
        """
        if journal_broken:
            self._forced_halt = reason
            self._forced_halt_ms = self.clock.wall_ms()
            self._forced_epoch = self.coordination.trading_state().epoch
        if self._shared:
            # The account's one kill switch: in force here at once, written to Redis for every
            # sidecar (now, and again each second while Redis cannot be reached).
            who = self.coordination.id_token or "sidecar"
            self._pending_trips.append((state, f"{reason} (sidecar {who})"))
            if not journal_broken:
                with contextlib.suppress(JournalError):
                    body = {"state": str(state), "reason": reason, "who": "sidecar"}
                    self.journal.record("state", None, body, self.clock.wall_ms())
            if not self._stopping:
                self._spawn(self._flush_trips())
        else:
            with contextlib.suppress(JournalError):
                self.journal.set_trading_state(state, reason, "sidecar", self.clock.wall_ms())
        log.error("safety.tripped", reason=reason, state=str(state))

    _forced_halt: str | None = None
    _forced_halt_ms = 0
    _forced_epoch = 0  # the shared state's epoch when the journal failed (Redis)
    _reopen_tried_ns = -(10**18)

    def _effective_state(self) -> TradingState:
        return self.trading_state()[0]

    def _resumed_after_forced_halt(self) -> bool:
        """Whether the operator resumed (`sidecar resume`, from any process) after the journal
        failed, and the journal works again: then the in-memory halt ends. A failed journal is
        reopened (once a second at most) to read the operator's word; until the operator resumes,
        trading stays halted even if it works again."""
        if self.journal.failed is not None:
            now_ns = self.clock.monotonic_ns()
            if now_ns - self._reopen_tried_ns < _REOPEN_EVERY_NS:
                return False
            self._reopen_tried_ns = now_ns
            try:
                self.journal.reopen()
            except JournalError as exc:
                log.warning("journal.reopen_failed", error=str(exc))
                return False
            reopened = True
        else:
            reopened = False
        if self._shared:
            # The operator resumes through Redis: a resume written after the failure ends it.
            view = self.coordination.trading_state()
            if view.state is not TradingState.ACTIVE or view.epoch <= self._forced_epoch:
                return False
            log.info("safety.resumed", who=view.who, after=self._forced_halt)
            self._forced_halt = None
            return True
        try:
            state, _reason, who, ts_ms = self.journal.trading_state()  # a read; never a write
        except JournalError:
            return False
        if state != TradingState.ACTIVE or ts_ms < self._forced_halt_ms:
            if reopened and state == TradingState.ACTIVE:
                # The journal works again: record the halt it could not record, so `sidecar status`
                # shows it (stamped at the failure, so any later resume still wins).
                with contextlib.suppress(JournalError):
                    self.journal.set_trading_state(
                        TradingState.HALTED, self._forced_halt or "", "sidecar", self._forced_halt_ms
                    )
            return False
        log.info("safety.resumed", who=who, after=self._forced_halt)
        self._forced_halt = None
        return True

    async def preview(self, request: AmendRequest) -> AmendResult:
        """The verdicts a submit would get now. Sends nothing, consumes no budget, journals nothing
        (with Redis: one read of the shared state, budgets and leases)."""
        now_ns = self.clock.monotonic_ns()
        state = self._validation_state()
        verdict = self.gate.validate(request, now_ns, state)
        outcome: Cleared | Stopped = Cleared(verdict, {})
        if verdict.any_allowed:
            decided = self.gate.preview_now(request, verdict, state)
            outcome = decided if decided is not None else await self.gate.preview(request, verdict, state)
        verdict = outcome.verdict
        extra = outcome.reason if isinstance(outcome, Stopped) else None
        throttle = outcome.throttle if isinstance(outcome, Stopped) else None
        outcomes: list[ItemOutcome] = []
        for iv in verdict.items:
            if extra is not None:
                outcomes.append(ItemOutcome(iv, Outcome.DENIED, (*iv.reasons, extra)))
            elif not iv.allowed:
                outcomes.append(ItemOutcome(iv, Outcome.DENIED, iv.reasons))
            elif throttle is not None:
                outcomes.append(ItemOutcome(iv, Outcome.THROTTLED, (self._rate_reason(throttle),)))
            else:
                outcomes.append(ItemOutcome(iv, Outcome.ALLOWED))
        reasons = list(verdict.reasons)
        if extra is not None:
            reasons.append(extra)
        if throttle is not None:
            reasons.append(self._rate_reason(throttle))
        body = result_body(
            request_id="preview",
            items=outcomes,
            reasons=reasons,
            retry_after_ms=throttle.retry_after_ms if throttle is not None else None,
            latency_ms=(self.clock.monotonic_ns() - now_ns) / 1e6,
            items_omitted=verdict.items_omitted,
        )
        return AmendResult(body, is_error(outcomes))

    async def submit(self, request: AmendRequest, approval: Approval | None = None) -> AmendResult:
        """Validate, rate-limit, journal, send and verify one amend request.

        When `approval.above_notional` applies, `approval` must carry a human's yes bound to
        `request_digest(request)`; otherwise the request is denied APPROVAL_UNAVAILABLE (no answer)
        or with the approval's code (a no).

        Every request ends with an answer and a final record, whatever happens: an error before
        anything could leave denies it (INTERNAL_ERROR, EXCHANGE_UNAVAILABLE); an error or a
        cancellation once a frame may have left is resolved by looking (never `denied`); a dead
        event task is answered by the watchdog.
        """
        started_ns = self.clock.monotonic_ns()
        request_id = self.coordination.next_request_id()
        deciding: _Deciding | None = None
        try:
            admitted = self._admit(request_id, request, approval, started_ns)
            if isinstance(admitted, _Deciding):
                # The shared store decides (Redis): the one await before the intent is committed.
                deciding = admitted
                outcome = await self.gate.admit(request, request_id, deciding.verdict, deciding.state)
                outcome = self._still_clear(request_id, outcome)
                admitted = self._cleared(request_id, request, outcome, started_ns, deciding.front)
        except asyncio.CancelledError:
            # The caller went away while the shared store decided: nothing was sent. Free what the
            # request holds (here and in the store) and leave a final record, then let it go.
            if deciding is not None:
                self._ensure_front(request_id, request, deciding.front)
            self._abandon(request_id, "cancelled before sending")
            self._finish_unsent(
                request_id,
                request=request,
                started_ns=started_ns,
                code=DenialCode.CANCELLED,
                detail="the call was cancelled while its admission was decided",
            )
            raise
        except Exception as exc:  # a bug before sending must deny, never send or hang
            log.exception("amend.admit_failed", request_id=request_id)
            if deciding is not None:
                self._ensure_front(request_id, request, deciding.front)
            self._abandon(request_id, f"{type(exc).__name__}: {exc}")
            return self._finish_unsent(
                request_id,
                request=request,
                started_ns=started_ns,
                code=DenialCode.INTERNAL_ERROR,
                detail=f"the sidecar failed before sending ({type(exc).__name__})",
            )
        if isinstance(admitted, AmendResult):
            return admitted
        return await self._dispatch(admitted, request)

    def _admit(
        self, request_id: str, request: AmendRequest, approval: Approval | None, started_ns: int
    ) -> AmendResult | _Admitted | _Deciding:
        """Everything before the send that needs no await (so check and hold are atomic here):
        validate against the orders not in flight, approval, hold the orders, then the coordinator
        (local: kill switch and rate limit, at once), then journal the request (with its verdict)
        and commit the intent. Returns the refusal, what to send, or `_Deciding` when the shared
        store must be asked first."""
        if self._forced_halt is not None and not self._resumed_after_forced_halt():
            # The journal is broken: nothing can be recorded, so nothing may be sent (fail closed).
            return self._finish_unsent(
                request_id,
                request=request,
                started_ns=started_ns,
                code=DenialCode.TRADING_HALTED,
                detail=f"trading is halted: {self._forced_halt}",
            )
        front = _Front(request_args(request))
        try:
            return self._admit_checked(request_id, request, approval, started_ns, front)
        except Exception:
            self._ensure_front(request_id, request, front)  # the INTERNAL_ERROR answer needs it
            raise

    def _ensure_front(self, request_id: str, request: AmendRequest, front: _Front) -> None:
        """Journal the request if nothing has yet (before an answer that did not go through the
        usual paths: an exception, a cancellation)."""
        if not front.recorded:
            front.recorded = True
            with contextlib.suppress(JournalError):
                self.journal.record_request(request_id, request.tool, front.args, self.clock.wall_ms())

    def _admit_checked(
        self,
        request_id: str,
        request: AmendRequest,
        approval: Approval | None,
        started_ns: int,
        front: _Front,
    ) -> AmendResult | _Admitted | _Deciding:
        state = self._validation_state()
        verdict = self.gate.validate(request, started_ns, state)
        front.verdict, front.validated = verdict_body(verdict), verdict
        if not verdict.any_allowed:
            return self._record_front(request_id, request, started_ns, front) or self._finish_denied(
                request_id, verdict, started_ns
            )

        threshold = self.policy.approval_above_notional
        if threshold is not None and any(
            iv.notional is not None and iv.notional > threshold for iv in verdict.allowed_items
        ):
            refusal = self._approval_refusal(request, approval)
            front.approval = {
                "digest": request_digest(request),
                "granted": refusal is None,
                "code": None if refusal is None else str(refusal.code),
            }
            if refusal is not None:
                return self._record_front(request_id, request, started_ns, front) or self._finish_refused(
                    request_id, verdict, refusal, started_ns
                )

        busy = self.gate.hold(request_id, verdict)
        if busy is not None:
            return self._cleared(request_id, request, busy, started_ns, front)
        outcome = self.gate.admit_now(request, request_id, verdict, state)
        if outcome is None:
            return _Deciding(verdict, state, front)
        return self._cleared(request_id, request, outcome, started_ns, front)

    def _still_clear(self, request_id: str, outcome: Cleared | Stopped) -> Cleared | Stopped:
        """After the await on the shared store: a halt this instance took meanwhile (a trip not yet
        in Redis, a failed journal) still stops the request (its leases are handed back)."""
        if isinstance(outcome, Cleared) and self._validation_state() is TradingState.HALTED:
            self.leases.release_all(request_id)
            reason = Reason(
                DenialCode.TRADING_HALTED,
                f"trading is halted ({self.trading_state()[1]}); no amend is sent until `sidecar resume`",
            )
            return Stopped(outcome.verdict, reason)
        return outcome

    def _cleared(
        self,
        request_id: str,
        request: AmendRequest,
        outcome: Cleared | Stopped,
        started_ns: int,
        front: _Front,
    ) -> AmendResult | _Admitted:
        """The admission's outcome: answer a stop (nothing sent), or journal the request and commit
        the intent of what is cleared (write-ahead) and start tracking it. Synchronous."""
        if outcome.verdict is not front.validated:  # validated again (Busy, Reducing): journal that
            front.verdict, front.validated = verdict_body(outcome.verdict), outcome.verdict
        if isinstance(outcome, Stopped):
            refused = self._record_front(request_id, request, started_ns, front)
            if refused is not None:
                return refused
            if outcome.throttle is not None:
                return self._finish_throttled(request_id, outcome.verdict, outcome.throttle, started_ns)
            if outcome.reason is not None:
                return self._finish_refused(request_id, outcome.verdict, outcome.reason, started_ns)
            return self._finish_denied(request_id, outcome.verdict, started_ns)
        verdict, orders = outcome.verdict, outcome.orders
        category = verdict.category
        assert category is not None  # an allowed item implies a valid category
        to_send = verdict.allowed_items
        self._refresh_req_ids()
        req_id = self._req_ids.next()
        ts_ms = self.exchange_clock.wall_ms()
        items = [iv.item for iv in to_send if iv.item is not None]
        if request.batch:
            op = "order.amend-batch"
            frame = encode_amend_batch(req_id, category, items, ts_ms, self.recv_window_ms)
        else:
            op = "order.amend"
            frame = encode_amend(req_id, category, items[0], ts_ms, self.recv_window_ms)
        intent_items = [intent_item(iv) for iv in to_send]
        refused = self._record_front(
            request_id, request, started_ns, front, in_intent=args_in_intent(front.args, intent_items)
        )
        if refused is not None:
            self.leases.release_all(request_id)
            return refused
        journal_ms = self.clock.wall_ms()
        try:
            self.journal.record_intent(
                request_id,
                req_id,
                op,
                str(category),
                intent_items,
                ts_ms,  # the request's timestamp, on the exchange's clock (recovery's timing)
                self.recv_window_ms,
                self.policy.version,
                journal_ms,  # the record's own time, like every other journal record
            )
        except JournalError as exc:
            # Write-ahead: an intent that is not durable is never sent.
            self.leases.release_all(request_id)
            return self._journal_failed(request_id, request, started_ns, exc)

        self._crash("after_intent")
        pending = _Pending(
            request_id,
            req_id,
            verdict,
            started_ns,
            to_send,
            orders=orders,
            intent_items=intent_items,
            journal_ms=journal_ms,
        )
        self._pending[request_id] = pending
        self._track_orders(pending)
        self.reconciler.track(
            request_id,
            req_id,
            [TrackedItem(iv.index, category, iv.item, iv.order) for iv in to_send if iv.item is not None],
            ts_ms,
            self.recv_window_ms,
            started_ns,
        )
        return _Admitted(pending, frame, op, len(to_send) if request.batch else None)

    def _record_front(
        self,
        request_id: str,
        request: AmendRequest,
        started_ns: int,
        front: _Front,
        *,
        in_intent: Sequence[int] = (),
    ) -> AmendResult | None:
        """Journal the request (leaving out the items at `in_intent`, which the intent holds),
        its verdict and approval (buffered: the intent or the answer commits them). Returns the
        refusal when the journal cannot take them (then nothing may be sent), else None."""
        front.recorded = True
        try:
            self.journal.record_request(
                request_id, request.tool, front.args, self.clock.wall_ms(), in_intent=in_intent
            )
        except JournalInputError as exc:
            # This input cannot be recorded: refuse this request only (no agent input halts trading).
            return self._finish_unsent(
                request_id,
                request=request,
                started_ns=started_ns,
                code=DenialCode.INVALID_REQUEST,
                detail=str(exc),
            )
        except JournalError as exc:
            return self._journal_failed(request_id, request, started_ns, exc)
        if front.verdict is not None:
            self._journal_quiet("verdict", request_id, front.verdict)
        if front.approval is not None:
            self._journal_quiet("approval", request_id, front.approval)
        return None

    async def _dispatch(self, admitted: _Admitted, request: AmendRequest) -> AmendResult:
        """Send the frame and wait for every item's verdict. Safe against any exception."""
        pending = admitted.pending
        request_id, req_id = pending.request_id, pending.req_id
        try:
            await self.trade.send(req_id, admitted.frame, items=admitted.items)
        except NotConnected as exc:
            # Nothing left (the adapter refuses before writing): deny, and forget the intent.
            self._unsent(pending, str(exc))
            return self._finish_unsent(
                request_id,
                request=request,
                started_ns=pending.started_ns,
                code=DenialCode.EXCHANGE_UNAVAILABLE,
                detail=str(exc),
                verdict=pending.verdict,
            )
        except asyncio.CancelledError:
            self._send_failed(pending, "cancelled")
            self._detach(pending)
            raise
        except Exception as exc:
            self._send_failed(pending, type(exc).__name__)
        else:
            pending.add_step(("sent", self.clock.wall_ms()))
            log.info(
                "amend.sent", request_id=request_id, req_id=req_id, items=len(pending.sent), op=admitted.op
            )
            if self.observer is not None:
                self.observer.observe_sent(self._ms_since(pending.started_ns) / 1000)
        self._crash("after_send")

        try:
            await pending.done.wait()
        except asyncio.CancelledError:
            # The caller went away (MCP request cancelled): nobody waits any more, but the items
            # were sent, so their verdicts are still reached and stored for getAmendOutcome.
            self._detach(pending)
            raise
        return self._answer(pending)

    def _unsent(self, pending: _Pending, why: str) -> None:
        """The frame never left: stop tracking, free the orders, and close the intent's items so
        recovery never looks at them."""
        request_id = pending.request_id
        self.reconciler.forget(request_id)
        self._release(pending)
        self.leases.release_all(request_id)
        del self._pending[request_id]
        self._journal_quiet(
            "not_sent",
            request_id,
            {"reason": why},
            req_id=pending.req_id,
            done=[iv.index for iv in pending.sent],
        )

    def _send_failed(self, pending: _Pending, why: str) -> None:
        """The send raised after the intent: a frame may have left. Never resend, never deny: the
        items are resolved by looking (stream, then REST), like a lost ack."""
        log.warning("amend.send_failed", request_id=pending.request_id, req_id=pending.req_id, error=why)
        pending.add_step(("send_failed", self.clock.wall_ms(), why))
        self.reconciler.on_ack_missing(pending.req_id, self.clock.monotonic_ns())
        self._wake_loop()

    def _detach(self, pending: _Pending) -> None:
        """Nobody waits for this request any more: its verdicts go to the journal as they come."""
        pending.answered = True
        pending.detached = True
        self._update_stored_result(pending)

    def _abandon(self, request_id: str, why: str) -> None:
        """`_admit` failed half-way: free whatever it held; an intent already committed is settled
        as never sent (the frame cannot have left: sending comes after `_admit`)."""
        self.leases.release_all(request_id)
        pending = self._pending.get(request_id)
        if pending is not None:
            self._unsent(pending, why)

    def _journal_failed(
        self, request_id: str, request: AmendRequest, started_ns: int, exc: JournalError
    ) -> AmendResult:
        """The journal refused a write before anything was sent: halt and deny (fail closed)."""
        self._trip(f"journal write failed: {exc}", journal_broken=True)
        return self._finish_unsent(
            request_id,
            request=request,
            started_ns=started_ns,
            code=DenialCode.INTERNAL_ERROR,
            detail=str(exc),
        )

    @staticmethod
    def _approval_refusal(request: AmendRequest, approval: Approval | None) -> Reason | None:
        if approval is None:
            return Reason(
                DenialCode.APPROVAL_UNAVAILABLE,
                "this amend is above the approval threshold and needs a human yes, but the client "
                "cannot ask one (no MCP elicitation); nothing was sent",
            )
        if approval.digest != request_digest(request):
            return Reason(
                DenialCode.APPROVAL_UNAVAILABLE,
                "the approval given was for different arguments; nothing was sent",
            )
        if not approval.granted:
            return Reason(approval.code, approval.detail or "the human declined this amend; nothing was sent")
        return None

    def _finish_refused(
        self, request_id: str, verdict: Verdict, reason: Reason, started_ns: int
    ) -> AmendResult:
        """Deny every item with `reason` added (nothing was or will be sent)."""
        outcomes = [ItemOutcome(iv, Outcome.DENIED, (*iv.reasons, reason)) for iv in verdict.items] or [
            ItemOutcome(ItemVerdict(0, None, None, None), Outcome.DENIED, (reason,))
        ]
        body = result_body(
            request_id=request_id,
            items=outcomes,
            reasons=[reason],
            latency_ms=self._ms_since(started_ns),
            items_omitted=verdict.items_omitted,
        )
        log.info("amend.denied", request_id=request_id, codes=[str(reason.code)])
        return self._store(request_id, outcomes, body)

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
        return order_body(view) if view is not None else None

    async def policy_view(self, category: str | None = None, symbol: str | None = None) -> dict[str, Any]:
        """getSafetyPolicy: the limits in force now, with every rate budget's remaining units (with
        Redis: the shared budgets, read now; if Redis cannot be reached, every budget shows 0 left
        and `coordination.available` is false: nothing can be sent)."""
        budgets = await self._budgets_read()
        now_ns = self.clock.monotonic_ns()
        state, reason = self.trading_state()
        symbols: list[dict[str, Any]] = []
        for (cat, sym), rule in sorted(self.policy.symbols.items()):
            if category is not None and str(cat) != category:
                continue
            if symbol is not None and sym != symbol:
                continue
            quote = self.market.quote(cat, sym)
            inst = self.market.instrument(cat, sym)
            ref = quote.reference(rule.reference) if quote is not None else None
            band = rule.price_band_bps / Decimal(10_000)
            max_qty = rule.max_qty if inst is None else min(rule.max_qty, inst.max_qty)
            symbols.append(
                {
                    "category": str(cat),
                    "symbol": sym,
                    "reference": str(rule.reference),
                    "referencePrice": _s(ref),
                    "referenceAgeMs": None if quote is None else (now_ns - quote.received_ns) // 1_000_000,
                    "priceBandBps": _s(rule.price_band_bps),
                    "minPrice": _s(ref * (1 - band)) if ref is not None else None,
                    "maxPrice": _s(ref * (1 + band)) if ref is not None else None,
                    "tickSize": _s(inst.tick_size) if inst else None,
                    "qtyStep": _s(inst.qty_step) if inst else None,
                    "minQty": _s(inst.min_qty) if inst else None,
                    "maxQty": _s(max_qty),
                    "maxNotional": _s(rule.max_notional),
                }
            )
        return {
            "tradingState": str(state),
            "haltReason": reason or None,
            "policyVersion": self.policy.version,
            "batch": {
                "maxOrders": self.policy.batch_max_orders,
                "mode": str(self.policy.batch_mode),
                "maxNotional": _s(self.policy.batch_max_notional),
            },
            "referenceMaxAgeMs": self.policy.reference_max_age_ms,
            "symbols": symbols,
            "rateLimits": [
                {
                    "scope": b.scope,
                    "key": b.key,
                    "max": b.max,
                    "windowS": float(b.window_s),
                    "remaining": b.remaining,
                    "retryAfterMs": b.retry_after_ms,
                }
                for b in budgets
            ],
            "coordination": self.coordination_health(),
        }

    async def _budgets_read(self) -> list[BudgetView]:
        """Every budget now: the local limiter's, or Redis's (one read). Redis unreachable: the
        configured budgets with nothing left (nothing can be sent until it answers)."""
        if self.limiter is not None:
            return self.limiter.snapshot(self.clock.monotonic_ns())
        views = await self.coordination.budgets()
        if not isinstance(views, CoordinationUnavailable):
            self._shared_budgets = views
            return views
        return [dataclasses.replace(b, remaining=0) for b in RateLimiter(self.policy).snapshot(0)]

    # ------------------------------------------------------------------ results

    @staticmethod
    def _rate_reason(throttle: Throttle) -> Reason:
        return Reason(DenialCode.RATE_LIMITED, throttle.message)

    def _count(self, outcome: Outcome) -> None:
        self.counts[str(outcome)] = self.counts.get(str(outcome), 0) + 1

    def _store(
        self,
        request_id: str,
        outcomes: Sequence[ItemOutcome],
        body: dict[str, Any],
        pending: _Pending | None = None,
    ) -> AmendResult:
        """Journal the answer (committed before it is returned) and count it. For a sent request
        the `final` record also holds the steps that led to it (journal_bodies.final_body)."""
        # Every answer names the policy version it was decided under (hot reload can change it).
        body.setdefault("policyVersion", self.policy.version)
        for o in outcomes:
            self._count(o.outcome)
        if self.observer is not None:
            self.observer.observe_answer(outcomes, body["latencyMs"] / 1000)
        if pending is None:
            self._journal_quiet("final", request_id, _compact_or(body, lambda: final_body(body)), final=True)
        else:
            steps, omitted = pending.take_steps()
            record = _compact_or(
                body,
                lambda: final_body(
                    body,
                    steps,
                    base_ms=pending.journal_ms,
                    intent_items=pending.intent_items,
                    decided=pending.decided,
                    steps_omitted=omitted,
                ),
            )
            self._journal_quiet("final", request_id, record, final=True, done=_closed_items(pending))
            pending.has_result = True
        return AmendResult(body, is_error(outcomes))

    def _finish_denied(self, request_id: str, verdict: Verdict, started_ns: int) -> AmendResult:
        outcomes = [ItemOutcome(iv, Outcome.DENIED, iv.reasons) for iv in verdict.items]
        if not outcomes:  # an empty or unusable request still gets an answer
            outcomes = [
                ItemOutcome(
                    ItemVerdict(0, None, None, None, verdict.reasons), Outcome.DENIED, verdict.reasons
                )
            ]
        body = result_body(
            request_id=request_id,
            items=outcomes,
            reasons=verdict.reasons,
            latency_ms=self._ms_since(started_ns),
            items_omitted=verdict.items_omitted,
        )
        log.info(
            "amend.denied", request_id=request_id, codes=sorted({r.code for o in outcomes for r in o.reasons})
        )
        return self._store(request_id, outcomes, body)

    def _finish_throttled(
        self, request_id: str, verdict: Verdict, throttle: Throttle, started_ns: int
    ) -> AmendResult:
        reason = self._rate_reason(throttle)
        outcomes = [
            ItemOutcome(iv, Outcome.THROTTLED, (reason,))
            if iv.allowed
            else ItemOutcome(iv, Outcome.DENIED, iv.reasons)
            for iv in verdict.items
        ]
        body = result_body(
            request_id=request_id,
            items=outcomes,
            reasons=[*verdict.reasons, reason],
            retry_after_ms=throttle.retry_after_ms,
            latency_ms=self._ms_since(started_ns),
        )
        log.info(
            "amend.throttled", request_id=request_id, key=throttle.key, retry_after_ms=throttle.retry_after_ms
        )
        return self._store(request_id, outcomes, body)

    def _finish_unsent(
        self,
        request_id: str,
        *,
        request: AmendRequest,
        started_ns: int,
        code: DenialCode,
        detail: str,
        verdict: Verdict | None = None,
    ) -> AmendResult:
        """Nothing was sent: every item is denied with `code` (fail closed)."""
        messages = {
            DenialCode.INTERNAL_ERROR: "the sidecar failed before sending, so nothing was sent",
            DenialCode.INVALID_REQUEST: "the request cannot be recorded, so nothing was sent",
            DenialCode.EXCHANGE_UNAVAILABLE: "the exchange connection is not ready, so nothing was sent; "
            "retry when getSafetyPolicy shows the connection is back",
            DenialCode.TRADING_HALTED: "no amend passes until the operator runs `sidecar resume`",
            DenialCode.CANCELLED: "the caller cancelled the call, so nothing was sent",
        }
        reason = Reason(code, f"{messages.get(code, 'nothing was sent')} ({detail})")
        if verdict is None:
            count = len(request.items)
            listed = min(count, _LISTED_ITEMS_MAX)  # bounded whatever the input (DESIGN §4.3)
            verdict = Verdict(
                None,
                tuple(ItemVerdict(i, None, None, None) for i in range(listed)),
                items_omitted=count - listed,
            )
        return self._finish_refused(request_id, verdict, reason, started_ns)

    def _answer(self, pending: _Pending) -> AmendResult:
        pending.answered = True
        outcomes = self._outcomes(pending)
        body = result_body(
            request_id=pending.request_id,
            items=outcomes,
            reasons=pending.verdict.reasons,
            ack=pending.ack,
            latency_ms=self._ms_since(pending.started_ns),
            extra={"policyVersion": self.policy.version},
        )
        log.info(
            "amend.answered",
            request_id=pending.request_id,
            req_id=pending.req_id,
            outcome=body["outcome"],
            latency_ms=body["latencyMs"],
        )
        result = self._store(pending.request_id, outcomes, body, pending)
        self._settle()
        return result

    def _outcomes(self, pending: _Pending) -> list[ItemOutcome]:
        outcomes: list[ItemOutcome] = []
        sent_index = {iv.index for iv in pending.sent}
        for iv in pending.verdict.items:
            if iv.index not in sent_index:
                outcomes.append(ItemOutcome(iv, Outcome.DENIED, iv.reasons))
                continue
            r = pending.results.get(iv.index)
            if r is None:  # defensive: the reconciler always answers by the verify deadline
                outcomes.append(ItemOutcome(iv, Outcome.UNVERIFIED))
                continue
            reasons: tuple[Reason, ...] = ()
            if r.outcome is Outcome.REJECTED and is_unchanged(r.exchange_code, r.exchange_msg):
                reasons = (_UNCHANGED_AT_EXCHANGE,)
            outcomes.append(ItemOutcome(iv, r.outcome, reasons, r.exchange_code, r.exchange_msg, r.observed))
        return outcomes

    def _track_orders(self, pending: _Pending) -> None:
        for iv in pending.sent:
            for key in _order_keys(iv):
                self._tracked_orders.setdefault(key, set()).add(pending.request_id)
                pending.index_of.setdefault(key, iv.index)

    def _release(self, pending: _Pending) -> None:
        for iv in pending.sent:
            for key in _order_keys(iv):
                ids = self._tracked_orders.get(key)
                if ids is not None:
                    ids.discard(pending.request_id)
                    if not ids:
                        del self._tracked_orders[key]

    def _pending_of(self, req_id: str) -> _Pending | None:
        for p in self._pending.values():
            if p.req_id == req_id:
                return p
        return None

    def _forget(self, pending: _Pending) -> None:
        if self._pending.pop(pending.request_id, None) is not None:
            self._release(pending)
            leftover = self.leases.release_all(pending.request_id)
            if leftover:  # every item settles or moves to a re-read first; never keep an order busy
                log.warning("amend.released_leftover", request_id=pending.request_id, orders=list(leftover))

    def _ms_since(self, started_ns: int) -> float:
        return (self.clock.monotonic_ns() - started_ns) / 1e6

    def _journal_quiet(
        self,
        kind: str,
        request_id: str | None,
        body: Mapping[str, Any],
        *,
        req_id: str | None = None,
        item_idx: int | None = None,
        final: bool = False,
        done: Sequence[int] | None = None,
    ) -> None:
        """Append evidence; a failure halts trading (fail closed) but never loses the answer in hand.
        `done`: items of the request's intent this record closes (journal `record`)."""
        try:
            if final and request_id is not None:
                self.journal.record_final(request_id, body, self.clock.wall_ms(), done=done or ())
            else:
                self.journal.record(kind, request_id, body, self.clock.wall_ms(), req_id, item_idx, done=done)
        except JournalInputError as exc:
            # A body the journal cannot hold (e.g. an exchange message echoing the key): record it
            # scrubbed; never halt trading for it.
            log.warning("journal.record_refused", kind=kind, request_id=request_id, error=str(exc))
            with contextlib.suppress(JournalError):
                if final and request_id is not None:
                    self.journal.record_final(request_id, scrub(body), self.clock.wall_ms(), done=done or ())
                else:
                    self.journal.record(
                        kind, request_id, scrub(body), self.clock.wall_ms(), req_id, item_idx, done=done
                    )
        except JournalError as exc:
            self._trip(f"journal write failed: {exc}", journal_broken=True)

    # ------------------------------------------------------------------ exchange events

    async def _event_loop(self) -> None:
        while True:
            deadline = self.reconciler.next_deadline_ns()
            now = self.clock.monotonic_ns()
            timeout_s = 0.25 if deadline is None else min(0.25, max(0.0, (deadline - now) / 1e9))
            event: object | None = None
            try:
                async with asyncio.timeout(timeout_s):
                    event = await self._events.get()
            except TimeoutError:
                event = None
            now = self.clock.monotonic_ns()
            wall = self.exchange_clock.wall_ms()  # exchange time: not_applied timing, budget resets
            try:
                if event is not None:
                    self._apply_event(event, now, wall)
                    # Apply whatever else is already queued before draining: fewer drains under load.
                    while not self._events.empty():
                        self._apply_event(self._events.get_nowait(), now, wall)
                self.reconciler.tick(now, wall)
                self._drain(now)
            except Exception:  # a supervisor: log, keep the loop alive, never turn an error into a send
                log.exception("service.event_failed")

    def _apply_event(self, event: object, now: int, wall: int) -> None:
        if isinstance(event, OrderUpdate):
            view = event.view
            ids = self._tracked_orders.get(view.order_id, set()) | self._tracked_orders.get(
                view.order_link_id, set()
            )
            for request_id in sorted(ids):  # evidence goes with every request it concerns
                pending = self._pending.get(request_id)
                if pending is not None:
                    index = pending.index_of.get(view.order_id, pending.index_of.get(view.order_link_id))
                    # Journal times are this host's (`wall` is the exchange's, for verification).
                    pending.add_step(("order_event", self.clock.wall_ms(), index, str(event.result), view))
            self.reconciler.on_order_update(view, now)
        elif isinstance(event, Ack):
            self._on_ack(event, now, wall)
        elif isinstance(event, AckTimeout):
            self._trade_step("ack_timeout", event.req_id)
            self.reconciler.on_ack_missing(event.req_id, now)
        elif isinstance(event, ConnectionLost):
            for req_id in event.pending_req_ids:
                self._trade_step("connection_lost", req_id)
                self.reconciler.on_ack_missing(req_id, now)
        elif isinstance(event, _RestResult):
            self._rest_step(event)
            if event.error is not None:
                self.reconciler.on_rest_error(event.query, now)
            else:
                if event.view is not None:
                    self.book.apply(event.view)
                self.reconciler.on_rest_result(event.query, event.view, now, wall)
        elif isinstance(event, _Reread):
            if event.view is not None:
                self.book.apply(event.view)
            self._journal_quiet(
                "reread",
                None,
                {"orderId": event.order_id, "view": _event_json(event.view) if event.view else None},
            )
            self.leases.release(reread_holder(event.order_id), event.order_id)
            log.info("amend.reread_done", order_id=event.order_id, found=event.view is not None)
        elif isinstance(event, TradeError):
            log.warning("ws_trade.error_frame", ret_code=event.ret_code, ret_msg=event.ret_msg)
        elif isinstance(event, TradeReady | PrivateReady | PrivateLost):
            log.info("exchange.connection", change=type(event).__name__)

    def _trade_step(self, kind: str, req_id: str) -> None:
        """An ack timeout or a lost connection for a sent request: a step of that request (a
        record of its own if the request is no longer held)."""
        pending = self._pending_of(req_id)
        if pending is not None:
            pending.add_step((kind, self.clock.wall_ms()))
        else:
            self._journal_quiet(kind, None, {}, req_id=req_id)

    def _rest_step(self, event: _RestResult) -> None:
        """A REST read-back (or its failure): a step of the request that asked for it."""
        pending = self._pending.get(event.query.request_id)
        if pending is not None:
            pending.add_step(("rest", self.clock.wall_ms(), event.query.index, event.view, event.error))
            return
        body: dict[str, Any] = {
            "query": _query_json(event.query),
            "view": order_body(event.view) if event.view else None,
        }
        if event.error is not None:
            body["error"] = event.error
        self._journal_quiet("rest", event.query.request_id, body)

    def _on_ack(self, ack: Ack, now: int, wall: int) -> None:
        pending = self._pending_of(ack.req_id)
        request_id = None
        if pending is not None:
            pending.ack = ack
            request_id = pending.request_id
            pending.add_step(("ack", self.clock.wall_ms(), ack))
            if self.observer is not None:
                self.observer.observe_ack(self._ms_since(pending.started_ns) / 1000)
        else:  # an ack for a request no longer held: its own record
            self._journal_quiet(
                "ack",
                None,
                {
                    "retCode": ack.ret_code,
                    "retMsg": ack.ret_msg,
                    "items": [{"code": i.code, "msg": i.msg, "orderId": i.order_id} for i in ack.items],
                    "limit": ack.limit,
                    "limitStatus": ack.limit_status,
                    "limitResetMs": ack.limit_reset_ms,
                },
                req_id=ack.req_id,
            )
        if ack.limit is not None and ack.limit_status is not None and ack.limit_reset_ms is not None:
            category = self._category_of(request_id)
            if category is not None:
                header = (ack.op, category, ack.limit, ack.limit_status, ack.limit_reset_ms)
                if self.limiter is not None:
                    self.limiter.observe_exchange_budget(*header, now, wall)
                else:
                    self._feed_header(header, wall)
        self._crash("after_ack")
        if ack.cls is CodeClass.RATE_LIMITED or any(i.cls is CodeClass.RATE_LIMITED for i in ack.items):
            self._trip_event("rate_limited", now)
            category = self._category_of(request_id)
            if category is not None:
                if self.limiter is not None:
                    self.limiter.on_exchange_rate_limited(ack.op, category, ack.limit_reset_ms, now, wall)
                else:
                    self._spawn(
                        self.coordination.on_exchange_rate_limited(ack.op, category, ack.limit_reset_ms, wall)
                    )
        self.reconciler.on_ack(ack, now)

    def _feed_header(self, header: tuple[str, Category, int, int, int], wall_ms: int) -> None:
        """Redis: pass Bybit's budget headers on to the shared budget, off the event path. Only the
        latest header per budget is sent (it is the freshest view; a burst of acks costs one call)."""
        key = (header[0], header[1])
        self._headers[key] = (header, wall_ms)
        if not self._feeding:
            self._feeding = True
            self._spawn(self._feed_headers())

    async def _feed_headers(self) -> None:
        try:
            while self._headers:
                key = next(iter(self._headers))
                (op, category, limit, remaining, reset_ms), wall_ms = self._headers.pop(key)
                await self.coordination.observe_exchange_budget(
                    op, category, limit, remaining, reset_ms, wall_ms
                )
        finally:
            self._feeding = False

    def _category_of(self, request_id: str | None) -> Category | None:
        if request_id is None or request_id not in self._pending:
            return None
        return self._pending[request_id].verdict.category

    def _drain(self, now: int) -> None:
        for effect in self.reconciler.effects():
            if isinstance(effect, QueryOrder):
                task = asyncio.create_task(self._query(effect))
                self._rest_tasks.add(task)
                task.add_done_callback(self._rest_tasks.discard)
        for result in self.reconciler.finished():
            self._on_result(result)
        for expired in self.reconciler.expired():
            self._on_expired(expired)
        self._settle()

    def _on_expired(self, expired: ExpiredItem) -> None:
        """Background reconciliation gave up on an item (still unverified): keep its order busy
        and re-read the order by REST; only then may a new amend of it be checked (inflight Rule 3)."""
        pending = self._pending.get(expired.request_id)
        order_id = pending.orders.get(expired.index) if pending is not None else expired.order_id
        if not order_id or not self.leases.move_to_reread(expired.request_id, order_id):
            return
        log.warning("amend.reread_order", request_id=expired.request_id, order_id=order_id)
        task = asyncio.create_task(self._reread(expired.category, expired.symbol, order_id))
        self._rest_tasks.add(task)
        task.add_done_callback(self._rest_tasks.discard)

    async def _reread(self, category: Category, symbol: str, order_id: str) -> None:
        """Read one order until the exchange answers (backing off); the event loop applies it."""
        delay_s = 0.5
        while True:
            try:
                view = await self.rest.get_order(category, symbol, order_id, None)
            except (RestError, OSError, TimeoutError) as exc:
                log.warning("amend.reread_failed", order_id=order_id, error=type(exc).__name__)
                await asyncio.sleep(delay_s)  # back-off between REST attempts, not a wait for a condition
                delay_s = min(delay_s * 2, 30.0)
                continue
            await self._events.put(_Reread(order_id, view))
            return

    async def _query(self, query: QueryOrder) -> None:
        try:
            view = await self.rest.get_order(
                query.category, query.symbol, query.order_id, query.order_link_id
            )
            await self._events.put(_RestResult(query, view))
        except (RestError, OSError, TimeoutError) as exc:
            await self._events.put(_RestResult(query, None, error=f"{type(exc).__name__}: {exc}"))

    def _on_result(self, result: ItemResult) -> None:
        self._crash("before_verdict")
        pending = self._pending.get(result.request_id)
        if pending is None:  # a request no longer held (cannot happen while it is tracked)
            self._journal_quiet(
                "late_outcome" if result.late else "item_outcome",
                result.request_id,
                {
                    "outcome": str(result.outcome),
                    "exchangeCode": result.exchange_code,
                    "exchangeMsg": result.exchange_msg,
                    "evidence": result.evidence,
                    "observed": observed_body(result.observed),
                },
                req_id=result.req_id,
                item_idx=result.index,
            )
        else:
            pending.decided[result.index] = (result.evidence, self.clock.wall_ms())
        if result.outcome is not Outcome.UNVERIFIED and pending is not None:
            # This item's amend has settled: its order may take the next amend (core/inflight.py).
            order_id = pending.orders.get(result.index)
            if order_id is not None:
                self.leases.release(result.request_id, order_id)
        if result.outcome is Outcome.UNVERIFIED and (pending is None or not pending.unverified_counted):
            # The trip counts requests, not items: one rate-limited 20-item batch is one incident.
            self._trip_event("unverified", self.clock.monotonic_ns())
            if pending is not None:
                pending.unverified_counted = True
        if pending is None:
            return
        pending.results[result.index] = result
        if result.late and not (pending.answered or pending.recovered or pending.detached):
            # Changed before the answer was built: the final record holds it (and counts it).
            pass
        elif result.late or pending.recovered or pending.detached:
            if result.late:
                self._count(result.outcome)
            self._update_stored_result(pending, result.index)
            log.info(
                "amend.reconciled_late",
                request_id=pending.request_id,
                index=result.index,
                outcome=str(result.outcome),
                recovered=pending.recovered,
            )
        if not pending.done.is_set() and len(pending.results) >= len(pending.sent):
            pending.done.set()

    def _update_stored_result(self, pending: _Pending, index: int | None = None) -> None:
        """Journal the verdicts known now (`getAmendOutcome` reads them): the whole result if none is
        journaled yet (`result_update`), else what changed (`result_delta`, about item `index`)."""
        body = result_body(
            request_id=pending.request_id,
            items=self._outcomes(pending),
            reasons=pending.verdict.reasons,
            ack=pending.ack,
            latency_ms=self._ms_since(pending.started_ns),
            extra={"policyVersion": self.policy.version, "reconciledLate": True},
        )
        wall_ms = self.clock.wall_ms()
        try:
            stored: Any = None
            if pending.recovered or pending.has_result is not False:
                record = self.journal.get_request(pending.request_id)
                stored = record.result if record is not None else None
            if pending.recovered:
                body["recovered"] = True
                if isinstance(stored, dict) and isinstance(stored.get("items"), list):
                    by_index = {it.get("index"): it for it in stored["items"] if isinstance(it, dict)}
                    by_index.update({it["index"]: it for it in body["items"]})
                    body["items"] = [by_index[k] for k in sorted(by_index, key=lambda k: int(k or 0))]
                    body["outcome"] = str(batch_outcome(Outcome(it["outcome"]) for it in body["items"]))
                    body["ack"] = stored.get("ack")
            steps, omitted = pending.take_steps()
            kw: dict[str, Any] = {
                "base_ms": pending.journal_ms,
                "intent_items": pending.intent_items,
                "decided": pending.decided,
                "steps_omitted": omitted,
            }
            if isinstance(stored, dict):
                delta = late_body(stored, body, steps, **kw)
                self.journal.record_late(
                    pending.request_id, delta, wall_ms, pending.req_id, index, done=_closed_items(pending)
                )
            else:
                self.journal.update_result(
                    pending.request_id,
                    _compact_or(body, lambda: final_body(body, steps, **kw)),
                    wall_ms,
                    done=_closed_items(pending),
                )
            pending.has_result = True
        except JournalError as exc:
            self._trip(f"journal write failed: {exc}", journal_broken=True)

    def _settle(self) -> None:
        """Forget answered requests the reconciler has finished with; close the items it gave up on
        (still unverified) in the journal, with the steps seen since the last record."""
        for pending in list(self._pending.values()):
            if not pending.answered or not self.reconciler.is_request_settled(pending.request_id):
                continue
            given_up = [
                iv.index
                for iv in pending.sent
                if (r := pending.results.get(iv.index)) is None or r.outcome is Outcome.UNVERIFIED
            ]
            if given_up or pending.steps or pending.steps_omitted:
                # Recovery must not look at them again at every restart.
                steps, omitted = pending.take_steps()
                self._journal_quiet(
                    "settled",
                    pending.request_id,
                    settled_body(
                        given_up,
                        steps,
                        base_ms=pending.journal_ms,
                        intent_items=pending.intent_items,
                        steps_omitted=omitted,
                    ),
                    req_id=pending.req_id,
                    done=given_up,
                )
            self._forget(pending)


# ---------------------------------------------------------------------- helpers


def _reconcile_settings(config: SidecarConfig) -> ReconcileSettings:
    v = config.verification
    return ReconcileSettings(
        # A backstop: the trade adapter's own (journaled) AckTimeout normally decides first.
        ack_timeout_ms=v.ack_timeout_ms + 250,
        verify_timeout_ms=v.timeout_ms,
        not_applied_margin_ms=v.not_applied_margin_ms,
        background_timeout_ms=v.background_timeout_ms,
        rest_fallback=v.rest_fallback,
    )


def _s(d: Decimal | None) -> str | None:
    """A Decimal as a plain string without exponent or trailing zeros ("94600", "0.01")."""
    if d is None:
        return None
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def order_body(view: OrderView) -> dict[str, Any]:
    """The sidecar's view of an order, JSON-ready (getOrderState)."""
    return {
        "category": str(view.category),
        "symbol": view.symbol,
        "orderId": view.order_id,
        "orderLinkId": view.order_link_id,
        "side": str(view.side) if view.side else None,
        "price": _s(view.price),
        "qty": _s(view.qty),
        "leavesQty": _s(view.leaves_qty),
        "cumExecQty": _s(view.cum_exec_qty),
        "orderStatus": view.order_status,
        "updatedTime": str(view.updated_time_ms),
        "takeProfit": _s(view.take_profit),
        "stopLoss": _s(view.stop_loss),
        "tpLimitPrice": _s(view.tp_limit_price),
        "slLimitPrice": _s(view.sl_limit_price),
        "triggerPrice": _s(view.trigger_price),
        "orderIv": _s(view.order_iv),
        "tpTriggerBy": view.tp_trigger_by,
        "slTriggerBy": view.sl_trigger_by,
        "triggerBy": view.trigger_by,
        "tpslMode": view.tpsl_mode,
    }


def _event_json(view: OrderView) -> dict[str, Any]:
    """An order event as journaled: the fields verification reads, exact and cheap to format."""
    return {
        "orderId": view.order_id,
        "orderLinkId": view.order_link_id,
        "symbol": view.symbol,
        "price": format(view.price, "f"),
        "qty": format(view.qty, "f"),
        "leavesQty": format(view.leaves_qty, "f"),
        "cumExecQty": format(view.cum_exec_qty, "f"),
        "orderStatus": view.order_status,
        "updatedTime": str(view.updated_time_ms),  # Bybit's own form (a string of ms)
    }


def _order_keys(iv: ItemVerdict) -> list[str]:
    keys = [k for k in (iv.order_id, iv.order_link_id) if k]
    if iv.order is not None:
        keys.extend(k for k in (iv.order.order_id, iv.order.order_link_id) if k)
    return keys


def _query_json(q: QueryOrder) -> dict[str, Any]:
    return {
        "category": str(q.category),
        "symbol": q.symbol,
        "orderId": q.order_id,
        "orderLinkId": q.order_link_id,
        "index": q.index,
    }


def _compact_or(result: dict[str, Any], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A compact journal body, or the result as it is should building it fail (a bug there must
    never cost an answer its record)."""
    try:
        return build()
    except Exception:  # the answer matters more than a compact record
        log.exception("journal.compact_failed", request_id=result.get("requestId"))
        return result


def _closed_items(pending: _Pending) -> list[int]:
    """Items of a sent request with a definitive verdict: recovery need not look at them again."""
    return [i for i, r in pending.results.items() if str(r.outcome) in DEFINITIVE_OUTCOMES]


def _order_id_of(item: AmendItem, before: OrderView | None) -> str | None:
    return item.order_id or (before.order_id if before is not None else None)


# The NO_CHANGE reason on an item Bybit refused as a no-op (10001 "remains unchanged") in a race.
_UNCHANGED_AT_EXCHANGE = Reason(
    DenialCode.NO_CHANGE,
    "Bybit refused the amend as a no-op (10001): the order already held every requested value",
)
