"""The failure modes of a WS order gateway (reference/reliability.md §2.2, §5.3), end to end.

Real emulator, real service, real journal. Each test recreates one failure (with the emulator's
fault plans, its control methods, or a hook on its trade-frame handler that acts "inside the
exchange") and checks the verdict the design promises (docs/verification.md), that nothing was
ever resent (DESIGN.md §3), and what the journal shows. Verdicts are checked against the
emulator's own order state (the independent witness), never only against the sidecar's view.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from sidecar.core.types import AmendRequest
from sidecar.emulator import Emulator
from sidecar.journal.format import Step
from sidecar.mcp_server import build_server
from sidecar.testing.stack import build_service
from tests.e2e.e2e_kit import AMEND_OPS, Stack, dec, intercept_amends, start_stack, stop_stack

pytestmark = pytest.mark.slow

TEST_TIMEOUT_S = 10


# ---------------------------------------------------------------------------------- helpers


async def submit(stack: Stack, items: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        result = await stack.service.submit(AmendRequest("linear", tuple(items)))
    return result.body, result.is_error


def records_of(stack: Stack, request_id: str) -> list[Step]:
    """Every step of the request in the order it happened (`Journal.steps`: the journal folds a
    sent request's steps, order events and read-backs included, into the record that ends them)."""
    steps = stack.service.journal.steps(request_id)
    assert steps is not None, request_id
    return steps


def req_id_of(stack: Stack, request_id: str) -> str:
    record = stack.service.journal.get_request(request_id)
    assert record is not None
    [intent] = [r for r in record.records if r.kind == "intent"]
    assert intent.req_id is not None
    return intent.req_id


def amend_frames(emu: Emulator) -> list[dict[str, Any]]:
    return [f for f in emu.frames() if f.get("op") in AMEND_OPS]


def assert_each_sent_once(stack: Stack, request_ids: Sequence[str]) -> None:
    """Every request's reqId reached the emulator once; no amend frame without a request."""
    sent = [f["reqId"] for f in amend_frames(stack.emu)]
    expected = [req_id_of(stack, rid) for rid in request_ids]
    assert sorted(sent) == sorted(expected), (sent, expected)


def item_evidence(records: Sequence[Step]) -> dict[int, str]:
    return {
        r.item_idx: r.body["evidence"] for r in records if r.kind == "item_outcome" and r.item_idx is not None
    }


def outcomes(body: dict[str, Any]) -> list[str]:
    return [it["outcome"] for it in body["items"]]


def emulator_cancel(emu: Emulator, symbol: str, link: str) -> None:
    """Cancel an order inside the emulator, as another client would, and push the event."""
    now_ms = time.time_ns() // 1_000_000
    result = emu.hub.exchange.cancel("linear", {"symbol": symbol, "orderLinkId": link}, now_ms)
    assert result.ok, result
    emu.hub.dispatch(emu.hub.exchange.drain())


class ShiftedClock:
    """The service's clock moved forward by `shift_ms` (monotonic only): every price the sidecar
    already holds looks that much older, independent of when the last 100 ms ticker arrived."""

    def __init__(self, base: Any, shift_ms: int) -> None:
        self._base = base
        self._shift_ns = shift_ms * 1_000_000

    def monotonic_ns(self) -> int:
        return int(self._base.monotonic_ns()) + self._shift_ns

    def wall_ms(self) -> int:
        return int(self._base.wall_ms())


# ---------------------------------------------------------------------------------- lost ack


async def test_lost_ack_and_lost_event_are_verified_by_rest(stack: Stack) -> None:
    """Ack dropped AND push dropped, amend applied: only a REST read-back can prove it."""
    stack.emu.add_faults([{"kind": "drop_ack", "count": 1}, {"kind": "drop_order_events", "count": 1}])
    body, is_error = await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}])
    assert not is_error
    assert outcomes(body) == ["verified"]
    assert body["ack"] is None
    assert dec(stack.order("btc-b1")["price"]) == Decimal("94500")
    records = records_of(stack, body["requestId"])
    assert item_evidence(records) == {0: "rest"}
    kinds = [r.kind for r in records]
    assert kinds.index("sent") < kinds.index("rest") < kinds.index("item_outcome") < kinds.index("final")
    assert_each_sent_once(stack, [body["requestId"]])


