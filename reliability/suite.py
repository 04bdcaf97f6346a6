"""`python -m reliability [--quick] [--only PART,...]`: the reliability suite; ONE JSON object.

Its one job is to run the four parts of reliability.md §5 and put their figures, the targets and a
§5.7-style summary into one object:

* `bad_input` (reliability/bad_input.py, reliability/concurrent.py): hypothesis-generated hostile
  and valid `wsBatchAmendOrders` calls through MCP; every amend that reaches the emulator re-checked
  by an independent oracle; then several agents on the same orders at once.
* `faults` (reliability/faults.py): every emulator fault kind × every pipeline stage; verdicts
  checked against the emulator's order state, frames (no resend) and the journal (complete).
* `load` (reliability/load.py): 50 batches/s × 20 items with faults sprinkled in; latency, drift.
* `crash`: the kill -9 soak, `CRASH_ROUNDS=N pytest tests/e2e/test_crash_recovery.py -k soak`, in a
  subprocess (it runs alongside the first two parts; the load runs alone).

Full mode (outside CI, ~20 min): 100,000 calls, ≥ 1,000 faults, 10 min of load, 100 kill -9.
`--quick` (< 60 s): 1,200 calls, ≥ 100 faults, 12 s of load, 5 kill -9. Counts can be changed with
SOAK_BAD_N, SOAK_FAULTS_N, SOAK_LOAD_S, SOAK_LOAD_RATE, SOAK_CRASH_ROUNDS, SOAK_LANES. A part that
fails to run reports {"error": ...}; the exit code is 1 when a part errors or a target is missed.
It must not change the sidecar's behaviour (only its config: see `reliability.stack.soak_config`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, ErrorCounter, quiet_logging, temp_dir
from bench.report import machine, target

__all__ = ["Plan", "run"]

PARTS = ("bad_input", "faults", "load", "crash")
USAGE = "python -m reliability [--quick] [--only bad_input,faults,load,crash]  (or: ... oversize)"


@dataclass(frozen=True)
class Plan:
    quick: bool
    bad_n: int
    faults_n: int
    lanes: int
    load_s: float
    load_rate: float
    fault_every_s: float
    crash_rounds: int
    parts: tuple[str, ...]


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def plan(argv: Sequence[str]) -> Plan:
    """The run's plan from `[--quick] [--only PART,...]` and the SOAK_* variables (ValueError: bad usage)."""
    quick = "--quick" in argv
    parts: tuple[str, ...] = PARTS
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
        elif a == "--only" and i + 1 < len(argv):
            parts = tuple(p for p in argv[i + 1].split(",") if p)
            skip = True
        elif a.startswith("--only="):
            parts = tuple(p for p in a.split("=", 1)[1].split(",") if p)
        elif a != "--quick":
            raise ValueError(f"unknown argument {a!r}; usage: {USAGE}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; parts: {', '.join(PARTS)}")
    return Plan(
        quick=quick,
        bad_n=int(_env("SOAK_BAD_N", 1200 if quick else 100_000)),
        faults_n=int(_env("SOAK_FAULTS_N", 100 if quick else 1000)),
        lanes=int(_env("SOAK_LANES", 6)),
        load_s=_env("SOAK_LOAD_S", 12 if quick else 600),
        load_rate=_env("SOAK_LOAD_RATE", 50),
        fault_every_s=_env("SOAK_FAULT_EVERY_S", 2 if quick else 5),
        crash_rounds=int(_env("SOAK_CRASH_ROUNDS", 5 if quick else 100)),
        parts=parts,
    )


# ---------------------------------------------------------------------------------- crash


def crash_command(rounds: int) -> list[str]:
    return [
        str(ROOT / ".venv" / "bin" / "pytest") if (ROOT / ".venv" / "bin" / "pytest").exists() else "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/e2e/test_crash_recovery.py",
        "-k",
        "soak",
        "--timeout",
        "7200",
    ]


