"""The test kit, shipped with the package so tests, the benchmarks and the soaks share one copy:
`FakeClock` (time moved by hand), `crash_at` (a checkpoint hook that dies like `kill -9`),
`python -m sidecar.testing.serve` (`sidecar serve` with that hook installed), and `stack` (the
emulator, a config, a journal and a `Service`, built as `sidecar serve` builds them).

Product code never imports this package (tests/test_architecture.py enforces it).
"""

from sidecar.testing.clock import FakeClock
from sidecar.testing.crash import CRASH_POINTS, crash_at

__all__ = ["CRASH_POINTS", "FakeClock", "crash_at"]
