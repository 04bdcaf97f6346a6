"""The test kit, shipped with the package so tests, the benchmarks and the soaks share one copy:
`FakeClock` (time moved by hand), `FakeAdapters` (in-memory exchange ports a test scripts, for the
service's unit tests on that clock), `crash_at` (a checkpoint hook that dies like `kill -9`),
`python -m sidecar.testing.serve` (`sidecar serve` with that hook installed), and `stack` (the
emulator, a config, a journal and a `Service`, built as `sidecar serve` builds them).

Product code never imports this package (tests/test_architecture.py enforces it).
"""

from sidecar.testing.clock import FakeClock
from sidecar.testing.crash import CRASH_POINTS, crash_at
from sidecar.testing.fakes import (
    FakeAdapters,
    FakeMarket,
    FakePrivate,
    FakeRest,
    FakeTrade,
    OrderQuery,
    SentFrame,
)

__all__ = [
    "CRASH_POINTS",
    "FakeAdapters",
    "FakeClock",
    "FakeMarket",
    "FakePrivate",
    "FakeRest",
    "FakeTrade",
    "OrderQuery",
    "SentFrame",
    "crash_at",
]
