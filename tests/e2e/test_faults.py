"""One test per emulator fault kind (docs/emulator.md "Faults"), end to end through `Service.submit`.

Each test injects one fault into the real emulator, sends one amend and checks three promises:
the per-item outcome is the one the design gives for that fault (docs/verification.md), the
amend frame reached the emulator exactly once (DESIGN.md §3 "No blind resend": a sent item is
never sent again), and the journal holds every step in order (docs/journal.md; read back with
`Journal.steps`): request → intent → sent → ack | ack_timeout | connection_lost → order events /
REST read-backs → item outcome → final.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from sidecar.core.types import AmendRequest
from sidecar.journal.format import Step
from sidecar.mcp_server import build_server
from tests.e2e.e2e_kit import Stack, dec

pytestmark = pytest.mark.slow

AMEND_OPS = ("order.amend", "order.amend-batch")
# Every test here ends well inside the 3 s verification deadline of the e2e config.
TEST_TIMEOUT_S = 10


# ---------------------------------------------------------------------------------- helpers


async def submit(
    stack: Stack, items: Sequence[dict[str, Any]], *, batch: bool = True, category: str = "linear"
) -> dict[str, Any]:
    tool = "wsBatchAmendOrders" if batch else "wsAmendOrder"
    async with asyncio.timeout(TEST_TIMEOUT_S):
        result = await stack.service.submit(AmendRequest(category, tuple(items), batch=batch, tool=tool))
    return result.body


def btc_b1(price: str = "94500") -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": price}


def intent_of(stack: Stack, request_id: str) -> Step:
    [intent] = [st for st in trail(stack, request_id) if st.kind == "intent"]
    return intent


def trail(stack: Stack, request_id: str) -> list[Step]:
    """Every step of one request in the order it happened (the journal folds the steps of a sent
    request into the record that ends them; `Journal.steps` unfolds them)."""
    steps = stack.service.journal.steps(request_id)
    assert steps is not None, request_id
    return steps


def kinds(records: Sequence[Step]) -> list[str]:
    return [r.kind for r in records]


def first(records: Sequence[Step], kind: str) -> Step:
    return next(r for r in records if r.kind == kind)


def assert_in_order(records: Sequence[Step], expected: Sequence[str]) -> None:
    """`expected` kinds occur in this order (other records may sit in between)."""
    seen = kinds(records)
    pos = 0
    for kind in expected:
        assert kind in seen[pos:], f"{kind!r} missing after position {pos} in {seen}"
        pos = seen.index(kind, pos) + 1


def assert_common_steps(stack: Stack, body: dict[str, Any]) -> list[Step]:
    """request → intent → sent → … → one item_outcome per item → final; returns the trail."""
    records = trail(stack, body["requestId"])
    assert_in_order(records, ["request", "intent", "sent", "item_outcome", "final"])
    final = first(records, "final")
    outcomes = [r for r in records if r.kind == "item_outcome" and r.order < final.order]
    assert sorted(r.item_idx or 0 for r in outcomes) == [it["index"] for it in body["items"]]
    assert all(r.item_idx is not None for r in outcomes)
    for r in outcomes:
        assert r.body["outcome"] == body["items"][r.item_idx]["outcome"]
    intent = first(records, "intent")
    assert intent.order < first(records, "sent").order
    assert final.body == stack.service.outcome(body["requestId"])
    return records


def assert_sent_once(stack: Stack, body: dict[str, Any], *, total_amend_frames: int = 1) -> dict[str, Any]:
    """The request's reqId reached the emulator exactly once, and no other amend frame did."""
    req_id = intent_of(stack, body["requestId"]).req_id
    frames = [f for f in stack.emu.frames() if f.get("op") in AMEND_OPS]
    assert [f["reqId"] for f in frames].count(req_id) == 1, frames
    assert len(frames) == total_amend_frames, frames
    return next(f for f in frames if f["reqId"] == req_id)


def evidence(records: Sequence[Step], index: int = 0) -> str:
    return str(next(r for r in records if r.kind == "item_outcome" and r.item_idx == index).body["evidence"])


def assert_fault_used(stack: Stack) -> None:
    assert stack.emu.hub.faults.active() == [], "the injected fault never fired"


# ---------------------------------------------------------------------------------- delivery faults


async def test_drop_ack_is_verified_by_the_order_stream_after_the_ack_timeout(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "drop_ack", "count": 1}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"
    assert body["ack"] is None and item["exchangeCode"] is None
    assert dec(item["observed"]["price"]) == Decimal("94500")
    assert dec(stack.order("btc-b1")["price"]) == Decimal("94500")
    # Not answered before the ack deadline: without an ack, the push alone is not enough earlier.
    assert body["latencyMs"] >= stack.config.verification.ack_timeout_ms
    records = assert_common_steps(stack, body)
    assert evidence(records) == "order_stream"
    assert "ack" not in kinds(records)
    assert_in_order(records, ["sent", "order_event", "item_outcome"])
    assert_sent_once(stack, body)


