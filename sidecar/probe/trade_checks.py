"""Read-only checks on the trade socket: auth codes, the recv window, reqId rules, ack envelopes,
rate-limit headers, the exchange's clock, and whether linear and inverse share a budget.

"Read-only": every order request here names an order nobody has (an orderLinkId of this run the
probe never creates), so Bybit refuses it (110001) and nothing changes; each spends one unit of the
account's amend budget. Frames are built by the sidecar's own encoder and read by its own decoder,
so these check the assumptions of that code. One function per named check.

It must not place, amend or cancel any real order.
"""

from __future__ import annotations

import statistics
from typing import Any

from sidecar.bybit.codec import encode_auth
from sidecar.bybit.exchange_clock import DEFAULT_WARN_ABOVE_MS
from sidecar.bybit.signing import ws_auth_signature
from sidecar.core.types import Ack
from sidecar.probe.context import AUTH_EXPIRY_MS, Probe, code_meaning, not_found_code
from sidecar.probe.report import CheckResult, differs, error, judge, ok, skipped
from sidecar.probe.sockets import Frame, PrivateSocket, TradeSocket, ack_of, reply_code, reply_msg

__all__ = [
    "check_ack_rate_limit_headers",
    "check_auth_error_codes",
    "check_clock_offset",
    "check_linear_inverse_shared_bucket",
    "check_recv_window_code",
    "check_reqid_duplicate_scope",
    "check_single_ack_ret_ext_info",
    "check_trade_header_types",
    "check_trade_session_limit",
    "check_unauthenticated_op_reqid",
    "judge_ack_headers",
    "judge_clock_offset",
]

ACK_HEADER_KEYS = (
    "Timenow",
    "Traceid",
    "X-Bapi-Limit",
    "X-Bapi-Limit-Reset-Timestamp",
    "X-Bapi-Limit-Status",
)
_CLOCK_SOURCES = ("rest", "tradePong", "ackTimenow", "privatePong")
_CLOCK_TOLERANCE_MS = 250  # Bybit's hosts' clocks may differ a little; more is not one clock


async def _absent_reply(
    p: Probe, sock: TradeSocket, *, req_id: str | None = None, **frame_args: Any
) -> tuple[str, Frame | None]:
    """Send one absent-order amend on the linear symbol; its reqId and reply."""
    category, symbol = p.linear_symbol()
    price = await p.resting_price(category, symbol)
    rid = req_id or p.req_id()
    frame = p.absent_amend(category, symbol, price, req_id=rid, **frame_args)
    return rid, await p.spend(sock, rid, frame)


# ------------------------------------------------------------------ clock


