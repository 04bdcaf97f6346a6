"""Journal record bodies built from the service's objects, and read back for crash recovery.

One job: shape what the service journals (the agent's arguments as a bounded summary, the intent's
items, the verdict's denials, the steps of a request folded into the record that ends them) in the
compact format of `sidecar/journal/format.py`, and turn a journaled intent back into the items
and orders recovery needs. Pure functions: no I/O, no clock (times come in), no decisions; the
service decides what to journal and when.

The steps of a request (sent, ack, order events, REST read-backs, item verdicts) are kept by the
service as small tuples while it waits (`Step*` below, cheap on the event path) and formatted here
only when the record that ends them is written:

    ("sent", wall_ms)                          ("send_failed", wall_ms, error)
    ("ack", wall_ms, Ack)                      ("ack_timeout", wall_ms) / ("connection_lost", wall_ms)
    ("order_event", wall_ms, index, result, OrderView)
    ("rest", wall_ms, index, OrderView | None, error | None)

Item verdicts are not steps: each result row says what decided it and when (`decided`: per item
index, the ItemResult's evidence and the wall ms it was reached).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from sidecar.core.numbers import plain_decimal
from sidecar.core.types import (
    AMEND_NUMERIC_FIELDS,
    Ack,
    AmendItem,
    AmendRequest,
    Category,
    ItemVerdict,
    OrderView,
    Side,
    Verdict,
)
from sidecar.journal.format import (
    FORMAT,
    MAPPING,
    default_ack_items,
    encode_result,
    pack_view,
    rebuild_args_item,
    result_delta,
)
from sidecar.logs import scrub_data
from sidecar.results import reason_body

__all__ = [
    "ARGS_MAX_BYTES",
    "args_in_intent",
    "final_body",
    "intent_item",
    "late_body",
    "recovered_item",
    "request_args",
    "settled_body",
    "target_extras",
    "verdict_body",
    "view_from_body",
]

# Bounds of the journaled summary of an agent's arguments (issue 9: never megabytes).
ARGS_MAX_BYTES: Final = 64 * 1024
_ARGS_MAX_ITEMS: Final = 25  # Bybit's largest batch is 20
_ARGS_MAX_KEYS: Final = 40
_ARGS_MAX_STR: Final = 256
_ARGS_MAX_DEPTH: Final = 6
# A verdict record lists at most this many denied items.
_VERDICT_MAX_ITEMS: Final = 50
# Fields every intent item's `before` holds as columns; other targeted fields go beside them.
_FIXED_FIELDS: Final = frozenset({"price", "qty"})


# ---------------------------------------------------------------------------------- the request


def request_args(request: AmendRequest) -> dict[str, Any]:
    """The agent's arguments as received, as a bounded, JSON-safe summary (≤ 64 KiB whatever the
    input): long strings are cut and hashed, long lists and objects cut with a count, deep nesting
    cut, and the sidecar's own secret values scrubbed. Field names are kept as data (the journal
    screens only real secret values), so no name an agent picks can refuse the record."""
    summary: dict[str, Any] = {"category": _bounded(request.category, 0)}
    size = len(json.dumps(summary["category"], default=str))
    bounded = [_bounded(raw, 1) for raw in request.items[:_ARGS_MAX_ITEMS]]
    # Each item counts its own JSON text; the list's text is their sum plus separators, so when
    # the whole list fits, every item does (one dump instead of one per item).
    if size + len(json.dumps(bounded, default=str)) <= ARGS_MAX_BYTES - 1024:
        items = bounded
    else:
        items = []
        for item in bounded:
            cost = len(json.dumps(item, default=str))
            if size + cost > ARGS_MAX_BYTES - 1024:
                break
            items.append(item)
            size += cost
    summary["request"] = items
    if len(items) < len(request.items):
        summary["itemsOmitted"] = len(request.items) - len(items)
    scrubbed: dict[str, Any] = scrub_data(summary)
    return scrubbed


def _bounded(value: object, depth: int) -> Any:
    """A JSON-safe copy of untrusted `value`, bounded in size and depth."""
    # Strings first: most of an agent's values are (ids, decimal texts), and this runs per value.
    if isinstance(value, str):
        return value if len(value) <= _ARGS_MAX_STR else _cut(value)
    if value is None:
        return None
    if isinstance(value, int):  # bool too (an int whose abs is 0 or 1)
        return value if abs(value) < 10**30 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _ARGS_MAX_DEPTH:
        return f"<{type(value).__name__} nested deeper than {_ARGS_MAX_DEPTH}>"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for n, (key, item) in enumerate(value.items()):
            if n >= _ARGS_MAX_KEYS:
                out["<keysOmitted>"] = len(value) - _ARGS_MAX_KEYS
                break
            name = key if isinstance(key, str) and len(key) <= _ARGS_MAX_STR else _cut(str(key))
            # A short string (most values: ids, decimal texts) is kept as it is, without the call.
            short_text = type(item) is str and len(item) <= _ARGS_MAX_STR
            out[name] = item if short_text else _bounded(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        listed = [_bounded(v, depth + 1) for v in value[:_ARGS_MAX_KEYS]]
        if len(value) > _ARGS_MAX_KEYS:
            listed.append(f"<{len(value) - _ARGS_MAX_KEYS} more>")
        return listed
    return _cut(f"<{type(value).__name__}>")


def _cut(text: str) -> str:
    """A long string as its head, its length and a hash (enough to recognise it, never megabytes)."""
    if len(text) <= _ARGS_MAX_STR:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:64]}...<{len(text)} chars, sha256 {digest}>"


def args_in_intent(args: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> list[int]:
    """Positions of the agent's items (in the `request_args` summary) that the intent items hold
    exactly, so the request record need not repeat them (journal_format.request_body)."""
    listed = args.get("request")
    if not isinstance(listed, list):
        return []
    out: list[int] = []
    for item in items:
        index = item.get("index")
        if isinstance(index, int) and 0 <= index < len(listed) and listed[index] == rebuild_args_item(item):
            out.append(index)
    return out


def verdict_body(verdict: Verdict) -> dict[str, Any] | None:
    """The validation verdict as journaled: only what was denied (None when nothing was)."""
    denied = [iv for iv in verdict.items if not iv.allowed]
    if not denied and not verdict.reasons:
        return None
    return {
        "itemCount": len(verdict.items) + verdict.items_omitted,
        "denied": [
            {"index": iv.index, "reasons": [reason_body(r) for r in iv.reasons]}
            for iv in denied[:_VERDICT_MAX_ITEMS]
        ],
        "reasons": [reason_body(r) for r in verdict.reasons],
    }


# ---------------------------------------------------------------------------------- the intent


def intent_item(iv: ItemVerdict) -> dict[str, Any]:
    """One item of the intent: the ids as the agent gave them, the targets as sent (the one plain
    decimal text, as on the wire), and `before`: the order as validated, with the fields verification compares
    (price, qty, status, updatedTime, every targeted field) and the order's ids."""
    item = iv.item
    targets = (
        {k: plain_decimal(v) if isinstance(v, Decimal) else v for k, v in item.targets().items()}
        if item
        else {}
    )
    order = iv.order
    before: dict[str, Any] | None = None
    if order is not None:
        before = {
            "orderId": order.order_id,
            "orderLinkId": order.order_link_id,
            "price": plain_decimal(order.price),
            "qty": plain_decimal(order.qty),
            "orderStatus": order.order_status,
            "updatedTime": order.updated_time_ms,
        }
        for name in targets:
            if name not in _FIXED_FIELDS:
                value = order.value_of(name)
                before[name] = plain_decimal(value) if isinstance(value, Decimal) else value
    return {
        "index": iv.index,
        "symbol": iv.symbol,
        "orderId": iv.order_id,
        "orderLinkId": iv.order_link_id,
        "targets": targets,
        "before": before,
    }


