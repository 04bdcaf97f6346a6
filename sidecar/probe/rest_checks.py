"""Read-only REST checks: cursors (sent back verbatim, non-empty on a last page), the linear
settle-coin rule, closed-order retention on `order/realtime`, and look-ups in `order/history`.

Every request goes through the sidecar's own `RestClient` (its query building, cursor handling and
signing), page by page where a check needs to see pages, and through its list methods where the
check is whether they work end to end. One function per named check.

It must not write anything to the exchange.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from sidecar.bybit.rest import RestError, RestTransportError
from sidecar.core.types import TERMINAL_ORDER_STATUSES, Category
from sidecar.probe.context import Probe
from sidecar.probe.report import CheckResult, differs, judge, skipped

__all__ = [
    "check_cursor_last_page",
    "check_cursor_round_trip",
    "check_linear_settle_coins",
    "check_order_history_lookup",
    "check_realtime_closed_retention",
]

RETAINED_CLOSED = 500  # recent closed orders order/realtime keeps per category (reference §4.5)
_INSTRUMENTS = "/v5/market/instruments-info"
_REALTIME = "/v5/order/realtime"
_HISTORY = "/v5/order/history"
_HISTORY_LAG_S = 5.0  # how long an own order may take to appear in order/history
_HISTORY_POLL_S = 0.5


async def _page(
    p: Probe, path: str, params: dict[str, str | None], *, signed: bool = False
) -> dict[str, Any]:
    result = await p.rest.fetch(path, params, signed=signed)
    return result if isinstance(result, dict) else {}


def _rows(page: dict[str, Any]) -> list[dict[str, Any]]:
    rows = page.get("list")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _cursor(page: dict[str, Any]) -> str:
    cursor = page.get("nextPageCursor")
    return cursor if isinstance(cursor, str) else ""


async def _outcome(p: Probe, path: str, params: dict[str, str | None], first: object, *, signed: bool) -> Any:
    """What a follow-up page request got: "nextPage" (rows after the first page), "firstPage"
    (the first page again: the cursor was ignored), "emptyPage", or the refusal's retCode."""
    try:
        page = await _page(p, path, params, signed=signed)
    except RestTransportError:
        raise
    except RestError as e:
        return e.ret_code
    rows = _rows(page)
    if not rows:
        return "emptyPage"
    key = "symbol" if path == _INSTRUMENTS else "orderId"
    return "firstPage" if rows[0].get(key) == first else "nextPage"


async def check_cursor_round_trip(p: Probe) -> CheckResult:
    base: dict[str, str | None] = {"category": Category.LINEAR.value, "limit": "1"}
    first = await _page(p, _INSTRUMENTS, base)
    cursor = _cursor(first)
    rows = _rows(first)
    expected: dict[str, Any] = {"cursorUrlEncoded": True, "verbatim": "nextPage", "encodedTwice": 10001}
    if not rows or not cursor:
        return differs(
            "cursor_round_trip",
            expected,
            {"rows": len(rows), "cursor": cursor},
            "a one-row page of linear instruments came back without a cursor: nothing to round-trip; "
            "the sidecar stops paging at an empty cursor, so it still lists every instrument",
        )
    head = rows[0].get("symbol")
    observed: dict[str, Any] = {
        "cursorUrlEncoded": "%" in cursor,
        "verbatim": await _outcome(p, _INSTRUMENTS, {**base, "cursor": cursor}, head, signed=False),
        # The value goes out as given (the client keeps `%`), so this is the cursor encoded twice.
        "encodedTwice": await _outcome(
            p, _INSTRUMENTS, {**base, "cursor": quote(cursor, safe="")}, head, signed=False
        ),
    }
    signed_note = await _signed_round_trip(p, expected, observed)
    listed = len(await p.rest.instruments(Category.LINEAR))
    expected["clientListsAll"] = observed["clientListsAll"] = True
    if listed == 0:
        observed["clientListsAll"] = False
    return judge(
        "cursor_round_trip",
        expected,
        observed,
        agrees=f"cursors are URL-encoded and accepted verbatim, a cursor encoded twice is refused; "
        f"the sidecar's client listed {listed} linear instruments{signed_note}",
        otherwise=_cursor_advice(observed),
    )