def _offset_ms(server_ms: int, sent_ns: int, recv_ns: int, wall_at_recv_ms: int) -> tuple[int, int]:
    """(server − host, round trip) in ms: the server stamped its time about half a round trip
    before the reply arrived."""
    rtt_ms = (recv_ns - sent_ns) // 1_000_000
    return server_ms - (wall_at_recv_ms - rtt_ms // 2), rtt_ms


def judge_clock_offset(by_source: dict[str, int | None], max_rtt_ms: int) -> CheckResult:
    """All sources of server time must read one clock (the sidecar's ExchangeClock mixes them)."""
    tolerance = _CLOCK_TOLERANCE_MS + max_rtt_ms
    expected = {"sources": list(_CLOCK_SOURCES), "agreeWithinMs": tolerance}
    seen = {k: v for k, v in by_source.items() if v is not None}
    missing = [k for k in _CLOCK_SOURCES if k not in seen]
    offset = int(statistics.median(seen.values())) if seen else None
    spread = max(seen.values()) - min(seen.values()) if seen else None
    observed = {"offsetMs": offset, "bySourceMs": by_source, "spreadMs": spread, "maxRttMs": max_rtt_ms}
    if missing:
        return differs(
            "clock_offset",
            expected,
            observed,
            f"no server time from {', '.join(missing)}: the sidecar's exchange clock has fewer "
            "samples than it assumes (it still works from the rest)",
        )
    assert offset is not None and spread is not None
    where = f"the exchange's clock is {abs(offset)} ms {'ahead of' if offset >= 0 else 'behind'} this host"
    if spread > tolerance:
        return differs(
            "clock_offset",
            expected,
            observed,
            f"{where}, but its sources disagree by {spread} ms: the sidecar's exchange clock mixes "
            "them, so request timestamps may be off by that much; raise exchange.recv_window_ms",
        )
    advice = (
        f"; above {DEFAULT_WARN_ABOVE_MS} ms: fix this host's NTP (the sidecar stamps requests on the "
        "exchange's clock, but logs and journal use the host's)"
        if abs(offset) > DEFAULT_WARN_ABOVE_MS
        else ""
    )
    return ok("clock_offset", expected, observed, f"{where}; every source agrees within {spread} ms{advice}")


async def check_clock_offset(p: Probe) -> CheckResult:
    by_source: dict[str, int | None] = dict.fromkeys(_CLOCK_SOURCES)
    rtts: list[int] = []

    def note(source: str, server_ms: int | None, sent_ns: int, recv_ns: int) -> None:
        if server_ms is None:
            return
        offset, rtt = _offset_ms(server_ms, sent_ns, recv_ns, p.clock.wall_ms())
        by_source[source] = offset
        rtts.append(rtt)

    sent = p.clock.monotonic_ns()
    server = await p.rest.server_time_ms()
    note("rest", server, sent, p.clock.monotonic_ns())
    async with p.trade() as sock:
        sent, pong = await sock.ping()
        data = pong.get("data") if pong else None
        note("tradePong", _int(data[0]) if isinstance(data, list) and data else None, sent, _recv(pong))
        sent = p.clock.monotonic_ns()
        _, reply = await _absent_reply(p, sock)
        ack = ack_of(reply)
        timenow = ack.server_time_ms if ack is not None else None
        note("ackTimenow", timenow, sent, _recv(reply))
    async with PrivateSocket.open(p.endpoints.private_ws_url, p.clock) as priv:
        problem = await priv.ready(p.api_key, p.api_secret, p.xclock.wall_ms() + AUTH_EXPIRY_MS)
        if problem is not None:
            return error("clock_offset", list(_CLOCK_SOURCES), problem, by_source)
        sent, pong = await priv.ping()
        args = pong.get("args") if pong else None
        note("privatePong", _int(args[0]) if isinstance(args, list) and args else None, sent, _recv(pong))
    return judge_clock_offset(by_source, max(rtts, default=0))


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _recv(frame: Frame | None) -> int:
    return frame.recv_ns if frame is not None else 0


# ------------------------------------------------------------------ recv window, header types


async def check_recv_window_code(p: Probe) -> CheckResult:
    window = p.settings.recv_window_ms
    async with p.trade() as sock:
        _, stale = await _absent_reply(p, sock, ts_ms=p.xclock.wall_ms() - window - 2000)
        _, future = await _absent_reply(p, sock, ts_ms=p.xclock.wall_ms() + 3000)
    observed = {"stale": reply_code(stale), "future": reply_code(future)}
    return judge(
        "recv_window_code",
        {"stale": 10002, "future": 10002},
        observed,
        agrees=f"a timestamp {window + 2000} ms old and one 3 s ahead are both refused with 10002 "
        f"({reply_msg(stale)!r}); the sidecar reports such an item rejected",
        otherwise=f"stale: {code_meaning(observed['stale'])}; future: "
        f"{code_meaning(observed['future'])}. A code the sidecar does not treat as rejected makes it "
        "look at the order instead (safe, slower); keep the host's clock synced",
    )


async def check_trade_header_types(p: Probe) -> CheckResult:
    category, _ = p.linear_symbol()
    async with p.trade() as sock:
        _, strings = await _absent_reply(p, sock)
        _, integers = await _absent_reply(p, sock, integer_header=True)
    expected_code = not_found_code(category)
    observed = {"strings": reply_code(strings), "integers": reply_code(integers)}
    return judge(
        "trade_header_types",
        {"strings": expected_code, "integers": expected_code},
        observed,
        agrees="X-BAPI-TIMESTAMP and X-BAPI-RECV-WINDOW are accepted as strings (the sidecar's form) "
        "and as integers (pybit's)",
        otherwise="the header is judged by its JSON type: the sidecar sends strings, so only a refusal "
        "of `strings` matters (every amend would be refused); report it",
    )


async def check_single_ack_ret_ext_info(p: Probe) -> CheckResult:
    async with p.trade() as sock:
        _, reply = await _absent_reply(p, sock)
    if reply is None:
        return error("single_ack_ret_ext_info", {"retExtInfo": {}}, "no reply to a single amend")
    observed = {"retExtInfo": reply.get("retExtInfo")}
    return judge(
        "single_ack_ret_ext_info",
        {"retExtInfo": {}},
        observed,
        agrees="a single op's ack carries an empty retExtInfo (per-item lists are for batch ops only)",
        otherwise="a single op's retExtInfo is not empty; the sidecar reads the code of a single op "
        "from retCode only, so this changes nothing for it (harmless)",
    )


# ------------------------------------------------------------------ auth and reqId


async def _auth_reply(p: Probe, key: str, expires_ms: int, signature: str) -> int | str:
    async with TradeSocket.open(p.endpoints.trade_ws_url, p.clock) as sock:
        start = sock.log.mark()
        await sock.send_raw(_auth_frame(key, expires_ms, signature))
        reply = await sock.log.wait_for(
            lambda f: f.get("op") == "auth" or "retCode" in (f.msg or {}), start=start
        )
        if reply is None and sock.log.closed:
            return "closed without a reply"
        return reply_code(reply)


def _auth_frame(key: str, expires_ms: int, signature: str) -> str:
    return encode_auth([key, expires_ms, signature])


async def check_auth_error_codes(p: Probe) -> CheckResult:
    now = p.xclock.wall_ms()
    expired = now - 60_000
    ahead = now + AUTH_EXPIRY_MS
    observed = {
        "expired": await _auth_reply(p, p.api_key, expired, ws_auth_signature(p.api_secret, expired)),
        "unknownKey": await _auth_reply(
            p, f"probe{p.tag}unknownkey", ahead, ws_auth_signature(p.api_secret, ahead)
        ),
        "badSignature": await _auth_reply(p, p.api_key, ahead, ws_auth_signature(p.api_secret, ahead + 1)),
    }
    return judge(
        "auth_error_codes",
        {"expired": 10001, "unknownKey": 10003, "badSignature": 10004},
        observed,
        agrees="an expired `expires` is 10001, an unknown key 10003, a wrong signature 10004",
        otherwise="auth failures carry other codes: the sidecar stops at start-up on any failed auth "
        "and prints the code, so only the message an operator reads changes (harmless)",
    )


async def check_unauthenticated_op_reqid(p: Probe) -> CheckResult:
    category, symbol = p.linear_symbol()
    price = await p.resting_price(category, symbol)
    rid = p.req_id()
    async with TradeSocket.open(p.endpoints.trade_ws_url, p.clock) as sock:
        start = sock.log.mark()
        await sock.send_raw(p.absent_amend(category, symbol, price, req_id=rid))
        reply = await sock.log.wait_for(lambda f: "retCode" in (f.msg or {}), start=start)
        _, pong = await sock.ping(timeout_s=3.0)
    observed = {
        "retCode": reply_code(reply),
        "reqIdEchoed": reply is not None and reply.get("reqId") == rid,
        "socketOpen": pong is not None,
    }
    return judge(
        "unauthenticated_op_reqid",
        {"retCode": 10005, "reqIdEchoed": False, "socketOpen": True},
        observed,
        agrees="an order op before auth is refused with 10005 and no reqId; the socket stays open (the "
        "sidecar treats such a frame as the connection's failure and reconnects)",
        otherwise="the sidecar never sends before its auth is acknowledged, so this matters only to "
        "the emulator's fidelity; an auth-class code with reqId is still a refusal for that request",
    )


async def check_reqid_duplicate_scope(p: Probe) -> CheckResult:
    category, _ = p.linear_symbol()
    rid = p.req_id()
    async with p.trade() as first:
        _, a = await _absent_reply(p, first, req_id=rid)
        _, b = await _absent_reply(p, first, req_id=rid)
        async with p.trade() as second:
            _, c = await _absent_reply(p, second, req_id=rid)
    observed = {"first": reply_code(a), "sameConnection": reply_code(b), "otherConnection": reply_code(c)}
    return judge(
        "reqid_duplicate_scope",
        {"first": not_found_code(category), "sameConnection": 20006, "otherConnection": 20006},
        observed,
        agrees="a repeated reqId is refused with 20006 on the same and on another connection (one "
        "memory per account); how long it is remembered cannot be probed, and the sidecar never "
        "repeats one (boot token + sequence)",
        otherwise="the duplicate-reqId rule is narrower or different; the sidecar never repeats a "
        "reqId, so this only matters to the emulator's fidelity",
    )


def check_trade_session_limit() -> CheckResult:
    return skipped(
        "trade_session_limit",
        {"retCode": 10003},
        "not probed: finding how many trade sessions one account may open means opening them until "
        "Bybit refuses (10003), which could cut a running sidecar's own session",
    )


# ------------------------------------------------------------------ headers and budgets


def judge_ack_headers(header: object, ack: Ack | None) -> CheckResult:
    """The ack `header` names and types, and whether the sidecar's decoder read every value."""
    expected = {"keys": list(ACK_HEADER_KEYS), "allStrings": True, "decoded": True}
    if not isinstance(header, dict):
        return differs(
            "ack_rate_limit_headers",
            expected,
            {"header": header},
            "the ack has no header object: the sidecar cannot learn its budget from Bybit and keeps "
            "to its configured budgets only (safe)",
        )
    decoded = ack is not None and None not in (
        ack.limit,
        ack.limit_status,
        ack.limit_reset_ms,
        ack.server_time_ms,
    )
    observed = {
        "keys": sorted(header),
        "allStrings": all(isinstance(v, str) for v in header.values()),
        "decoded": decoded,
    }
    if observed == expected:
        return ok(
            "ack_rate_limit_headers",
            expected,
            observed,
            f"budget {header.get('X-Bapi-Limit')}/s, {header.get('X-Bapi-Limit-Status')} left; "
            "the sidecar reads every value",
        )
    harmless = decoded
    return differs(
        "ack_rate_limit_headers",
        expected,
        observed,
        "header names or types differ from the documented examples; "
        + (
            "the sidecar reads them case-insensitively and still decodes every value (harmless)"
            if harmless
            else "the sidecar could not read every value: it keeps to its configured budgets only "
            "(safe, but set exchange budgets to your account's tier by hand)"
        ),
    )


async def check_ack_rate_limit_headers(p: Probe) -> CheckResult:
    async with p.trade() as sock:
        _, reply = await _absent_reply(p, sock)
    if reply is None:
        return error("ack_rate_limit_headers", list(ACK_HEADER_KEYS), "no reply to a single amend")
    return judge_ack_headers(reply.get("header"), ack_of(reply))


def _status(frame: Frame | None) -> tuple[int | None, int | None]:
    """(X-Bapi-Limit, X-Bapi-Limit-Status) of an ack, read by the sidecar's decoder."""
    ack = ack_of(frame)
    return (ack.limit, ack.limit_status) if ack is not None else (None, None)


async def check_linear_inverse_shared_bucket(p: Probe) -> CheckResult:
    lin_cat, lin_sym = p.linear_symbol()
    inv_cat, inv_sym = p.inverse_symbol()
    lin_price = await p.resting_price(lin_cat, lin_sym)
    inv_price = await p.resting_price(inv_cat, inv_sym)
    expected = {"shared": True}
    async with p.trade() as sock:
        await p.fresh_window()
        statuses: list[tuple[int | None, int | None]] = []
        for category, symbol, price in ((lin_cat, lin_sym, lin_price), (lin_cat, lin_sym, lin_price)):
            rid = p.req_id()
            statuses.append(
                _status(await p.spend(sock, rid, p.absent_amend(category, symbol, price, req_id=rid)))
            )
        rid = p.req_id()
        inv = _status(await p.spend(sock, rid, p.absent_amend(inv_cat, inv_sym, inv_price, req_id=rid)))
    (_, s1), (_, s2), (inv_limit, s3) = statuses[0], statuses[1], inv
    observed: dict[str, Any] = {"linearStatus": [s1, s2], "inverseStatus": s3, "inverseLimit": inv_limit}
    if None in (s1, s2, s3, inv_limit):
        return error(
            "linear_inverse_shared_bucket",
            expected,
            "an ack carried no X-Bapi-Limit-Status (see ack_rate_limit_headers)",
            observed,
        )
    assert s2 is not None and s3 is not None and inv_limit is not None
    shared = s3 == s2 - 1
    separate = s3 == inv_limit - 1
    if shared == separate:
        return error(
            "linear_inverse_shared_bucket",
            expected,
            "inconclusive: the budgets moved in a way neither rule explains (another client of this "
            "account was trading meanwhile?); run it again while nothing else trades",
            observed,
        )
    observed["shared"] = shared
    return judge(
        "linear_inverse_shared_bucket",
        expected,
        {"shared": shared},
        agrees=f"an inverse amend drew on the linear amend budget ({s2} → {s3}): one budget, as the "
        "sidecar counts it",
        otherwise="linear and inverse have separate budgets here: the sidecar's shared count is "
        "stricter than needed (safe; you may give inverse its own exchange budget in the config)",
    )