def start_crash(rounds: int) -> tuple[subprocess.Popen[str], float]:
    env = {**os.environ, "CRASH_ROUNDS": str(rounds)}
    proc = subprocess.Popen(
        crash_command(rounds),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, time.perf_counter()


def finish_crash(proc: subprocess.Popen[str], started: float, rounds: int) -> dict[str, Any]:
    out, _ = proc.communicate()
    tail = out.strip().splitlines()[-1:] if out.strip() else []
    passed = proc.returncode == 0 and bool(re.search(r"\b1 passed\b", out))
    result: dict[str, Any] = {
        "rounds": rounds,
        "kills": rounds,  # one SIGKILL per round, at a random pipeline point, then a restart
        "passed": passed,
        "returncode": proc.returncode,
        "duration_s": round(time.perf_counter() - started, 1),
        "command": f"CRASH_ROUNDS={rounds} .venv/bin/pytest " + " ".join(crash_command(rounds)[1:]),
        "pytest_summary": tail[0] if tail else "",
    }
    if not passed:
        result["output_tail"] = out[-3000:]
    return result


# ---------------------------------------------------------------------------------- the run


async def _async_parts(p: Plan, tmp: Path, counter: ErrorCounter) -> dict[str, Any]:
    from reliability.bad_input import run_bad_input  # noqa: PLC0415
    from reliability.faults import run_faults  # noqa: PLC0415

    out: dict[str, Any] = {}
    if "bad_input" in p.parts:
        out["bad_input"] = await _guard(run_bad_input(p.bad_n, tmp, errors=counter))
        counter.errors.clear()
    if "faults" in p.parts:
        out["faults"] = await _guard(run_faults(p.faults_n, tmp, lanes=p.lanes, errors=counter))
        counter.errors.clear()
    return out


async def _guard(coro: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await coro
        return result
    except Exception as exc:  # one broken part must not hide the others
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}


def run(argv: Sequence[str] = ()) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        p = plan(argv)
    except ValueError as exc:
        return {"error": str(exc)}
    counter = ErrorCounter()
    quiet_logging("WARNING", counter)
    result: dict[str, Any] = {
        "mode": "quick" if p.quick else "full",
        "machine": machine(),
        "plan": dict(p.__dict__),
    }
    crash = start_crash(p.crash_rounds) if "crash" in p.parts else None
    with temp_dir("sidecar-soak-") as tmp:
        result.update(asyncio.run(_async_parts(p, tmp, counter)))
        if crash is not None:
            result["crash"] = finish_crash(crash[0], crash[1], p.crash_rounds)
        if "load" in p.parts:
            try:
                from reliability.load import run_load  # noqa: PLC0415

                overrides = {"verification": {"background_timeout_ms": 5000}} if p.quick else {}
                result["load"] = run_load(
                    tmp,
                    rate=p.load_rate,
                    duration_s=p.load_s,
                    fault_every_s=p.fault_every_s,
                    raw_runs=200 if p.quick else 1000,
                    errors=counter,
                    config_overrides=overrides,
                )
            except Exception as exc:  # the other parts' figures still print
                result["load"] = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-2000:],
                }
    result["targets"] = targets(result, p)
    result["summary"] = summary(result)
    result["duration_s"] = round(time.perf_counter() - started, 1)
    missed = [k for k, v in result["targets"].items() if v.get("pass") is False]
    errors = [k for k in PARTS if isinstance(result.get(k), dict) and "error" in result[k]]
    if errors:
        result["errors"] = errors
    result["missed"] = missed
    # Plain JSON types only (the caller prints it with json.dumps and no default).
    return dict(json.loads(json.dumps(result, default=str)))


# ---------------------------------------------------------------------------------- targets


