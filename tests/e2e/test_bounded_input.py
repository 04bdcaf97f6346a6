"""Issue 9: bad input gets a clear error, in bounded time and size, and changes nothing.

Oversized batches and absurd strings are answered in at most 64 KiB and journaled as bounded
summaries; every request ends (an exception or a dead event task still gives an answer and a final
record). Through the MCP surface against the real emulator.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from sidecar.core.types import AmendRequest, TradingState
from sidecar.mcp_server import build_server
from tests.e2e.e2e_kit import Stack, intercept_amends, start_stack, stop_stack

pytestmark = pytest.mark.slow

MAX_ANSWER_BYTES = 64 * 1024
CALL_TIMEOUT_S = 20


async def call_raw(stack: Stack, tool: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The structured body and the text content of one tool call."""
    async with asyncio.timeout(CALL_TIMEOUT_S), Client(build_server(stack.service)) as client:
        result = await client.call_tool(tool, args)
    assert result.structured_content is not None, result.content
    text = result.content[0].text  # type: ignore[union-attr]
    return result.structured_content, text


def journal_bytes_of(stack: Stack, request_id: str) -> int:
    """Bytes the journal holds for one request: its request row and every record naming it."""
    record = stack.service.journal.get_request(request_id)
    assert record is not None
    return len(json.dumps(record.result)) + sum(len(json.dumps(r.body)) for r in record.records)


@pytest.mark.parametrize("count", [10_000, 100_000])
async def test_an_oversized_batch_is_answered_and_journaled_in_bounded_size(stack: Stack, count: int) -> None:
    item = {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}
    body, text = await call_raw(
        stack, "wsBatchAmendOrders", {"category": "linear", "request": [item] * count}
    )
    assert len(text.encode()) <= MAX_ANSWER_BYTES
    assert [r["code"] for r in body["reasons"]] == ["BATCH_TOO_LARGE"]
    assert body["outcome"] == "denied"
    assert body["itemsOmitted"] == count - len(body["items"])
    assert 0 < len(body["items"]) <= 20
    assert all("BATCH_TOO_LARGE" in [r["code"] for r in it["reasons"]] for it in body["items"])
    assert journal_bytes_of(stack, body["requestId"]) <= MAX_ANSWER_BYTES * 2
    assert stack.sent_items() == []


async def test_an_oversized_preview_is_bounded_too(stack: Stack) -> None:
    item = {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}
    body, text = await call_raw(
        stack, "previewBatchAmendOrders", {"category": "linear", "request": [item] * 10_000}
    )
    assert len(text.encode()) <= MAX_ANSWER_BYTES
    assert body["itemsOmitted"] == 10_000 - len(body["items"])


@pytest.mark.parametrize("field", ["symbol", "orderLinkId", "orderId"])
async def test_a_megabyte_string_is_invalid_field_and_never_echoed_whole(stack: Stack, field: str) -> None:
    huge = "A" * (1024 * 1024)
    item: dict[str, Any] = {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}
    item[field] = huge
    body, text = await call_raw(stack, "wsBatchAmendOrders", {"category": "linear", "request": [item]})
    assert len(text.encode()) <= MAX_ANSWER_BYTES
    assert "INVALID_FIELD" in [r["code"] for r in body["items"][0]["reasons"]]
    assert journal_bytes_of(stack, body["requestId"]) <= MAX_ANSWER_BYTES
    assert stack.sent_items() == []


async def test_an_over_long_id_is_invalid_field_not_missing(stack: Stack) -> None:
    body, _ = await call_raw(
        stack,
        "wsAmendOrder",
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "x" * 37, "price": "94500"},
    )
    codes = [r["code"] for r in body["items"][0]["reasons"]]
    assert "INVALID_FIELD" in codes and "MISSING_ORDER_ID" not in codes


# ------------------------------------------------------------------------------ 8. every request ends


@pytest.mark.parametrize("where", ["before_write", "after_write"])
async def test_an_exception_in_the_send_settles_the_request(stack: Stack, where: str) -> None:
    service = stack.service
    real_send = service.trade.send

    async def failing_send(req_id: str, frame: str, *, items: int | None = None) -> None:
        if where == "after_write":
            await real_send(req_id, frame, items=items)
        raise RuntimeError("socket layer failed")

    service.trade.send = failing_send  # type: ignore[method-assign]  # fault injection at the adapter edge
    body, _ = await call_raw(
        stack,
        "wsAmendOrder",
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
    )
    item = body["items"][0]
    # The sidecar cannot know whether a frame left when the socket layer raises: never `denied`
    # ("nothing was sent" could be a lie), never resent; the item is resolved by looking.
    if where == "before_write":
        assert item["outcome"] == "not_applied"  # the read-back proves the order unchanged
    else:
        assert item["outcome"] == "verified"  # the frame did leave and apply
    sent = [it.get("price") for it in stack.sent_items()]
    assert sent == ([] if where == "before_write" else ["94500"])  # sent at most once, never resent
    record = service.journal.get_request(body["requestId"])
    assert record is not None and record.result is not None
    assert record.result["outcome"] == body["outcome"]
    service.trade.send = real_send  # type: ignore[method-assign]
    again, _ = await call_raw(
        stack,
        "wsAmendOrder",
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94600"},
    )
    assert again["items"][0]["outcome"] == "verified", again


async def test_a_cancelled_send_still_settles_the_request(stack: Stack) -> None:
    service = stack.service
    real_send = service.trade.send
    entered = asyncio.Event()

    async def hanging_send(req_id: str, frame: str, *, items: int | None = None) -> None:
        entered.set()
        await asyncio.Event().wait()  # the socket never drains: the caller gives up

    service.trade.send = hanging_send  # type: ignore[method-assign]
    task = asyncio.create_task(
        service.submit(
            AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},))
        )
    )
    async with asyncio.timeout(CALL_TIMEOUT_S):
        await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    service.trade.send = real_send  # type: ignore[method-assign]
    [summary] = service.journal.last_requests(1)
    record = service.journal.get_request(summary.request_id)
    assert record is not None and record.result is not None  # a final record, not a dangling intent
    # The order is not left busy for ever: the next amend goes through.
    body, _ = await call_raw(
        stack,
        "wsAmendOrder",
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94200"},
    )
    assert body["items"][0]["outcome"] == "verified"


async def test_a_dead_event_task_answers_pending_calls_and_halts(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(tmp_path, verification={"timeout_ms": 60_000})
    stack = Stack(emu, service, config, orders)
    try:
        emu.add_faults([{"kind": "drop_order_events", "count": 5}, {"kind": "drop_ack", "count": 1}])
        sent = asyncio.Event()

        def on_frame(_msg: dict[str, Any]) -> bool:
            sent.set()
            return False

        intercept_amends(emu, on_frame)
        task = asyncio.create_task(
            call_raw(
                stack,
                "wsAmendOrder",
                {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
            )
        )
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await sent.wait()
        [events] = [t for t in service._tasks if t.get_name() == "events"]
        events.cancel()  # the event task dies (a bug, or anything else)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            body, _ = await task
        assert body["items"][0]["outcome"] == "unverified"
        assert service.trading_state()[0] is TradingState.HALTED
    finally:
        await stop_stack(emu, service)
