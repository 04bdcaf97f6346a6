"""The journal's compact record bodies (format 2), as plain JSON in and out.

One job: turn the bodies the sidecar writes compactly back into what they mean, exactly, and
nothing else. A verified 20-item batch is three records (`request`, `intent`, `final`) instead of
~46, because a body never repeats what another body of the same request already holds:

- Per-item lists are tables: `{"cols": [names], "rows": [[values]]}` (keys once, not per item).
- The `request` record leaves out the agent's items that the intent holds exactly, and names them
  in `inIntent` (the intent is written in the same transaction or later, never earlier than it).
- A result row says `"id": null` when its symbol and ids are the intent's for that index, and
  `"observed": k` when the observed order is the view in step `k` of the same body.
- `retExtInfo: "=items"` is `{"list": [{"code", "msg"} of every sent item, in sending order]}`.
- Steps (sent, ack, order events, REST read-backs, item verdicts) are folded into the record that
  ends them (`final`, a `result_delta` after a late verdict, or `settled`), in the order they
  happened, with times in ms after the intent record's own time (this host's clock).
Every elision is made only where the encoder found the value equal to what the decoder rebuilds,
so nothing is lost (tests/test_journal_format.py checks the round trips). Bodies written before
format 2 (no `"v": 2`) are read as they are.

Pure: no I/O, no clock, no domain objects (`sidecar/journal/bodies.py` builds bodies from the
service's objects); decimals as the one plain text of `sidecar.core.numbers.plain_decimal`. It must not decide
anything: it only encodes and decodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from sidecar.core.numbers import plain_decimal

__all__ = [
    "ACK_LIST_FROM_ITEMS",
    "FORMAT",
    "INTENT_COLS",
    "MAPPING",
    "RESULT_COLS",
    "Step",
    "apply_delta",
    "changed_items",
    "current_result",
    "decode_intent_items",
    "decode_result",
    "default_ack_items",
    "encode_intent_items",
    "encode_result",
    "expand",
    "identity",
    "is_compact",
    "pack_view",
    "rebuild_args_item",
    "request_args",
    "request_body",
    "result_delta",
    "rows",
    "table",
    "unpack_view",
]

FORMAT: Final = 2
INTENT_COLS: Final = ("index", "symbol", "orderId", "orderLinkId", "given", "targets", "before")
# After the tool's item fields: what decided the verdict ("order_stream", "rest", "ack",
# "deadline") and when (ms after the intent record, this host's clock); absent for items never sent.
RESULT_COLS: Final = (
    "index",
    "outcome",
    "reasons",
    "exchangeCode",
    "exchangeMsg",
    "observed",
    "id",
    "evidence",
    "t",
)
# `given` in an intent row: which of the order's ids the agent named.
_GIVEN: Final = {(True, False): "orderId", (False, True): "orderLinkId", (True, True): "both"}
# The retExtInfo of a batch ack whose per-item codes are exactly the result's, in sending order.
ACK_LIST_FROM_ITEMS: Final = "=items"
# The positional part of an intent item's `before`: the fields verification compares.
_BEFORE_FIXED: Final = ("price", "qty", "orderStatus", "updatedTime")
# Record kinds whose body is (or holds) the whole tool result, and the late delta.
_BASE_KINDS: Final = frozenset({"final", "result_update"})
_DELTA_KIND: Final = "result_delta"
# Steps that carry an order view: (position of the view's first field, is it a nested list).
# An order view in a step: [price, qty, orderStatus, updatedTime] plus, only where they are not
# implied, an object with leavesQty (implied: qty - cumExecQty), cumExecQty (implied: 0) and the
# other targeted fields.
_VIEW_FIELDS: Final = ("price", "qty", "orderStatus", "updatedTime")
_VIEW_BODY_KEYS: Final = frozenset(("price", "qty", "leavesQty", "cumExecQty", "orderStatus", "updatedTime"))
# What decided a verdict, when the result row leaves it out: the kind of step it points at.
_EVIDENCE_OF_STEP: Final = {"order_event": "order_stream", "rest": "rest"}
# `isinstance(x, MAPPING)` is `isinstance(x, MAPPING)`, but a dict (what the service builds) is
# matched by its type before the ABC check, which costs ~100 ns a call on these per-item paths.
MAPPING: Final = (dict, Mapping)


def is_compact(body: object) -> bool:
    """True for a format-2 body (older bodies are read as they are)."""
    return isinstance(body, dict) and body.get("v") == FORMAT


def table(cols: Sequence[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"cols": list(cols), "rows": rows}


def rows(value: object) -> list[dict[str, Any]]:
    """A table back as a list of objects; a plain list (an older body) as it is."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("cols"), list)
        and isinstance(value.get("rows"), list)
    ):
        cols = value["cols"]
        return [dict(zip(cols, row, strict=False)) for row in value["rows"] if isinstance(row, list)]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


