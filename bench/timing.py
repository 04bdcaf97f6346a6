"""The benchmarks' `ServiceObserver` (sidecar/observer.py): when the service handed each frame to
the trade socket, applied each ack, answered each request, on the bench's own clock.

The service calls these hooks itself (the product's metrics use the same ones), so nothing in the
service is subclassed or wrapped. Readings are `time.perf_counter_ns()`, the clock every bench
timer uses, so they subtract from a bench `t0`; `PerfClock` gives the same readings to code that
takes a `sidecar.clock.Clock` (the stdio transport's per-call timing). The service's own durations
(`decision_s`, `elapsed_s`, `latency_s`, on its clock) are kept too. It must not decide anything.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["PerfClock", "Timings"]


class PerfClock:
    """A `sidecar.clock.Clock` reading `time.perf_counter_ns` (the bench's timer) for monotonic time."""

    def monotonic_ns(self) -> int:
        return time.perf_counter_ns()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


class Timings:
    """Every observation since the last `clear()`, in the order the service made them."""

    def __init__(self) -> None:
        self.sent_ns: list[int] = []  # perf_counter_ns when observe_sent was called
        self.decision_s: list[float] = []  # the service's arrival -> sent
        self.ack_ns: list[int] = []
        self.answer_ns: list[int] = []
        self.latency_s: list[float] = []  # the service's arrival -> answer (latencyMs)

    def clear(self) -> None:
        for values in (self.sent_ns, self.decision_s, self.ack_ns, self.answer_ns, self.latency_s):
            values.clear()

    # ServiceObserver: cheap, never raises
    def observe_sent(self, decision_s: float) -> None:
        self.sent_ns.append(time.perf_counter_ns())
        self.decision_s.append(decision_s)

    def observe_ack(self, elapsed_s: float) -> None:
        self.ack_ns.append(time.perf_counter_ns())

    def observe_answer(self, outcomes: Sequence[Any], latency_s: float) -> None:
        self.answer_ns.append(time.perf_counter_ns())
        self.latency_s.append(latency_s)
