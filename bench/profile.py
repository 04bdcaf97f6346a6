"""`python -m bench.profile decision|sidecar [N]`: cProfile of a missed target's hot path.

Prints ONE JSON object: the top functions by own time (per request, µs), each tagged `ours`
(sidecar/), `library` (site-packages) or `stdlib`, plus the share of total time per tag.
`decision`: the pure decision bench. `sidecar`: N sequential verified batches through the
service against an emulator process (the emulator's own time is not in the profile; the event
loop's wait for it shows up as `select`). Not part of `make bench`; used for docs/benchmarks.md.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
from typing import Any

from bench.common import ROOT, EmulatorProcess, temp_dir


def _tag(filename: str) -> str:
    if "site-packages" in filename:
        return "library"
    if filename.startswith(str(ROOT / "sidecar")):
        return "ours"
    if filename.startswith((str(ROOT / "bench"), str(ROOT / "reliability"))):
        return "bench"
    return "stdlib"


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.rsplit("/", 2)[-1] if "/" in filename else filename


def _report(prof: cProfile.Profile, requests: int, top: int = 25) -> dict[str, Any]:
    st = pstats.Stats(prof)
    rows = []
    by_tag: dict[str, float] = {}
    total = 0.0
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():  # type: ignore[attr-defined]
        tag = _tag(filename)
        by_tag[tag] = by_tag.get(tag, 0.0) + tottime
        total += tottime
        rows.append((tottime, cumtime, ncalls, tag, f"{_short(filename)}:{line}({func})"))
    rows.sort(reverse=True)
    ours_cum = sorted((r for r in rows if r[3] == "ours"), key=lambda r: -r[1])
    return {
        "requests": requests,
        "total_us_per_request": round(total / requests * 1e6, 1),
        "share_by_tag": {k: round(v / total, 3) for k, v in sorted(by_tag.items(), key=lambda kv: -kv[1])},
        "top_own_time": [
            {
                "fn": name,
                "tag": tag,
                "own_us_per_req": round(tt / requests * 1e6, 1),
                "cum_us_per_req": round(ct / requests * 1e6, 1),
                "calls_per_req": round(n / requests, 1),
            }
            for tt, ct, n, tag, name in rows[:top]
        ],
        "ours_by_cumulative_time": [
            {
                "fn": name,
                "cum_us_per_req": round(ct / requests * 1e6, 1),
                "calls_per_req": round(n / requests, 1),
            }
            for _tt, ct, n, _tag, name in ours_cum[:top]
        ],
    }


def profile_decision(n: int) -> dict[str, Any]:
    from bench import policy  # noqa: PLC0415

    prof = cProfile.Profile()
    prof.enable()
    policy.run(n, 0)
    prof.disable()
    return _report(prof, n)


def profile_sidecar(n: int) -> dict[str, Any]:
    from bench import sidecar_path  # noqa: PLC0415

    prof = cProfile.Profile()
    with EmulatorProcess() as emu, temp_dir() as tmp:
        emu.prepare()
        sidecar_path.measure_service(
            emu, tmp, submitters=0, runs=n, warmup=50, mcp_runs=1, duration_s=0, profiler=prof
        )
    return _report(prof, n)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    if what == "decision":
        print(json.dumps(profile_decision(count), indent=1))
    elif what == "sidecar":
        print(json.dumps(profile_sidecar(count), indent=1))
    else:
        sys.exit("usage: python -m bench.profile decision|sidecar [N]")
