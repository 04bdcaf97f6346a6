"""`python -m bench [name]`: run benchmarks and print ONE JSON object on stdout.

No name (what `make bench` runs) or `all`: the whole suite (`bench.suite.run`): every figure of the
benchmark issue, peers included, plus `targets`, and the CDF plot in docs/img/latency_cdf.png.
A name runs one self-contained benchmark from `BENCHMARKS` and prints its dict. A dict with an
"error" (or "errors") key means something could not run (exit 1). Counts come from BENCH_* env
variables (see `bench.common.Counts`); BENCH_PLOT moves (or, empty, skips) the plot. Heavy imports
happen inside the benchmark functions so one broken benchmark does not take the others down.

`soak [options]` and `oversize` moved to the reliability suite (`python -m reliability`); they are
forwarded there, with a note on stderr, so older commands keep working.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence

from bench import policy
from sidecar.errors import ExitCode

Result = dict[str, object]


def _stream() -> Result:
    from bench.common import Counts  # noqa: PLC0415
    from bench.stream import measure_stream  # noqa: PLC0415

    return dict(measure_stream(Counts().stream_events))


def _rss() -> Result:
    from bench.common import Counts  # noqa: PLC0415
    from bench.stream import measure_rss  # noqa: PLC0415

    return dict(measure_rss(Counts().rss_orders))


def _suite() -> Result:
    from pathlib import Path  # noqa: PLC0415

    from bench.suite import DEFAULT_PLOT, run  # noqa: PLC0415

    # BENCH_PLOT: where the CDF PNG goes (default docs/img/latency_cdf.png; empty: no plot).
    plot = os.environ.get("BENCH_PLOT")
    return run(plot_path=DEFAULT_PLOT if plot is None else (Path(plot) if plot else None))


def _coordination() -> Result:
    from bench.coordination import run  # noqa: PLC0415

    return run()  # the Redis coordination engine (docs/coordination.md); needs redis-server


def _fleet() -> Result:
    from bench.fleet import run  # noqa: PLC0415

    return run()  # several sidecars on one account (docs/benchmarks.md "Fleet"); needs redis-server


BENCHMARKS: dict[str, Callable[[], Result]] = {
    "coordination": _coordination,
    "fleet": _fleet,
    "policy": policy.run,
    "stream": _stream,
    "rss": _rss,
    "all": _suite,
}
# Names that moved to `python -m reliability` (docs and habits still use them here).
MOVED = {"soak": [], "oversize": ["oversize"]}


def _usage() -> str:
    names = "|".join(BENCHMARKS)
    return f"usage: python -m bench [{names}]   (no name: all; soak, oversize: see python -m reliability)"


def _run_one(name: str) -> Result:
    try:
        return BENCHMARKS[name]()
    except Exception as exc:  # a crashing benchmark reports, it does not hide the others
        return {"error": f"{name}: {type(exc).__name__}: {exc}"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["all"]
    if args[0] in MOVED:
        from reliability.__main__ import main as reliability_main  # noqa: PLC0415

        forwarded = [*MOVED[args[0]], *args[1:]]
        moved_to = " ".join(["python -m reliability", *forwarded])
        print(f"note: `python -m bench {args[0]}` moved to `{moved_to}`", file=sys.stderr)
        return reliability_main(forwarded)
    if len(args) != 1 or args[0] not in BENCHMARKS:
        print(json.dumps({"error": _usage()}))
        return ExitCode.USAGE
    out = _run_one(args[0])
    print(json.dumps(out, sort_keys=False))
    return ExitCode.RUNTIME if ("error" in out or "errors" in out) else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
