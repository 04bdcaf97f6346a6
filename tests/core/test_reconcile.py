"""Unit tests for core/reconcile.py: one test per rule or transition, with time passed in by hand."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from sidecar.core.reconcile import (
    TRANSITIONS,
    ItemEvent,
    ItemResult,
    ItemState,
    QueryOrder,
    Reconciler,
    ReconcileSettings,
    TrackedItem,
)
from sidecar.core.types import Ack, AckItem, AmendItem, Category, CodeClass, OrderView, Outcome, Side

MS = 1_000_000
T0_NS = 10_000 * MS  # monotonic time of the send
SENT_TS_MS = 1_700_000_000_000  # wall time stamped on the request
RECV_WINDOW_MS = 5000
BEFORE_UPDATED_MS = SENT_TS_MS - 60_000
SETTINGS = ReconcileSettings()
NOT_APPLIED_AFTER_MS = SENT_TS_MS + RECV_WINDOW_MS + SETTINGS.not_applied_margin_ms


def view(
    order_id: str = "o1",
    price: str = "100",
    qty: str = "1",
    status: str = "New",
    updated_ms: int = SENT_TS_MS + 10,
    link: str = "",
    symbol: str = "BTCUSDT",
    take_profit: str | None = None,
) -> OrderView:
    return OrderView(
        category=Category.LINEAR,
        symbol=symbol,
        order_id=order_id,
        order_link_id=link,
        side=Side.BUY,
        price=Decimal(price),
        qty=Decimal(qty),
        leaves_qty=Decimal(qty),
        cum_exec_qty=Decimal(0),
        order_status=status,
        updated_time_ms=updated_ms,
        take_profit=Decimal(take_profit) if take_profit is not None else None,
    )


BEFORE = view(price="100", qty="1", updated_ms=BEFORE_UPDATED_MS)


def tracked(
    index: int = 0,
    order_id: str | None = "o1",
    link: str | None = None,
    before: OrderView | None = BEFORE,
    **values: str,
) -> TrackedItem:
    vals = values or {"price": "101"}
    return TrackedItem(
        index=index,
        category=Category.LINEAR,
        item=AmendItem(
            symbol="BTCUSDT",
            order_id=order_id,
            order_link_id=link,
            values={k: Decimal(v) for k, v in vals.items()},
        ),
        before=before,
    )


def ack_item(code: int = 0, cls: CodeClass = CodeClass.SUCCESS, order_id: str = "") -> AckItem:
    return AckItem(code=code, msg="OK" if code == 0 else f"err {code}", cls=cls, order_id=order_id)


def ack(*items: AckItem, req_id: str = "q1", ret_code: int = 0, cls: CodeClass = CodeClass.SUCCESS) -> Ack:
    return Ack(
        req_id=req_id,
        op="order.amend-batch",
        ret_code=ret_code,
        ret_msg="OK" if ret_code == 0 else f"batch err {ret_code}",
        cls=cls,
        items=items,
    )


def start(*items: TrackedItem, settings: ReconcileSettings = SETTINGS) -> Reconciler:
    r = Reconciler(settings)
    r.track("r1", "q1", items or (tracked(),), SENT_TS_MS, RECV_WINDOW_MS, T0_NS)
    return r


def at(ms: int) -> int:
    """Monotonic ns `ms` after the send."""
    return T0_NS + ms * MS


def wall(ms: int) -> int:
    return SENT_TS_MS + ms


def only(results: list[ItemResult]) -> ItemResult:
    assert len(results) == 1, results
    return results[0]


# --- the table --------------------------------------------------------------------------------


def test_terminal_states_have_no_outgoing_transitions() -> None:
    """Rule 3: terminal verdicts never change."""
    terminal = {
        ItemState.VERIFIED,
        ItemState.REJECTED,
        ItemState.SUPERSEDED,
        ItemState.NOT_APPLIED,
        ItemState.EXPIRED,
    }
    assert not [k for k in TRANSITIONS if k[0] in terminal]


def test_every_live_state_handles_both_deadlines() -> None:
    """Rule 7: no live state can miss the answer or background deadline."""
    live = (ItemState.SENT, ItemState.SENT_SEEN, ItemState.ACKED, ItemState.AMBIGUOUS, ItemState.REFUSED)
    for state in live:
        assert TRANSITIONS[(state, ItemEvent.ANSWER_DEADLINE)] is state
        assert TRANSITIONS[(state, ItemEvent.BACKGROUND_DEADLINE)] is ItemState.EXPIRED


def test_not_applied_is_reachable_only_from_ambiguous_or_refused_by_a_rest_read_back() -> None:
    """Rule 5 in the table itself."""
    into = [k for k, v in TRANSITIONS.items() if v is ItemState.NOT_APPLIED]
    assert into == [
        (ItemState.AMBIGUOUS, ItemEvent.REST_UNCHANGED_LATE),
        (ItemState.REFUSED, ItemEvent.REST_UNCHANGED_LATE),
    ]


def test_a_refused_item_is_never_verified_in_the_table() -> None:
    """Rule 2 in the table itself: no path from REFUSED leads to VERIFIED."""
    assert all(
        v is not ItemState.VERIFIED for (state, _), v in TRANSITIONS.items() if state is ItemState.REFUSED
    )


def test_settings_reject_an_answer_deadline_after_the_background_deadline() -> None:
    with pytest.raises(ValueError, match="verify_timeout_ms"):
        ReconcileSettings(verify_timeout_ms=10_000, background_timeout_ms=5_000)
    with pytest.raises(ValueError, match=">= 0"):
        ReconcileSettings(skew_ms=-1)


# --- ack first, then evidence -------------------------------------------------------------------


def test_ack_zero_then_matching_push_is_verified_by_the_order_stream() -> None:
    """Bybit: the ack is acknowledgment only; the push proves it."""
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    assert r.finished() == []
    assert r.state_of("r1", 0) is ItemState.ACKED
    pushed = view(price="101")
    r.on_order_update(pushed, at(6))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.exchange_code, res.late) == (
        Outcome.VERIFIED,
        "order_stream",
        0,
        False,
    )
    assert res.observed == pushed
    assert r.is_request_done("r1") and r.is_request_settled("r1") and r.in_flight_count() == 0


def test_ack_zero_alone_never_verifies() -> None:
    """Rule 1: retCode 0 is not success."""
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.tick(at(SETTINGS.verify_timeout_ms), wall(SETTINGS.verify_timeout_ms))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.late) == (Outcome.UNVERIFIED, "deadline", False)


def test_a_push_not_at_target_does_not_verify() -> None:
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="100.5"), at(6))
    assert r.finished() == []
    assert r.state_of("r1", 0) is ItemState.ACKED


def test_every_target_field_must_match() -> None:
    r = start(tracked(price="101", qty="2"))
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="101", qty="1"), at(6))
    assert r.finished() == []
    r.on_order_update(view(price="101.0", qty="2.000", updated_ms=SENT_TS_MS + 20), at(7))
    assert only(r.finished()).outcome is Outcome.VERIFIED  # compared as Decimals


def test_removing_a_take_profit_with_zero_matches_an_unset_take_profit() -> None:
    """Bybit: takeProfit "0" removes the TP; the order then shows none."""
    r = start(tracked(takeProfit="0"))
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(take_profit=None), at(6))
    assert only(r.finished()).outcome is Outcome.VERIFIED


# --- evidence before the ack (Rule 2) -----------------------------------------------------------


def test_push_before_ack_is_held_and_the_ack_verifies() -> None:
    """Real world possibility: trade socket and private stream race."""
    r = start()
    pushed = view(price="101")
    r.on_order_update(pushed, at(2))
    assert r.finished() == []
    assert r.state_of("r1", 0) is ItemState.SENT_SEEN
    r.on_ack(ack(ack_item()), at(5))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.observed, res.exchange_code) == (
        Outcome.VERIFIED,
        "order_stream",
        pushed,
        0,
    )


def test_push_before_ack_verifies_at_ack_timeout_when_no_ack_comes() -> None:
    r = start()
    r.on_order_update(view(price="101"), at(2))
    r.tick(at(SETTINGS.ack_timeout_ms - 1), wall(SETTINGS.ack_timeout_ms - 1))
    assert r.finished() == []
    r.tick(at(SETTINGS.ack_timeout_ms), wall(SETTINGS.ack_timeout_ms))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.exchange_code) == (Outcome.VERIFIED, "order_stream", None)


def test_push_before_a_rejecting_ack_is_rejected() -> None:
    """The venue's word on our own request wins over a look-alike change."""
    r = start()
    r.on_order_update(view(price="101"), at(2))
    r.on_ack(ack(ack_item(110003, CodeClass.REJECTED)), at(5))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.exchange_code) == (Outcome.REJECTED, "ack", 110003)


