"""Bybit V5 frames to and from text: trade requests out; acks, order pushes and tickers in.

Pure functions, no sockets, no clock (timestamps come in as arguments). This is the hot path, so
encoding builds plain dicts of strings and serialises the frame once with orjson (no pydantic, no
per-field text assembly) and decoding uses direct field access: `order` pushes through an
`OrderDecoder` (msgspec reads a push straight into the fields used; bounded memos share equal
values), everything else through `json.loads`; `messages.py` holds the pydantic models of the same
shapes and the tests check that both agree.

Numbers: every Decimal leaves as a plain decimal string (`core.numbers.plain_decimal`: no exponent, no
trailing zeros, never "-0"); every number that arrives becomes a Decimal (never a float).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import orjson

from sidecar.bybit.retcodes import classify
from sidecar.core.numbers import plain_decimal
from sidecar.core.types import Ack, AckItem, AmendItem, Category, OrderView, Side
from sidecar.errors import DecodeError

__all__ = [
    "AuthReply",
    "DecodeError",
    "OrderDecoder",
    "Pong",
    "PrivateControl",
    "PublicControl",
    "TickerUpdate",
    "TradeError",
    "decode_private",
    "decode_private_obj",
    "decode_public",
    "decode_ticker",
    "decode_trade",
    "decode_trade_obj",
    "encode_amend",
    "encode_amend_batch",
    "encode_auth",
    "encode_ping",
    "encode_subscribe",
    "order_view_from_wire",
]


# ---------------------------------------------------------------- decoded control frames


@dataclass(frozen=True, slots=True)
class AuthReply:
    """Trade-socket reply to `auth` (retCode 0 = authenticated; 20001 = already authenticated)."""

    ret_code: int
    ret_msg: str
    conn_id: str = ""
    req_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.ret_code in (0, 20001)


@dataclass(frozen=True, slots=True)
class Pong:
    """Trade-socket pong; `server_time_ms` from `data[0]` when present."""

    server_time_ms: int | None
    conn_id: str = ""


@dataclass(frozen=True, slots=True)
class TradeError:
    """A trade-socket frame that answers no request we can name: no `reqId`, or not decodable."""

    ret_code: int
    ret_msg: str
    op: str = ""
    conn_id: str = ""


def _is_pong(op: str, ret_msg: str) -> bool:
    """A control reply that answers `{"op":"ping"}`: `op "pong"` (private, option) or `op "ping"` with
    `ret_msg "pong"` (spot, linear, inverse; reference D-CONN; `sidecar probe` public_pong_shapes)."""
    return op == "pong" or ret_msg == "pong"


@dataclass(frozen=True, slots=True)
class PrivateControl:
    """Private-stream control reply (auth, subscribe, pong); `success` is the envelope's flag."""

    op: str
    success: bool
    ret_msg: str = ""
    conn_id: str = ""
    req_id: str | None = None
    server_time_ms: int | None = None  # pong args[0]

    @property
    def is_pong(self) -> bool:
        """The answer to `{"op":"ping"}` (private streams answer `op "pong"`)."""
        return _is_pong(self.op, self.ret_msg)


@dataclass(frozen=True, slots=True)
class PublicControl:
    """Public-stream control reply (subscribe, pong)."""

    op: str
    success: bool
    ret_msg: str = ""
    conn_id: str = ""
    req_id: str | None = None

    @property
    def is_pong(self) -> bool:
        """The answer to `{"op":"ping"}` (spot/linear/inverse: `op "ping"` + `ret_msg "pong"`; option
        `op "pong"`)."""
        return _is_pong(self.op, self.ret_msg)


@dataclass(frozen=True, slots=True)
class TickerUpdate:
    """A public `tickers.{symbol}` push. `values` holds only the fields present in this message
    (a delta carries only what changed), keyed mark/last/index/bid/ask; None = sent blank."""

    symbol: str
    snapshot: bool
    ts_ms: int | None
    values: Mapping[str, Decimal | None] = field(default_factory=dict)


# ---------------------------------------------------------------- numbers


# The wire's number text is the sidecar's one Decimal format (core/numbers.py).


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


def _dec_or_none(v: object) -> Decimal | None:
    return None if v is None or v == "" else _dec(v)


