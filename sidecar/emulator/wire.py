"""Envelopes of the emulator's frames and REST bodies, key for key as reference/bybit-v5.md shows.

Its one job is shape: trade socket `retCode/retMsg/op/connId`, private `success/ret_msg/op/conn_id`,
public control replies per category (option's have no `op`), public ticker `topic/type/data/cs/ts`
(option `id/topic/ts/data/type`), pushes `id/topic/creationTime/data`, REST
`retCode/retMsg/result/retExtInfo/time`. It must not decide outcomes.
"""

from __future__ import annotations

import random
import string
from typing import Any

from sidecar.emulator.ratelimit import Admission

__all__ = [
    "IdSource",
    "ack_header",
    "basic_header",
    "option_ticker_frame",
    "private_pong",
    "private_reply",
    "public_pong",
    "public_reply",
    "public_subscribe_reply",
    "push",
    "rest_envelope",
    "ticker_frame",
    "trade_pong",
    "trade_reply",
]

_CONN_ALPHABET = string.ascii_lowercase[:22] + string.digits  # Bybit conn ids look base32-ish


class IdSource:
    """Connection ids (`cnt5leec0hvan15eukcg-2v` style), trace ids and push ids."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._prefix = "".join(rng.choice(_CONN_ALPHABET) for _ in range(20))
        self._count = 0

    def conn_id(self) -> str:
        self._count += 1
        return f"{self._prefix}-{_base36(self._count)}"

    def trace_id(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def push_id(self) -> str:
        raw = f"{self._rng.getrandbits(128):032x}"
        return f"{raw[:14]}-{raw[14:18]}-{raw[18:22]}-{raw[22:26]}-{raw[26:]}{raw[:6]}"


def _base36(n: int) -> str:
    digits = string.digits + string.ascii_lowercase
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def basic_header(trace_id: str, now_ms: int) -> dict[str, str]:
    return {"Traceid": trace_id, "Timenow": str(now_ms)}


def ack_header(adm: Admission, trace_id: str, now_ms: int) -> dict[str, str]:
    """The ack `header`: all values strings, as the reference's examples show."""
    return {
        "X-Bapi-Limit": str(adm.limit),
        "X-Bapi-Limit-Status": str(adm.remaining),
        "X-Bapi-Limit-Reset-Timestamp": str(adm.reset_ms),
        "Traceid": trace_id,
        "Timenow": str(now_ms),
    }


def trade_reply(
    *,
    op: str,
    conn_id: str,
    ret_code: int,
    ret_msg: str,
    req_id: object = None,
    data: Any = None,
    ret_ext_info: dict[str, Any] | None = None,
    header: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A trade-socket response. `reqId` appears only when given (None means: no reqId key)."""
    frame: dict[str, Any] = {}
    if req_id is not None:
        frame["reqId"] = req_id
    frame.update({"retCode": ret_code, "retMsg": ret_msg, "op": op})
    if data is not None:
        frame["data"] = data
    if ret_ext_info is not None:
        frame["retExtInfo"] = ret_ext_info
    if header is not None:
        frame["header"] = header
    frame["connId"] = conn_id
    return frame


def trade_pong(conn_id: str, now_ms: int, req_id: object = None) -> dict[str, Any]:
    return trade_reply(
        op="pong", conn_id=conn_id, ret_code=0, ret_msg="OK", req_id=req_id, data=[str(now_ms)]
    )


def private_reply(op: str, conn_id: str, *, success: bool, ret_msg: str, req_id: object) -> dict[str, Any]:
    frame: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "op": op, "conn_id": conn_id}
    if req_id is not None:
        frame["req_id"] = req_id
    return frame


def private_pong(conn_id: str, now_ms: int, req_id: object) -> dict[str, Any]:
    frame: dict[str, Any] = {}
    if req_id is not None:
        frame["req_id"] = req_id
    frame.update({"op": "pong", "args": [str(now_ms)], "conn_id": conn_id})
    return frame


def public_reply(op: str, conn_id: str, *, success: bool, ret_msg: str, req_id: object) -> dict[str, Any]:
    """A spot/linear/inverse public control reply: `success/ret_msg/conn_id/[req_id]/op`."""
    frame: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn_id}
    if req_id is not None:
        frame["req_id"] = req_id
    frame["op"] = op
    return frame


def public_subscribe_reply(
    category: str, op: str, conn_id: str, *, topics: list[str], failed: list[str], req_id: object
) -> dict[str, Any]:
    """The (un)subscribe reply of `/v5/public/{category}` in that category's shape (reference D-CONN):
    spot `ret_msg` = the op; linear/inverse `ret_msg` "" and `req_id` always present; option a
    `COMMAND_RESP` with success/fail topic lists and **no `op` field**."""
    if category == "option":
        return {
            "success": not failed,
            "conn_id": conn_id,
            "data": {"failTopics": failed, "successTopics": [t for t in topics if t not in failed]},
            "type": "COMMAND_RESP",
        }
    if failed:
        return public_reply(
            op, conn_id, success=False, ret_msg=f"error:handler not found,topic:{failed[0]}", req_id=req_id
        )
    if category == "spot":
        return public_reply(op, conn_id, success=True, ret_msg=op, req_id=req_id)
    return public_reply(op, conn_id, success=True, ret_msg="", req_id="" if req_id is None else req_id)


def public_pong(category: str, conn_id: str, req_id: object, now_ms: int) -> dict[str, Any]:
    """The pong of `/v5/public/{category}`: spot/linear/inverse `{"success","ret_msg":"pong",...,
    "op":"ping"}` (linear/inverse always carry `req_id`), option `{"args":["<ms>"],"op":"pong"}`."""
    if category == "option":
        return {"args": [str(now_ms)], "op": "pong"}
    if category == "spot":
        return public_reply("ping", conn_id, success=True, ret_msg="pong", req_id=req_id)
    return public_reply(
        "ping", conn_id, success=True, ret_msg="pong", req_id="" if req_id is None else req_id
    )


def push(push_id: str, topic: str, now_ms: int, data: list[dict[str, Any]]) -> dict[str, Any]:
    """A private-stream push (`order`, `execution`, `position`)."""
    return {"id": push_id, "topic": topic, "creationTime": now_ms, "data": data}


def ticker_frame(topic: str, kind: str, data: dict[str, str], cs: int, ts_ms: int) -> dict[str, Any]:
    """A spot/linear/inverse `tickers.{symbol}` push: `topic/type/data/cs/ts`."""
    return {"topic": topic, "type": kind, "data": data, "cs": cs, "ts": ts_ms}


def option_ticker_frame(topic: str, data: dict[str, str], seq: int, ts_ms: int) -> dict[str, Any]:
    """An option `tickers.{symbol}` push: `id/topic/ts/data/type` (snapshot only, no `cs`)."""
    return {"id": f"{topic}-{seq}-{ts_ms}", "topic": topic, "ts": ts_ms, "data": data, "type": "snapshot"}


def rest_envelope(result: Any, now_ms: int, ret_code: int = 0, ret_msg: str = "OK") -> dict[str, Any]:
    return {
        "retCode": ret_code,
        "retMsg": ret_msg,
        "result": result if result is not None else {},
        "retExtInfo": {},
        "time": now_ms,
    }
