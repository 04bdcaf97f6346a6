"""When the order push is lost, the REST read-back decides (core/reconcile.py's rules), on a fake
clock moved past the read-back point (`rest_after_ms`, 1500 ms) or the answer deadline
(verification.timeout_ms: 3000 ms in these tests)."""

from __future__ import annotations

from decimal import Decimal

from sidecar.core.types import Category
from sidecar.testing import OrderQuery
from tests.service.kit import Rig, amend, codes, within


async def test_an_acked_amend_whose_push_is_lost_is_verified_by_the_read_back(rig: Rig) -> None:
    call = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()
    rig.exchange.trade.ack(sent.req_id)
    await rig.reached("after_ack")  # taken in at this fake time (the read-back counts from it)
    rig.exchange.change(rig.applied(1, price=Decimal("94050")), push=False)

    rig.advance(1_400)  # before the read-back point: nothing asked yet
    await rig.taken_in()
    assert rig.service.lookups.named("rest-query") == [] and rig.exchange.rest.queries == []
    rig.advance(200)
    result = await within(call)

    assert result.body["outcome"] == "verified", result.body
    assert rig.exchange.rest.queries == [OrderQuery(Category.LINEAR, "BTCUSDT", "oid-1", None)]


async def test_a_lost_ack_and_an_unchanged_order_past_the_recv_window_is_not_applied(rig: Rig) -> None:
    call = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()
    rig.exchange.trade.time_out(sent.req_id)  # no ack, no push: did it land?

    rig.advance(1_600)  # past sent_ts + recv_window (1000) + margin (200), and the read-back point
    result = await within(call)

    assert result.body["outcome"] == "not_applied", result.body
    assert len(rig.exchange.trade.sent) == 1  # looked, never resent
    # The order is free again: a new amend of it goes out.
    again = rig.submit(amend((1, "94060.0")))
    assert (await rig.next_sent()).amend_items[0]["orderId"] == "oid-1"
    again.cancel()


async def test_an_acked_amend_still_unchanged_at_the_deadline_is_unverified_and_keeps_the_order_busy(
    rig: Rig,
) -> None:
    call = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()
    rig.exchange.trade.ack(sent.req_id)
    await rig.reached("after_ack")  # taken in at this fake time (the read-back counts from it)

    rig.advance(1_600)
    await within(rig.exchange.rest.next_query())  # shows the old price: acked, so never not_applied
    rig.advance(1_600)  # past the answer deadline
    result = await within(call)

    assert result.body["outcome"] == "unverified", result.body
    busy = await within(rig.service.submit(amend((1, "94060.0"))))
    assert codes(busy) == {"ORDER_BUSY"}
    assert len(rig.exchange.trade.sent) == 1


async def test_a_verdict_reached_after_the_answer_is_journaled_for_get_amend_outcome(rig: Rig) -> None:
    call = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()
    rig.exchange.trade.ack(sent.req_id)
    await rig.reached("after_ack")  # taken in at this fake time (the read-back counts from it)
    rig.exchange.change(rig.applied(1, price=Decimal("94050")), push=False)

    rig.advance(3_100)  # straight past the deadline: answered unverified, then read back
    result = await within(call)
    assert result.body["outcome"] == "unverified"
    await rig.reached("before_verdict")  # the deadline's verdict
    await rig.reached("before_verdict")  # the read-back's, late

    stored = rig.service.outcome(result.body["requestId"])
    assert stored is not None
    assert stored["outcome"] == "verified", stored
    assert stored["reconciledLate"] is True
    # Settled: the order takes the next amend.
    again = rig.submit(amend((1, "94060.0")))
    assert (await rig.next_sent()).amend_items[0]["orderId"] == "oid-1"
    again.cancel()