_ZERO = Decimal(0)


# ---------------------------------------------------------------- encoding (outbound)

_OP_AMEND = "order.amend"
_OP_AMEND_BATCH = "order.amend-batch"
_BOUND = 4096  # entries in the memo below; a full memo is cleared (it refills in a few calls)

# A Decimal's wire text (plain_decimal), by object identity: id(v) -> (v, text). The validator
# hands over the very Decimal objects its parse memo returns, so prices and quantities that repeat
# are formatted once. Keyed by identity, not value, because hashing a new Decimal costs more than
# formatting it; the entry holds `v`, so no other object can take its id while it lives (and the
# `is` test makes sure). The text depends only on the value, so the memo cannot change a frame.
_WIRE: dict[int, tuple[Decimal, str]] = {}


def _wire_text(v: object) -> str:
    """The wire text of an amend value: a Decimal as a plain decimal (remembered, see _WIRE), an
    enum value as itself."""
    if type(v) is not Decimal:
        return v if type(v) is str else str(v)
    text = plain_decimal(v)
    if len(_WIRE) >= _BOUND:
        _WIRE.clear()
    _WIRE[id(v)] = (v, text)
    return text


def _item_objects(items: Iterable[AmendItem], category: str | None) -> list[dict[str, str]]:
    """Each item as the object Bybit takes: `{["category",] "symbol", "orderId"|"orderLinkId",
    <fields>}`, every value a string. orderId wins when both are set: the sidecar looks orders up
    by orderId first, so the wire names the order it validated. One loop for all items (this is
    the encoder's hot spot)."""
    wire = _WIRE.get
    out: list[dict[str, str]] = []
    for item in items:
        obj = {"symbol": item.symbol} if category is None else {"category": category, "symbol": item.symbol}
        if item.order_id:
            obj["orderId"] = item.order_id
        elif item.order_link_id:
            obj["orderLinkId"] = item.order_link_id
        else:
            raise ValueError(f"amend item for {item.symbol} names no order (orderId or orderLinkId)")
        for k, v in item.values.items():
            hit = wire(id(v))
            obj[k] = hit[1] if hit is not None and hit[0] is v else _wire_text(v)
        out.append(obj)
    return out


_CATEGORY_TEXT: dict[object, str] = {c: c.value for c in Category}


def _category_text(category: Category) -> str:
    """The category's wire name; ValueError if it is not one (a dict hit beats Category(x))."""
    text = _CATEGORY_TEXT.get(category)
    return text if text is not None else Category(category).value


def _frame(req_id: str, op: str, ts_ms: int, recv_window_ms: int, arg: dict[str, Any]) -> str:
    """The trade request as compact JSON text. orjson writes exactly what `json.dumps` with
    `separators=(",", ":"), ensure_ascii=False` writes, ~10x faster (tests/bybit/test_bybit_codec.py
    checks the two agree on every code point); it refuses lone surrogates, which the stdlib
    encoder passes through, so those few frames take the stdlib path and stay byte-identical."""
    frame = {
        "reqId": req_id,
        "header": {"X-BAPI-TIMESTAMP": str(int(ts_ms)), "X-BAPI-RECV-WINDOW": str(int(recv_window_ms))},
        "op": op,
        "args": [arg],
    }
    try:
        return orjson.dumps(frame).decode()
    except orjson.JSONEncodeError:
        return _COMPACT(frame)


def encode_amend_batch(
    req_id: str, category: Category, items: Sequence[AmendItem], ts_ms: int, recv_window_ms: int
) -> str:
    """The `order.amend-batch` frame: args `[{"category", "request": [{symbol, id, fields}, ...]}]`."""
    if not items:
        raise ValueError("an amend batch needs at least one item")
    arg = {"category": _category_text(category), "request": _item_objects(items, None)}
    return _frame(req_id, _OP_AMEND_BATCH, ts_ms, recv_window_ms, arg)