# ---------------------------------------------------------------------------------- intent


def encode_intent_items(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Intent items (`index`, `symbol`, `orderId`/`orderLinkId` as the agent gave them or None,
    `targets`, `before`: the order as validated, or None) as a table. A row names the order by
    both its ids (the agent's, else the order's) and says in `given` which the agent named;
    `before` becomes `[price, qty, orderStatus, updatedTime]` plus an object of its other fields
    (the order's ids only where they differ from the row's)."""
    out: list[list[Any]] = []
    for it in items:
        before = it.get("before")
        b = before if isinstance(before, MAPPING) else {}
        given_id, given_link = it.get("orderId"), it.get("orderLinkId")
        order_id = given_id if given_id is not None else b.get("orderId")
        link = given_link if given_link is not None else b.get("orderLinkId")
        given = _GIVEN.get((given_id is not None, given_link is not None))
        packed: list[Any] | None = None
        if isinstance(before, MAPPING):
            packed = [before.get(k) for k in _BEFORE_FIXED]
            more = {k: v for k, v in before.items() if k not in _BEFORE_FIXED}
            if more.get("orderId", ...) == order_id:
                del more["orderId"]
            if more.get("orderLinkId", ...) == link:
                del more["orderLinkId"]
            if more:
                packed.append(more)
        out.append([it.get("index"), it.get("symbol"), order_id, link, given, it.get("targets"), packed])
    return table(INTENT_COLS, out)


def decode_intent_items(value: object) -> tuple[dict[str, Any], ...]:
    """The intent's items as the service built them (the inverse of `encode_intent_items`); an
    older intent's list of objects as it is."""
    if not (isinstance(value, dict) and "cols" in value):
        return tuple(rows(value))
    out: list[dict[str, Any]] = []
    for row in rows(value):
        given = row.get("given")
        order_id, link = row.get("orderId"), row.get("orderLinkId")
        item: dict[str, Any] = {
            "index": row.get("index"),
            "symbol": row.get("symbol"),
            "orderId": order_id if given in ("orderId", "both") else None,
            "orderLinkId": link if given in ("orderLinkId", "both") else None,
            "targets": row.get("targets"),
            "before": None,
        }
        packed = row.get("before")
        if isinstance(packed, list):
            more = packed[4] if len(packed) > 4 and isinstance(packed[4], dict) else {}
            item["before"] = {
                "orderId": order_id,
                "orderLinkId": link,
                **dict(zip(_BEFORE_FIXED, packed[:4], strict=False)),
                **more,
            }
        out.append(item)
    return tuple(out)


def identity(item: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(symbol, orderId, orderLinkId) of an intent item, as a result item names it: the agent's
    ids, else the order's (the same rule as `sidecar.results.item_body`)."""
    before = item.get("before")
    b = before if isinstance(before, MAPPING) else {}
    return (
        item.get("symbol"),
        item.get("orderId") or b.get("orderId"),
        item.get("orderLinkId") or b.get("orderLinkId"),
    )


def rebuild_args_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's item as the intent holds it: symbol, the ids it gave, the targets as text."""
    raw: dict[str, Any] = {"symbol": item.get("symbol")}
    for key in ("orderId", "orderLinkId"):
        if item.get(key) is not None:
            raw[key] = item[key]
    targets = item.get("targets")
    if isinstance(targets, MAPPING):
        raw.update(targets)
    return raw


def request_body(tool: str, args: Mapping[str, Any], in_intent: Sequence[int]) -> dict[str, Any]:
    """A `request` record body: the tool and the agent's `args`, without the items at the
    positions `in_intent` (the intent holds them exactly; see `rebuild_args_item`)."""
    if not in_intent:
        return {"tool": tool, "args": args}
    covered = set(in_intent)
    listed = [item for position, item in enumerate(args.get("request") or []) if position not in covered]
    return {"tool": tool, "args": {**args, "request": listed}, "inIntent": sorted(covered)}


def request_args(request_body: object, intent_body: object) -> Any:
    """The `args` of a request record with the items it left to the intent put back in place."""
    if not isinstance(request_body, dict):
        return None
    args = request_body.get("args")
    covered = request_body.get("inIntent")
    if not isinstance(covered, list) or not covered or not isinstance(args, dict):
        return args
    by_index = {
        it.get("index"): it
        for it in (decode_intent_items(intent_body.get("items")) if isinstance(intent_body, dict) else ())
    }
    listed = iter(args.get("request") or [])
    total = len(covered) + len(args.get("request") or [])
    merged: list[Any] = []
    wanted = set(covered)
    for position in range(total):
        if position in wanted:
            item = by_index.get(position)
            merged.append(rebuild_args_item(item) if item is not None else None)
        else:
            merged.append(next(listed, None))
    return {**args, "request": merged}


# ---------------------------------------------------------------------------------- result


def pack_view(  # noqa: PLR0917 -- one order view's fields
    price: str,
    qty: str,
    leaves: str,
    cum: str,
    status: str,
    updated_ms: int,
    extra: Mapping[str, Any] | None = None,
) -> list[Any]:
    """An order view as a step holds it (plain decimal texts in): leaves and cumulative fill only
    where they are not what an order with that qty and no fill, or a partial fill, implies."""
    more = dict(extra or {})
    if cum != "0":
        more["cumExecQty"] = cum
    if leaves != _left(qty, cum):
        more["leavesQty"] = leaves
    cells: list[Any] = [price, qty, status, updated_ms]
    if more:
        cells.append(more)
    return cells


def _left(qty: Any, cum: Any) -> str | None:
    try:
        return plain_decimal(Decimal(str(qty)) - Decimal(str(cum)))
    except (ArithmeticError, ValueError):
        return None


def unpack_view(cells: Sequence[Any]) -> dict[str, Any]:
    """The inverse of `pack_view`: every field, texts as written (updatedTime as Bybit's string)."""
    view: dict[str, Any] = dict(zip(_VIEW_FIELDS, cells, strict=False))
    more = cells[4] if len(cells) > 4 and isinstance(cells[4], dict) else {}
    cum = more.get("cumExecQty", "0")
    view["leavesQty"] = more.get("leavesQty", _left(view.get("qty"), cum))
    view["cumExecQty"] = cum
    if "updatedTime" in view:
        view["updatedTime"] = str(view["updatedTime"])
    view.update((k, v) for k, v in more.items() if k not in ("leavesQty", "cumExecQty"))
    return view


def _view_of(step: Sequence[Any]) -> list[Any] | None:
    """The order view cells of an order event or a REST read-back step."""
    if step and step[0] == "order_event" and len(step) >= 8:
        return list(step[4:])
    if step and step[0] == "rest" and len(step) >= 4 and isinstance(step[3], list) and len(step[3]) >= 4:
        return list(step[3])
    return None


def _observed_of(step: Sequence[Any]) -> dict[str, Any] | None:
    """The `observed` a step's order view gives (an order event or a REST read-back)."""
    cells = _view_of(step)
    if cells is None:
        return None
    return {"price": cells[0], "qty": cells[1], "orderStatus": cells[2], "updatedTime": str(cells[3])}


def _view_steps_by_index(steps: Sequence[Sequence[Any]]) -> dict[Any, list[int]]:
    """Per item index, the positions of the steps that hold an order view of it, last first: one
    pass over the steps instead of one per result item (a 20-item batch has 20+ steps)."""
    out: dict[Any, list[int]] = {}
    for k in range(len(steps) - 1, -1, -1):
        step = steps[k]
        if _view_of(step) is not None:
            out.setdefault(step[2], []).append(k)
    return out


def default_ack_items(intent_items: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The per-item part of an ack that accepted every sent item: `[code, msg, orderId,
    orderLinkId]` in sending order, the ids as the intent names the orders (absent: "")."""
    out: list[list[Any]] = []
    for it in intent_items:
        _symbol, order_id, link = identity(it)
        out.append([0, "OK", order_id or "", link or ""])
    return out


def changed_items(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The items of result `new` that are not in `old` as they are."""
    before = {it.get("index"): it for it in old.get("items") or [] if isinstance(it, MAPPING)}
    return [
        it for it in new.get("items") or [] if isinstance(it, MAPPING) and before.get(it.get("index")) != it
    ]


def _ack_list(result_items: Sequence[Mapping[str, Any]], sent_order: Sequence[Any]) -> dict[str, Any]:
    by_index = {it.get("index"): it for it in result_items}
    return {
        "list": [
            {"code": by_index.get(i, {}).get("exchangeCode"), "msg": by_index.get(i, {}).get("exchangeMsg")}
            for i in sent_order
        ]
    }


def encode_result(
    result: Mapping[str, Any],
    steps: Sequence[Sequence[Any]] = (),
    intent_items: Sequence[Mapping[str, Any]] = (),
    decided: Mapping[Any, tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """A tool result with its items as a table, eliding what the intent and `steps` hold.
    `decided`: per item index, what decided its verdict and when (ms after the intent)."""
    by_index = {it.get("index"): it for it in intent_items}
    items = [it for it in result.get("items") or [] if isinstance(it, MAPPING)]
    view_steps = _view_steps_by_index(steps)
    out_rows: list[list[Any]] = []
    for it in items:
        index = it.get("index")
        intent_item = by_index.get(index)
        ident = (it.get("symbol"), it.get("orderId"), it.get("orderLinkId"))
        ident_cell: Any = None if intent_item is not None and identity(intent_item) == ident else list(ident)
        observed = it.get("observed")
        observed_cell: Any = observed
        if isinstance(observed, MAPPING):
            for k in view_steps.get(index, ()):
                if _observed_of(steps[k]) == observed:
                    observed_cell = k
                    break
        row = [
            index,
            it.get("outcome"),
            it.get("reasons"),
            it.get("exchangeCode"),
            it.get("exchangeMsg"),
            observed_cell,
            ident_cell,
        ]
        how = decided.get(index) if decided is not None else None
        if how is not None:
            evidence: Any = how[0]
            if isinstance(observed_cell, int) and _EVIDENCE_OF_STEP.get(steps[observed_cell][0]) == evidence:
                evidence = None  # what the observed order's step says
            row += [evidence, how[1]]
        out_rows.append(row)
    body = {k: v for k, v in result.items() if k != "items"}
    ack = body.get("ack")
    sent_order = [it.get("index") for it in intent_items]
    if isinstance(ack, MAPPING) and sent_order and ack.get("retExtInfo") == _ack_list(items, sent_order):
        body["ack"] = {**ack, "retExtInfo": ACK_LIST_FROM_ITEMS}
    body["items"] = table(RESULT_COLS, out_rows)
    # Keep the tool's key order: items after reasons.
    return _ordered_like(body, result)


def _ordered_like(body: dict[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    ordered = {k: body[k] for k in model if k in body}
    ordered.update((k, v) for k, v in body.items() if k not in ordered)
    return ordered


def _decode_rows(
    value: object, steps: Sequence[Sequence[Any]], by_index: Mapping[Any, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in rows(value):
        if "id" not in r and "symbol" in r:  # an older body: the result item as it was
            out.append(r)
            continue
        index = r.get("index")
        ident = r.get("id")
        if ident is None:
            intent_item = by_index.get(index)
            ident = list(identity(intent_item)) if intent_item is not None else [None, None, None]
        observed = r.get("observed")
        if isinstance(observed, int) and not isinstance(observed, bool):
            observed = _observed_of(steps[observed]) if 0 <= observed < len(steps) else None
        out.append(
            {
                "index": index,
                "symbol": ident[0],
                "orderId": ident[1],
                "orderLinkId": ident[2],
                "outcome": r.get("outcome"),
                "reasons": r.get("reasons") if r.get("reasons") is not None else [],
                "exchangeCode": r.get("exchangeCode"),
                "exchangeMsg": r.get("exchangeMsg"),
                "observed": observed,
            }
        )
    return out


def decode_result(
    compact: Mapping[str, Any], steps: Sequence[Sequence[Any]], intent_items: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The inverse of `encode_result`."""
    by_index = {it.get("index"): it for it in intent_items}
    result = dict(compact)
    items = _decode_rows(compact.get("items"), steps, by_index)
    result["items"] = items
    ack = result.get("ack")
    if isinstance(ack, MAPPING) and ack.get("retExtInfo") == ACK_LIST_FROM_ITEMS:
        result["ack"] = {**ack, "retExtInfo": _ack_list(items, [it.get("index") for it in intent_items])}
    return result


def result_delta(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    steps: Sequence[Sequence[Any]] = (),
    intent_items: Sequence[Mapping[str, Any]] = (),
    decided: Mapping[Any, tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """What changed from `old` to `new` (two tool results): the top-level values that differ
    (`set`), keys gone (`unset`) and the items that differ, as a table like `encode_result`'s."""
    old_items = {it.get("index"): it for it in old.get("items") or [] if isinstance(it, MAPPING)}
    changed = changed_items(old, new)
    delta: dict[str, Any] = {
        "set": {k: v for k, v in new.items() if k != "items" and (k not in old or old[k] != v)}
    }
    gone = [k for k in old if k not in new and k != "items"]
    if gone:
        delta["unset"] = gone
    dropped = set(old_items) - {it.get("index") for it in new.get("items") or [] if isinstance(it, MAPPING)}
    if dropped:
        delta["dropItems"] = sorted(dropped, key=repr)
    delta["items"] = encode_result({"items": changed}, steps, intent_items, decided)["items"]
    return delta


def apply_delta(
    result: Mapping[str, Any],
    delta: Mapping[str, Any],
    steps: Sequence[Sequence[Any]],
    intent_items: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """`result` with `delta` applied (the inverse of `result_delta`)."""
    out = dict(result)
    for key in delta.get("unset") or ():
        out.pop(key, None)
    items = {it.get("index"): it for it in out.get("items") or [] if isinstance(it, MAPPING)}
    for index in delta.get("dropItems") or ():
        items.pop(index, None)
    by_index = {it.get("index"): it for it in intent_items}
    for it in _decode_rows(delta.get("items"), steps, by_index):
        items[it.get("index")] = it
    sets = delta.get("set")
    if isinstance(sets, MAPPING):
        out.update(sets)
    out["items"] = [items[k] for k in sorted(items, key=_sort_key)]
    return _ordered_like(out, {**result, **(sets if isinstance(sets, MAPPING) else {})})


def _sort_key(index: Any) -> tuple[int, Any]:
    return (0, index) if isinstance(index, int) and not isinstance(index, bool) else (1, repr(index))


# ---------------------------------------------------------------------------------- reading a request


@dataclass(frozen=True, slots=True)
class Step:
    """One logical step of a request's journal, as the per-step journal of format 1 wrote it:
    `seq` is the record holding it, `position` its place among that record's steps (the record's
    own step comes last), `wall_ms` when it happened, `body` in the format-1 shape of that kind."""

    kind: str
    seq: int
    position: int
    wall_ms: int
    req_id: str | None
    item_idx: int | None
    body: Any

    @property
    def order(self) -> tuple[int, int]:
        """Sorts steps in the order they happened (the order `expand` returns them in)."""
        return (self.seq, self.position)


def _intent_of(records: Iterable[Any]) -> tuple[Any, tuple[dict[str, Any], ...]]:
    """The intent record of a request and its items (None, () if it has none)."""
    for r in records:
        if r.kind == "intent" and isinstance(r.body, dict):
            return r, decode_intent_items(r.body.get("items"))
    return None, ()


def current_result(records: Sequence[Any]) -> dict[str, Any] | None:
    """The latest tool result of one request, from its records (objects with `kind` and `body`),
    oldest first: the last `final`/`result_update`, with every later `result_delta` applied."""
    _record, items = _intent_of(records)
    result: dict[str, Any] | None = None
    for r in records:
        body = r.body
        if r.kind in _BASE_KINDS:
            if is_compact(body):
                compact = body.get("result")
                if isinstance(compact, MAPPING):
                    result = decode_result(compact, _steps(body), items)
            elif isinstance(body, dict):
                result = dict(body)
        elif r.kind == _DELTA_KIND and result is not None and is_compact(body):
            result = apply_delta(result, body, _steps(body), items)
    return result


def _steps(body: Mapping[str, Any]) -> list[list[Any]]:
    steps = body.get("steps")
    return [s for s in steps if isinstance(s, list) and s] if isinstance(steps, list) else []


def expand(records: Sequence[Any]) -> list[Step]:
    """Every step of one request (its records, oldest first), with folded steps unfolded in the
    order they happened: request, verdict, intent, sent, ack, order_event, rest, item_outcome,
    final, late_outcome, result_delta, ... Bodies take the per-step shapes of docs/journal.md
    ("Reading a request")."""
    record, items = _intent_of(records)
    intent = record.body if record is not None else None
    by_index = {it.get("index"): it for it in items}
    req_id = intent.get("req_id") if isinstance(intent, dict) else None
    # Step times count from the intent record's own time (this host's clock, like every record's).
    base_ms = record.ts_wall_ms if record is not None else None
    category = intent.get("category") if isinstance(intent, dict) else None
    out: list[Step] = []
    result: dict[str, Any] | None = None
    for r in records:
        body = r.body
        if not is_compact(body):
            if r.kind == "request" and isinstance(body, dict) and "inIntent" in body:
                body = {"tool": body.get("tool"), "args": request_args(body, intent)}
            elif r.kind == "intent" and isinstance(body, dict):
                body = {**body, "items": list(items)}
            if r.kind in _BASE_KINDS and isinstance(body, dict):
                result = dict(body)
            out.append(Step(r.kind, r.seq, 0, r.ts_wall_ms, r.req_id, r.item_idx, body))
            continue
        steps = _steps(body)
        verdicts: list[Step] = []
        if r.kind in _BASE_KINDS and isinstance(body.get("result"), Mapping):
            result = decode_result(body["result"], steps, items)
            verdicts = _verdicts(body["result"].get("items"), steps, by_index, r, "item_outcome", base_ms)
        elif r.kind == _DELTA_KIND and result is not None:
            result = apply_delta(result, body, steps, items)
            verdicts = _verdicts(body.get("items"), steps, by_index, r, "late_outcome", base_ms)
        unfolded = [
            _unfold(step, r, position, base_ms, category, by_index) for position, step in enumerate(steps)
        ]
        # Folded steps belong to the request's one reqId (a `final` record itself names none).
        out.extend(dataclasses.replace(s, req_id=s.req_id or req_id) for s in (*unfolded, *verdicts))
        if r.kind in _BASE_KINDS or r.kind == _DELTA_KIND:
            logical: Any = result
        else:
            logical = {k: v for k, v in body.items() if k not in ("v", "steps")}
        out.append(
            Step(r.kind, r.seq, len(steps) + len(verdicts), r.ts_wall_ms, r.req_id, r.item_idx, logical)
        )
    return out


def _verdicts(  # noqa: PLR0917 -- one record's rows and their context
    table_value: object,
    steps: Sequence[Sequence[Any]],
    by_index: Mapping[Any, Mapping[str, Any]],
    record: Any,
    kind: str,
    base_ms: Any,
) -> list[Step]:
    """The item verdicts a record's result rows hold, as steps after the record's own steps, in
    the order they were reached."""
    raw = [r for r in rows(table_value) if "t" in r]
    decoded = {it["index"]: it for it in _decode_rows(table_value, steps, by_index)}
    raw.sort(key=lambda r: (r.get("t") if isinstance(r.get("t"), int) else 0, _sort_key(r.get("index"))))
    out: list[Step] = []
    for n, r in enumerate(raw):
        index = r.get("index")
        item = decoded.get(index, {})
        t = r.get("t")
        out.append(
            Step(
                kind,
                record.seq,
                len(steps) + n,
                base_ms + t if isinstance(base_ms, int) and isinstance(t, int) else record.ts_wall_ms,
                record.req_id,
                index if isinstance(index, int) else None,
                {
                    "outcome": item.get("outcome"),
                    "exchangeCode": item.get("exchangeCode"),
                    "exchangeMsg": item.get("exchangeMsg"),
                    "evidence": _evidence(r, steps),
                    "observed": item.get("observed"),
                },
            )
        )
    return out


def _evidence(row: Mapping[str, Any], steps: Sequence[Sequence[Any]]) -> Any:
    evidence = row.get("evidence")
    ref = row.get("observed")
    if evidence is None and isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(steps):
        return _EVIDENCE_OF_STEP.get(str(steps[ref][0]))
    return evidence


def _view_body(view: Sequence[Any], index: Any, by_index: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """An order view step's view in the shape of an `order_event` body (the ids from the intent)."""
    symbol, order_id, link = identity(by_index[index]) if index in by_index else (None, None, None)
    fields = unpack_view(view)
    return {
        "orderId": order_id,
        "orderLinkId": link,
        "symbol": symbol,
        "price": fields.get("price"),
        "qty": fields.get("qty"),
        "leavesQty": fields.get("leavesQty"),
        "cumExecQty": fields.get("cumExecQty"),
        "orderStatus": fields.get("orderStatus"),
        "updatedTime": fields.get("updatedTime"),
        **{k: v for k, v in fields.items() if k not in _VIEW_BODY_KEYS},
    }


def _unfold(  # noqa: PLR0917 -- one step and its context
    step: Sequence[Any],
    record: Any,
    position: int,
    base_ms: Any,
    category: Any,
    by_index: Mapping[Any, Mapping[str, Any]],
) -> Step:
    kind = str(step[0])
    t = step[1] if len(step) > 1 and isinstance(step[1], int) else 0
    wall = (base_ms + t) if isinstance(base_ms, int) else record.ts_wall_ms
    index = step[2] if len(step) > 2 and isinstance(step[2], int) and not isinstance(step[2], bool) else None
    body: Any
    if kind == "ack" and len(step) >= 8:
        ack_items = step[7] if step[7] is not None else default_ack_items(list(by_index.values()))
        listed = [
            {"code": a[0], "msg": a[1], "orderId": a[2], "orderLinkId": a[3]}
            for a in ack_items
            if isinstance(a, list) and len(a) >= 4
        ]
        body = {
            "retCode": step[2],
            "retMsg": step[3],
            "items": listed,
            "limit": step[4],
            "limitStatus": step[5],
            "limitResetMs": step[6],
        }
        index = None
    elif kind == "order_event" and len(step) >= 8:
        body = {"view": _view_body(step[4:], index, by_index), "result": step[3]}
    elif kind == "rest" and len(step) >= 5:
        symbol, order_id, link = identity(by_index[index]) if index in by_index else (None, None, None)
        view = step[3]
        body = {
            "query": {
                "category": category,
                "symbol": symbol,
                "orderId": order_id,
                "orderLinkId": link,
                "index": index,
            },
            "view": _view_body(view, index, by_index) if isinstance(view, list) else None,
        }
        if step[4] is not None:
            body["error"] = step[4]
    elif kind == "send_failed":
        body = {"error": step[2] if len(step) > 2 else None}
        index = None
    else:
        body = {}
        index = None
    return Step(kind, record.seq, position, wall, record.req_id, index, body)
