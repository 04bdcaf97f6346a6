"""`python -m reliability [--quick] [--only PART,...]` runs the soak (reliability/suite.py);
`python -m reliability oversize` measures the worst case of oversized input (reliability/oversize.py).

Each prints ONE JSON object on stdout. Exit codes: 0 every part ran and met its targets; 1 a part
failed to run or missed a target; 2 bad usage (the object then holds only `error`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from sidecar.errors import ExitCode


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["oversize"]:
        from reliability.oversize import run as run_oversize  # noqa: PLC0415

        if len(args) > 1:
            print(json.dumps({"error": "usage: python -m reliability oversize  (no options)"}))
            return ExitCode.USAGE
        print(json.dumps(run_oversize()))
        return ExitCode.OK
    from reliability.suite import plan, run  # noqa: PLC0415

    try:
        plan(args)
    except ValueError as exc:
        print(json.dumps({"error": str(exc)}))
        return ExitCode.USAGE
    out = run(args)
    print(json.dumps(out, default=str))
    return ExitCode.RUNTIME if out.get("errors") or out.get("missed") or "error" in out else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
