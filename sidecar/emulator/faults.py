"""Fault plans: what the emulator should do wrong next, and how many times.

Its one job is to validate fault specs and hand them out one hit at a time (`take`). Each fault
has a `count`: how many of the next matching events it hits, across every connection
(`stall_public` is the exception: it lasts `ms` and is dropped when its stall ends). It does no
I/O; the server, the trade desk and the public feed decide what a hit means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sidecar.emulator.ratelimit import TRADE_OPS

__all__ = ["KINDS", "Fault", "FaultError", "FaultPlan"]

# kind -> what one hit consumes
KINDS: dict[str, str] = {
    "drop_ack": "trade request",
    "delay_ack": "trade request",
    "reject": "trade request",
    "rate_limit": "trade request",
    "disconnect_trade": "trade request",
    "drop_order_events": "order update",
    "delay_order_events": "order update",
    "order_events_before_ack": "order update",
    "duplicate_order_events": "order update",
    "disconnect_private": "order update",
    "fill_before_amend": "amend item",
    "fill_after_ack": "amend item",
    "cancel_after_ack": "amend item",
    "stall_public": "public socket",
}
_NEEDS_MS = frozenset({"delay_ack", "delay_order_events", "stall_public"})
# Kinds taking the optional `amended` flag: false (default) = the fill/cancel wins the race and the
# amend never lands; true = the amend lands first and the order fills/is cancelled right after.
_AFTER_ACK = frozenset({"fill_after_ack", "cancel_after_ack"})
_DEFAULT_BEFORE_ACK_MS = 50


class FaultError(ValueError):
    """A fault spec that cannot be used; the message says why."""


@dataclass
class Fault:
    kind: str
    count: int
    ms: int = 0
    code: int = 0
    msg: str = ""
    op: str | None = None  # filter for trade-request kinds
    symbol: str | None = None  # filter for order-update and amend-item kinds
    amended: bool | None = None  # fill_after_ack / cancel_after_ack: did the amend land first?

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _int(spec: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FaultError(f"{spec.get('kind')}: '{key}' must be an integer >= {minimum}")
    return value


def parse_fault(spec: object) -> Fault:
    """One fault from its JSON form, or `FaultError`."""
    if not isinstance(spec, Mapping):
        raise FaultError("each fault must be an object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
    fault = Fault(kind=str(kind), count=_int(spec, "count", 1, 1))
    if kind in _NEEDS_MS:
        fault.ms = _int(spec, "ms", None, 0)
    elif kind == "order_events_before_ack":
        fault.ms = _int(spec, "ms", _DEFAULT_BEFORE_ACK_MS, 0)
    if kind in _AFTER_ACK:
        amended = spec.get("amended", False)
        if not isinstance(amended, bool):
            raise FaultError(f"{kind}: 'amended' must be true or false")
        fault.amended = amended
    elif "amended" in spec:
        raise FaultError(f"{kind}: 'amended' is only for {', '.join(sorted(_AFTER_ACK))}")
    if kind == "reject":
        fault.code = _int(spec, "code", None, 1)
        msg = spec.get("msg", "injected rejection")
        if not isinstance(msg, str):
            raise FaultError("reject: 'msg' must be a string")
        fault.msg = msg
    op = spec.get("op")
    if op is not None:
        if KINDS[str(kind)] in ("order update", "public socket") or op not in TRADE_OPS:
            raise FaultError(f"{kind}: 'op' filter must be one of {', '.join(TRADE_OPS)}")
        fault.op = op
    symbol = spec.get("symbol")
    if symbol is not None:
        if not isinstance(symbol, str) or KINDS[str(kind)] in ("trade request", "public socket"):
            raise FaultError(f"{kind}: 'symbol' filter is for order-update and amend kinds")
        fault.symbol = symbol
    return fault


class FaultPlan:
    """Active faults in the order they were added; `take` consumes one hit of the first match."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, specs: object) -> list[Fault]:
        """Validate all specs first, then add them all (nothing is added if one is bad)."""
        if not isinstance(specs, list):
            raise FaultError("'faults' must be a list")
        parsed = [parse_fault(s) for s in specs]
        self._faults.extend(parsed)
        return parsed

    def clear(self) -> None:
        self._faults.clear()

    def discard(self, kind: str) -> None:
        """Drop every fault of `kind` (a stall that has run its course)."""
        self._faults = [f for f in self._faults if f.kind != kind]

    def active(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self._faults]

    def pending(self, kind: str) -> bool:
        return any(f.kind == kind for f in self._faults)

    def take(self, kind: str, *, op: str | None = None, symbol: str | None = None) -> Fault | None:
        """Consume one hit of the first matching fault; returns a copy with count = hits left."""
        for fault in self._faults:
            if fault.kind != kind:
                continue
            if fault.op is not None and fault.op != op:
                continue
            if fault.symbol is not None and fault.symbol != symbol:
                continue
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return Fault(**asdict(fault))
        return None
