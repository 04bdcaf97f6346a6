"""The one table that says what each Bybit `retCode` means for the sidecar.

Every code in reference/bybit-v5.md §6 (plus the WS order-entry codes of §1.7) maps to a
`CodeClass`. The classes drive verdicts, so the rule of thumb is:

* REJECTED only when Bybit has definitively refused *this* request and the order did not change
  (parameter, price, qty, balance, permission, auth errors).
* ORDER_CLOSED when the refusal says the order is already filled or cancelled.
* RATE_LIMITED / RECONNECT: nothing was applied by this request as far as the code says, but the
  item is still resolved by looking, never by resending.
* AMBIGUOUS whenever the code does not prove whether the change happened (timeouts, "processing",
  duplicate request ids) — and for every code not in the table: an unknown code is an honest
  "don't know", and "don't know" must lead to looking at the order, not to a verdict.

Pure data and one lookup; this module must not do I/O or decide verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from sidecar.core.types import CodeClass

__all__ = ["AUTH_FAILURE_CODES", "RETCODES", "classify", "describe", "is_unchanged"]

_S = CodeClass.SUCCESS
_R = CodeClass.REJECTED
_C = CodeClass.ORDER_CLOSED
_A = CodeClass.AMBIGUOUS
_L = CodeClass.RATE_LIMITED
_X = CodeClass.RECONNECT

# code -> (class, short meaning). Meanings paraphrase Bybit's error page (reference §6).
_TABLE: dict[int, tuple[CodeClass, str]] = {
    0: (_S, "OK"),
    # General / auth / transport
    10000: (_A, "server timeout"),
    10001: (_R, "request parameter error"),
    10002: (_R, "request time outside the recv window"),
    10003: (_R, "invalid API key (REST) / too many sessions for the UID (WS order entry)"),
    10004: (_R, "signature error"),
    10005: (_R, "permission denied for this API key"),
    10006: (_L, "too many visits: API rate limit exceeded"),
    10007: (_R, "user authentication failed"),
    10008: (_R, "common ban / check account mode"),
    10009: (_R, "region restricted"),
    10010: (_R, "unmatched IP: key bound to other IPs"),
    10014: (_A, "invalid duplicate request: an earlier one may have been processed"),
    10016: (_X, "server error / service restarting"),
    10017: (_R, "route not found"),
    10018: (_L, "IP rate limit exceeded (deprecated)"),
    10019: (_X, "WS trade service restarting: reconnect"),
    10024: (_R, "compliance rules triggered"),
    10027: (_R, "transactions banned"),
    10029: (_R, "symbol not in whitelist"),
    10403: (_L, "WS trade: IP exceeded 3000 requests/s"),
    10404: (_R, "WS trade: op not found or category unsupported"),
    10429: (_L, "system-level frequency protection"),
    429: (_L, "system-level frequency protection (HTTP 429)"),
    20001: (_R, "WS auth: already authenticated (not an order outcome)"),
    20003: (_L, "WS order entry: too frequent requests in one session"),
    20006: (_A, "WS order entry: duplicate reqId; the first request may have been processed"),
    # Derivatives / UTA orders
    110001: (_R, "order does not exist"),
    110003: (_R, "order price outside the allowable range"),
    110004: (_R, "wallet balance insufficient"),
    110005: (_R, "position status error"),
    110006: (_R, "assets estimated insufficient for position margin"),
    110007: (_R, "available balance insufficient"),
    110008: (_C, "order already completed or cancelled"),
    110009: (_R, "too many stop orders"),
    110010: (_C, "order already cancelled"),
    110012: (_R, "insufficient available balance"),
    110017: (_R, "order qty would be truncated to zero"),
    110020: (_R, "more than 500 active orders"),
    110021: (_R, "would exceed open-interest position limit"),
    110022: (_R, "quantity restricted: cannot amend to increase"),
    110057: (_R, "conditional or limit order contains TP/SL params"),
    110059: (_R, "cannot modify TP/SL of a partially filled open order"),
    110060: (_R, "cannot modify TP/SL under Full TP/SL mode"),
    110064: (_R, "modified qty must be greater than filled qty"),
    110072: (_R, "duplicate orderLinkId"),
    110079: (_A, "order is being processed; try later"),
    110092: (_R, "trigger price on the wrong side for a rising trigger"),
    110093: (_R, "trigger price on the wrong side for a falling trigger"),
    110094: (_R, "order notional below the minimum"),
    110095: (_R, "pre-market perpetual: no changes during the call auction"),
    110120: (_R, "order price below the price limitation"),
    110121: (_R, "order price above the price limitation"),
    34040: (_R, "not modified"),
    30034: (_R, "no order found (ccxt map only)"),
    30035: (_L, "option: too fast to cancel"),
    40004: (_A, "order modified during a replace; re-check status"),
    # Spot (170xxx)
    170005: (_L, "too many new orders"),
    170007: (_A, "backend timeout"),
    170105: (_R, "parameter empty"),
    170115: (_R, "invalid timeInForce"),
    170116: (_R, "invalid orderType"),
    170117: (_R, "invalid side"),
    170121: (_R, "invalid symbol"),
    170124: (_R, "order amount too large"),
    170130: (_R, "invalid parameter value"),
    170131: (_R, "balance insufficient"),
    170132: (_R, "price too high"),
    170133: (_R, "price below minimum"),
    170134: (_R, "price has too many decimals"),
    170136: (_R, "qty below minimum"),
    170137: (_R, "qty has too many decimals"),
    170139: (_C, "order already filled"),
    170140: (_R, "order value below lower limit"),
    170141: (_R, "duplicate clientOrderId"),
    170142: (_C, "order already cancelled"),
    170143: (_R, "not found on the order book"),
    170144: (_A, "order locked"),
    170146: (_A, "order creation timeout"),
    170147: (_A, "order cancellation timeout"),
    170148: (_R, "market order amount has too many decimals"),
    170149: (_R, "create failed"),
    170150: (_R, "cancel failed"),
    170190: (_C, "cancel already finished"),
    170191: (_A, "cannot cancel now; retry later"),
    170192: (_R, "price cannot exceed the limit"),
    170193: (_R, "buy price cannot exceed the limit"),
    170194: (_R, "sell price cannot be below the limit"),
    170212: (_A, "cancel request being processed"),
    170213: (_R, "order does not exist"),
    170222: (_L, "too many requests in this time frame"),
    170371: (_R, "price below the price limitation"),
    170372: (_R, "price above the price limitation"),
    170381: (_R, "order quantity too large"),
    170382: (_R, "order quantity too large"),
    170810: (_R, "too many conditional, TP/SL and active orders"),
}

RETCODES: Mapping[int, tuple[CodeClass, str]] = MappingProxyType(_TABLE)

# Codes that, arriving without a reqId on the trade socket, mean the session itself is unusable
# (ccxt#29361: Bybit omits reqId on some auth/permission rejections).
AUTH_FAILURE_CODES: frozenset[int] = frozenset({10003, 10004, 10005, 10007, 10008, 10009, 10010})

_CLASS_OF: dict[int, CodeClass] = {code: cls for code, (cls, _) in _TABLE.items()}


def classify(code: int) -> CodeClass:
    """The class of a retCode; an unknown code is AMBIGUOUS (look at the order, never assume)."""
    return _CLASS_OF.get(code, CodeClass.AMBIGUOUS)


def describe(code: int) -> str:
    """A short meaning for logs and docs; unknown codes say so."""
    entry = _TABLE.get(code)
    return entry[1] if entry is not None else "unknown code"


def is_unchanged(code: int | None, msg: str | None) -> bool:
    """Bybit's no-op refusal: 10001 "The order remains unchanged as the parameters entered match
    the existing ones." (an amend that changes nothing; reported to the agent as NO_CHANGE)."""
    return code == 10001 and msg is not None and "remains unchanged" in msg.lower()