def encode_amend(req_id: str, category: Category, item: AmendItem, ts_ms: int, recv_window_ms: int) -> str:
    """The single `order.amend` frame: args `[{"category", "symbol", id, fields}]`."""
    (arg,) = _item_objects((item,), _category_text(category))
    return _frame(req_id, _OP_AMEND, ts_ms, recv_window_ms, arg)


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_auth(auth_args: Sequence[str | int], req_id: str | None = None) -> str:
    """`{"op":"auth","args":[api_key, expires_ms, signature]}` (args from `signing.ws_auth_args`)."""
    frame: dict[str, Any] = {"op": "auth", "args": list(auth_args)}
    if req_id is not None:
        frame["reqId"] = req_id
    return _COMPACT(frame)


_PING = '{"op":"ping"}'


def encode_ping() -> str:
    """The application-level heartbeat `{"op":"ping"}` (all three sockets)."""
    return _PING


def encode_subscribe(topics: Sequence[str], req_id: str | None = None) -> str:
    """`{"op":"subscribe","req_id":..,"args":[topics]}` (private and public streams use `req_id`)."""
    frame: dict[str, Any] = {"op": "subscribe"}
    if req_id is not None:
        frame["req_id"] = req_id
    frame["args"] = list(topics)
    return _COMPACT(frame)


# ---------------------------------------------------------------- decoding: trade socket


def _int_or_none(v: object) -> int | None:
    if type(v) is int:
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None


def _code(v: object) -> int:
    c = _int_or_none(v)
    return -1 if c is None else c  # -1: missing/garbled code; classify() says AMBIGUOUS


def decode_trade(text: str | bytes, expected_items: int | None = None) -> Ack | AuthReply | Pong | TradeError:
    """Decode one trade-socket frame. `expected_items` (the batch size sent) lets a failed batch
    ack without per-item lists still yield one AckItem per item."""
    try:
        msg = json.loads(text)
    except ValueError:
        return TradeError(ret_code=-1, ret_msg="undecodable frame")
    return decode_trade_obj(msg, expected_items)


def decode_trade_obj(msg: object, expected_items: int | None = None) -> Ack | AuthReply | Pong | TradeError:
    """`decode_trade` for an already parsed JSON value."""
    if not isinstance(msg, dict):
        return TradeError(ret_code=-1, ret_msg="frame is not a JSON object")
    op = msg.get("op")
    op = op if isinstance(op, str) else ""
    conn_id = msg.get("connId")
    conn_id = conn_id if isinstance(conn_id, str) else ""
    if op == "pong":
        data = msg.get("data")
        ts = _int_or_none(data[0]) if isinstance(data, list) and data else None
        return Pong(server_time_ms=ts, conn_id=conn_id)
    ret_code = _code(msg.get("retCode"))
    ret_msg = msg.get("retMsg")
    ret_msg = ret_msg if isinstance(ret_msg, str) else ""
    req_id = msg.get("reqId")
    if op == "auth":
        return AuthReply(ret_code, ret_msg, conn_id, req_id if isinstance(req_id, str) else None)
    if not isinstance(req_id, str) or not req_id:
        return TradeError(ret_code=ret_code, ret_msg=ret_msg, op=op, conn_id=conn_id)

    cls = classify(ret_code)
    data = msg.get("data")
    ext = msg.get("retExtInfo")
    ext = ext if isinstance(ext, dict) else {}
    items: list[AckItem] = []
    if op.endswith("-batch"):
        dlist = data.get("list") if isinstance(data, dict) else None
        dlist = dlist if isinstance(dlist, list) else []
        elist = ext.get("list")
        elist = elist if isinstance(elist, list) else []
        n = max(len(dlist), len(elist), expected_items or 0)
        for i in range(n):
            d = dlist[i] if i < len(dlist) and isinstance(dlist[i], dict) else {}
            if ret_code != 0:
                # The whole request failed: every item carries the top-level code.
                code, imsg = ret_code, ret_msg
            elif i < len(elist) and isinstance(elist[i], dict):
                code = _code(elist[i].get("code"))
                m = elist[i].get("msg")
                imsg = m if isinstance(m, str) else ""
            else:
                code, imsg = -1, "no per-item code in the ack"
            items.append(
                AckItem(
                    code=code,
                    msg=imsg,
                    cls=classify(code),
                    order_id=_str(d.get("orderId")),
                    order_link_id=_str(d.get("orderLinkId")),
                )
            )
    else:
        d = data if isinstance(data, dict) else {}
        items.append(
            AckItem(
                code=ret_code,
                msg=ret_msg,
                cls=cls,
                order_id=_str(d.get("orderId")),
                order_link_id=_str(d.get("orderLinkId")),
            )
        )
    header = msg.get("header")
    hdr = {str(k).lower(): v for k, v in header.items()} if isinstance(header, dict) else {}
    return Ack(
        req_id=req_id,
        op=op,
        ret_code=ret_code,
        ret_msg=ret_msg,
        cls=cls,
        items=tuple(items),
        ret_ext_info=ext,
        limit=_int_or_none(hdr.get("x-bapi-limit")),
        limit_status=_int_or_none(hdr.get("x-bapi-limit-status")),
        limit_reset_ms=_int_or_none(hdr.get("x-bapi-limit-reset-timestamp")),
        server_time_ms=_int_or_none(hdr.get("timenow")),
    )