async def test_lost_frame_never_reaching_the_exchange_is_not_applied_after_the_recv_window(
    stack: Stack,
) -> None:
    """Ack dropped, amend NOT applied (the frame was lost before the exchange): `not_applied`, and
    only once the signed request could no longer be accepted. Nothing is resent."""
    lost: list[dict[str, Any]] = []

    def swallow(msg: dict[str, Any]) -> bool:
        lost.append(msg)
        return True

    intercept_amends(stack.emu, swallow)
    before = stack.order("btc-b1")
    body, _ = await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}])
    assert outcomes(body) == ["not_applied"]
    assert body["ack"] is None
    assert stack.order("btc-b1") == before
    assert len(lost) == 1  # exactly one frame ever left the sidecar for this request
    assert amend_frames(stack.emu) == []
    records = records_of(stack, body["requestId"])
    assert item_evidence(records) == {0: "rest"}
    intent = next(r for r in records if r.kind == "intent").body
    assert lost[0]["reqId"] == intent["req_id"]
    deciding = [r for r in records if r.kind == "rest"][-1]
    margin_ms = stack.config.verification.not_applied_margin_ms
    assert deciding.wall_ms > intent["sent_ts_ms"] + intent["recv_window_ms"] + margin_ms
    assert dec(deciding.body["view"]["price"]) == dec(before["price"])


# ---------------------------------------------------------------------------------- lost / early events


async def test_lost_order_event_for_one_item_of_a_batch(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "drop_order_events", "count": 1, "symbol": "ETHUSDT"}])
    body, is_error = await submit(
        stack,
        [
            {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
            {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "price": "3460"},
        ],
    )
    assert not is_error
    assert outcomes(body) == ["verified", "verified"]
    assert item_evidence(records_of(stack, body["requestId"])) == {0: "order_stream", 1: "rest"}
    assert dec(stack.order("eth-b1")["price"]) == Decimal("3460")
    assert_each_sent_once(stack, [body["requestId"]])


async def test_events_before_ack_for_a_batch_are_held_until_the_ack(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "order_events_before_ack", "count": 2, "ms": 150}])
    body, _ = await submit(
        stack,
        [
            {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
            {"symbol": "SOLUSDT", "orderLinkId": "sol-b1", "qty": "2"},
        ],
    )
    assert outcomes(body) == ["verified", "verified"]
    assert [it["exchangeCode"] for it in body["items"]] == [0, 0]
    assert body["latencyMs"] >= 150  # the ack decides; the early pushes alone did not
    records = records_of(stack, body["requestId"])
    ack = next(r for r in records if r.kind == "ack")
    events = [r for r in records if r.kind == "order_event" and r.order < ack.order]
    assert len(events) == 2
    assert all(r.order > ack.order for r in records if r.kind == "item_outcome")
    assert_each_sent_once(stack, [body["requestId"]])


async def test_duplicate_and_out_of_order_events_are_ignored(stack: Stack) -> None:
    """The amend's push (older updatedTime) is delayed and duplicated; a newer push for the same
    order (a partial fill, made inside the exchange right after the amend) overtakes it. The
    stale copies are journaled and change neither the verdict nor the sidecar's order view."""
    stack.emu.add_faults(
        [
            {"kind": "delay_order_events", "count": 1, "ms": 100, "symbol": "BTCUSDT"},
            {"kind": "duplicate_order_events", "count": 1, "symbol": "BTCUSDT"},
            {"kind": "delay_ack", "count": 1, "ms": 400},  # the verdict waits for the stale copies
        ]
    )
    order_id = stack.orders["btc-b1"]["orderId"]
    original = stack.emu.hub.on_trade_text

    def amend_then_fill(conn: Any, session: Any, text: str) -> None:
        original(conn, session, text)
        if '"order.amend-batch"' in text:
            stack.emu.fill_order(order_id, "0.004")  # a newer state, pushed at once

    stack.emu.hub.on_trade_text = amend_then_fill  # type: ignore[method-assign]
    body, _ = await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}])
    assert outcomes(body) == ["verified"]
    exchange = stack.order("btc-b1")
    assert exchange["orderStatus"] == "PartiallyFilled"
    observed = body["items"][0]["observed"]
    assert observed["updatedTime"] == exchange["updatedTime"]  # the newest state, not the stale one
    assert observed["orderStatus"] == "PartiallyFilled"
    records = records_of(stack, body["requestId"])
    verdict = next(r for r in records if r.kind == "item_outcome")
    events = [r for r in records if r.kind == "order_event" and r.order < verdict.order]
    results = [e.body["result"] for e in events]
    newest = max(int(e.body["view"]["updatedTime"]) for e in events)
    assert next(e.body["result"] for e in events if int(e.body["view"]["updatedTime"]) == newest) == "applied"
    stale = [e for e in events if int(e.body["view"]["updatedTime"]) < newest]
    assert len(stale) == 2, results  # the delayed amend push and its duplicate
    assert {e.body["result"] for e in stale} <= {"stale", "duplicate"}
    assert "stale" in {e.body["result"] for e in stale}
    state = stack.service.order_state("linear", "BTCUSDT", None, "btc-b1")
    assert state is not None
    assert dec(state["cumExecQty"]) == Decimal("0.004")
    assert state["updatedTime"] == exchange["updatedTime"]
    assert_each_sent_once(stack, [body["requestId"]])


