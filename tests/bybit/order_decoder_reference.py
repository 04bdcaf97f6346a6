"""The private-stream decoder before issue 12 (json.loads, a frozen OrderView built field by field),
kept verbatim as the oracle of tests/bybit/test_order_decoder.py: the `OrderDecoder` must give the
same views and the same DecodeError messages for every frame. One change since: an order item whose
`category` is not text is decoded (and so refused with a DecodeError) instead of raising TypeError.
"""
# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from sidecar.bybit.codec import PrivateControl, _int_or_none, _str
from sidecar.core.types import Category, OrderView, Side
from sidecar.errors import DecodeError

_SIDES: dict[object, Side] = {"Buy": Side.BUY, "Sell": Side.SELL}
_CATEGORIES: dict[object, Category] = {c.value: c for c in Category}


def _dec(v: object) -> Decimal:
    # Exact: strings and ints directly; a float (if a peer ever sends one) via its shortest repr.
    if type(v) is str or type(v) is int:
        d = Decimal(v)
    elif type(v) is float:
        d = Decimal(repr(v))
    else:
        raise DecodeError(f"not a number: {v!r}")
    if not d.is_finite():
        raise DecodeError(f"not a finite number: {v!r}")
    return d


def _dec_or_zero(v: object) -> Decimal:
    return _ZERO if v is None or v == "" else _dec(v)


def _dec_or_none(v: object) -> Decimal | None:
    return None if v is None or v == "" else _dec(v)


_ZERO = Decimal(0)


def order_view_from_wire(d: Mapping[str, Any], category: Category | None = None) -> OrderView:
    """One order object (push `data[i]` or REST `list[i]`) as an OrderView.

    REST rows carry no `category`; pass it in. Blank price/qty/leaves/cumExec read as 0; blank
    TP/SL/trigger/IV fields read as None ("0" stays 0: Bybit's way of saying "removed"); the enum
    fields (tpTriggerBy, slTriggerBy, triggerBy, tpslMode) read as text, "" when absent. Every
    amendable field is decoded, so every amend can be verified (core.types.AMEND_FIELD_ATTRS).
    Raises DecodeError if a required field is missing or not a number.
    """
    try:
        cat = _CATEGORIES.get(d.get("category")) or category
        if cat is None:
            raise DecodeError(f"unknown category {d.get('category')!r}")
        return OrderView(
            category=cat,
            symbol=d["symbol"],
            order_id=d["orderId"],
            order_link_id=d.get("orderLinkId") or "",
            side=_SIDES.get(d.get("side")),
            price=_dec_or_zero(d.get("price")),
            qty=_dec_or_zero(d.get("qty")),
            leaves_qty=_dec_or_zero(d.get("leavesQty")),
            cum_exec_qty=_dec_or_zero(d.get("cumExecQty")),
            order_status=d["orderStatus"],
            updated_time_ms=int(d["updatedTime"]),
            take_profit=_dec_or_none(d.get("takeProfit")),
            stop_loss=_dec_or_none(d.get("stopLoss")),
            tp_limit_price=_dec_or_none(d.get("tpLimitPrice")),
            sl_limit_price=_dec_or_none(d.get("slLimitPrice")),
            trigger_price=_dec_or_none(d.get("triggerPrice")),
            order_iv=_dec_or_none(d.get("orderIv")),
            tp_trigger_by=_str(d.get("tpTriggerBy")),
            sl_trigger_by=_str(d.get("slTriggerBy")),
            trigger_by=_str(d.get("triggerBy")),
            tpsl_mode=_str(d.get("tpslMode")),
            reject_reason=_str(d.get("rejectReason")),
        )
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as e:
        raise DecodeError(f"bad order object: {type(e).__name__}: {e}") from e


def decode_private(text: str | bytes) -> list[OrderView] | PrivateControl:
    """Decode one private-stream frame: `order`/`order.*` pushes → OrderViews; control replies →
    PrivateControl; other topics (execution, position, ...) → []. Raises DecodeError."""
    try:
        msg = json.loads(text)
    except ValueError as e:
        raise DecodeError("undecodable frame") from e
    return decode_private_obj(msg)


def decode_private_obj(msg: object) -> list[OrderView] | PrivateControl:
    """`decode_private` for an already parsed JSON value."""
    if not isinstance(msg, dict):
        raise DecodeError("frame is not a JSON object")
    topic = msg.get("topic")
    if topic is not None:
        if topic == "order" or (isinstance(topic, str) and topic.startswith("order.")):
            data = msg.get("data")
            if not isinstance(data, list):
                raise DecodeError("order push without a data list")
            # Items of a category the sidecar does not model (e.g. a future one) are not ours: skip.
            return [
                order_view_from_wire(x)
                for x in data
                if not isinstance(x, dict)
                or (
                    x.get("category") in _CATEGORIES
                    if isinstance(x.get("category"), str)
                    else x.get("category") is not None
                )
            ]
        return []
    op = msg.get("op")
    if isinstance(op, str):
        args = msg.get("args")
        ts = _int_or_none(args[0]) if op == "pong" and isinstance(args, list) and args else None
        req_id = msg.get("req_id")
        return PrivateControl(
            op=op,
            # A pong carries no `success` flag; it is a success by being there.
            success=bool(msg.get("success", op == "pong")),
            ret_msg=_str(msg.get("ret_msg")),
            conn_id=_str(msg.get("conn_id")),
            req_id=req_id if isinstance(req_id, str) else None,
            server_time_ms=ts,
        )
    return []
