"""A `Service` on an emulator, built as `sidecar serve` builds it, for tests, benchmarks and soaks:
the emulator's URL as the one base URL, the emulator's test credentials, the config's journal (or
a given one) and the real clock (or a given one). It is not started.

One copy of what tests/e2e/e2e_kit.py, tests/coordination/fleet_kit.py, several e2e tests and the
bench's set-up each built by hand. Nothing here may be imported by product code.
"""

from __future__ import annotations

from typing import Any

from sidecar.bybit.endpoints import resolve_endpoints
from sidecar.clock import Clock, SystemClock
from sidecar.config import SidecarConfig
from sidecar.env import emulator_credentials
from sidecar.journal import Journal
from sidecar.service import Service

__all__ = ["build_service"]


def build_service(
    config: SidecarConfig,
    exchange_url: str,
    *,
    clock: Clock | None = None,
    journal: Journal | None = None,
    **service_options: Any,
) -> Service:
    """A `Service` on the emulator at `exchange_url`; `service_options` go to `Service` as they are
    (e.g. `env`, `policy`, the crash hook)."""
    return Service(
        config,
        clock=clock if clock is not None else SystemClock(),
        endpoints=resolve_endpoints("sim", None, None, exchange_url),
        credentials=emulator_credentials(),
        journal=journal if journal is not None else Journal(config.journal.path, config.journal.synchronous),
        **service_options,
    )
