"""The amend path on a fake clock: write-ahead intent, proof by the order stream, proof by REST
when the push is lost, denials that send nothing."""

from __future__ import annotations

from decimal import Decimal

from sidecar.core.types import Category
from sidecar.testing import SentFrame
from tests.service.kit import Rig, amend, codes, outcomes, within


async def test_clean_amend_commits_the_intent_before_the_send_and_is_verified_by_the_push(rig: Rig) -> None:
    committed_at_send: list[list[str]] = []

    def before_write(sent: SentFrame) -> None:
        # What a crash at this instant would leave in the journal file.
        pending = rig.service.pending.of_req_id(sent.req_id)
        assert pending is not None
        committed_at_send.append(rig.records(pending.request_id))

    rig.exchange.trade.before_write = before_write
    call = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()

    assert sent.op == "order.amend-batch"
    assert sent.amend_items == [{"symbol": "BTCUSDT", "orderId": "oid-1", "price": "94050"}]
    assert committed_at_send == [["request", "intent"]]
    assert rig.points == ["after_intent", "after_send"]
    assert not call.done()  # an ack alone proves nothing

    rig.exchange.trade.ack(sent.req_id)
    rig.exchange.change(rig.applied(1, price=Decimal("94050.0")))
    result = await within(call)

    assert result.body["outcome"] == "verified", result.body
    assert not result.is_error
    assert rig.points == ["after_intent", "after_send", "after_ack", "before_verdict"]
    rig.service.pending.commit_answers()  # a sent request's final is committed just after its answer
    assert rig.records(result.body["requestId"])[-1] == "final"
    assert rig.service.book.find(Category.LINEAR, "BTCUSDT", "oid-1", None) == rig.order_now(1)
    assert rig.exchange.rest.queries == []  # the push proved it: no read-back


async def test_a_denial_sends_nothing_and_journals_one_final_record(rig: Rig) -> None:
    result = await within(rig.service.submit(amend((1, "90000.0"))))  # far outside the 150 bps band

    assert result.body["outcome"] == "denied"
    assert result.is_error
    assert codes(result) == {"PRICE_OUT_OF_BAND"}
    assert rig.exchange.trade.calls == []
    kinds = rig.records(result.body["requestId"])
    assert "intent" not in kinds
    assert kinds.count("final") == 1
    assert rig.points == []
    assert outcomes(result) == ["denied"]


async def test_a_batch_gets_one_verdict_per_item_from_the_exchange_s_own_codes(rig: Rig) -> None:
    call = rig.submit(amend((1, "94050.0"), (2, "94050.0"), (3, "94050.0")))
    sent = await rig.next_sent()
    assert [it["orderId"] for it in sent.amend_items] == ["oid-1", "oid-2", "oid-3"]
    assert sent.items == 3

    # Item 2: a definitive refusal; item 3: the order was already closed; item 1: applied.
    rig.exchange.trade.ack(sent.req_id, [0, 10001, 110008])
    rig.exchange.change(rig.applied(1, price=Decimal("94050")))
    result = await within(call)

    assert outcomes(result) == ["verified", "rejected", "superseded"]
    assert result.body["outcome"] == "partial"
    assert [item["exchangeCode"] for item in result.body["items"]] == [0, 10001, 110008]
    # Every item settled: each order takes its next amend.
    for n in (1, 2, 3):
        again = rig.submit(amend((n, "94060.0")))
        assert (await rig.next_sent()).amend_items[0]["orderId"] == f"oid-{n}"
        again.cancel()


async def test_a_single_amend_whose_push_arrives_before_its_ack_is_verified_once_acked(rig: Rig) -> None:
    call = rig.submit(amend((1, "94050.0"), batch=False))
    sent = await rig.next_sent()
    assert sent.op == "order.amend"
    assert sent.items is None

    # The private stream was faster: the push reaches the event queue before the ack (one queue,
    # so the service takes them in this order) and is held until the ack says what happened.
    rig.exchange.change(rig.applied(1, price=Decimal("94050")))
    rig.exchange.trade.ack(sent.req_id)
    result = await within(call)

    assert result.body["outcome"] == "verified", result.body
    assert rig.exchange.rest.queries == []


async def test_a_lost_trade_connection_leaves_the_sent_amend_to_be_looked_at(rig: Rig) -> None:
    call = rig.submit(amend((1, "94050.0")))
    sent = await rig.next_sent()
    assert rig.exchange.trade.lose_connection() == (sent.req_id,)
    rig.exchange.change(rig.applied(1, price=Decimal("94050")), push=False)  # it had landed

    rig.advance(1_600)
    result = await within(call)

    assert result.body["outcome"] == "verified", result.body
    assert len(rig.exchange.rest.queries) == 1
    assert len(rig.exchange.trade.calls) == 1  # looked, never resent


async def test_a_stale_reference_price_denies_and_a_fresh_one_allows(rig: Rig) -> None:
    rig.clock.advance_ms(2_500)  # past reference_price.max_age_ms, no ticker, no pong

    stale = await within(rig.service.submit(amend((1, "94050.0"))))
    assert codes(stale) == {"REFERENCE_PRICE_STALE"}
    assert rig.exchange.trade.calls == []

    rig.exchange.market.ticker(Category.LINEAR, "BTCUSDT", Decimal("94100"))
    preview = await within(rig.service.preview(amend((1, "94050.0"))))
    assert preview.body["outcome"] == "allowed"