async def test_drop_ack_journals_the_ack_timeout_before_the_verdict(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "drop_ack", "count": 1}])
    body = await submit(stack, [btc_b1()])
    assert body["items"][0]["outcome"] == "verified"
    # reliability.md §2.4 "every arrow is a journal record", §5.3 journal checker:
    # intent → sent → ack|timeout → events → verdict.
    assert_in_order(trail(stack, body["requestId"]), ["sent", "ack_timeout", "item_outcome", "final"])


async def test_delay_ack_within_the_ack_timeout_is_verified_with_the_ack(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "delay_ack", "count": 1, "ms": 300}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"
    assert body["ack"]["retCode"] == 0 and item["exchangeCode"] == 0
    assert body["latencyMs"] >= 300  # the ack decides when the push came first (verification.md rule 2)
    records = assert_common_steps(stack, body)
    assert evidence(records) == "order_stream"
    # The push went out at once, the ack 300 ms later.
    assert_in_order(records, ["sent", "order_event", "ack", "item_outcome", "final"])
    assert_sent_once(stack, body)


async def test_delay_ack_beyond_the_ack_timeout_is_verified_and_the_late_ack_changes_nothing(
    stack: Stack,
) -> None:
    stack.emu.add_faults([{"kind": "delay_ack", "count": 1, "ms": 800}])
    body = await submit(stack, [btc_b1()])
    [item] = body["items"]
    assert item["outcome"] == "verified"
    assert body["ack"] is None  # answered at the ack timeout (500 ms), before the ack (800 ms)
    records = assert_common_steps(stack, body)
    assert evidence(records) == "order_stream"
    assert_sent_once(stack, body)


async def test_drop_order_events_is_verified_by_rest_read_back(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "drop_order_events", "count": 1}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"
    assert item["exchangeCode"] == 0
    assert dec(item["observed"]["price"]) == Decimal("94500")
    records = assert_common_steps(stack, body)
    assert evidence(records) == "rest"
    assert_in_order(records, ["sent", "ack", "rest", "item_outcome", "final"])
    outcome = first(records, "item_outcome")
    assert "order_event" not in kinds([r for r in records if r.order < outcome.order])
    rest = first(records, "rest")
    assert rest.body["view"]["price"] == "94500"
    assert rest.body["view"]["orderLinkId"] == "btc-b1"
    assert_sent_once(stack, body)


async def test_delay_order_events_is_verified_when_the_push_arrives(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "delay_order_events", "count": 1, "ms": 300}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"
    assert body["latencyMs"] >= 300
    records = assert_common_steps(stack, body)
    assert evidence(records) == "order_stream"
    assert_in_order(records, ["sent", "ack", "order_event", "item_outcome", "final"])
    assert_sent_once(stack, body)


async def test_order_events_before_ack_are_held_until_the_ack(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "order_events_before_ack", "count": 1, "ms": 100}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"
    assert item["exchangeCode"] == 0
    records = assert_common_steps(stack, body)
    assert evidence(records) == "order_stream"
    assert_in_order(records, ["sent", "order_event", "ack", "item_outcome", "final"])
    assert_sent_once(stack, body)


async def test_duplicate_order_events_are_journaled_as_duplicates_and_change_nothing(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "duplicate_order_events", "count": 1}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"
    records = assert_common_steps(stack, body)
    events = [r for r in records if r.kind == "order_event"]
    assert [e.body["result"] for e in events[:2]] == ["applied", "duplicate"]
    assert events[0].body["view"] == events[1].body["view"]
    outcomes = [r for r in records if r.kind in ("item_outcome", "late_outcome")]
    assert [o.body["outcome"] for o in outcomes] == ["verified"]  # one verdict, never changed
    assert_sent_once(stack, body)


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("code", "msg", "batch"),
    [
        (110003, "order price is out of permissible range", True),
        (10001, "Params Error", True),
        (110003, "order price is out of permissible range", False),
        (10001, "Params Error", False),
    ],
    ids=["batch-110003", "batch-10001", "single-110003", "single-10001"],
)
async def test_reject_is_rejected_with_the_exchange_code(
    stack: Stack, code: int, msg: str, batch: bool
) -> None:
    stack.emu.add_faults([{"kind": "reject", "count": 1, "code": code, "msg": msg}])
    before = stack.order("btc-b1")
    body = await submit(stack, [btc_b1()], batch=batch)
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "rejected"
    assert item["exchangeCode"] == code
    assert item["exchangeMsg"] == msg
    assert item["reasons"] == []  # not a denial: the exchange refused
    assert body["outcome"] == "rejected"
    assert stack.order("btc-b1") == before  # nothing applied
    records = assert_common_steps(stack, body)
    assert evidence(records) == "ack"
    ack = first(records, "ack")
    if batch:
        assert ack.body["retCode"] == 0 and ack.body["items"][0]["code"] == code
    else:
        assert ack.body["retCode"] == code
    assert_in_order(records, ["sent", "ack", "item_outcome", "final"])
    assert_sent_once(stack, body)