def test_no_read_back_is_sent_while_target_evidence_waits_for_the_ack() -> None:
    r = start()
    r.on_order_update(view(price="101"), at(2))
    r.tick(at(SETTINGS.rest_after_ms), wall(SETTINGS.rest_after_ms))
    assert r.effects() == []


# --- definitive codes -----------------------------------------------------------------------------


def test_rejected_item_code_is_final_at_once_without_evidence() -> None:
    r = start()
    r.on_ack(ack(ack_item(110003, CodeClass.REJECTED)), at(5))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.exchange_code, res.exchange_msg) == (
        Outcome.REJECTED,
        "ack",
        110003,
        "err 110003",
    )
    r.on_order_update(view(price="101"), at(6))  # later look-alike changes nothing
    assert r.finished() == []


def test_batch_level_error_applies_to_every_item() -> None:
    r = start(tracked(0, "o1"), tracked(1, "o2"))
    r.on_ack(ack(ret_code=10001, cls=CodeClass.REJECTED), at(5))
    results = r.finished()
    assert [(x.index, x.outcome, x.exchange_code) for x in results] == [
        (0, Outcome.REJECTED, 10001),
        (1, Outcome.REJECTED, 10001),
    ]


def test_batch_level_rate_limit_makes_every_item_refused_and_looked_at() -> None:
    r = start(tracked(0, "o1"), tracked(1, "o2"))
    r.on_ack(ack(ret_code=10006, cls=CodeClass.RATE_LIMITED), at(5))
    assert r.finished() == []
    assert r.state_of("r1", 0) is r.state_of("r1", 1) is ItemState.REFUSED