def target_extras(items: Sequence[Mapping[str, Any]]) -> dict[int, tuple[str, ...]]:
    """Per item index, the targeted fields besides price and qty (order views in the steps carry
    them too, so the evidence shows them)."""
    out: dict[int, tuple[str, ...]] = {}
    for it in items:
        targets = it.get("targets")
        extra = tuple(k for k in targets if k not in _FIXED_FIELDS) if isinstance(targets, MAPPING) else ()
        if extra and isinstance(it.get("index"), int):
            out[it["index"]] = extra
    return out


def recovered_item(raw: Mapping[str, Any], category: Category) -> tuple[AmendItem, OrderView | None]:
    """An intent item (either journal format) as the amend and the order it was validated on."""
    before = raw.get("before")
    b = before if isinstance(before, Mapping) else {}
    symbol = str(raw.get("symbol"))
    item = AmendItem(
        symbol,
        raw.get("orderId") or b.get("orderId"),
        raw.get("orderLinkId") or b.get("orderLinkId"),
        _targets_from_body(raw.get("targets")),
    )
    return item, view_from_body(before, category=category, symbol=symbol)


def _targets_from_body(body: object) -> dict[str, Decimal | str]:
    """An intent's stored targets back as values: numbers as Decimals, enum fields as text."""
    if not isinstance(body, dict):
        return {}
    return {str(k): Decimal(str(v)) if k in AMEND_NUMERIC_FIELDS else str(v) for k, v in body.items()}