@pytest.mark.parametrize(
    ("code", "batch"),
    [(10016, True), (20006, True), (10019, False), (110001, False)],
    ids=["batch-10016", "batch-20006", "single-10019", "single-110001"],
)
async def test_reject_with_an_ambiguous_code_is_looked_at_not_rejected(
    stack: Stack, code: int, batch: bool
) -> None:
    """10016/10019 (service restarting) and 20006 (duplicate reqId) do not say the amend failed;
    110001 "order not exists or too late to replace" does not say whether the order just closed:
    the item is looked at (REST), never reported `rejected`, never resent."""
    stack.emu.add_faults([{"kind": "reject", "count": 1, "code": code, "msg": "injected"}])
    before = stack.order("btc-b1")
    body = await submit(stack, [btc_b1()], batch=batch)
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "not_applied"  # the emulator applied nothing; proven after the recv window
    assert item["exchangeCode"] == code
    assert stack.order("btc-b1") == before
    records = assert_common_steps(stack, body)
    assert evidence(records) == "rest"
    assert_sent_once(stack, body)


async def test_reject_through_the_mcp_tool_is_an_error_result(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "reject", "count": 1, "code": 110003, "msg": "price out of range"}])
    async with asyncio.timeout(TEST_TIMEOUT_S), Client(build_server(stack.service)) as client:
        result = await client.call_tool(
            "wsAmendOrder",
            {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": 94500},
        )
    body = result.structured_content
    assert body is not None
    assert result.is_error is True
    assert body["items"][0]["outcome"] == "rejected"
    assert body["items"][0]["exchangeCode"] == 110003
    assert_sent_once(stack, body)


async def test_rate_limit_10006_is_not_applied_after_the_recv_window(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "rate_limit", "count": 1}])
    before = stack.order("btc-b1")
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    # 10006 is ambiguous: looked at, never retried; the emulator applied nothing, so once the
    # request can no longer be accepted (ts + recv_window + margin) the read-back proves not_applied.
    assert item["outcome"] == "not_applied"
    assert item["outcome"] not in ("verified", "rejected")
    assert item["exchangeCode"] == 10006
    assert body["ack"]["retCode"] == 10006
    assert dec(item["observed"]["price"]) == dec(before["price"])
    assert stack.order("btc-b1") == before
    records = assert_common_steps(stack, body)
    assert evidence(records) == "rest"
    assert_in_order(records, ["sent", "ack", "rest", "item_outcome", "final"])
    intent = first(records, "intent").body
    deciding_rest = [r for r in records if r.kind == "rest"][-1]
    margin_ms = stack.config.verification.not_applied_margin_ms
    assert deciding_rest.wall_ms > intent["sent_ts_ms"] + intent["recv_window_ms"] + margin_ms
    assert_sent_once(stack, body)


# ---------------------------------------------------------------------------------- disconnects


async def test_disconnect_trade_after_apply_is_verified_by_looking_never_by_resending(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "disconnect_trade", "count": 1}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"  # the emulator applied it before cutting the socket
    assert body["ack"] is None
    assert dec(stack.order("btc-b1")["price"]) == Decimal("94500")
    records = assert_common_steps(stack, body)
    assert evidence(records) == "order_stream"
    assert "connection_lost" in kinds(records)
    assert_sent_once(stack, body)


async def test_disconnect_private_loses_the_push_and_is_still_verified(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "disconnect_private", "count": 1}])
    body = await submit(stack, [btc_b1()])
    assert_fault_used(stack)
    [item] = body["items"]
    assert item["outcome"] == "verified"
    assert item["exchangeCode"] == 0
    assert dec(item["observed"]["price"]) == Decimal("94500")
    records = assert_common_steps(stack, body)
    # The push was lost with the socket; the proof is the reconnect snapshot or a REST read-back.
    assert evidence(records) in ("order_stream", "rest")
    assert_in_order(records, ["sent", "ack", "item_outcome", "final"])
    assert_sent_once(stack, body)


# ---------------------------------------------------------------------------------- races


@pytest.mark.parametrize(
    ("category", "link", "old_price", "code"),
    # Derivatives: "order not exists or too late to replace" (looked at); spot: "Order has been filled".
    [("linear", "btc-b1", "94000", 110001), ("spot", "spot-b1", "94000", 170139)],
    ids=["linear", "spot"],
)
async def test_fill_before_amend_is_superseded(
    stack: Stack, category: str, link: str, old_price: str, code: int
) -> None:
    stack.emu.add_faults([{"kind": "fill_before_amend", "count": 1}])
    item = {"symbol": "BTCUSDT", "orderLinkId": link, "price": "94500"}
    body = await submit(stack, [item], category=category)
    assert_fault_used(stack)
    [result] = body["items"]
    assert result["outcome"] == "superseded"
    assert result["exchangeCode"] == code
    order = stack.order(link)
    assert order["orderStatus"] == "Filled"
    assert dec(order["price"]) == Decimal(old_price)  # filled at its old price; the amend never applied
    assert result["observed"] is None or result["observed"]["orderStatus"] == "Filled"
    records = assert_common_steps(stack, body)
    assert evidence(records) in (("ack", "order_stream") if code != 110001 else ("order_stream", "rest"))
    assert_sent_once(stack, body)