async def _signed_round_trip(p: Probe, expected: dict[str, Any], observed: dict[str, Any]) -> str:
    """The same round trip on a signed list (the signature covers the cursor as sent), when the
    account has order history to page through."""
    params: dict[str, str | None] = {"category": Category.LINEAR.value, "limit": "1"}
    page = await _page(p, _HISTORY, params, signed=True)
    rows, cursor = _rows(page), _cursor(page)
    if not rows or not cursor:
        return " (signed paging not exercised: no linear order history)"
    expected["signedVerbatim"] = "accepted"
    outcome = await _outcome(p, _HISTORY, {**params, "cursor": cursor}, rows[0].get("orderId"), signed=True)
    observed["signedVerbatim"] = (
        "accepted" if isinstance(outcome, str) and outcome != "firstPage" else outcome
    )
    return "; a signed order/history cursor was accepted too"


def _cursor_advice(observed: dict[str, Any]) -> str:
    if observed.get("verbatim") != "nextPage" or observed.get("signedVerbatim", "accepted") != "accepted":
        return (
            "a cursor sent back verbatim was not taken as the next page: the sidecar's start-up paging "
            "(instruments, open orders) may fail or stop early; report this with the observed values"
        )
    if observed.get("encodedTwice") != 10001:
        return (
            "a cursor encoded twice is not refused (Bybit ignores or decodes it): the sidecar sends "
            "cursors verbatim, so this only matters to the emulator's fidelity"
        )
    return "cursor shape or client listing differ from the sidecar's assumption; see observed"


async def check_cursor_last_page(p: Probe) -> CheckResult:
    category, symbol = p.linear_symbol()
    base: dict[str, str | None] = {"category": category.value, "symbol": symbol}
    only = await _page(p, _INSTRUMENTS, base)
    cursor = _cursor(only)
    observed: dict[str, Any] = {
        "onlyPageRows": len(_rows(only)),
        "onlyPageCursor": "nonEmpty" if cursor else "empty",
    }
    if cursor:
        after = await _page(p, _INSTRUMENTS, {**base, "cursor": cursor})
        observed["followedRows"] = len(_rows(after))
        observed["followedCursor"] = "nonEmpty" if _cursor(after) else "empty"
    observed["clientRows"] = len(await p.rest.instruments(category, symbol))
    return judge(
        "cursor_last_page",
        {
            "onlyPageRows": 1,
            "onlyPageCursor": "nonEmpty",
            "followedRows": 0,
            "followedCursor": "empty",
            "clientRows": 1,
        },
        observed,
        agrees=f"a single-result page ({symbol}) still carries a cursor; following it gives an empty "
        "page, where the sidecar's client stops (one instrument listed)",
        otherwise="the last-page cursor behaves otherwise; the sidecar stops at an empty page, an empty "
        "cursor or a repeated one, so only `clientRows` != 1 would matter (report it)",
    )


async def _code_of(p: Probe, path: str, params: dict[str, str | None]) -> int:
    try:
        await p.rest.fetch(path, params, signed=True)
    except RestTransportError:
        raise
    except RestError as e:
        return e.ret_code
    return 0


async def check_linear_settle_coins(p: Probe) -> CheckResult:
    linear = Category.LINEAR.value
    observed = {
        "noFilter": await _code_of(p, _REALTIME, {"category": linear}),
        "USDT": await _code_of(p, _REALTIME, {"category": linear, "settleCoin": "USDT"}),
        "USDC": await _code_of(p, _REALTIME, {"category": linear, "settleCoin": "USDC"}),
    }
    return judge(
        "linear_settle_coins",
        {"noFilter": 10001, "USDT": 0, "USDC": 0},
        observed,
        agrees="linear open orders need a symbol, baseCoin or settleCoin; the sidecar lists USDT and "
        "USDC contracts separately, and both answer",
        otherwise="the settle-coin rule differs: if USDT or USDC is refused, the sidecar's open-order "
        "snapshot fails and it never gets ready (report it); a list without a filter is harmless",
    )


