"""`python -m sidecar.testing.serve [--crash-at POINT] [serve options]`: `sidecar serve` with the
crash hook installed, for the crash-recovery tests (tests/e2e/test_crash_recovery.py) and the
kill -9 soak. The point comes from --crash-at, else from $SIDECAR_TEST_CRASH_AT; with neither it is
plain `sidecar serve`. Never use it to trade.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from sidecar.cli.main import main as cli_main
from sidecar.env import Environment
from sidecar.testing.crash import ANSWERED_CRASH_POINTS, CRASH_ENV, CRASH_POINTS, crash_at

__all__ = ["main", "service_options"]

_POINTS = sorted(CRASH_POINTS | ANSWERED_CRASH_POINTS)


def service_options(point: str) -> dict[str, Any]:
    """The `Service` arguments that make it die at `point`.

    Raises:
        ValueError: `point` is not one of CRASH_POINTS or ANSWERED_CRASH_POINTS.
    """
    return {"checkpoint": crash_at(point)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.testing.serve",
        description="sidecar serve with the crash hook of the crash-recovery tests (never to trade)",
    )
    parser.add_argument("--crash-at", choices=_POINTS, default=None, metavar="POINT")
    own, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    point = own.crash_at or Environment.from_process().value(CRASH_ENV)
    if point is not None and point not in _POINTS:
        parser.error(f"{CRASH_ENV}={point!r} is not one of {_POINTS}")
    return cli_main(["serve", *rest], service_options=service_options(point) if point else None)


if __name__ == "__main__":
    raise SystemExit(main())