def targets(r: dict[str, Any], p: Plan) -> dict[str, dict[str, Any]]:
    """reliability.md §5 targets (scaled to the counts the brief asks for)."""
    t: dict[str, dict[str, Any]] = {}
    full = not p.quick
    b = r.get("bad_input") or {}
    if "calls" in b:
        t["bad_input_count"] = target(
            b["calls"], ">= 100000" if full else "quick", b["calls"] >= 100_000 if full else None
        )
        t["bad_input_out_of_policy"] = target(b["out_of_policy_items"], 0, b["out_of_policy_items"] == 0)
        t["bad_input_denials_with_code"] = target(
            b["denials_without_code"] + sum(b["unknown_codes"].values()), 0,
            b["denials_without_code"] == 0 and not b["unknown_codes"],
            "denials without a code, or with a code outside DESIGN.md's list",
        )  # fmt: skip
        t["bad_input_structured_answers"] = target(
            b["unstructured_results"], 0, b["unstructured_results"] == 0,
            "calls answered with a bare tool error instead of a structured denial",
        )  # fmt: skip
        t["bad_input_no_trip"] = target(
            b["trips_caused_by_input"], 0, b["trips_caused_by_input"] == 0,
            "agent input that halted trading (kill switch) — resumed by the harness each time",
        )  # fmt: skip
        live = b.get("liveness", {})
        up = not live.get("dead_tasks") and live.get("final_call_outcome") == "verified"
        t["bad_input_process_up"] = target(live, "tasks alive, a valid amend still verified", up)
        slow = b["latency_ms"]["max"]
        t["bad_input_no_hang_100ms"] = target(slow, "<= 100 ms per call", slow is not None and slow <= 100)
        conc = b.get("concurrent") or {}
        if "rounds" in conc:
            t["concurrent_no_out_of_policy_order"] = target(
                conc["out_of_policy_orders"], 0, conc["out_of_policy_orders"] == 0,
                "orders at the exchange outside the policy after concurrent calls on the same orders",
            )  # fmt: skip
            t["concurrent_no_contradicted_verdict"] = target(
                conc["contradicted_verdicts"], 0, conc["contradicted_verdicts"] == 0,
                "verified/not_applied/rejected answers the exchange's final state contradicts",
            )  # fmt: skip
    f = r.get("faults") or {}
    if "trials" in f:
        t["faults_count"] = target(
            f["fault_hits"], ">= 1000" if full else "quick", f["fault_hits"] >= 1000 if full else None
        )
        t["faults_all_cells"] = target(f["cells_covered"], f["cells"], f["cells_covered"] == f["cells"])
        t["faults_correct_verdicts"] = target(f["correct_pct"], 100, f["correct_pct"] == 100)
        t["faults_no_false_verified"] = target(f["false_verified"], 0, f["false_verified"] == 0)
        t["faults_no_resend"] = target(
            f["resends"], 0, f["resends"] == 0 and f["unexpected_extra_frames"] == 0
        )
        t["faults_journal_complete"] = target(
            sum(f["journal_problems"].values()), 0, not f["journal_problems"] and f["journal_chain_ok"]
        )
    ld = r.get("load") or {}
    if "batches" in ld:
        t["load_duration"] = target(
            ld["duration_s"], ">= 600 s at 50/s" if full else "quick",
            (ld["duration_s"] >= 600 and ld["rate_per_s"] >= 50) if full else None,
        )  # fmt: skip
        t["load_rate_kept"] = target(
            ld["achieved_rate_per_s"], ld["rate_per_s"], ld["achieved_rate_per_s"] >= 0.98 * ld["rate_per_s"]
        )
        pre = ld.get("sidecar_added_ms") or {}
        note = "reliability.md §5.4: request received → WS frame written (here: Service.submit → socket)"
        t["load_added_p50"] = target(
            pre.get("p50"), "<= 3 ms", pre.get("p50") is not None and pre["p50"] <= 3, note
        )
        t["load_added_p99"] = target(
            pre.get("p99"), "<= 20 ms", pre.get("p99") is not None and pre["p99"] <= 20, note
        )
        t["load_added_p999"] = target(
            pre.get("p999"), "<= 100 ms", pre.get("p999") is not None and pre["p999"] <= 100, note
        )
        t["load_added_max"] = target(
            pre.get("max"), "<= 500 ms", pre.get("max") is not None and pre["max"] <= 500, note
        )
        v = ld["verified_latency_ms_away_from_faults"]
        t["load_verdict_p99"] = target(
            v["p99"], "<= 60 ms", v["p99"] is not None and v["p99"] <= 60,
            "request → all 20 verdicts, batches away from injected faults (§5.4 'request → verdict')",
        )  # fmt: skip
        drift = ld["rss_drift_pct"]
        t["load_rss_flat"] = target(drift, "<= 10 %", drift is not None and drift <= 10)
        s, e = ld["resources_start"], ld["resources_end"]
        t["load_no_task_leak"] = target([s["tasks"], e["tasks"]], "start == end", e["tasks"] <= s["tasks"])
        t["load_no_fd_leak"] = target(
            {"start": s["fds"], "end": e["fds"], "end_idle_rest_pool": e.get("rest_pooled", 0)},
            "end − idle pooled REST connections <= start",
            e["fds"] - e.get("rest_pooled", 0) <= s["fds"],
        )
        j = ld["journal"]
        t["load_journal"] = target(
            {"frames": j["amend_frames"], "intents": j["intents"], "problems": j["problems"]},
            "every frame has an intent, no resend, every record complete",
            j["frames_without_intent"] == 0
            and j["resent_req_ids"] == 0
            and not j["problems"]
            and j["chain_ok"],
        )
        t["load_no_false_verified"] = target(ld["false_verified_at_end"], 0, ld["false_verified_at_end"] == 0)
    c = r.get("crash") or {}
    if "rounds" in c:
        t["crash_count"] = target(
            c["rounds"], ">= 100" if full else "quick", c["rounds"] >= 100 if full else None
        )
        t["crash_passed"] = target(c["passed"], True, c["passed"])
    return t