def test_fill_before_amend_order_closed_code_then_filled_push_is_superseded_once() -> None:
    """Bybit 110008 'order already completed or cancelled' crossed with a Filled push."""
    r = start()
    r.on_ack(ack(ack_item(110008, CodeClass.ORDER_CLOSED)), at(5))
    res = only(r.finished())
    assert (res.outcome, res.evidence) == (Outcome.SUPERSEDED, "ack")
    r.on_order_update(view(price="100", status="Filled"), at(6))
    assert r.finished() == []


def test_filled_push_before_the_ack_is_superseded_and_the_ack_changes_nothing() -> None:
    r = start()
    filled = view(price="100", status="Filled")
    r.on_order_update(filled, at(2))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.observed) == (Outcome.SUPERSEDED, "order_stream", filled)
    r.on_ack(ack(ack_item(110008, CodeClass.ORDER_CLOSED)), at(5))
    assert r.finished() == []


def test_filled_at_the_new_price_after_an_accepted_amend_is_verified() -> None:
    """The amend applied, then the order filled at the amended price (change visible vs before)."""
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="101", status="Filled"), at(6))
    assert only(r.finished()).outcome is Outcome.VERIFIED


def test_closed_order_at_target_with_unknown_before_is_superseded_not_verified() -> None:
    """Rule 6: without the pre-amend values a closed order cannot prove the change."""
    r = start(tracked(before=None))
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="101", status="Cancelled"), at(6))
    assert only(r.finished()).outcome is Outcome.SUPERSEDED


def test_a_postonly_amend_the_engine_cancelled_is_superseded_not_verified() -> None:
    """A crossing PostOnly amend: Cancelled with EC_PostOnlyWillTakeLiquidity, even when the push
    shows the new price (which price it shows is UNCONFIRMED): the order is gone, not amended."""
    for seen_price in ("101", "100"):
        r = start()
        r.on_ack(ack(ack_item()), at(5))
        killed = replace(
            view(price=seen_price, status="Cancelled"), reject_reason="EC_PostOnlyWillTakeLiquidity"
        )
        r.on_order_update(killed, at(6))
        res = only(r.finished())
        assert (res.outcome, res.observed) == (Outcome.SUPERSEDED, killed)


def test_the_double_filled_push_of_a_lost_race_is_superseded_once() -> None:
    """Ack 0, then the fill wins: `Filled` (EC_NoError) and the refused request's own `Filled`."""
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    fill = view(price="100", status="Filled", updated_ms=SENT_TS_MS + 20)
    r.on_order_update(fill, at(6))
    r.on_order_update(replace(fill, reject_reason="EC_OrigClOrdIDDoesNotExist"), at(6))
    res = only(r.finished())
    assert (res.outcome, res.observed) == (Outcome.SUPERSEDED, fill)
    assert r.finished() == []


# --- partial batches ------------------------------------------------------------------------------


