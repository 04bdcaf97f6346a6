"""The trade desk: one `/v5/trade` request in, one response out (reference §1).

Its one job is the request-level rules around the exchange model: auth (shared with the private
stream), reqId (≤ 36 chars, never reused per UID for the process lifetime → 20006), the header
recv window (→ 10002, on the exchange's clock), op and category (→ 10404), batch sizes, per-UID
rate limits (→ 10006, and per item for a batch that only partly fits; linear and inverse share one
budget), the `reject`/`rate_limit`/`fill_before_amend`/`fill_after_ack`/`cancel_after_ack` faults,
the frame capture (auth secrets redacted) and the ack envelope. No I/O, no clock: `now_ms` comes in.
Delivery faults (drop/delay an ack, disconnect) belong to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.emulator.faults import FaultPlan
from sidecar.emulator.instruments import CATEGORIES
from sidecar.emulator.model import Exchange, ItemResult, Race
from sidecar.emulator.ratelimit import TRADE_OPS, Admission, RateLimiter
from sidecar.emulator.signing import signature_ok, ws_auth_payload
from sidecar.emulator.wire import IdSource, ack_header, basic_header, trade_reply

__all__ = ["AuthResult", "TradeDesk", "TradeOutcome", "TradeSession", "check_auth"]

MAX_REQ_ID_LEN = 36
DEFAULT_RECV_WINDOW_MS = 5000
FUTURE_TOLERANCE_MS = 1000
BATCH_MAX = {"linear": 20, "inverse": 20, "option": 20, "spot": 10}
REDACTED = "[redacted]"

RATE_LIMIT_MSG = "Too many visits!"
NOT_AUTHED_CODE = 10005
NOT_AUTHED_MSG = "Permission denied, please check your API key permissions (request not authenticated)"


@dataclass
class TradeSession:
    """Per-connection state of a trade socket."""

    conn_id: str
    uid: str | None = None


@dataclass(frozen=True)
class TradeOutcome:
    """A response and whether the request passed the envelope checks (delivery faults need it)."""

    reply: dict[str, Any]
    op: str
    valid: bool


@dataclass(frozen=True)
class AuthResult:
    uid: str | None
    code: int
    msg: str


def _as_int(value: object) -> int | None:
    """An int, or a string of digits (clients send both), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def check_auth(credentials: Mapping[str, str], msg: Mapping[str, Any], now_ms: int) -> AuthResult:
    """Check an `auth` frame: args = [api_key, expires_ms, hex HMAC(secret, "GET/realtime"+expires)].

    Codes: 10001 malformed args or expired, 10003 unknown key, 10004 wrong signature.
    """
    args = msg.get("args")
    if not isinstance(args, list) or len(args) != 3:
        return AuthResult(None, 10001, "Params Error: args must be [apiKey, expires, signature]")
    key, expires_raw, signature = args
    expires = _as_int(expires_raw)
    if expires is None:
        return AuthResult(None, 10001, "Params Error: expires must be an integer (ms)")
    if not isinstance(key, str) or key not in credentials:
        return AuthResult(None, 10003, "API key is invalid.")
    if not signature_ok(credentials[key], ws_auth_payload(str(expires_raw)), signature):
        return AuthResult(None, 10004, "Invalid signature")
    if expires <= now_ms:
        return AuthResult(None, 10001, f"Params Error: request expired (expires {expires} <= now {now_ms})")
    uids = sorted(credentials)
    return AuthResult(f"{100001 + uids.index(key)}", 0, "OK")


def redact(msg: Mapping[str, Any]) -> Any:
    """Args of a frame as stored by the capture: auth keeps only `expires`."""
    args = msg.get("args")
    if msg.get("op") == "auth" and isinstance(args, list):
        return [REDACTED if i != 1 else a for i, a in enumerate(args)]
    return args