def view_from_body(
    body: object, *, category: Category | None = None, symbol: str | None = None
) -> OrderView | None:
    """The order state stored as an intent item's `before` back as an OrderView; None if unusable.
    Fields a format-2 intent leaves out (side, leaves, cumulative fill) are not compared by
    verification; they read as unknown (None) or 0."""
    if not isinstance(body, Mapping):
        return None

    def dec(key: str) -> Decimal | None:
        value = body.get(key)
        return None if value in (None, "") else Decimal(str(value))

    try:
        price, qty = dec("price"), dec("qty")
        if price is None or qty is None:
            return None
        side = body.get("side")
        return OrderView(
            category=Category(str(body.get("category", category))),
            symbol=str(body.get("symbol", symbol)),
            order_id=str(body["orderId"]),
            order_link_id=str(body.get("orderLinkId") or ""),
            side=Side(side) if side in ("Buy", "Sell") else None,
            price=price,
            qty=qty,
            leaves_qty=dec("leavesQty") or Decimal(0),
            cum_exec_qty=dec("cumExecQty") or Decimal(0),
            order_status=str(body.get("orderStatus", "")),
            updated_time_ms=int(body.get("updatedTime", 0)),
            take_profit=dec("takeProfit"),
            stop_loss=dec("stopLoss"),
            tp_limit_price=dec("tpLimitPrice"),
            sl_limit_price=dec("slLimitPrice"),
            trigger_price=dec("triggerPrice"),
            order_iv=dec("orderIv"),
            tp_trigger_by=str(body.get("tpTriggerBy") or ""),
            sl_trigger_by=str(body.get("slTriggerBy") or ""),
            trigger_by=str(body.get("triggerBy") or ""),
            tpsl_mode=str(body.get("tpslMode") or ""),
        )
    except (KeyError, ValueError, ArithmeticError):
        return None


# ---------------------------------------------------------------------------------- steps


def _view_cells(view: OrderView, extra: Sequence[str]) -> list[Any]:
    values: dict[str, Any] = {}
    for name in extra:
        value = view.value_of(name)
        values[name] = plain_decimal(value) if isinstance(value, Decimal) else value
    if view.refused_by_engine:  # e.g. a PostOnly amend cancelled for taking liquidity: evidence
        values["rejectReason"] = view.reject_reason
    return pack_view(
        plain_decimal(view.price),
        plain_decimal(view.qty),
        plain_decimal(view.leaves_qty),
        plain_decimal(view.cum_exec_qty),
        view.order_status,
        view.updated_time_ms,
        values,
    )


