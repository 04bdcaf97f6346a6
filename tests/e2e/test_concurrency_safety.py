"""Issue 9: every guarantee of DESIGN.md §3 under concurrent calls, through the MCP surface.

Each test reproduces one attack or race found against the first wave, with the real emulator as
the witness (`/emulator/frames`, `/emulator/orders`): one amend in flight per order (ORDER_BUSY),
verdicts from each request's own evidence, every amendable field read back, every request ends.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client

from sidecar.core.types import TradingState
from sidecar.mcp_server import build_server
from tests.e2e.e2e_kit import ROOT, Stack, dec, intercept_amends, start_stack, stop_stack

pytestmark = pytest.mark.slow

CALL_TIMEOUT_S = 15


async def call(stack: Stack, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(CALL_TIMEOUT_S), Client(build_server(stack.service)) as client:
        result = await client.call_tool(tool, args)
    assert isinstance(result.structured_content, dict), result.content
    return result.structured_content


def amend(symbol: str, link: str, **fields: str) -> tuple[str, dict[str, Any]]:
    """A wsAmendOrder call on one linear order, by orderLinkId."""
    return ("wsAmendOrder", {"category": "linear", "symbol": symbol, "orderLinkId": link, **fields})


def item_codes(body: dict[str, Any], index: int = 0) -> list[str]:
    return [r["code"] for r in body["items"][index]["reasons"]]


def amend_frames_naming(stack: Stack, link: str) -> list[dict[str, Any]]:
    return [it for it in stack.sent_items() if it.get("orderLinkId") == link]


@pytest.fixture
async def cap_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """BTCUSDT at mark 100000 (max_notional 50000) and a resting Sell 0.49 @ 100100 (49 049)."""
    emu, service, config, orders = await start_stack(
        tmp_path,
        prices={("linear", "BTCUSDT"): "100000", ("linear", "ETHUSDT"): "3500"},
        orders_to_rest=[
            ("linear", "BTCUSDT", "Sell", "0.49", "100100", "x"),
            ("linear", "ETHUSDT", "Buy", "0.1", "3460", "e"),
        ],
    )
    try:
        yield Stack(emu, service, config, orders)
    finally:
        await stop_stack(emu, service)


async def while_first_is_in_flight(
    stack: Stack,
    first: tuple[str, dict[str, Any]],
    *later: tuple[str, dict[str, Any]],
    on_frame: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Send `first`; once its frame is at the exchange (and before its verdict), send the others
    concurrently. Returns every answer, first's first. `on_frame` sees every amend frame as it
    arrives at the exchange."""
    at_exchange = asyncio.Event()

    def seen(msg: dict[str, Any]) -> bool:
        if on_frame is not None:
            on_frame(msg)
        at_exchange.set()
        return False  # the exchange handles the frame as usual

    intercept_amends(stack.emu, seen)
    first_task = asyncio.create_task(call(stack, *first))
    async with asyncio.timeout(CALL_TIMEOUT_S):
        await at_exchange.wait()
    others = await asyncio.gather(*(call(stack, tool, args) for tool, args in later))
    return [await first_task, *others]


# ------------------------------------------------------------------------------ 1. notional cap


async def test_two_concurrent_amends_of_one_order_cannot_breach_the_notional_cap(cap_stack: Stack) -> None:
    """A: price 101500 (49 735) and B: qty 0.499 (49 949.9) pass one at a time; together the
    order would hold 0.499 @ 101500 = 50 648.5 > 50 000. The second is ORDER_BUSY, nothing sent."""
    stack = cap_stack
    stack.emu.add_faults([{"kind": "delay_order_events", "ms": 300, "count": 10}])
    a, b = await while_first_is_in_flight(
        stack,
        amend("BTCUSDT", "x", price="101500"),
        amend("BTCUSDT", "x", qty="0.499"),
    )
    assert a["items"][0]["outcome"] == "verified", a
    assert b["items"][0]["outcome"] == "denied", b
    assert "ORDER_BUSY" in item_codes(b), b
    assert b["ack"] is None
    order = stack.order("x")
    assert dec(order["price"]) * dec(order["qty"]) <= Decimal(50000)
    assert len(amend_frames_naming(stack, "x")) == 1  # B never reached the exchange

    # Once A has settled, B is judged against the state A left: the cap holds.
    again = await call(
        stack,
        "wsAmendOrder",
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "x", "qty": "0.499"},
    )
    assert again["items"][0]["outcome"] == "denied"
    assert item_codes(again) == ["NOTIONAL_ABOVE_CAP"]