async def _recent_closed(p: Probe) -> tuple[int, bool]:
    """(rows, all closed) of `order/realtime?openOnly=1` for linear USDT contracts, every page."""
    params: dict[str, str | None] = {
        "category": Category.LINEAR.value,
        "settleCoin": "USDT",
        "openOnly": "1",
        "limit": "50",
    }
    count, all_closed, cursor = 0, True, None
    for _ in range(RETAINED_CLOSED // 50 + 3):
        page = await _page(p, _REALTIME, {**params, "cursor": cursor}, signed=True)
        rows = _rows(page)
        count += len(rows)
        all_closed = all_closed and all(r.get("orderStatus") in TERMINAL_ORDER_STATUSES for r in rows)
        nxt = _cursor(page)
        if not rows or not nxt or nxt == cursor:
            break
        cursor = nxt
    return count, all_closed


async def check_realtime_closed_retention(p: Probe, own_closed: tuple[str, str] | None = None) -> CheckResult:
    """`own_closed`: (symbol, orderId) of an order this run cancelled (with --allow-orders)."""
    count, all_closed = await _recent_closed(p)
    expected: dict[str, Any] = {"withinRetention": True, "allClosed": True}
    observed: dict[str, Any] = {"withinRetention": count <= RETAINED_CLOSED, "allClosed": all_closed}
    if own_closed is not None:
        symbol, order_id = own_closed
        params: dict[str, str | None] = {
            "category": Category.LINEAR.value,
            "symbol": symbol,
            "orderId": order_id,
        }
        expected["ownCancelledFound"] = True
        observed["ownCancelledFound"] = any(
            r.get("orderId") == order_id for r in _rows(await _page(p, _REALTIME, params, signed=True))
        )
    elif count == 0:
        return skipped(
            "realtime_closed_retention",
            expected,
            "no recent closed linear orders to count; with --allow-orders the probe looks up one it "
            "cancelled itself (a Bybit release clearing the list cannot be provoked)",
        )
    return judge(
        "realtime_closed_retention",
        expected,
        observed,
        agrees=f"order/realtime shows {count} recent closed linear orders (at most {RETAINED_CLOSED})"
        + ("; the probe's own cancelled order is among them" if own_closed else "")
        + "; the sidecar falls back to order/history for older ones",
        otherwise=f"order/realtime listed {count} closed orders: retention differs; the sidecar looks "
        "an order up in order/history whenever order/realtime does not show it, so verdicts stay "
        "correct (one request slower)",
    )


async def _history_has(p: Probe, order_id: str, wait_s: float) -> bool:
    """Whether order/history lists the order by id, asking again for up to `wait_s` (Bybit says
    history may lag behind the order's close)."""
    params: dict[str, str | None] = {"category": Category.LINEAR.value, "orderId": order_id}
    deadline_ns = p.clock.monotonic_ns() + int(wait_s * 1e9)
    while True:
        if any(r.get("orderId") == order_id for r in _rows(await _page(p, _HISTORY, params, signed=True))):
            return True
        if p.clock.monotonic_ns() >= deadline_ns:
            return False
        await asyncio.sleep(_HISTORY_POLL_S)


async def check_order_history_lookup(p: Probe, own_closed: tuple[str, str] | None = None) -> CheckResult:
    category = Category.LINEAR
    expected = {"historyById": True, "clientGetOrder": True}
    if own_closed is None:
        page = await _page(p, _HISTORY, {"category": category.value, "limit": "20"}, signed=True)
        row = next((r for r in _rows(page) if r.get("orderStatus") in TERMINAL_ORDER_STATUSES), None)
        if row is None:
            return skipped(
                "order_history_lookup",
                expected,
                "no closed linear order in order/history to look up; with --allow-orders the probe "
                "looks up one it cancelled itself",
            )
        own_closed = (str(row.get("symbol")), str(row.get("orderId")))
    symbol, order_id = own_closed
    found = await _history_has(p, order_id, wait_s=_HISTORY_LAG_S)
    view = await p.rest.get_order(category, symbol, order_id=order_id)
    observed = {
        "historyById": found,
        "clientGetOrder": view is not None and view.order_id == order_id,
    }
    return judge(
        "order_history_lookup",
        expected,
        observed,
        agrees="order/history finds a closed order by id, and the sidecar's get_order (realtime, then "
        "history) finds it; that order/realtime forgets it after 500 newer ones or a release cannot be "
        "provoked",
        otherwise="a closed order was not found by id: the sidecar may answer `unverified` where it "
        "could have said `superseded`, and reconcile it later (safe); history may lag, rerun once",
    )