def _str(v: object) -> str:
    return v if isinstance(v, str) else ""


# ---------------------------------------------------------------- decoding: private stream

_SIDES: dict[object, Side] = {"Buy": Side.BUY, "Sell": Side.SELL}
_CATEGORIES: dict[object, Category] = {c.value: c for c in Category}


def _ours(category: object) -> bool:
    """An order item to decode: a category the sidecar models, or one that is not text at all."""
    return category in _CATEGORIES if isinstance(category, str) else category is not None


_MEMO_BOUND = 4096  # entries per OrderDecoder memo; a full memo is cleared (it refills in a few events)

# The order fields the sidecar reads, as a typed shape for msgspec (`OrderDecoder.frame`). Text or
# null only: a push with any other value here (a number, a list...) does not fit, and the frame is
# decoded the general way instead. A required field that is absent reads as UNSET (a KeyError
# below, as for a dict); the others read as None when absent, as `dict.get` does.
_Text = str | None


class _WireOrder(msgspec.Struct, gc=False):
    """An order of a push, by Bybit's field names."""

    category: _Text = None
    symbol: _Text | msgspec.UnsetType = msgspec.UNSET
    orderId: _Text | msgspec.UnsetType = msgspec.UNSET
    orderLinkId: _Text = None
    side: _Text = None
    price: _Text = None
    qty: _Text = None
    leavesQty: _Text = None
    cumExecQty: _Text = None
    orderStatus: _Text | msgspec.UnsetType = msgspec.UNSET
    updatedTime: _Text | msgspec.UnsetType = msgspec.UNSET
    takeProfit: _Text = None
    stopLoss: _Text = None
    tpLimitPrice: _Text = None
    slLimitPrice: _Text = None
    triggerPrice: _Text = None
    orderIv: _Text = None
    tpTriggerBy: _Text = None
    slTriggerBy: _Text = None
    triggerBy: _Text = None
    tpslMode: _Text = None
    rejectReason: _Text = None


class _WirePush(msgspec.Struct, gc=False):
    # gc=False (both shapes): they hold only text and a list of such shapes, so no cycle can form,
    # and a decoded push is never tracked by the cycle collector.
    topic: str
    data: list[_WireOrder]


# Stateless (msgspec compiles the shape once); not a cache.
_PUSH = msgspec.json.Decoder(_WirePush)
_UNSET = msgspec.UNSET


