"""One amend in flight per order: a second amend of an order whose first has not settled is
refused ORDER_BUSY and nothing of it is sent; once the first settles the order is free."""

from __future__ import annotations

from decimal import Decimal

from tests.service.kit import Rig, amend, codes, outcomes, within


async def test_a_second_amend_of_an_unsettled_order_is_order_busy_and_sends_nothing(rig: Rig) -> None:
    first = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()

    busy = await within(rig.service.submit(amend((1, "94060.0"))))
    assert codes(busy) == {"ORDER_BUSY"}
    assert busy.body["outcome"] == "denied"
    assert len(rig.exchange.trade.calls) == 1
    assert "intent" not in rig.records(busy.body["requestId"])

    # Another order in the same batch is not held up by the busy one: per-item verdicts, and the
    # default batch mode (all_or_nothing) refuses the whole batch, sending nothing.
    mixed = await within(rig.service.submit(amend((1, "94060.0"), (2, "94060.0"))))
    assert "ORDER_BUSY" in codes(mixed)
    assert outcomes(mixed) == ["denied", "denied"]
    assert len(rig.exchange.trade.calls) == 1

    rig.exchange.trade.ack(sent.req_id)
    rig.exchange.change(rig.applied(1, price=Decimal("94050")))
    assert (await within(first)).body["outcome"] == "verified"

    after = rig.submit(amend((1, "94060.0")))
    assert (await rig.next_sent()).amend_items[0]["price"] == "94060"
    rig.exchange.trade.ack(rig.exchange.trade.sent[-1].req_id)
    rig.exchange.change(rig.applied(1, price=Decimal("94060")))
    assert (await within(after)).body["outcome"] == "verified"


async def test_concurrent_amends_of_one_order_send_exactly_one(rig: Rig) -> None:
    calls = [rig.submit(amend((1, f"9405{i}.0"))) for i in range(5)]
    sent = await rig.next_sent()
    rig.exchange.trade.ack(sent.req_id)
    price = Decimal(sent.amend_items[0]["price"])
    rig.exchange.change(rig.applied(1, price=price))

    results = [await within(c) for c in calls]

    assert len(rig.exchange.trade.calls) == 1
    assert sorted(r.body["outcome"] for r in results) == ["denied"] * 4 + ["verified"]
    assert all(codes(r) == {"ORDER_BUSY"} for r in results if r.body["outcome"] == "denied")
