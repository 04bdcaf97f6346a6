"""The crash hook of the crash-recovery tests: a checkpoint callback that kills this process with
SIGKILL (no cleanup, no flush: exactly `kill -9`) when the service reaches the named point.

The service calls its optional `checkpoint(point)` at each of CRASH_POINTS; the product never
installs one. Nothing here may be imported by product code.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Final

from sidecar.service.pending import ANSWERED_CHECKPOINTS, CHECKPOINTS

__all__ = ["ANSWERED_CRASH_POINTS", "CRASH_ENV", "CRASH_POINTS", "crash_at"]

# The points of the amend pipeline a checkpoint names (the service's order of work), all before
# the answer: a crash there kills the call.
CRASH_POINTS: Final = CHECKPOINTS
# Points after the answer was built (the call may already be answered): the deferred final commit.
ANSWERED_CRASH_POINTS: Final = ANSWERED_CHECKPOINTS
_ALL_POINTS: Final = CRASH_POINTS | ANSWERED_CRASH_POINTS
# `python -m sidecar.testing.serve` reads the point from this variable when --crash-at is not given.
CRASH_ENV: Final = "SIDECAR_TEST_CRASH_AT"


def crash_at(point: str) -> Callable[[str], None]:
    """A checkpoint hook that dies at `point` and passes every other point.

    Raises:
        ValueError: `point` is not one of CRASH_POINTS or ANSWERED_CRASH_POINTS.
    """
    if point not in _ALL_POINTS:
        raise ValueError(f"crash point must be one of {sorted(_ALL_POINTS)}, not {point!r}")

    def checkpoint(reached: str) -> None:
        if reached == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint
