"""`python -m bench [name|all]`: run benchmarks and print ONE JSON object on stdout.

Each benchmark is a function returning a JSON-able dict; a dict with an "error" key means it could
not run (exit 1). New benchmarks plug in by adding a name to `BENCHMARKS`. Heavy imports happen
inside the benchmark functions so one broken benchmark does not take the others down.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

from bench import policy

Result = dict[str, object]

BENCHMARKS: dict[str, Callable[[], Result]] = {
    "policy": policy.run,
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _usage() -> str:
    return f"usage: python -m bench [{'|'.join([*BENCHMARKS, 'all'])}]"


def _run_one(name: str) -> Result:
    try:
        return BENCHMARKS[name]()
    except Exception as exc:  # a crashing benchmark reports, it does not hide the others
        return {"error": f"{name}: {type(exc).__name__}: {exc}"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or (args[0] not in BENCHMARKS and args[0] != "all"):
        print(json.dumps({"error": _usage()}))
        return EXIT_USAGE
    if args[0] == "all":
        results = {name: _run_one(name) for name in BENCHMARKS}
        failed = any("error" in r for r in results.values())
        out: Result = dict(results)
    else:
        out = _run_one(args[0])
        failed = "error" in out
    print(json.dumps(out, sort_keys=True))
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
