"""The kill switch's automatic trip rules: when the sidecar stops (or restricts) trading by itself.

One job: decide, from what the service reports (socket states, quote ages, unverified results,
Bybit's 10006 answers) and the time passed in, whether a trip is due, and name it. The service
applies the trip (journal, shared state); this module never writes anything, never reads the clock
and never raises.

Rules, checked in this order once a second (`TripRules.check`); the first that fires wins:
1. SOCKET_DOWN: the trade or the private socket has been down longer than `socket_down_trip_s`
   (counted from the first check that saw it down) → halted.
2. STALE_REFERENCES: the reference quote of EVERY configured symbol is older than
   `stale_reference_trip_ms` (a symbol never priced counts from the service's start) → halted.
3. UNVERIFIED: more than `max_unverified` requests ended with unverified items within
   `unverified_window_s` → halted.
4. EXCHANGE_RATE_LIMITED: Bybit answered 10006 more than `max_exchange_rate_limited` times within
   `rate_limited_window_s` → reducing (only risk-reducing amends), and only from active.
Rules 3 and 4 count here (one sidecar) or, with shared coordination, over every sidecar of the
account (`account_trip`, from the counts the shared store returns). No rule fires while already
halted, and a trip never makes the state less strict (`stricter`).

Trips the service takes for its own failures carry a reason too (JOURNAL_FAILED, JOURNAL_DAMAGED,
EVENT_TASK_DIED),
and the operator's halt is OPERATOR: the reason is an enum, the message a sentence for people.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sidecar.core.types import TradingState

__all__ = [
    "SEVERITY",
    "Trip",
    "TripReason",
    "TripRules",
    "TripSettings",
    "stricter",
]

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

# How strict each trading state is; a trip only ever moves up this scale.
SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

CountedEvent = Literal["unverified", "rate_limited"]


class TripReason(StrEnum):
    """Why trading stopped or was restricted (the kind; `Trip.message` is the sentence)."""

    OPERATOR = "operator"
    JOURNAL_FAILED = "journal_failed"
    JOURNAL_DAMAGED = "journal_damaged"
    EVENT_TASK_DIED = "event_task_died"
    SOCKET_DOWN = "socket_down"
    STALE_REFERENCES = "stale_references"
    UNVERIFIED = "unverified"
    EXCHANGE_RATE_LIMITED = "exchange_rate_limited"


@dataclass(frozen=True, slots=True)
class Trip:
    reason: TripReason
    state: TradingState
    message: str


@dataclass(frozen=True, slots=True)
class TripSettings:
    """The `safety` config section, in plain numbers."""

    stale_reference_trip_ms: int = 30_000
    socket_down_trip_s: int = 30
    max_unverified: int = 5
    unverified_window_s: int = 300
    max_exchange_rate_limited: int = 3
    rate_limited_window_s: int = 60


def stricter(new: TradingState, than: TradingState) -> bool:
    """Whether `new` restricts trading more than `than`."""
    return SEVERITY[new] > SEVERITY[than]


class _Window:
    """Event times within a sliding window (monotonic ns)."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[int] = deque()

    def add(self, now_ns: int) -> None:
        self._times.append(now_ns)

    def clear(self) -> None:
        self._times.clear()

    def count(self, now_ns: int, window_ns: int) -> int:
        times = self._times
        while times and now_ns - times[0] > window_ns:
            times.popleft()
        return len(times)


class TripRules:
    """The trip rules' state: when each socket went down, the counted events of this sidecar."""

    def __init__(self, settings: TripSettings, started_ns: int) -> None:
        self.settings = settings
        self._started_ns = started_ns
        self._down_since_ns: dict[str, int] = {}
        self._windows: dict[CountedEvent, _Window] = {"unverified": _Window(), "rate_limited": _Window()}

    def replace_settings(self, settings: TripSettings) -> None:
        self.settings = settings

    def reset_counts(self) -> None:
        """Forget the counted events (the operator resumed: a trip counts what happens after)."""
        for window in self._windows.values():
            window.clear()

    def counted(self, kind: CountedEvent, now_ns: int) -> int:
        """How many events of `kind` this sidecar counted within the window now."""
        return self._windows[kind].count(now_ns, self._window_s(kind) * NS_PER_S)

    def record(self, kind: CountedEvent, now_ns: int) -> None:
        """One counted event here (a request answered with unverified items; a 10006 from Bybit)."""
        self._windows[kind].add(now_ns)

    def check(
        self,
        now_ns: int,
        state: TradingState,
        sockets_up: Mapping[str, bool],
        quotes_received_ns: Iterable[int | None],
        *,
        count_here: bool = True,
    ) -> Trip | None:
        """The trip due now, if any (rules 1-4 in order). `count_here` False: rules 3 and 4 are
        the account's (`account_trip`), not this sidecar's."""
        cfg = self.settings
        halted = state is TradingState.HALTED
        for name, up in sockets_up.items():
            if up:
                self._down_since_ns.pop(name, None)
                continue
            since = self._down_since_ns.setdefault(name, now_ns)
            if now_ns - since > cfg.socket_down_trip_s * NS_PER_S and not halted:
                return Trip(
                    TripReason.SOCKET_DOWN,
                    TradingState.HALTED,
                    f"{name} socket down for more than {cfg.socket_down_trip_s} s",
                )
        ages = [now_ns - (self._started_ns if r is None else r) for r in quotes_received_ns]
        if ages and min(ages) > cfg.stale_reference_trip_ms * NS_PER_MS and not halted:
            return Trip(
                TripReason.STALE_REFERENCES,
                TradingState.HALTED,
                f"reference prices stale for all symbols (> {cfg.stale_reference_trip_ms} ms)",
            )
        if not count_here:
            return None
        for kind in ("unverified", "rate_limited"):
            count = self._windows[kind].count(now_ns, self._window_s(kind) * NS_PER_S)
            trip = self._counted_trip(kind, count, state, account=False)
            if trip is not None:
                return trip
        return None

    def account_trip(self, kind: CountedEvent, total: int, state: TradingState) -> Trip | None:
        """Rule 3 or 4 on the account's count over every sidecar (shared coordination)."""
        return self._counted_trip(kind, total, state, account=True)

    def _window_s(self, kind: CountedEvent) -> int:
        cfg = self.settings
        return cfg.unverified_window_s if kind == "unverified" else cfg.rate_limited_window_s

    def _counted_trip(
        self, kind: CountedEvent, count: int, state: TradingState, *, account: bool
    ) -> Trip | None:
        cfg = self.settings
        where = " (counted over every sidecar on this account)" if account else ""
        if kind == "unverified":
            if count > cfg.max_unverified and stricter(TradingState.HALTED, state):
                return Trip(
                    TripReason.UNVERIFIED,
                    TradingState.HALTED,
                    f"more than {cfg.max_unverified} requests with unverified items "
                    f"in {cfg.unverified_window_s} s{where}",
                )
            return None
        if count > cfg.max_exchange_rate_limited and stricter(TradingState.REDUCING, state):
            return Trip(
                TripReason.EXCHANGE_RATE_LIMITED,
                TradingState.REDUCING,
                f"Bybit rate-limited (10006) more than {cfg.max_exchange_rate_limited} times in "
                f"{cfg.rate_limited_window_s} s{where}",
            )
        return None
