"""The hook through which the service reports what it decided, for metrics (sidecar/metrics.py).

The service calls an optional `ServiceObserver` at three points: when a request's frame has been
handed to the trade socket, when the exchange's ack of it is applied, and when a request is answered.
The observer must be cheap and must not raise or await: it runs on the amend path. This module holds
the interface only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sidecar.results import ItemOutcome

__all__ = ["ServiceObserver"]


class ServiceObserver(Protocol):
    def observe_sent(self, decision_s: float) -> None:
        """A request was sent `decision_s` seconds after it arrived (validate, limit, journal, send)."""

    def observe_ack(self, elapsed_s: float) -> None:
        """The exchange's ack of a sent request was applied `elapsed_s` seconds after it arrived."""

    def observe_answer(self, outcomes: Sequence[ItemOutcome], latency_s: float) -> None:
        """A request was answered with `outcomes`, `latency_s` seconds after it arrived."""