class OrderDecoder:
    """Order objects (stream pushes, REST rows) and private-stream frames to `OrderView`s.

    One per source that reads orders (the private stream, the REST client): it owns two bounded
    memos, so equal texts share one object. Number text -> its Decimal (a repeated price or qty is a
    dict hit instead of a parse, and 100,000 orders at a handful of prices hold a handful of
    Decimals); label text (symbol, orderStatus, rejectReason, the enum fields) -> one str. The
    memo keys are the exact wire text, so "0.10" and "0.1" stay distinct Decimals (the same value
    `Decimal(text)` gives); values are immutable, so sharing one cannot leak a change. Only
    strings are remembered; anything else takes the plain path (and its plain error). A full memo
    is cleared, never grown: at most `bound` entries each, whatever a peer sends.

    Frames: an `order` push is read by msgspec straight into the fields above (the other ~20
    fields of a push are skipped, not built: faster than parsing the whole object, even with
    orjson). msgspec is strict JSON, and where it accepts a text it reads the same values as the
    stdlib. Any frame that does not fit that shape (control replies, other topics, a number where
    Bybit sends text, bad JSON) is parsed whole by the stdlib parser, as before: it is the more
    lenient one (NaN, lone surrogates, UTF-16 bytes) and, unlike orjson, keeps integers beyond 64
    bits exact. Both routes end in the one `_view`, so what decodes and every error message are the
    same whichever route a frame takes (tests/bybit/test_order_decoder.py checks this against the
    original decoder).
    """

    __slots__ = ("_bound", "_labels", "_numbers")

    def __init__(self, bound: int = _MEMO_BOUND) -> None:
        if bound < 1:
            raise ValueError("an OrderDecoder memo needs room for at least one entry")
        self._bound = bound
        self._numbers: dict[str, Decimal] = {}
        self._labels: dict[str, str] = {}

    def memo_sizes(self) -> tuple[int, int]:
        """(numbers, labels) currently remembered; each is at most `bound`."""
        return len(self._numbers), len(self._labels)

    def _number(self, v: object) -> Decimal:
        """`_dec(v)`, remembered when `v` is text. Raises DecodeError as `_dec` does."""
        d = _dec(v)
        if type(v) is str:
            numbers = self._numbers
            if len(numbers) >= self._bound:
                numbers.clear()
            numbers[v] = d
        return d

    def _label(self, v: str) -> str:
        labels = self._labels
        if len(labels) >= self._bound:
            labels.clear()
        labels[v] = v
        return v

    def view(self, d: Mapping[str, Any], category: Category | None = None) -> OrderView:
        """One order object (push `data[i]` or REST `list[i]`) as an OrderView.

        REST rows carry no `category`; pass it in. Blank price/qty/leaves/cumExec read as 0; blank
        TP/SL/trigger/IV fields read as None ("0" stays 0: Bybit's way of saying "removed"); the
        enum fields (tpTriggerBy, slTriggerBy, triggerBy, tpslMode) read as text, "" when absent.
        Every amendable field is decoded, so every amend can be verified
        (core.types.AMEND_FIELD_ATTRS). Raises DecodeError if a required field is missing or not a
        number.
        """
        try:
            get = d.get
        except AttributeError as e:
            raise DecodeError(f"bad order object: {type(e).__name__}: {e}") from e
        return self._view(
            category,
            get("category"),
            get("symbol", _UNSET),
            get("orderId", _UNSET),
            get("orderLinkId"),
            get("side"),
            get("price"),
            get("qty"),
            get("leavesQty"),
            get("cumExecQty"),
            get("orderStatus", _UNSET),
            get("updatedTime", _UNSET),
            get("takeProfit"),
            get("stopLoss"),
            get("tpLimitPrice"),
            get("slLimitPrice"),
            get("triggerPrice"),
            get("orderIv"),
            get("tpTriggerBy"),
            get("slTriggerBy"),
            get("triggerBy"),
            get("tpslMode"),
            get("rejectReason"),
        )

    def _view(  # noqa: PLR0917 - the order's raw fields, in the order they are checked
        self,
        category: Category | None,
        cat_text: object,
        symbol: Any,
        order_id: Any,
        link: Any,
        side: object,
        price: object,
        qty: object,
        leaves: object,
        cum: object,
        status: Any,
        updated: Any,
        tp: object,
        sl: object,
        tp_limit: object,
        sl_limit: object,
        trigger: object,
        iv: object,
        tp_by: object,
        sl_by: object,
        trigger_by: object,
        tpsl_mode: object,
        reject: object,
    ) -> OrderView:
        """The one rule from raw field values to a view (absent required fields come as UNSET).
        Checked in field order, so the first problem names the error, as it always has."""
        known = self._numbers  # (a hit must not test the Decimal's truth: Decimal("0") is falsy)
        number = self._number
        seen = self._labels
        label = self._label
        try:
            cat = _CATEGORIES.get(cat_text) or category
            if cat is None:
                raise DecodeError(f"unknown category {cat_text!r}")
            # Inlined per field (this runs once per order event): a memo hit, else the plain rule.
            if symbol is _UNSET:
                raise KeyError("symbol")
            if type(symbol) is str:
                symbol = seen[symbol] if symbol in seen else label(symbol)
            if order_id is _UNSET:
                raise KeyError("orderId")
            link = link or ""
            side = _SIDES.get(side)
            # Required numbers: blank reads as 0.
            v = price
            price = (
                _ZERO if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            )
            v = qty
            qty = _ZERO if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            v = leaves
            leaves = (
                _ZERO if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            )
            v = cum
            cum = _ZERO if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            if status is _UNSET:
                raise KeyError("orderStatus")
            if type(status) is str:
                status = seen[status] if status in seen else label(status)
            if updated is _UNSET:
                raise KeyError("updatedTime")
            updated = int(updated)
            # Optional numbers: blank reads as None.
            v = tp
            tp = None if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            v = sl
            sl = None if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            v = tp_limit
            tp_limit = (
                None if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            )
            v = sl_limit
            sl_limit = (
                None if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            )
            v = trigger
            trigger = (
                None if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            )
            v = iv
            iv = None if v is None or v == "" else known[v] if type(v) is str and v in known else number(v)
            # Text fields: anything but text reads as "".
            v = tp_by
            tp_by = (seen[v] if v in seen else label(v)) if type(v) is str and v else ""
            v = sl_by
            sl_by = (seen[v] if v in seen else label(v)) if type(v) is str and v else ""
            v = trigger_by
            trigger_by = (seen[v] if v in seen else label(v)) if type(v) is str and v else ""
            v = tpsl_mode
            tpsl_mode = (seen[v] if v in seen else label(v)) if type(v) is str and v else ""
            v = reject
            reject = (seen[v] if v in seen else label(v)) if type(v) is str and v else ""
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as e:
            raise DecodeError(f"bad order object: {type(e).__name__}: {e}") from e
        return OrderView.of(
            cat,
            symbol,
            order_id,
            link,
            side,
            price,
            qty,
            leaves,
            cum,
            status,
            updated,
            tp,
            sl,
            tp_limit,
            sl_limit,
            trigger,
            iv,
            tp_by,
            sl_by,
            trigger_by,
            tpsl_mode,
            reject,
        )

    def frame(self, text: str | bytes) -> list[OrderView] | PrivateControl:
        """Decode one private-stream frame: `order`/`order.*` pushes → OrderViews; control replies
        → PrivateControl; other topics (execution, position, ...) → []. Raises DecodeError."""
        try:
            push = _PUSH.decode(text)
        except (msgspec.DecodeError, ValueError):
            push = None  # not the shape of an order push: decode it the general way below
        if push is not None and (push.topic == "order" or push.topic.startswith("order.")):
            view = self._view
            views: list[OrderView] = []
            for o in push.data:
                # Items of a category the sidecar does not model (e.g. a future one) are not ours.
                if o.category in _CATEGORIES:
                    views.append(
                        view(
                            None,
                            o.category,
                            o.symbol,
                            o.orderId,
                            o.orderLinkId,
                            o.side,
                            o.price,
                            o.qty,
                            o.leavesQty,
                            o.cumExecQty,
                            o.orderStatus,
                            o.updatedTime,
                            o.takeProfit,
                            o.stopLoss,
                            o.tpLimitPrice,
                            o.slLimitPrice,
                            o.triggerPrice,
                            o.orderIv,
                            o.tpTriggerBy,
                            o.slTriggerBy,
                            o.triggerBy,
                            o.tpslMode,
                            o.rejectReason,
                        )
                    )
            return views
        try:
            msg = json.loads(text)
        except ValueError as e:
            raise DecodeError("undecodable frame") from e
        return self.frame_obj(msg)

    def frame_obj(self, msg: object) -> list[OrderView] | PrivateControl:
        """`frame` for an already parsed JSON value."""
        if not isinstance(msg, dict):
            raise DecodeError("frame is not a JSON object")
        topic = msg.get("topic")
        if topic is not None:
            if topic == "order" or (isinstance(topic, str) and topic.startswith("order.")):
                data = msg.get("data")
                if not isinstance(data, list):
                    raise DecodeError("order push without a data list")
                # Items of a category the sidecar does not model (e.g. a future one) are not ours: skip.
                # A category that is not text is malformed: `view` says so (a DecodeError).
                # (A loop, not a comprehension: 3.11 builds a function object for each comprehension.)
                views: list[OrderView] = []
                for x in data:
                    if not isinstance(x, dict) or _ours(x.get("category")):
                        views.append(self.view(x))
                return views
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