def summary(r: dict[str, Any]) -> str:
    """One paragraph in the style of reliability.md §5.7, from the figures of this run."""
    parts: list[str] = []
    b = r.get("bad_input") or {}
    if "calls" in b:
        parts.append(
            f"N = {b['calls']:,} bad inputs (valid and hostile, composed from a hypothesis-drawn "
            f"corpus, through the MCP tool wsBatchAmendOrders) → {b['amend_frames']:,} batches / "
            f"{b['sent_items']:,} items reached the emulator, {b['out_of_policy_items']} of them "
            "out of policy; "
            f"{b['denials_without_code']} denials without a code; {b['unstructured_results']} unstructured "
            f"answers; {b['trips_caused_by_input']} kill-switch trips caused by input; "
            f"max call {b['latency_ms']['max']} ms."
        )
        conc = b.get("concurrent") or {}
        if "rounds" in conc:
            parts.append(
                f"Concurrent: {conc['calls']:,} calls in {conc['rounds']} rounds on the same orders with "
                f"lagging pushes → {conc['out_of_policy_orders']} out-of-policy orders at the exchange, "
                f"{conc['contradicted_verdicts']} verdicts contradicted by its final state."
            )
    f = r.get("faults") or {}
    if "trials" in f:
        parts.append(
            f"K = {f['fault_hits']:,} injected faults ({f['trials']:,} trials over {f['cells_covered']}/"
            f"{f['cells']} kind × stage cells) → {f['correct_verdicts']:,}/{f['items']:,} correct verdicts "
            f"({f['correct_pct']} %), {f['false_verified']} false verified, {f['resends']} resends, "
            f"journal problems {sum(f['journal_problems'].values())}."
        )
    ld = r.get("load") or {}
    if "batches" in ld:
        v = ld["verified_latency_ms_away_from_faults"]
        pre = ld.get("sidecar_added_ms") or {}
        parts.append(
            f"Load: {ld['rate_per_s']:g} batches/s × 20 items for {ld['duration_s']:g} s "
            f"({ld['batches']:,} batches, {ld['faults_injected']} faults sprinkled in) → sidecar-added "
            f"latency (submit → frame written) p50 {pre.get('p50')} ms, p99 {pre.get('p99')} ms, p99.9 "
            f"{pre.get('p999')} ms, max {pre.get('max')} ms; request → verified p50 {v['p50']} ms, p99 "
            f"{v['p99']} ms (raw client ack p50 {ld['raw_ack_p50_ms']} ms in the same run); RSS "
            f"{ld['resources_start']['rss_mb']} → {ld['resources_end']['rss_mb']} MB, tasks "
            f"{ld['resources_start']['tasks']} → {ld['resources_end']['tasks']}, fds "
            f"{ld['resources_start']['fds']} → {ld['resources_end']['fds']}; "
            f"{ld['journal']['frames_without_intent']} frames without an intent."
        )
    c = r.get("crash") or {}
    if "rounds" in c:
        parts.append(
            f"Crash: {c['rounds']} kill -9 at random pipeline points with restart → "
            f"{'all reconciled, no resend' if c['passed'] else 'FAILED (see crash.output_tail)'}."
        )
    return " ".join(parts)