def test_partial_batch_gets_one_verdict_per_item() -> None:
    """retCode 0 with mixed retExtInfo.list codes."""
    r = start(tracked(0, "o1"), tracked(1, "o2"), tracked(2, "o3", before=replace(BEFORE, order_id="o3")))
    r.on_ack(
        ack(
            ack_item(0, order_id="o1"),
            ack_item(110001, CodeClass.REJECTED),
            ack_item(10006, CodeClass.RATE_LIMITED),
        ),
        at(5),
    )
    assert [(x.index, x.outcome) for x in r.finished()] == [(1, Outcome.REJECTED)]
    assert r.state_of("r1", 0) is ItemState.ACKED
    assert r.state_of("r1", 2) is ItemState.REFUSED
    assert not r.is_request_done("r1")
    assert r.pending_requests() == {"r1"}
    r.on_order_update(view("o1", price="101"), at(6))
    assert [(x.index, x.outcome) for x in r.finished()] == [(0, Outcome.VERIFIED)]
    # The 10006 item is resolved by looking: unchanged after the recv window -> not applied.
    r.tick(at(SETTINGS.rest_after_ms + 5), wall(SETTINGS.rest_after_ms + 5))
    (q,) = r.effects()
    assert (q.order_id, q.index) == ("o3", 2)
    unchanged = view("o3", price="100", updated_ms=BEFORE_UPDATED_MS)
    r.on_rest_result(q, unchanged, at(1600), NOT_APPLIED_AFTER_MS + 1)
    assert [(x.index, x.outcome, x.exchange_code) for x in r.finished()] == [(2, Outcome.NOT_APPLIED, 10006)]
    assert r.is_request_settled("r1")


def test_10006_item_is_looked_at_and_never_resent() -> None:
    """Nautilus treats 10006 as ambiguous; the sidecar looks instead of retrying."""
    r = start()
    r.on_ack(ack(ack_item(10006, CodeClass.RATE_LIMITED)), at(5))
    assert r.state_of("r1", 0) is ItemState.REFUSED
    r.tick(at(SETTINGS.rest_after_ms + 5), wall(SETTINGS.rest_after_ms + 5))
    effects = r.effects()
    assert effects and all(isinstance(e, QueryOrder) for e in effects)


def test_ack_item_whose_echoed_order_id_contradicts_the_position_is_ambiguous() -> None:
    r = start()
    r.on_ack(ack(ack_item(0, order_id="someone-else")), at(5))
    assert r.state_of("r1", 0) is ItemState.AMBIGUOUS


def test_item_missing_from_the_ack_is_ambiguous() -> None:
    r = start(tracked(0, "o1"), tracked(1, "o2"))
    r.on_ack(ack(ack_item()), at(5))
    assert r.state_of("r1", 0) is ItemState.ACKED
    assert r.state_of("r1", 1) is ItemState.AMBIGUOUS


def test_ack_for_an_unknown_req_id_is_ignored() -> None:
    r = start()
    r.on_ack(ack(ack_item(110003, CodeClass.REJECTED), req_id="other"), at(5))
    assert r.finished() == [] and r.state_of("r1", 0) is ItemState.SENT


# --- lost acks and disconnects ----------------------------------------------------------------------


def test_disconnect_mid_batch_then_pushes_verify_each_item() -> None:
    r = start(tracked(0, "o1"), tracked(1, "o2"))
    r.on_ack_missing("q1", at(50))
    assert r.state_of("r1", 0) is r.state_of("r1", 1) is ItemState.AMBIGUOUS
    r.on_order_update(view("o2", price="101"), at(60))
    res = only(r.finished())
    assert (res.index, res.outcome, res.exchange_code) == (1, Outcome.VERIFIED, None)
    assert r.state_of("r1", 0) is ItemState.AMBIGUOUS


def test_ack_timeout_makes_items_ambiguous_and_the_overdue_read_back_goes_out() -> None:
    r = start(settings=ReconcileSettings(rest_after_ms=4000))
    r.tick(at(SETTINGS.ack_timeout_ms - 1), wall(SETTINGS.ack_timeout_ms - 1))
    assert r.state_of("r1", 0) is ItemState.SENT
    assert r.next_deadline_ns() == at(SETTINGS.ack_timeout_ms)
    r.tick(at(SETTINGS.ack_timeout_ms), wall(SETTINGS.ack_timeout_ms))
    assert r.state_of("r1", 0) is ItemState.AMBIGUOUS
    assert r.effects() == []
    r.tick(at(4000), wall(4000))
    assert len(r.effects()) == 1


def test_late_ack_zero_after_timeout_blocks_not_applied() -> None:
    """Rule 4: once the venue said 0, an unchanged read-back never means not applied."""
    r = start()
    r.on_ack_missing("q1", at(10))
    r.on_ack(ack(ack_item()), at(20))
    assert r.state_of("r1", 0) is ItemState.ACKED
    r.tick(at(2000), wall(2000))
    (q,) = r.effects()
    r.on_rest_result(q, view(price="100"), at(2100), NOT_APPLIED_AFTER_MS + 10_000)
    assert r.finished() == []
    assert r.state_of("r1", 0) is ItemState.ACKED


def test_late_rejecting_ack_after_timeout_is_rejected() -> None:
    r = start()
    r.tick(at(SETTINGS.ack_timeout_ms), wall(SETTINGS.ack_timeout_ms))
    r.on_ack(ack(ack_item(110003, CodeClass.REJECTED)), at(SETTINGS.ack_timeout_ms + 1))
    assert only(r.finished()).outcome is Outcome.REJECTED


