"""The kill switch: the trading state in force here, the operator's halt and resume, and the trips.

One job: answer "may anything be sent, and under which state?" and change that state when the
operator or a trip says so. The state lives where the coordination backend keeps it (local: the
journal database, shared with `sidecar halt` from another shell; Redis: the account's, for every
sidecar). Two things make it stricter here at once, before any store has them:
- a trip taken here and not yet written to Redis (kept, in force, and written each second until
  Redis takes it: only ever the strictest one, in one write, so a resume cannot be overwritten by
  a backlog), and
- a failed journal: nothing can be recorded, so nothing may be sent; held in memory (the journal
  may not be writable to record it) until the operator resumes from any process and the journal
  works again (it is reopened once a second at most to read the operator's word).
When trips are due is core/trips.py's to say; this module applies them. It sends nothing and
answers nobody.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from sidecar.clock import Clock
from sidecar.config import SafetyConfig, SidecarConfig
from sidecar.coordination import CoordinationUnavailable, Coordinator, LocalCoordinator
from sidecar.core.ratelimit import BudgetView
from sidecar.core.trips import CountedEvent, Trip, TripReason, TripRules, TripSettings, stricter
from sidecar.core.types import TradingState
from sidecar.errors import CoordinationError
from sidecar.journal import Journal, JournalError
from sidecar.service.coordination_link import remember
from sidecar.service.recorder import Recorder
from sidecar.service.tasks import TaskSet

__all__ = ["KillSwitch", "trip_settings"]

log = structlog.get_logger("service")

# While the journal is failed, reopening it to read the operator's `resume` is tried this often.
_REOPEN_EVERY_NS = 1_000_000_000


def trip_settings(cfg: SafetyConfig) -> TripSettings:
    return TripSettings(
        stale_reference_trip_ms=cfg.stale_reference_trip_ms,
        socket_down_trip_s=cfg.socket_down_trip_s,
        max_unverified=cfg.max_unverified,
        unverified_window_s=cfg.unverified_window_s,
        max_exchange_rate_limited=cfg.max_exchange_rate_limited,
        rate_limited_window_s=cfg.rate_limited_window_s,
    )


class KillSwitch:
    """The trading state in force here, and every way it changes."""

    def __init__(
        self,
        config: SidecarConfig,
        *,
        coordination: Coordinator,
        journal: Journal,
        recorder: Recorder,
        clock: Clock,
        background: TaskSet,
    ) -> None:
        self._config = config
        self.coordination = coordination
        self.shared = not isinstance(coordination, LocalCoordinator)
        self._journal = journal
        self._recorder = recorder
        self._clock = clock
        self._background = background
        self.rules = TripRules(trip_settings(config.safety), clock.monotonic_ns())
        self.stopping = False
        # Redis only: the trips not yet written to the shared state (in force here meanwhile), the
        # counted events not yet reported, the budgets as last read (for health()), the last epoch
        # journaled.
        self.pending_trips: list[tuple[TradingState, str]] = []
        self._unreported: dict[CountedEvent, int] = {}
        self.shared_budgets: list[BudgetView] = []
        self._journaled_epoch = -1
        # The halt held in memory after the journal failed.
        self.forced_halt: str | None = None
        self._forced_halt_ms = 0
        self._forced_epoch = 0  # the shared state's epoch when the journal failed (Redis)
        self._reopen_tried_ns = -(10**18)

    def replace_config(self, config: SidecarConfig) -> None:
        self._config = config
        self.rules.replace_settings(trip_settings(config.safety))

    # ------------------------------------------------------------------ the state in force

    def trading_state(self) -> tuple[TradingState, str]:
        """The state and its reason: as the coordination backend holds it, made stricter by trips
        taken here and not yet in Redis, or halted in memory after the journal failed."""
        if self.forced_halt is not None and not self._resumed_after_forced_halt():
            return TradingState.HALTED, self.forced_halt
        view = self.coordination.trading_state()
        state, reason = view.state, view.reason
        for trip_state, trip_reason in self.pending_trips:
            if stricter(trip_state, state):
                state, reason = trip_state, trip_reason
        return state, reason

    def state(self) -> TradingState:
        return self.trading_state()[0]

    def validation_state(self) -> TradingState:
        """The state items are validated under. With Redis the admission script reads the fleet's
        state itself (in the same step that takes the budget), so this instance's view only picks
        the stricter validation when it shows `reducing`; a halt (or a resume) written a moment ago
        is the script's to apply, with its reason, even before this instance's view has it. A trip
        taken here and not yet in Redis, or a failed journal, still stops every call here."""
        state = self.state()
        if not self.shared or self.forced_halt is not None or self.pending_trips:
            return state
        return TradingState.REDUCING if state is TradingState.REDUCING else TradingState.ACTIVE

    def journal_blocked(self) -> str | None:
        """The reason nothing may be sent because the journal failed (None: it works, or the
        operator resumed after it came back)."""
        if self.forced_halt is not None and not self._resumed_after_forced_halt():
            return self.forced_halt
        return None

    # ------------------------------------------------------------------ the operator

    async def halt(self, reason: str, who: str = "operator") -> None:
        """The operator's halt, in force for the next call before this returns (with Redis: for
        every sidecar on the account). Raises CoordinationError or JournalError if not stored."""
        await self._set_state(TradingState.HALTED, reason, who)
        log.warning("safety.halted", reason=reason, who=who)

    async def resume(self, who: str = "operator") -> None:
        """The operator's resume. Raises CoordinationError or JournalError if not stored (then
        trading stays halted). The counted trip events start again from zero."""
        if self._journal.failed is not None:
            self._journal.reopen()  # raises JournalError (still broken): then trading stays halted
        await self._set_state(TradingState.ACTIVE, "", who)
        self.pending_trips.clear()
        self.forced_halt = None
        self.rules.reset_counts()
        log.info("safety.resumed", who=who)

    async def _set_state(self, state: TradingState, reason: str, who: str) -> None:
        if not self.shared:
            self._journal.set_trading_state(state, reason, who, self._clock.wall_ms())
            return
        view = await self.coordination.set_trading_state(state, reason, who)
        if isinstance(view, CoordinationUnavailable):
            raise CoordinationError(
                view.message.replace(": nothing was sent", "") + f": {state} was not stored"
            )

    # ------------------------------------------------------------------ trips

    def trip(self, trip: Trip) -> None:
        """An automatic trip (fail closed), journaled with its reason; only the operator resumes.

        A trip because the journal itself failed is also held in memory (the journal may not be
        writable to record it); while that halt holds, further journal failures add nothing."""
        journal_broken = trip.reason is TripReason.JOURNAL_FAILED
        if journal_broken:
            if self.forced_halt is not None:
                log.warning("safety.journal_still_failing", reason=trip.message)
                return
            self.forced_halt = trip.message
            self._forced_halt_ms = self._clock.wall_ms()
            self._forced_epoch = self.coordination.trading_state().epoch
        if self.shared:
            # The account's one kill switch: in force here at once, written to Redis for every
            # sidecar (now, and again each second while Redis cannot be reached).
            who = self.coordination.id_token or "sidecar"
            self.pending_trips.append((trip.state, f"{trip.message} (sidecar {who})"))
            if not journal_broken:
                with contextlib.suppress(JournalError):
                    body = {"state": str(trip.state), "reason": trip.message, "who": "sidecar"}
                    self._journal.record("state", None, body, self._clock.wall_ms())
            if not self.stopping:
                self._background.spawn(self.flush_trips())
        else:
            try:
                self._journal.set_trading_state(trip.state, trip.message, "sidecar", self._clock.wall_ms())
            except JournalError as exc:
                if not journal_broken:  # the trip must not be lost: the failure itself halts
                    self.journal_failed(exc)
        log.error("safety.tripped", reason=trip.message, kind=str(trip.reason), state=str(trip.state))

    def journal_failed(self, exc: JournalError) -> None:
        """The journal refused a write: halt (fail closed)."""
        self.trip(Trip(TripReason.JOURNAL_FAILED, TradingState.HALTED, f"journal write failed: {exc}"))

    def journal_unreadable(self, exc: JournalError) -> None:
        """The journal could not be read at start (recovery): halt (fail closed)."""
        self.trip(Trip(TripReason.JOURNAL_FAILED, TradingState.HALTED, f"journal unreadable at start: {exc}"))

    def count(self, kind: CountedEvent, now_ns: int) -> None:
        """One event a trip counts: here (local), or for the account (Redis: reported with the
        next `check_shared`)."""
        if self.shared:
            self._unreported[kind] = self._unreported.get(kind, 0) + 1
        else:
            self.rules.record(kind, now_ns)

    def check(
        self, now_ns: int, sockets_up: Mapping[str, bool], quotes_received_ns: Iterable[int | None]
    ) -> None:
        """Apply the trip rules due now (called once a second)."""
        trip = self.rules.check(
            now_ns, self.state(), sockets_up, quotes_received_ns, count_here=not self.shared
        )
        if trip is not None:
            self.trip(trip)

    async def check_shared(self) -> None:
        """The account-level counted trips, over every sidecar on the account (a count this instance
        cannot report now is kept for the next turn)."""
        cfg = self._config.safety
        windows: dict[CountedEvent, int] = {
            "unverified": cfg.unverified_window_s,
            "rate_limited": cfg.rate_limited_window_s,
        }
        for kind, window_s in windows.items():
            add = self._unreported.get(kind, 0)
            total = await self.coordination.count_event(kind, window_s * 1000, add=add)
            if isinstance(total, CoordinationUnavailable):
                continue
            self._unreported[kind] = 0
            trip = self.rules.account_trip(kind, total, self.state())
            if trip is not None:
                self.trip(trip)

    async def flush_trips(self) -> None:
        """Write the strictest trip taken here to the shared state, in one write (the store keeps
        only ever the stricter state); kept while Redis cannot be reached."""
        backlog = list(self.pending_trips)
        if not backlog:
            return
        strictest = backlog[0]
        for t in backlog[1:]:
            if stricter(t[0], strictest[0]):
                strictest = t
        if isinstance(await self.coordination.trip(*strictest), CoordinationUnavailable):
            return
        self.pending_trips = [t for t in self.pending_trips if t not in backlog]

    async def keep_shared_state(self) -> None:
        """Once a second with Redis: write pending trips, count the account's trip events, read the
        budgets for health(), journal state changes seen, remember the state for a restart."""
        await self.flush_trips()
        await self.check_shared()
        budgets = await self.coordination.budgets()
        if not isinstance(budgets, CoordinationUnavailable):
            self.shared_budgets = budgets
        view = self.coordination.trading_state()
        if view.known and view.epoch != self._journaled_epoch:
            if self._journaled_epoch >= 0 and view.state is TradingState.ACTIVE:
                self.rules.reset_counts()  # resumed elsewhere: counting starts again here too
            self._journaled_epoch = view.epoch
            self._recorder.record(
                "state",
                None,
                {"state": str(view.state), "reason": view.reason, "who": view.who, "sharedEpoch": view.epoch},
            )
        remember(self._journal, self.coordination, self._config.coordination.namespace)

    async def budgets_read(
        self, local: list[BudgetView] | None, every_budget: Callable[[], list[BudgetView]]
    ) -> list[BudgetView]:
        """Every budget now: the local limiter's (`local`), or Redis's (one read). Redis unreachable:
        `every_budget()` with none remaining (nothing can be sent until it answers)."""
        if local is not None:
            return local
        views = await self.coordination.budgets()
        if not isinstance(views, CoordinationUnavailable):
            self.shared_budgets = views
            return views
        return [dataclasses.replace(b, remaining=0) for b in every_budget()]

    def coordination_health(self) -> dict[str, Any]:
        """The coordination backend and whether sends can be decided now (no URL, no password)."""
        body: dict[str, Any] = {
            "backend": self.coordination.backend,
            "available": self.coordination.available,
        }
        if self.shared:
            view = self.coordination.trading_state()
            body["namespace"] = self._config.coordination.namespace
            body["stateKnown"] = view.known
            body["stateFresh"] = view.fresh
        return body

    # ------------------------------------------------------------------ after a journal failure

    def _resumed_after_forced_halt(self) -> bool:
        """Whether the operator resumed (`sidecar resume`, from any process) after the journal
        failed, and the journal works again: then the in-memory halt ends. Until the operator
        resumes, trading stays halted even if the journal works again."""
        if self._journal.failed is not None:
            now_ns = self._clock.monotonic_ns()
            if now_ns - self._reopen_tried_ns < _REOPEN_EVERY_NS:
                return False
            self._reopen_tried_ns = now_ns
            try:
                self._journal.reopen()
            except JournalError as exc:
                log.warning("journal.reopen_failed", error=str(exc))
                return False
            reopened = True
        else:
            reopened = False
        if self.shared:
            # The operator resumes through Redis: a resume written after the failure ends it.
            view = self.coordination.trading_state()
            if view.state is not TradingState.ACTIVE or view.epoch <= self._forced_epoch:
                return False
            log.info("safety.resumed", who=view.who, after=self.forced_halt)
            self.forced_halt = None
            return True
        try:
            state, _reason, who, ts_ms = self._journal.trading_state()  # a read; never a write
        except JournalError:
            return False
        if state != TradingState.ACTIVE or ts_ms < self._forced_halt_ms:
            if reopened and state == TradingState.ACTIVE:
                # The journal works again: record the halt it could not record, so `sidecar status`
                # shows it (stamped at the failure, so any later resume still wins).
                with contextlib.suppress(JournalError):
                    self._journal.set_trading_state(
                        TradingState.HALTED, self.forced_halt or "", "sidecar", self._forced_halt_ms
                    )
            return False
        log.info("safety.resumed", who=who, after=self.forced_halt)
        self.forced_halt = None
        return True