async def test_the_concurrent_trick_cannot_skip_human_approval(tmp_path: Path) -> None:
    """Approval above 50 000 (cap 60 000): A (49 735) and B (49 949.9) need none alone; together
    the order would hold 50 648.5 without a human having been asked. B must not be sent."""
    symbols = [
        {
            "category": "linear",
            "symbol": "BTCUSDT",
            "max_qty": "0.5",
            "max_notional": "60000",
            "price_band_bps": "150",
            "reference": "mark",
        }
    ]
    emu, service, config, orders = await start_stack(
        tmp_path,
        prices={("linear", "BTCUSDT"): "100000"},
        orders_to_rest=[("linear", "BTCUSDT", "Sell", "0.49", "100100", "x")],
        symbols=symbols,
        approval={"above_notional": "50000"},
    )
    stack = Stack(emu, service, config, orders)
    try:
        emu.add_faults([{"kind": "delay_order_events", "ms": 300, "count": 10}])
        a, b = await while_first_is_in_flight(
            stack, amend("BTCUSDT", "x", price="101500"), amend("BTCUSDT", "x", qty="0.499")
        )
        assert a["items"][0]["outcome"] == "verified", a
        assert b["items"][0]["outcome"] == "denied", b
        assert "ORDER_BUSY" in item_codes(b)
        assert len(amend_frames_naming(stack, "x")) == 1
        order = stack.order("x")
        assert dec(order["price"]) * dec(order["qty"]) <= Decimal(50000)
    finally:
        await stop_stack(emu, service)


async def test_the_same_order_twice_in_one_batch_by_id_and_link_id_is_order_busy(cap_stack: Stack) -> None:
    stack = cap_stack
    order_id = stack.order("x")["orderId"]
    body = await call(
        stack,
        "wsBatchAmendOrders",
        {
            "category": "linear",
            "request": [
                {"symbol": "BTCUSDT", "orderId": order_id, "price": "100200"},
                {"symbol": "BTCUSDT", "orderLinkId": "x", "qty": "0.3"},
            ],
        },
    )
    assert "ORDER_BUSY" in item_codes(body, 1), body
    assert amend_frames_naming(stack, "x") == [] and stack.sent_items() == []


async def test_preview_says_order_busy_while_an_amend_is_in_flight(cap_stack: Stack) -> None:
    stack = cap_stack
    stack.emu.add_faults([{"kind": "delay_order_events", "ms": 300, "count": 10}])
    a, preview = await while_first_is_in_flight(
        stack,
        amend("BTCUSDT", "x", price="100200"),
        (
            "previewBatchAmendOrders",
            {"category": "linear", "request": [{"symbol": "BTCUSDT", "orderLinkId": "x", "price": "100300"}]},
        ),
    )
    assert a["items"][0]["outcome"] == "verified"
    assert preview["items"][0]["outcome"] == "denied"
    assert "ORDER_BUSY" in item_codes(preview)


# ------------------------------------------------------------------------------ 2. false verified