# --- REST fallback ------------------------------------------------------------------------------


def test_acked_item_without_push_is_verified_by_rest_read_back() -> None:
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.tick(at(SETTINGS.rest_after_ms), wall(SETTINGS.rest_after_ms))
    assert r.effects() == []  # the read-back waits rest_after_ms from the ack
    r.tick(at(SETTINGS.rest_after_ms + 5), wall(SETTINGS.rest_after_ms + 5))
    (q,) = r.effects()
    assert q == QueryOrder(Category.LINEAR, "BTCUSDT", "o1", None, "r1", 0)
    r.on_rest_result(q, view(price="101"), at(1600), wall(1600))
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.exchange_code) == (Outcome.VERIFIED, "rest", 0)


def test_acked_unchanged_read_back_queries_again_until_unverified() -> None:
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.tick(at(1505), wall(1505))
    (q,) = r.effects()
    r.on_rest_result(q, view(price="100"), at(1510), wall(1510))
    assert r.finished() == []
    assert r.next_deadline_ns() == at(1510 + SETTINGS.rest_retry_ms)
    r.tick(at(2510), wall(2510))
    assert len(r.effects()) == 1
    r.tick(at(SETTINGS.verify_timeout_ms), wall(SETTINGS.verify_timeout_ms))
    assert only(r.finished()).outcome is Outcome.UNVERIFIED


def test_lost_read_back_is_asked_again_after_the_query_timeout() -> None:
    r = start(settings=ReconcileSettings(rest_query_timeout_ms=500))
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    assert len(r.effects()) == 1
    r.tick(at(1999), wall(1999))
    assert r.effects() == []
    r.tick(at(2000), wall(2000))
    assert len(r.effects()) == 1


def test_rest_error_retries_after_rest_retry_ms() -> None:
    r = start()
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    r.on_rest_error(q, at(1600))
    r.tick(at(2599), wall(2599))
    assert r.effects() == []
    r.tick(at(2600), wall(2600))
    assert r.effects() == [q]


def test_rest_not_found_keeps_querying_without_a_verdict() -> None:
    """Not found proves nothing by itself (it may be an id mix-up or history lag)."""
    r = start()
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    r.on_rest_result(q, None, at(1600), NOT_APPLIED_AFTER_MS + 1)
    assert r.finished() == []
    r.tick(at(2600), wall(2600))
    assert r.effects() == [q]


def test_rest_not_found_after_a_closed_state_is_superseded() -> None:
    r = start(tracked(before=replace(BEFORE, order_status="Cancelled")))
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    r.on_rest_result(q, None, at(1600), wall(1600))
    assert only(r.finished()).outcome is Outcome.SUPERSEDED


def test_rest_fallback_off_sends_no_read_backs() -> None:
    r = start(settings=ReconcileSettings(rest_fallback=False))
    r.on_ack_missing("q1", at(1))
    for ms in range(0, 70_000, 500):
        r.tick(at(ms), wall(ms))
        assert r.effects() == []
    assert [x.outcome for x in r.finished()] == [Outcome.UNVERIFIED]


def test_stale_rest_snapshot_older_than_the_stream_is_inconclusive() -> None:
    r = start()
    r.on_ack_missing("q1", at(1))
    r.on_order_update(view(price="100", updated_ms=SENT_TS_MS + 500), at(2))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    r.on_rest_result(q, view(price="100", updated_ms=SENT_TS_MS + 100), at(1600), NOT_APPLIED_AFTER_MS + 1)
    assert r.finished() == []


def test_rest_view_of_another_order_is_ignored() -> None:
    r = start()
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    r.on_rest_result(q, view("o9", price="101"), at(1600), wall(1600))
    assert r.finished() == []


# --- not_applied ---------------------------------------------------------------------------------


def test_not_applied_only_after_recv_window_and_margin() -> None:
    """reliability.md §2.1: a lost request can be accepted until sent_ts + recv_window."""
    r = start()
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    unchanged = view(price="100", updated_ms=BEFORE_UPDATED_MS)
    r.on_rest_result(q, unchanged, at(1600), NOT_APPLIED_AFTER_MS)  # exactly at the edge
    assert r.finished() == []
    assert r.state_of("r1", 0) is ItemState.AMBIGUOUS
    r.tick(at(2600), wall(2600))
    (q2,) = r.effects()
    r.on_rest_result(q2, unchanged, at(2700), NOT_APPLIED_AFTER_MS + 1)
    res = only(r.finished())
    assert (res.outcome, res.evidence, res.late) == (Outcome.NOT_APPLIED, "rest", False)


