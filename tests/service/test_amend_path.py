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
