"""What `sidecar probe` reports: one result per named check, in a fixed order, as human lines or JSON,
and the exit code that follows from them.

A check's `expected` is what the sidecar assumes (and the emulator does); `observed` is what the
exchange did; `status` is `ok` (they agree), `differs` (they do not: `detail` says what that means
for the sidecar and what to do), `skipped` (not done: `detail` says why, never a fake `ok`) or
`error` (it could not be judged). Every value is scrubbed of secrets and bounded in size here, once.

Pure: no I/O, no clock. It must not run checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sidecar.logs import scrub

__all__ = [
    "CHECK_NAMES",
    "ORDER_CHECKS",
    "CheckResult",
    "Status",
    "differs",
    "error",
    "exit_code",
    "judge",
    "ok",
    "render_human",
    "render_json",
    "skipped",
]

Status = Literal["ok", "differs", "skipped", "error"]

# Every check, in report order (the order of docs/emulator.md's table of unconfirmed points).
CHECK_NAMES: tuple[str, ...] = (
    "ticker_quiet_gap",
    "ticker_delta_fields",
    "public_pong_shapes",
    "option_subscribe_reply",
    "cursor_round_trip",
    "cursor_last_page",
    "linear_settle_coins",
    "realtime_closed_retention",
    "order_history_lookup",
    "clock_offset",
    "recv_window_code",
    "auth_error_codes",
    "unauthenticated_op_reqid",
    "reqid_duplicate_scope",
    "trade_header_types",
    "single_ack_ret_ext_info",
    "trade_session_limit",
    "amend_push_shape",
    "noop_amend_code",
    "amend_closed_order_code",
    "crossing_amend_fill",
    "postonly_cross_cancel",
    "post_ack_fill_race",
    "double_filled_push",
    "linear_inverse_shared_bucket",
    "batch_limit_status_units",
    "batch_rate_limit_item_code",
    "batch_max_items",
    "spot_min_order_qty",
    "ack_rate_limit_headers",
)

# Checks that place, amend or cancel orders, or spend the account's whole batch budget for a
# second: they run only with `--allow-orders` (testnet or an emulator).
ORDER_CHECKS: frozenset[str] = frozenset(
    {
        "amend_push_shape",
        "noop_amend_code",
        "amend_closed_order_code",
        "crossing_amend_fill",
        "postonly_cross_cancel",
        "batch_limit_status_units",
        "batch_rate_limit_item_code",
        "batch_max_items",
        "spot_min_order_qty",
    }
)

_MAX_TEXT = 300  # characters of one string (an exchange message can be long)
_MAX_ITEMS = 50  # entries of one list or mapping
_MAX_DEPTH = 6


def _bounded(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: secrets scrubbed, strings cut, containers capped."""
    if isinstance(value, str):
        text = scrub(value)
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())[:_MAX_ITEMS]
        return {str(_bounded(str(k), depth + 1)): _bounded(v, depth + 1) for k, v in items}
    if isinstance(value, Iterable):
        return [_bounded(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
    return _bounded(str(value), depth + 1)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict (build it with `ok`, `judge`, `skipped`, `error`)."""

    name: str
    status: Status
    expected: Any
    observed: Any
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "expected": self.expected,
            "observed": self.observed,
            "detail": self.detail,
        }


def _result(name: str, status: Status, expected: Any, observed: Any, detail: str) -> CheckResult:
    if name not in CHECK_NAMES:
        raise ValueError(f"unknown probe check {name!r}")
    return CheckResult(name, status, _bounded(expected), _bounded(observed), _bounded(detail))


def ok(name: str, expected: Any, observed: Any, detail: str) -> CheckResult:
    return _result(name, "ok", expected, observed, detail)


def differs(name: str, expected: Any, observed: Any, detail: str) -> CheckResult:
    return _result(name, "differs", expected, observed, detail)


def skipped(name: str, expected: Any, detail: str) -> CheckResult:
    return _result(name, "skipped", expected, None, detail)


def error(name: str, expected: Any, detail: str, observed: Any = None) -> CheckResult:
    return _result(name, "error", expected, observed, detail)


def judge(name: str, expected: Any, observed: Any, *, agrees: str, otherwise: str) -> CheckResult:
    """`ok` with `agrees` when the observation equals the expectation, else `differs` with
    `otherwise` (what the difference means for the sidecar and what to do)."""
    if observed == expected:
        return ok(name, expected, observed, agrees)
    return differs(name, expected, observed, otherwise)


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when nothing differs or errs, else 1."""
    return 1 if any(r.status in ("differs", "error") for r in results) else 0


def render_json(exchange: Mapping[str, Any], results: Sequence[CheckResult]) -> str:
    """`{"exchange": ..., "checks": [{"name","status","expected","observed","detail"}]}`."""
    return json.dumps({"exchange": _bounded(exchange), "checks": [r.as_json() for r in results]})


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def render_human(exchange: Mapping[str, Any], results: Sequence[CheckResult]) -> str:
    """One line per check (status, name, detail); a differing or failing check also shows what was
    expected and what was seen (when there is either); then a count per status."""
    width = max((len(r.name) for r in results), default=0)
    lines = [f"sidecar probe: {_compact(_bounded(exchange))}"]
    for r in results:
        lines.append(f"{r.status:<8} {r.name:<{width}}  {r.detail}")
        if r.status in ("differs", "error") and (r.expected is not None or r.observed is not None):
            pad = " " * (9 + width + 2)
            lines.append(f"{pad}expected: {_compact(r.expected)}")
            lines.append(f"{pad}observed: {_compact(r.observed)}")
    counts = {s: sum(1 for r in results if r.status == s) for s in ("ok", "differs", "skipped", "error")}
    lines.append("summary: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
