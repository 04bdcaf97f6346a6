"""Coordination: the state several sidecars on one Bybit account share (DESIGN §4.8).

The service asks one `Coordinator` (api.py) for every decision that must hold across instances:
admission against every rate budget, the kill switch, per-order leases (one amend in flight per
order), Bybit's budget headers, trip counters and request ids. Two backends: `local` (in-process,
the default, no server) and `redis` (one Redis server shared by the fleet; Lua scripts decide on
Redis's clock). `build_coordinator` (factory.py) picks one from the config. This package does not
validate orders, journal, or talk to Bybit.
"""

from sidecar.coordination.api import (
    Admitted,
    Busy,
    CoordinationUnavailable,
    Coordinator,
    Decision,
    Halted,
    Reducing,
    StateView,
    Throttled,
    UnavailableKind,
    budget_fingerprint,
    describe_url,
)
from sidecar.coordination.factory import build_coordinator
from sidecar.coordination.local import LocalCoordinator, StateStore

__all__ = [
    "Admitted",
    "Busy",
    "CoordinationUnavailable",
    "Coordinator",
    "Decision",
    "Halted",
    "LocalCoordinator",
    "Reducing",
    "StateStore",
    "StateView",
    "Throttled",
    "UnavailableKind",
    "budget_fingerprint",
    "build_coordinator",
    "describe_url",
]