# ---------------------------------------------------------------------------------- disconnect


async def test_disconnect_mid_batch_is_resolved_by_looking_and_never_replayed(stack: Stack) -> None:
    stack.emu.add_faults(
        [
            {"kind": "disconnect_trade", "count": 1},
            {"kind": "drop_order_events", "count": 1, "symbol": "SOLUSDT"},
        ]
    )
    body, is_error = await submit(
        stack,
        [
            {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
            {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "qty": "0.2"},
            {"symbol": "SOLUSDT", "orderLinkId": "sol-b1", "price": "177.5"},
        ],
    )
    assert not is_error
    assert outcomes(body) == ["verified"] * 3
    assert body["ack"] is None
    records = records_of(stack, body["requestId"])
    assert item_evidence(records) == {0: "order_stream", 1: "order_stream", 2: "rest"}
    assert "connection_lost" in [r.kind for r in records]
    assert dec(stack.order("sol-b1")["price"]) == Decimal("177.5")
    # After the reconnect nothing is replayed: the next amend frame is the next request's.
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await stack.service.trade.wait_ready()
    second, _ = await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94200"}])
    assert outcomes(second) == ["verified"]
    assert_each_sent_once(stack, [body["requestId"], second["requestId"]])
    conns = {f["connId"] for f in amend_frames(stack.emu)}
    assert len(conns) == 2  # the second request went over the new connection


async def test_amend_while_the_trade_socket_is_down_is_denied_and_nothing_is_sent(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "disconnect_trade", "count": 1}])
    first, _ = await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}])
    assert outcomes(first) == ["verified"]
    assert not stack.service.trade.ready  # reconnecting (backoff >= 250 ms)
    body, is_error = await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94200"}])
    assert is_error
    assert outcomes(body) == ["denied"]
    assert "EXCHANGE_UNAVAILABLE" in {r["code"] for r in body["items"][0]["reasons"]}
    assert body["ack"] is None
    assert dec(stack.order("btc-b2")["price"]) == Decimal("94100")
    assert [f["reqId"] for f in amend_frames(stack.emu)] == [req_id_of(stack, first["requestId"])]
    record = stack.service.journal.get_request(body["requestId"])
    assert record is not None
    kinds = [r.kind for r in record.records]
    assert "sent" not in kinds
    assert kinds.index("request") < kinds.index("intent") < kinds.index("not_sent") < kinds.index("final")


