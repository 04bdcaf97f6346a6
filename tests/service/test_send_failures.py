"""Every way a send can fail still ends in one answer, one final record, and the order free for
the next amend (issue 9 item 8): the socket not ready, an exception in the send, the caller's
task cancelled during the send or while it waits."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import pytest

from sidecar.errors import NotConnected
from tests.service.kit import Rig, amend, codes, within


async def _next_amend_of_order_1_is_sent(rig: Rig) -> None:
    """The order is not left busy: a new amend of it goes out (then is left unanswered)."""
    call = rig.submit(amend((1, "94070.0")))
    sent = await rig.next_sent()
    assert sent.amend_items[0]["orderId"] == "oid-1"
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call


async def test_a_socket_not_ready_denies_exchange_unavailable_and_frees_the_order(rig: Rig) -> None:
    rig.exchange.trade.lose_connection()

    result = await within(rig.service.submit(amend((1, "94050.0"))))

    assert result.body["outcome"] == "denied"
    assert codes(result) == {"EXCHANGE_UNAVAILABLE"}
    assert rig.exchange.trade.sent == []
    request_id = result.body["requestId"]
    assert rig.records(request_id)[-2:] == ["not_sent", "final"]
    assert rig.journal.unfinished_intents() == []  # recovery will not look for a frame never sent
    rig.exchange.trade.connect()
    await _next_amend_of_order_1_is_sent(rig)


async def test_not_connected_raised_by_send_itself_is_handled_the_same(rig: Rig) -> None:
    rig.exchange.trade.fail_next_send(NotConnected("trade connection not ready"))

    result = await within(rig.service.submit(amend((1, "94050.0"))))

    assert codes(result) == {"EXCHANGE_UNAVAILABLE"}
    assert rig.journal.unfinished_intents() == []
    await _next_amend_of_order_1_is_sent(rig)


async def test_any_other_exception_in_send_is_resolved_by_looking_never_resent(rig: Rig) -> None:
    rig.exchange.trade.fail_next_send(RuntimeError("a bug at the adapter's edge"))

    call = rig.submit(amend((1, "94050.0")))
    await rig.reached("after_send")
    assert not call.done()  # a frame may have left: not denied, looked at
    rig.advance(1_600)  # the read-back shows the order unchanged after the recv window
    result = await within(call)

    assert result.body["outcome"] == "not_applied", result.body
    assert len(rig.exchange.trade.calls) == 1  # never resent
    rig.service.pending.commit_answers()  # a sent request's final is committed just after its answer
    assert rig.records(result.body["requestId"])[-1] == "final"
    await _next_amend_of_order_1_is_sent(rig)


@pytest.mark.parametrize("during", ["send", "wait"])
async def test_a_cancelled_caller_still_gets_its_request_settled_and_journaled(rig: Rig, during: str) -> None:
    stall = asyncio.Event()
    if during == "send":
        rig.exchange.trade.stall = stall  # the socket write has not returned when the caller goes
    call = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()
    held = rig.service.pending.of_req_id(sent.req_id)
    assert held is not None
    if during == "wait":
        await rig.reached("after_send")

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(call)
    stall.set()

    # The exchange applied it; the push was lost; the read-back finds it.
    rig.exchange.change(rig.applied(1, price=Decimal("94050")), push=False)
    rig.advance(1_600)
    await rig.reached("before_verdict")

    stored = rig.service.outcome(held.request_id)
    assert stored is not None
    assert stored["outcome"] == "verified", stored
    assert rig.journal.unfinished_intents() == []
    assert len(rig.exchange.trade.sent) == 1
    await _next_amend_of_order_1_is_sent(rig)