class TradeDesk:
    """Request handling for every trade socket of the process (one account per API key)."""

    def __init__(
        self,
        exchange: Exchange,
        faults: FaultPlan,
        limiter: RateLimiter,
        credentials: Mapping[str, str],
        ids: IdSource,
    ) -> None:
        self.exchange = exchange
        self.faults = faults
        self.limiter = limiter
        self.credentials = dict(credentials)
        self._ids = ids
        self._req_ids: dict[str, set[str]] = {}
        self._frames: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ capture

    def record(self, path: str, conn_id: str, msg: Mapping[str, Any] | None, now_ms: int) -> None:
        """Keep every inbound trade frame (never trimmed); auth key and signature never stored."""
        if msg is None:
            entry: dict[str, Any] = {"path": path, "op": None, "reqId": None, "args": None, "malformed": True}
        else:
            op = msg.get("op")
            entry = {"path": path, "op": op, "reqId": msg.get("reqId"), "args": redact(msg)}
            if isinstance(msg.get("header"), Mapping):
                entry["header"] = dict(msg["header"])
        entry["connId"] = conn_id
        entry["receivedAt"] = now_ms
        self._frames.append(entry)

    def frames(self) -> list[dict[str, Any]]:
        return list(self._frames)

    # ------------------------------------------------------------------ auth

    def auth(self, session: TradeSession, msg: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        req_id = msg.get("reqId")
        if session.uid is not None:
            return trade_reply(
                op="auth", conn_id=session.conn_id, ret_code=20001, ret_msg="Repeat auth", req_id=req_id
            )
        result = check_auth(self.credentials, msg, now_ms)
        if result.uid is not None:
            session.uid = result.uid
        return trade_reply(
            op="auth", conn_id=session.conn_id, ret_code=result.code, ret_msg=result.msg, req_id=req_id
        )

    # ------------------------------------------------------------------ order ops

    def handle(self, session: TradeSession, msg: Mapping[str, Any], now_ms: int) -> TradeOutcome:
        """One order op (`order.create` ... `order.cancel-batch`) or an unknown op."""
        op = msg.get("op")
        req_id = msg.get("reqId")
        trace = self._ids.trace_id()
        op_text = op if isinstance(op, str) else ""

        def error(
            code: int, text: str, *, echo: bool = True, adm: Admission | None = None, valid: bool = False
        ) -> TradeOutcome:
            header = ack_header(adm, trace, now_ms) if adm else basic_header(trace, now_ms)
            reply = trade_reply(
                op=op_text,
                conn_id=session.conn_id,
                ret_code=code,
                ret_msg=text,
                req_id=req_id if echo else None,
                data={},
                ret_ext_info={},
                header=header,
            )
            return TradeOutcome(reply, op_text, valid=valid)

        if op not in TRADE_OPS:
            return error(10404, f"Invalid op: {op_text!r} not found")
        uid = session.uid
        if uid is None:
            # Auth-class refusal without reqId: ccxt#29361 reports Bybit omits it for these.
            return error(NOT_AUTHED_CODE, NOT_AUTHED_MSG, echo=False)
        if req_id is not None:
            if not isinstance(req_id, str) or not req_id or len(req_id) > MAX_REQ_ID_LEN:
                return error(10001, f"Params Error: reqId must be a string of 1..{MAX_REQ_ID_LEN} characters")
            seen = self._req_ids.setdefault(uid, set())
            if req_id in seen:
                return error(20006, "Duplicate reqId")
            seen.add(req_id)
        header = msg.get("header")
        if not isinstance(header, Mapping):
            return error(10001, "Params Error: header is required")
        ts = _as_int(header.get("X-BAPI-TIMESTAMP"))
        window = _as_int(header.get("X-BAPI-RECV-WINDOW", DEFAULT_RECV_WINDOW_MS))
        if ts is None or window is None:
            return error(10001, "Params Error: X-BAPI-TIMESTAMP / X-BAPI-RECV-WINDOW must be integers (ms)")
        if not (now_ms - window <= ts < now_ms + FUTURE_TOLERANCE_MS):
            return error(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{window}]",
            )
        args = msg.get("args")
        if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], Mapping):
            return error(10001, "Params Error: args must hold exactly one object")
        body: Mapping[str, Any] = args[0]
        category = body.get("category")
        if category not in CATEGORIES:
            return error(10404, f"Invalid category: {category!r}")
        cat = str(category)
        batch = op.endswith("-batch")
        items: list[Any] = [body]
        if batch:
            request = body.get("request")
            if not isinstance(request, list) or not request:
                return error(10001, "Params Error: request must be a non-empty list")
            if len(request) > BATCH_MAX[cat]:
                return error(10001, f"Params Error: batch size {len(request)} exceeds {BATCH_MAX[cat]}")
            items = request

        reject = self.faults.take("reject", op=op)
        if reject is not None:
            adm = self.limiter.peek(uid, op, cat, now_ms)
            if not batch:
                return error(reject.code, reject.msg, adm=adm, valid=True)
            results = [self._item_fail(it, reject.code, reject.msg) for it in items]
            return self._batch_reply(
                session=session,
                op=op,
                category=cat,
                req_id=req_id,
                results=results,
                adm=adm,
                trace=trace,
                now_ms=now_ms,
            )
        if self.faults.take("rate_limit", op=op) is not None:
            adm = self.limiter.peek(uid, op, cat, now_ms)
            return error(10006, RATE_LIMIT_MSG, adm=Admission(0, adm.limit, 0, now_ms + 1000), valid=True)

        units = 1 if not batch or cat == "option" else len(items)
        adm = self.limiter.admit(uid, op, cat, units, now_ms)
        if adm.granted == 0:
            return error(10006, RATE_LIMIT_MSG, adm=adm, valid=True)
        if not batch:
            result = self._apply(op, cat, body, now_ms)
            data = {"orderId": result.order_id, "orderLinkId": result.order_link_id} if result.ok else {}
            reply = trade_reply(
                op=op,
                conn_id=session.conn_id,
                ret_code=result.code,
                ret_msg=result.msg,
                req_id=req_id,
                data=data,
                ret_ext_info={},
                header=ack_header(adm, trace, now_ms),
            )
            return TradeOutcome(reply, op, valid=True)
        results = []
        for index, item in enumerate(items):
            if cat != "option" and index >= adm.granted:
                results.append(self._item_fail(item, 10006, RATE_LIMIT_MSG))
            elif not isinstance(item, Mapping):
                results.append(self._item_fail(item, 10001, "Params Error: item must be an object"))
            else:
                results.append(self._apply(op, cat, item, now_ms))
        return self._batch_reply(
            session=session,
            op=op,
            category=cat,
            req_id=req_id,
            results=results,
            adm=adm,
            trace=trace,
            now_ms=now_ms,
        )

    def _apply(self, op: str, category: str, item: Mapping[str, Any], now_ms: int) -> ItemResult:
        ex = self.exchange
        if op in ("order.create", "order.create-batch"):
            return ex.create(category, item, now_ms)
        raw_symbol = item.get("symbol")
        symbol = raw_symbol if isinstance(raw_symbol, str) else None

        def race(kinds: tuple[str, ...]) -> Race | None:
            for kind in kinds:
                hit = self.faults.take(kind, op=op, symbol=symbol)
                if hit is not None:
                    return Race("fill" if kind == "fill_after_ack" else "cancel", bool(hit.amended))
            return None

        if op in ("order.cancel", "order.cancel-batch"):
            return ex.cancel(category, item, now_ms, race=lambda: race(("fill_after_ack",)))

        def fill_first() -> bool:
            return self.faults.take("fill_before_amend", op=op, symbol=symbol) is not None

        return ex.amend(
            category,
            item,
            now_ms,
            batch=op == "order.amend-batch",
            fill_first=fill_first,
            race=lambda: race(("fill_after_ack", "cancel_after_ack")),
        )

    @staticmethod
    def _item_fail(item: object, code: int, msg: str) -> ItemResult:
        """A per-item failure that echoes the item's identifiers."""

        def s(key: str) -> str:
            v = item.get(key) if isinstance(item, Mapping) else None
            return v if isinstance(v, str) else ""

        return ItemResult(code, msg, s("symbol"), s("orderId"), s("orderLinkId"))

    def _batch_reply(
        self,
        *,
        session: TradeSession,
        op: str,
        category: str,
        req_id: object,
        results: list[ItemResult],
        adm: Admission,
        trace: str,
        now_ms: int,
    ) -> TradeOutcome:
        listed: list[dict[str, Any]] = []
        for r in results:
            entry: dict[str, Any] = {
                "category": category,
                "symbol": r.symbol,
                "orderId": r.order_id,
                "orderLinkId": r.order_link_id,
            }
            if op == "order.create-batch":
                entry["createAt"] = str(r.order.created_ms) if r.ok and r.order is not None else ""
            listed.append(entry)
        reply = trade_reply(
            op=op,
            conn_id=session.conn_id,
            ret_code=0,
            ret_msg="OK",
            req_id=req_id,
            data={"list": listed},
            ret_ext_info={"list": [{"code": r.code, "msg": r.msg} for r in results]},
            header=ack_header(adm, trace, now_ms),
        )
        return TradeOutcome(reply, op, valid=True)