def test_not_applied_needs_a_rest_read_back_not_a_push() -> None:
    r = start()
    r.on_ack_missing("q1", at(1))
    r.on_order_update(view(price="100"), at(9000))
    r.tick(at(9000), wall(9000))
    assert all(x.outcome is not Outcome.NOT_APPLIED for x in r.finished())


def test_not_applied_needs_the_old_values_not_merely_other_values() -> None:
    """Another amend may have moved the order after ours: 'not at target' is not 'unchanged'."""
    r = start()
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    r.on_rest_result(q, view(price="102"), at(1600), NOT_APPLIED_AFTER_MS + 1)
    assert r.finished() == []


def test_no_not_applied_without_a_known_pre_amend_state() -> None:
    r = start(tracked(before=None))
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    r.on_rest_result(q, view(price="100"), at(1600), NOT_APPLIED_AFTER_MS + 1)
    assert r.finished() == []


# --- duplicates, stale events, same-price amends ---------------------------------------------------


def test_duplicate_push_changes_nothing() -> None:
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    v = view(price="101")
    r.on_order_update(v, at(6))
    r.on_order_update(v, at(7))
    assert len(r.finished()) == 1


def test_stale_push_older_than_the_newest_seen_is_ignored() -> None:
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="100", updated_ms=SENT_TS_MS + 500), at(6))
    r.on_order_update(view(price="101", updated_ms=SENT_TS_MS + 400), at(7))
    assert r.finished() == []


def test_amend_to_same_price_is_not_verified_by_the_pre_amend_snapshot() -> None:
    """before.updatedTime guards: a replay of the old state shows the 'target' but is not newer."""
    r = start(tracked(price="100"))
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="100", updated_ms=BEFORE_UPDATED_MS), at(6))
    assert r.finished() == []
    r.on_order_update(view(price="100", updated_ms=BEFORE_UPDATED_MS + 1), at(7))
    assert only(r.finished()).outcome is Outcome.VERIFIED


def test_without_before_evidence_must_be_no_older_than_send_minus_skew() -> None:
    r = start(tracked(before=None))
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="101", updated_ms=SENT_TS_MS - SETTINGS.skew_ms - 1), at(6))
    assert r.finished() == []
    r.on_order_update(view(price="101", updated_ms=SENT_TS_MS - SETTINGS.skew_ms), at(7))
    assert only(r.finished()).outcome is Outcome.VERIFIED


def test_link_id_only_item_matches_pushes_by_order_link_id() -> None:
    r = start(tracked(order_id=None, link="my-link", before=None))
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view("o-unknown", price="101", link="other"), at(6))
    assert r.finished() == []
    r.on_order_update(view("o-unknown", price="101", link="my-link"), at(7))
    assert only(r.finished()).outcome is Outcome.VERIFIED


def test_push_for_another_symbol_with_the_same_id_does_not_match() -> None:
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="101", symbol="ETHUSDT"), at(6))
    assert r.finished() == []


def test_item_with_no_numeric_target_can_never_be_verified() -> None:
    r = start(TrackedItem(0, Category.LINEAR, AmendItem("BTCUSDT", "o1", None, {"tpslMode": "Full"}), BEFORE))
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(), at(6))
    r.tick(at(SETTINGS.verify_timeout_ms), wall(SETTINGS.verify_timeout_ms))
    assert [x.outcome for x in r.finished()] == [Outcome.UNVERIFIED]


# --- deadlines: unverified, late upgrade, background ------------------------------------------------


def test_unverified_at_the_answer_deadline_then_a_late_upgrade() -> None:
    r = start()
    r.on_ack_missing("q1", at(10))
    r.tick(at(SETTINGS.verify_timeout_ms - 1), wall(SETTINGS.verify_timeout_ms - 1))
    assert [x.outcome for x in r.finished()] == []
    r.tick(at(SETTINGS.verify_timeout_ms), wall(SETTINGS.verify_timeout_ms))
    first = only(r.finished())
    assert (first.outcome, first.late, first.evidence) == (Outcome.UNVERIFIED, False, "deadline")
    assert r.is_request_done("r1") and not r.is_request_settled("r1")
    assert r.pending_requests() == set() and r.in_flight_count() == 1
    r.tick(at(SETTINGS.verify_timeout_ms + 10), wall(SETTINGS.verify_timeout_ms + 10))
    assert r.finished() == []  # reported once
    r.on_order_update(view(price="101"), at(7000))
    late = only(r.finished())
    assert (late.outcome, late.late) == (Outcome.VERIFIED, True)
    assert r.is_request_settled("r1") and r.in_flight_count() == 0