def _ack_cells(ack: Ack, intent_items: Sequence[Mapping[str, Any]]) -> list[Any] | None:
    listed = [[i.code, i.msg, i.order_id, i.order_link_id] for i in ack.items]
    return None if listed == default_ack_items(intent_items) else listed


def _encode_steps(
    steps: Sequence[tuple[Any, ...]], base_ms: int, intent_items: Sequence[Mapping[str, Any]]
) -> list[list[Any]]:
    extras = target_extras(intent_items)
    out: list[list[Any]] = []
    for step in steps:
        kind, wall = step[0], step[1]
        t = wall - base_ms
        if kind == "order_event":
            _k, _w, index, result, view = step
            out.append([kind, t, index, result, *_view_cells(view, extras.get(index, ()))])
        elif kind == "rest":
            _k, _w, index, view, error = step
            cells = _view_cells(view, extras.get(index, ())) if view is not None else None
            out.append([kind, t, index, cells, error])
        elif kind == "ack":
            ack: Ack = step[2]
            out.append(
                [
                    kind,
                    t,
                    ack.ret_code,
                    ack.ret_msg,
                    ack.limit,
                    ack.limit_status,
                    ack.limit_reset_ms,
                    _ack_cells(ack, intent_items),
                ]
            )
        elif kind == "send_failed":
            out.append([kind, t, step[2]])
        else:  # sent, ack_timeout, connection_lost
            out.append([kind, t])
    return out


def _with_steps(body: dict[str, Any], steps: list[list[Any]], omitted: int) -> dict[str, Any]:
    if steps:
        body["steps"] = steps
    if omitted:
        body["stepsOmitted"] = omitted
    return body


def _relative(decided: Mapping[int, tuple[str, int]] | None, base_ms: int) -> dict[int, tuple[str, int]]:
    return {i: (evidence, wall - base_ms) for i, (evidence, wall) in (decided or {}).items()}


def final_body(
    result: Mapping[str, Any],
    steps: Sequence[tuple[Any, ...]] = (),
    *,
    base_ms: int = 0,
    intent_items: Sequence[Mapping[str, Any]] = (),
    decided: Mapping[int, tuple[str, int]] | None = None,
    steps_omitted: int = 0,
) -> dict[str, Any]:
    """The `final` (or `result_update`) body: the tool result, compact, and the steps it ends."""
    encoded = _encode_steps(steps, base_ms, intent_items)
    compact = encode_result(result, encoded, intent_items, _relative(decided, base_ms))
    return _with_steps({"v": FORMAT, "result": compact}, encoded, steps_omitted)


def late_body(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    steps: Sequence[tuple[Any, ...]] = (),
    *,
    base_ms: int = 0,
    intent_items: Sequence[Mapping[str, Any]] = (),
    decided: Mapping[int, tuple[str, int]] | None = None,
    steps_omitted: int = 0,
) -> dict[str, Any]:
    """A `result_delta` body: what changed in the stored result, and the steps since the last record."""
    encoded = _encode_steps(steps, base_ms, intent_items)
    delta = result_delta(old, new, encoded, intent_items, _relative(decided, base_ms))
    return _with_steps({"v": FORMAT, **delta}, encoded, steps_omitted)


def settled_body(
    unverified: Sequence[int],
    steps: Sequence[tuple[Any, ...]] = (),
    *,
    base_ms: int = 0,
    intent_items: Sequence[Mapping[str, Any]] = (),
    steps_omitted: int = 0,
) -> dict[str, Any]:
    """A `settled` body: the items reconciliation gave up on (still unverified; recovery will not
    look at them again) and the steps since the last record."""
    encoded = _encode_steps(steps, base_ms, intent_items)
    return _with_steps({"v": FORMAT, "unverified": list(unverified)}, encoded, steps_omitted)