async def test_an_unsent_intent_is_not_reconciled_after_a_restart(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(tmp_path)
    stack = Stack(emu, service, config, orders)
    try:
        emu.add_faults([{"kind": "disconnect_trade", "count": 1}])
        await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}])
        body, _ = await submit(stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94200"}])
        assert outcomes(body) == ["denied"]  # nothing was sent (EXCHANGE_UNAVAILABLE)
        request_id = body["requestId"]
        await service.stop()
        service.journal.close()
        # A restart on the same journal (e.g. after a crash or a deploy).
        service = build_service(config, emu.url)
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await service.start()
        later = service.outcome(request_id)
        assert later is not None
        # What the agent was told ("denied, nothing was sent") must stay true and unchanged.
        assert later["items"][0]["outcome"] == "denied", later
        assert "EXCHANGE_UNAVAILABLE" in {r["code"] for r in later["items"][0]["reasons"]}
        record = service.journal.get_request(request_id)
        assert record is not None
        assert "rest" not in [r.kind for r in record.records]  # nothing to look up: it never left
    finally:
        await stop_stack(emu, service)


# ---------------------------------------------------------------------------------- partial batches


async def test_10006_for_the_tail_of_a_batch_gives_verified_and_not_applied(stack: Stack) -> None:
    """The exchange's quota fits two items: the first two apply, the rest get item code 10006
    (ambiguous → looked at → unchanged after the recv window → not_applied). Batch: partial."""
    stack.emu.set_rate_limit("order.amend-batch", "linear", 2)
    items = [
        {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
        {"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94200"},
        {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "price": "3460"},
        {"symbol": "SOLUSDT", "orderLinkId": "sol-b1", "price": "177.5"},
    ]
    before = {link: stack.order(link) for link in ("eth-b1", "sol-b1")}
    body, is_error = await submit(stack, items)
    assert outcomes(body) == ["verified", "verified", "not_applied", "not_applied"]
    assert body["outcome"] == "partial"
    assert not is_error  # verified + not_applied: no denied/throttled/rejected/unverified item
    assert [it["exchangeCode"] for it in body["items"]] == [0, 0, 10006, 10006]
    assert body["ack"]["retCode"] == 0
    assert dec(stack.order("btc-b1")["price"]) == Decimal("94500")
    assert dec(stack.order("btc-b2")["price"]) == Decimal("94200")
    for link, order in before.items():
        assert stack.order(link) == order  # the witness: really not applied
    evidence = item_evidence(records_of(stack, body["requestId"]))
    assert evidence[2] == evidence[3] == "rest"
    assert_each_sent_once(stack, [body["requestId"]])


async def test_partial_batch_with_exchange_refusals_after_validation(stack: Stack) -> None:
    """Valid for the sidecar, then changed inside the exchange before the amend lands: one order
    is cancelled by someone else (→ superseded), one is partly filled below the new qty
    (→ 110064 rejected); the third applies (→ verified)."""
    eth_id = stack.orders["eth-b1"]["orderId"]
    done: list[bool] = []

    def race(_msg: dict[str, Any]) -> bool:
        if not done:
            done.append(True)
            emulator_cancel(stack.emu, "BTCUSDT", "btc-b2")
            stack.emu.fill_order(eth_id, "0.06")
        return False

    intercept_amends(stack.emu, race)
    body, is_error = await submit(
        stack,
        [
            {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
            {"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94200"},
            {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "qty": "0.05"},
        ],
    )
    assert outcomes(body) == ["verified", "superseded", "rejected"]
    assert body["outcome"] == "partial"
    assert is_error  # a rejected item makes it an error result
    assert body["items"][1]["exchangeCode"] in (None, 110008)
    assert body["items"][2]["exchangeCode"] == 110064
    assert stack.order("btc-b2")["orderStatus"] == "Cancelled"
    assert dec(stack.order("eth-b1")["qty"]) == Decimal("0.1")
    assert_each_sent_once(stack, [body["requestId"]])


async def test_fill_before_amend_in_a_batch_is_superseded_for_that_item_only(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "fill_before_amend", "count": 1, "symbol": "ETHUSDT"}])
    body, is_error = await submit(
        stack,
        [
            {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
            {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "price": "3460"},
        ],
    )
    assert outcomes(body) == ["verified", "superseded"]
    assert body["outcome"] == "partial"
    assert not is_error
    assert body["items"][1]["exchangeCode"] == 110001  # "too late to replace": looked at, closed
    assert body["items"][1]["observed"]["orderStatus"] == "Filled"
    eth = stack.order("eth-b1")
    assert eth["orderStatus"] == "Filled"
    assert dec(eth["price"]) == Decimal("3450")
    assert_each_sent_once(stack, [body["requestId"]])


# ---------------------------------------------------------------------------------- fail closed


async def test_stale_reference_price_denies_and_sends_nothing(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(tmp_path, reference_price={"max_age_ms": 1})
    stack = Stack(emu, service, config, orders)
    try:
        # Quotes are vouched for by pings every 0.1 s here (the floor for max_age 1 ms); moving the
        # service's clock 5 ms on makes every price it holds older than 1 ms at validation, whenever
        # the last frame or pong arrived (deterministic).
        base = service.clock
        service.clock = ShiftedClock(base, 5)
        try:
            body, is_error = await submit(
                stack,
                [
                    {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
                    {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "qty": "0.2"},  # qty-only: still needs one
                ],
            )
        finally:
            service.clock = base
        assert is_error
        assert body["outcome"] == "denied"
        assert body["ack"] is None
        for it in body["items"]:
            assert "REFERENCE_PRICE_STALE" in {r["code"] for r in it["reasons"]}
        assert amend_frames(emu) == []
        record = service.journal.get_request(body["requestId"])
        assert record is not None
        assert [r.kind for r in record.records] == ["request", "verdict", "final"]
        assert dec(stack.order("btc-b1")["price"]) == Decimal("94000")
    finally:
        await stop_stack(emu, service)


# ---------------------------------------------------------------------------------- late verdict


async def test_unverified_at_the_deadline_is_reconciled_later(tmp_path: Path) -> None:
    """No ack and no push: at the (short) answer deadline the item is `unverified`; the background
    REST read-back proves it later, and getAmendOutcome shows the late verdict."""
    emu, service, config, orders = await start_stack(tmp_path, verification={"timeout_ms": 1000})
    stack = Stack(emu, service, config, orders)
    try:
        emu.add_faults([{"kind": "drop_ack", "count": 1}, {"kind": "drop_order_events", "count": 1}])
        body, is_error = await submit(
            stack, [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}]
        )
        assert is_error  # unverified is an error result: do not retry, ask later
        assert outcomes(body) == ["unverified"]
        request_id = body["requestId"]
        # The late verdict comes from a background read-back the test has no event for, so poll
        # the product's own read API (what an agent does with getAmendOutcome), bounded in time.
        async with asyncio.timeout(5):
            while True:
                later = service.outcome(request_id)
                assert later is not None
                if later["items"][0]["outcome"] != "unverified":
                    break
                await asyncio.sleep(0.05)
        assert later["items"][0]["outcome"] == "verified"
        assert later["outcome"] == "verified"
        assert later.get("reconciledLate") is True
        assert dec(later["items"][0]["observed"]["price"]) == Decimal("94500")
        async with asyncio.timeout(TEST_TIMEOUT_S), Client(build_server(service)) as client:
            result = await client.call_tool("getAmendOutcome", {"requestId": request_id})
        assert result.structured_content is not None
        assert result.structured_content["items"][0]["outcome"] == "verified"
        record = service.journal.get_request(request_id)
        assert record is not None
        # The answer, then a small delta for the late verdict (not the whole result again).
        assert [r.kind for r in record.records] == ["request", "intent", "final", "result_delta"]
        steps = records_of(stack, request_id)
        kinds = [r.kind for r in steps]
        assert kinds.index("item_outcome") < kinds.index("final") < kinds.index("late_outcome")
        assert kinds.index("late_outcome") < kinds.index("result_delta")
        first_answer = next(r for r in steps if r.kind == "final")
        assert first_answer.body["items"][0]["outcome"] == "unverified"  # append-only: kept as given
        late = next(r for r in steps if r.kind == "late_outcome")
        assert late.body["outcome"] == "verified" and late.body["evidence"] == "rest"
        assert service.journal.unfinished_intents() == []  # a restart would not look at it again
        assert_each_sent_once(stack, [request_id])
    finally:
        await stop_stack(emu, service)