def test_late_not_applied_after_unverified() -> None:
    r = start()
    r.on_ack_missing("q1", at(10))
    r.tick(at(SETTINGS.verify_timeout_ms), wall(SETTINGS.verify_timeout_ms))
    assert only(r.finished()).outcome is Outcome.UNVERIFIED
    r.effects()
    r.tick(at(20_000), wall(20_000))
    (q,) = r.effects()
    r.on_rest_result(q, view(price="100", updated_ms=BEFORE_UPDATED_MS), at(20_001), wall(20_001))
    late = only(r.finished())
    assert (late.outcome, late.late) == (Outcome.NOT_APPLIED, True)


def test_background_read_backs_back_off() -> None:
    r = start()
    r.on_ack(ack(ack_item()), at(5))
    r.tick(at(SETTINGS.verify_timeout_ms), wall(SETTINGS.verify_timeout_ms))
    r.effects()
    gaps: list[int] = []
    now = SETTINGS.verify_timeout_ms
    for _ in range(6):
        nd = r.next_deadline_ns()
        assert nd is not None
        now = (nd - T0_NS) // MS
        r.tick(at(now), wall(now))
        for q in r.effects():
            r.on_rest_result(q, view(price="100"), at(now), wall(now))
            gaps.append(((r.next_deadline_ns() or 0) - at(now)) // MS)
    assert gaps == sorted(gaps) and gaps[-1] == SETTINGS.rest_retry_max_ms


def test_background_timeout_stops_tracking_silently() -> None:
    r = start()
    r.on_ack_missing("q1", at(10))
    end = SETTINGS.background_timeout_ms
    r.tick(at(end - 1), wall(end - 1))
    assert [x.outcome for x in r.finished()] == [Outcome.UNVERIFIED]
    r.tick(at(end), wall(end))
    assert r.finished() == []
    assert r.in_flight_count() == 0 and r.is_request_settled("r1") and r.next_deadline_ns() is None
    r.on_order_update(view(price="101"), at(end + 1))
    assert r.finished() == []


# --- bookkeeping ---------------------------------------------------------------------------------


def test_next_deadline_is_the_first_read_back_then_none_when_idle() -> None:
    r = Reconciler(SETTINGS)
    assert r.next_deadline_ns() is None
    r.track("r1", "q1", [tracked()], SENT_TS_MS, RECV_WINDOW_MS, T0_NS)
    assert r.next_deadline_ns() == at(SETTINGS.rest_after_ms)


def test_tracking_the_same_request_twice_is_a_programming_error() -> None:
    r = start()
    with pytest.raises(ValueError, match="already tracked"):
        r.track("r1", "q2", [tracked()], SENT_TS_MS, RECV_WINDOW_MS, T0_NS)
    with pytest.raises(ValueError, match="distinct"):
        r.track("r2", "q2", [tracked(0), tracked(0, "o2")], SENT_TS_MS, RECV_WINDOW_MS, T0_NS)


def test_two_requests_in_flight_on_one_order_are_never_verified_by_contested_evidence() -> None:
    """Rule 1(c): while two requests' amends of one order overlap, a view showing a target may be
    either's doing, even after one has settled, so it verifies neither. r2's refusal decides r2;
    r1 ends unverified (honest), never verified on evidence it may not have caused."""
    r = Reconciler(SETTINGS)
    r.track("r1", "q1", [tracked(price="101")], SENT_TS_MS, RECV_WINDOW_MS, T0_NS)
    r.track("r2", "q2", [tracked(price="101")], SENT_TS_MS + 1, RECV_WINDOW_MS, T0_NS + MS)
    r.on_ack(ack(ack_item(), req_id="q1"), at(5))
    r.on_order_update(view(price="101"), at(7))
    assert r.finished() == []  # contested
    unchanged = AckItem(10001, "The order remains unchanged", CodeClass.REJECTED)
    r.on_ack(ack(unchanged, req_id="q2"), at(8))
    assert [(x.request_id, x.outcome) for x in r.finished()] == [("r2", Outcome.REJECTED)]
    r.tick(at(SETTINGS.rest_after_ms + 10), wall(SETTINGS.rest_after_ms + 10))
    (q,) = r.effects()
    assert q.request_id == "r1"
    r.on_rest_result(q, view(price="101"), at(SETTINGS.rest_after_ms + 11), wall(SETTINGS.rest_after_ms + 11))
    assert r.finished() == []  # r2 has settled, but the view may still be r2's doing
    r.tick(at(SETTINGS.verify_timeout_ms), wall(SETTINGS.verify_timeout_ms))
    assert [(x.request_id, x.outcome) for x in r.finished()] == [("r1", Outcome.UNVERIFIED)]


def test_a_lone_request_is_verified_by_the_same_evidence() -> None:
    """The contrast: without an overlapping request the same read-back verifies."""
    r = start(tracked(price="101"))
    r.on_ack(ack(ack_item()), at(5))
    r.tick(at(SETTINGS.rest_after_ms + 10), wall(SETTINGS.rest_after_ms + 10))
    (q,) = r.effects()
    r.on_rest_result(q, view(price="101"), at(SETTINGS.rest_after_ms + 11), wall(SETTINGS.rest_after_ms + 11))
    assert [(x.request_id, x.outcome, x.evidence) for x in r.finished()] == [("r1", Outcome.VERIFIED, "rest")]


def test_overlapping_requests_are_decided_by_acks_and_read_backs_never_by_shared_views() -> None:
    """Rule 1(c) with a refusal: r2 was refused (10006), r1 acked; the view showing both targets
    verifies neither, and r2 is never verified."""
    r = Reconciler(SETTINGS)
    r.track("r1", "q1", [tracked(price="101")], SENT_TS_MS, RECV_WINDOW_MS, T0_NS)
    r.track("r2", "q2", [tracked(qty="2")], SENT_TS_MS + 1, RECV_WINDOW_MS, T0_NS + MS)
    r.on_ack(ack(ack_item(), req_id="q1"), at(5))
    r.on_ack(ack(ack_item(10006, CodeClass.RATE_LIMITED), req_id="q2"), at(6))  # r2 refused
    both = view(price="101", qty="2", updated_ms=SENT_TS_MS + 50)
    r.on_order_update(both, at(7))
    assert r.finished() == []  # contested while r2 is tracked
    r.tick(at(SETTINGS.rest_after_ms + 10), wall(SETTINGS.rest_after_ms + 10))
    queries = {q.request_id: q for q in r.effects()}
    r.on_rest_result(queries["r2"], both, at(1600), NOT_APPLIED_AFTER_MS + 1)
    assert r.finished() == []  # refused: never verified; and the order did change: not not_applied
    r.on_rest_result(queries["r1"], both, at(1700), NOT_APPLIED_AFTER_MS + 2)
    assert r.finished() == []  # still contested
    r.tick(at(SETTINGS.verify_timeout_ms + 1), wall(SETTINGS.verify_timeout_ms + 1))
    assert sorted((x.request_id, x.outcome) for x in r.finished()) == [
        ("r1", Outcome.UNVERIFIED),
        ("r2", Outcome.UNVERIFIED),
    ]


def test_values_back_at_before_with_a_newer_updated_time_are_not_not_applied() -> None:
    """Rule 5: 3460 -> 3461 (applied, ack and push lost), then moved back to 3460 by someone else:
    the read-back shows the old price but a newer updatedTime. Not proof: never `not_applied`."""
    r = start()
    r.on_ack_missing("q1", at(1))
    r.tick(at(1500), wall(1500))
    (q,) = r.effects()
    moved_back = view(price="100", updated_ms=BEFORE_UPDATED_MS + 2)
    r.on_rest_result(q, moved_back, at(1600), NOT_APPLIED_AFTER_MS + 1)
    assert r.finished() == []
    assert r.state_of("r1", 0) is ItemState.AMBIGUOUS


def test_a_refused_item_is_not_verified_by_target_evidence() -> None:
    """Rule 2: 10006 says this request changed nothing; a view at its target is someone else's."""
    r = start()
    r.on_order_update(view(price="101"), at(2))  # held (SENT_SEEN) ...
    r.on_ack(ack(ret_code=10006, cls=CodeClass.RATE_LIMITED), at(5))  # ... then refused whole
    assert r.finished() == []
    assert r.state_of("r1", 0) is ItemState.REFUSED
    r.on_order_update(view(price="101", updated_ms=SENT_TS_MS + 30), at(6))
    assert r.finished() == []


def test_an_enum_only_amend_is_verified_by_reading_the_field_back() -> None:
    """Every amendable field is read back: tpTriggerBy alone is verified when the push shows it."""
    item = TrackedItem(
        index=0,
        category=Category.LINEAR,
        item=AmendItem("BTCUSDT", "o1", None, {"tpTriggerBy": "MarkPrice"}),
        before=BEFORE,
    )
    r = start(item)
    r.on_ack(ack(ack_item()), at(5))
    r.on_order_update(view(price="100"), at(6))  # no change to tpTriggerBy yet
    assert r.finished() == []
    r.on_order_update(
        replace(view(price="100", updated_ms=SENT_TS_MS + 20), tp_trigger_by="MarkPrice"), at(7)
    )
    assert only(r.finished()).outcome is Outcome.VERIFIED


def test_expired_items_are_listed_for_a_re_read() -> None:
    r = start()
    r.on_ack_missing("q1", at(10))
    end = SETTINGS.background_timeout_ms
    r.tick(at(end), wall(end))
    [expired] = r.expired()
    assert (expired.request_id, expired.index, expired.order_id) == ("r1", 0, "o1")
    assert r.expired() == []