async def test_a_refused_amend_is_never_verified_by_another_requests_push(stack: Stack) -> None:
    """Pushes lag; A -> 94500, B -> 94600, C -> 94500 on one order; the exchange refuses C whole
    (10006). No answer may be `verified` unless its own frame was applied (ack code 0)."""
    stack.emu.add_faults([{"kind": "delay_order_events", "ms": 300, "count": 10}])
    arrived = 0

    def refuse_the_third(_msg: dict[str, Any]) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 2:  # C, if it is ever sent, is refused whole by the exchange
            stack.emu.add_faults([{"kind": "rate_limit", "count": 1}])

    answers = await while_first_is_in_flight(
        stack,
        (
            "wsAmendOrder",
            {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
        ),
        (
            "wsAmendOrder",
            {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94600"},
        ),
        (
            "wsAmendOrder",
            {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
        ),
        on_frame=refuse_the_third,
    )
    for body in answers:
        item = body["items"][0]
        if item["outcome"] == "verified":
            assert item["exchangeCode"] == 0, body
    assert answers[0]["items"][0]["outcome"] == "verified"
    for body in answers[1:]:
        assert body["items"][0]["outcome"] == "denied" and "ORDER_BUSY" in item_codes(body), body
    assert dec(stack.order("btc-b1")["price"]) == Decimal(94500)


# ------------------------------------------------------------------------------ 3. false not_applied


async def test_an_applied_amend_whose_ack_and_push_are_lost_is_never_not_applied(cap_stack: Stack) -> None:
    """Request 1 (3460 -> 3461) is applied but its ack and push are lost; request 2 would move the
    order back to 3460 on the stale view. Request 1 must not be answered `not_applied`."""
    stack = cap_stack
    stack.emu.add_faults([{"kind": "drop_ack", "count": 1}, {"kind": "drop_order_events", "count": 1}])
    first, second = await while_first_is_in_flight(
        stack,
        amend("ETHUSDT", "e", price="3461"),
        amend("ETHUSDT", "e", price="3460"),
    )
    assert first["items"][0]["outcome"] == "verified", first
    assert dec(first["items"][0]["observed"]["price"]) == Decimal(3461)
    assert second["items"][0]["outcome"] == "denied" and "ORDER_BUSY" in item_codes(second), second
    assert dec(stack.order("e")["price"]) == Decimal(3461)
    assert len(amend_frames_naming(stack, "e")) == 1


# ------------------------------------------------------------------------------ 4. enum fields


async def test_an_amend_of_tp_trigger_by_alone_is_verified_and_never_trips(stack: Stack) -> None:
    """Every amendable field is read back: tpTriggerBy alone ends verified, so six of them in a
    row cannot trip safety.max_unverified."""
    values = ["MarkPrice", "IndexPrice", "LastPrice", "MarkPrice", "IndexPrice", "LastPrice", "MarkPrice"]
    for value in values:
        body = await call(
            stack,
            "wsAmendOrder",
            {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "tpTriggerBy": value},
        )
        assert body["items"][0]["outcome"] == "verified", body
        assert stack.order("btc-b1")["tpTriggerBy"] == value
    assert stack.service.trading_state()[0] is TradingState.ACTIVE


# ------------------------------------------------------------------------------ 6. hostile field names


@pytest.mark.parametrize("field", ["op", "apiKey", "signature", "X-BAPI-SIGN", "password"])
async def test_a_secret_looking_field_name_denies_that_request_only(stack: Stack, field: str) -> None:
    body = await call(
        stack,
        "wsBatchAmendOrders",
        {
            "category": "linear",
            "request": [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500", field: "AUTH"}],
        },
    )
    assert body["items"][0]["outcome"] == "denied"
    assert "FIELD_NOT_SUPPORTED" in item_codes(body)
    assert stack.service.trading_state()[0] is TradingState.ACTIVE
    # The request is on record, and the next, clean request is sent and verified.
    assert stack.service.outcome(body["requestId"]) is not None
    ok = await call(
        stack,
        "wsAmendOrder",
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
    )
    assert ok["items"][0]["outcome"] == "verified", ok


async def test_resume_from_another_process_clears_a_journal_failure_halt(
    stack: Stack, tmp_path: Path
) -> None:
    """A journal failure halts trading in memory; `sidecar resume` from another shell (its own
    connection to the journal) must clear it once the journal works again (issue 9, finding 6)."""
    service = stack.service
    service.journal._conn.close()  # the disk goes away under the server: the next commit fails
    first = await call(stack, *amend("BTCUSDT", "btc-b1", price="94500"))
    assert first["items"][0]["outcome"] == "denied"  # fail closed: nothing can be recorded
    assert {"INTERNAL_ERROR", "TRADING_HALTED"} & set(item_codes(first))
    assert stack.sent_items() == []
    halted = await call(stack, *amend("BTCUSDT", "btc-b1", price="94500"))
    assert "TRADING_HALTED" in item_codes(halted)
    assert service.trading_state()[0] is TradingState.HALTED

    config = tmp_path / "operator.yaml"
    config.write_text(yaml.safe_dump(stack.config.model_dump(mode="json")))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "resume", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    async with asyncio.timeout(CALL_TIMEOUT_S):
        out, err = await proc.communicate()
    assert proc.returncode == 0, (out, err)
    ok = await call(stack, *amend("BTCUSDT", "btc-b1", price="94500"))
    assert ok["items"][0]["outcome"] == "verified", ok
    assert service.trading_state()[0] is TradingState.ACTIVE