def order_view_from_wire(d: Mapping[str, Any], category: Category | None = None) -> OrderView:
    """One order object as an OrderView (`OrderDecoder.view` with no memory between calls; a
    reader of many orders keeps its own `OrderDecoder`)."""
    return OrderDecoder(1).view(d, category)


def decode_private(text: str | bytes) -> list[OrderView] | PrivateControl:
    """One private-stream frame (`OrderDecoder.frame` with no memory between calls; the private
    stream keeps its own `OrderDecoder`). Raises DecodeError."""
    return OrderDecoder(1).frame(text)


def decode_private_obj(msg: object) -> list[OrderView] | PrivateControl:
    """`decode_private` for an already parsed JSON value."""
    return OrderDecoder(1).frame_obj(msg)


# ---------------------------------------------------------------- decoding: public stream

_TICKER_FIELDS = (
    ("markPrice", "mark"),
    ("lastPrice", "last"),
    ("indexPrice", "index"),
    ("bid1Price", "bid"),
    ("ask1Price", "ask"),
    # Option tickers name the book fields bidPrice/askPrice (reference ticker.mdx).
    ("bidPrice", "bid"),
    ("askPrice", "ask"),
)


def decode_public(text: str | bytes) -> TickerUpdate | PublicControl | None:
    """Decode one public-stream frame: tickers → TickerUpdate, control replies → PublicControl
    (the option subscribe reply, which has no `op`, as op "subscribe"), anything else → None.
    Raises DecodeError for a ticker with a bad number."""
    try:
        msg = json.loads(text)
    except ValueError as e:
        raise DecodeError("undecodable frame") from e
    if not isinstance(msg, dict):
        raise DecodeError("frame is not a JSON object")
    topic = msg.get("topic")
    if isinstance(topic, str):
        if not topic.startswith("tickers."):
            return None
        data = msg.get("data")
        if not isinstance(data, dict):
            raise DecodeError("ticker push without a data object")
        symbol = data.get("symbol") or topic[len("tickers.") :]
        values: dict[str, Decimal | None] = {}
        try:
            for wire, ours in _TICKER_FIELDS:
                if wire in data:
                    values[ours] = _dec_or_none(data[wire])
        except (InvalidOperation, ValueError) as e:
            raise DecodeError(f"bad ticker number: {e}") from e
        return TickerUpdate(
            symbol=str(symbol),
            snapshot=msg.get("type", "snapshot") == "snapshot",
            ts_ms=_int_or_none(msg.get("ts")),
            values=values,
        )
    op = msg.get("op")
    req_id = msg.get("req_id")
    if isinstance(op, str):
        return PublicControl(
            op=op,
            success=bool(msg.get("success", op == "pong")),
            ret_msg=_str(msg.get("ret_msg")),
            conn_id=_str(msg.get("conn_id")),
            req_id=req_id if isinstance(req_id, str) else None,
        )
    if msg.get("type") == "COMMAND_RESP":
        # The option/spread subscribe reply has no `op` (reference D-CONN): success and topic lists.
        data = msg.get("data")
        failed = data.get("failTopics") if isinstance(data, dict) else None
        failed = [str(t) for t in failed] if isinstance(failed, list) else []
        return PublicControl(
            op="subscribe",
            success=msg.get("success") is True and not failed,
            ret_msg=f"failTopics: {', '.join(failed)}" if failed else "",
            conn_id=_str(msg.get("conn_id")),
            req_id=req_id if isinstance(req_id, str) else None,
        )
    return None


def decode_ticker(text: str | bytes) -> TickerUpdate | None:
    """A public tickers push (snapshot or delta), or None for any other frame."""
    r = decode_public(text)
    return r if isinstance(r, TickerUpdate) else None
