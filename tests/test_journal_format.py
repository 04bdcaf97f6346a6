"""Journal format 2 (sidecar/journal/format.py): every elision decodes back to exactly what was
written, so compact records lose nothing. Round trips for the intent, the tool result (identity
from the intent, observed from a step, the ack list from the items), result deltas, the request's
arguments, and the order in which a request's folded steps read back."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.journal.format import (
    ACK_LIST_FROM_ITEMS,
    apply_delta,
    current_result,
    decode_intent_items,
    decode_result,
    encode_intent_items,
    encode_result,
    expand,
    identity,
    pack_view,
    request_args,
    request_body,
    result_delta,
    unpack_view,
)
from sidecar.journal.records import JournalRecord

WALL = 1_700_000_000_000


def intent_item(index: int, given: str = "orderId", **before: Any) -> dict[str, Any]:
    """An intent item as the service builds it (journal.bodies.intent_item)."""
    order = {
        "orderId": f"uuid-{index}",
        "orderLinkId": f"link-{index}",
        "price": "100",
        "qty": "1",
        "orderStatus": "New",
        "updatedTime": WALL - 1000,
        **before,
    }
    return {
        "index": index,
        "symbol": "BTCUSDT",
        "orderId": order["orderId"] if given in ("orderId", "both") else None,
        "orderLinkId": order["orderLinkId"] if given in ("orderLinkId", "both") else None,
        "targets": {"price": "101.5"},
        "before": order,
    }


def result_item(index: int, outcome: str = "verified", **over: Any) -> dict[str, Any]:
    item = {
        "index": index,
        "symbol": "BTCUSDT",
        "orderId": f"uuid-{index}",
        "orderLinkId": f"link-{index}",
        "outcome": outcome,
        "reasons": [],
        "exchangeCode": 0,
        "exchangeMsg": "OK",
        "observed": {"price": "101.5", "qty": "1", "orderStatus": "New", "updatedTime": str(WALL + 5)},
    }
    item.update(over)
    return item


def event_step(index: int, price: str = "101.5", t: int = 2) -> list[Any]:
    return ["order_event", t, index, "applied", *pack_view(price, "1", "1", "0", "New", WALL + 5)]


def result(items: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    body = {
        "requestId": "r1",
        "outcome": "verified",
        "reasons": [],
        "items": items,
        "ack": {
            "retCode": 0,
            "retMsg": "OK",
            "retExtInfo": {"list": [{"code": 0, "msg": "OK"} for _ in items]},
        },
        "retryAfterMs": None,
        "latencyMs": 3.2,
        "policyVersion": "p1",
    }
    body.update(over)
    return body


# ---------------------------------------------------------------------------------- intent


def test_intent_items_round_trip_whichever_ids_the_agent_gave() -> None:
    items = [
        intent_item(0, "orderId"),
        intent_item(1, "orderLinkId"),
        intent_item(2, "both"),
        intent_item(3, "orderId", orderLinkId=""),  # an order without a link id
        intent_item(4, "orderId", takeProfit="120", tpTriggerBy="MarkPrice"),  # more targeted fields
        {**intent_item(5), "before": None},  # an order the sidecar did not know
    ]
    table = encode_intent_items(items)
    assert decode_intent_items(json.loads(json.dumps(table))) == tuple(items)
    # The order's ids are written once per row, not again inside `before`.
    assert table["rows"][0][2:5] == ["uuid-0", "link-0", "orderId"]
    assert table["rows"][0][6] == ["100", "1", "New", WALL - 1000]
    assert table["rows"][4][6][4] == {"takeProfit": "120", "tpTriggerBy": "MarkPrice"}


def test_an_older_intent_reads_as_it_was_written() -> None:
    old = [
        {"index": 0, "symbol": "BTCUSDT", "orderId": "o0", "orderLinkId": "", "targets": {}, "before": None}
    ]
    assert decode_intent_items(old) == tuple(old)


def test_request_args_leave_out_only_what_the_intent_holds_and_read_back_whole() -> None:
    items = [intent_item(0, "orderId"), intent_item(1, "orderLinkId"), intent_item(2, "orderId")]
    args: dict[str, Any] = {
        "category": "linear",
        "request": [
            {"symbol": "BTCUSDT", "orderId": "uuid-0", "price": "101.5"},
            {"symbol": "BTCUSDT", "orderLinkId": "link-1", "price": "101.5"},
            {"symbol": "BTCUSDT", "orderId": "uuid-2", "price": 101.5},  # a JSON number: not as held
            {"symbol": "NOPE", "orderId": "x"},  # denied: in no intent
        ],
        "itemsOmitted": 3,
    }
    body = request_body("wsBatchAmendOrders", args, [0, 1])
    assert body["args"]["request"] == args["request"][2:]
    assert body["inIntent"] == [0, 1]
    intent = {"items": encode_intent_items(items)}
    assert request_args(json.loads(json.dumps(body)), intent) == args
    assert request_body("wsBatchAmendOrders", args, []) == {"tool": "wsBatchAmendOrders", "args": args}


# ---------------------------------------------------------------------------------- result


def test_a_verified_result_keeps_only_what_no_other_part_holds() -> None:
    items = [intent_item(i) for i in range(3)]
    body = result([result_item(i) for i in range(3)])
    steps = [["sent", 1], *[event_step(i) for i in range(3)]]
    compact = encode_result(body, steps, items, dict.fromkeys(range(3), ("order_stream", 3)))
    rows = compact["items"]["rows"]
    # observed: the view of step 1; evidence: that step's (the order stream); identity: the intent's.
    assert rows[0] == [0, "verified", [], 0, "OK", 1, None, None, 3]
    assert compact["ack"]["retExtInfo"] == ACK_LIST_FROM_ITEMS
    assert decode_result(json.loads(json.dumps(compact)), steps, items) == body


def test_what_differs_from_the_intent_or_the_steps_is_kept_in_full() -> None:
    items = [intent_item(0), intent_item(1)]
    body = result(
        [
            result_item(0, orderLinkId=None),  # not the intent's identity
            result_item(1, "rejected", exchangeCode=110001, exchangeMsg="too late", observed=None),
        ],
        outcome="partial",
    )
    body["ack"]["retExtInfo"] = {"list": [{"code": 0, "msg": "OK"}, {"code": 110001, "msg": "too late"}]}
    steps = [event_step(0, price="99")]  # a view that is not the observed one
    compact = encode_result(body, steps, items)
    assert compact["items"]["rows"][0][6] == ["BTCUSDT", "uuid-0", None]
    assert compact["items"]["rows"][0][5] == body["items"][0]["observed"]
    assert compact["ack"]["retExtInfo"] == ACK_LIST_FROM_ITEMS  # the codes match the items
    assert decode_result(compact, steps, items) == body
    body["ack"]["retExtInfo"] = {"list": [{"code": 0, "msg": "OK"}]}  # not one per item: kept
    assert encode_result(body, steps, items)["ack"]["retExtInfo"] == body["ack"]["retExtInfo"]


def test_observed_names_the_last_step_holding_that_view_of_that_item() -> None:
    items = [intent_item(0), intent_item(1)]
    body = result([result_item(0), result_item(1)])
    rest_view = ["rest", 4, 1, pack_view("101.5", "1", "1", "0", "New", WALL + 5), None]
    steps: list[list[Any]] = [
        ["sent", 1],
        ["ack", 2, 0, "OK", None, None, None, None],  # step[2] is the retCode, 0 like item 0's index
        event_step(0),  # 2: the view item 0 shows
        event_step(1),  # 3
        rest_view,  # 4: item 1's view again, later
        event_step(0, price="99"),  # 5: a later view of item 0 that is not the one it shows
    ]
    rows = encode_result(body, steps, items)["items"]["rows"]
    assert [row[5] for row in rows] == [2, 4]
    assert decode_result(json.loads(json.dumps(encode_result(body, steps, items))), steps, items) == body


_text = st.text(alphabet="abcXYZ-_0", min_size=0, max_size=6)
_maybe = st.one_of(st.none(), _text)


@st.composite
def _results(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[Any]], list[dict[str, Any]]]:
    n = draw(st.integers(min_value=0, max_value=5))
    intent = [intent_item(i, draw(st.sampled_from(["orderId", "orderLinkId", "both"]))) for i in range(n)]
    steps: list[list[Any]] = []
    items = []
    for i in range(n):
        if draw(st.booleans()):
            steps.append(event_step(i, price=draw(st.sampled_from(["101.5", "100"]))))
        sym, oid, link = identity(intent[i])
        items.append(
            result_item(
                i,
                draw(st.sampled_from(["verified", "rejected", "unverified", "denied"])),
                symbol=draw(st.sampled_from([sym, "ETHUSDT"])),
                orderId=draw(st.sampled_from([oid, None])),
                orderLinkId=draw(st.sampled_from([link, None, ""])),
                exchangeCode=draw(st.sampled_from([0, None, 10001])),
                exchangeMsg=draw(_maybe),
                observed=draw(
                    st.sampled_from(
                        [
                            None,
                            {
                                "price": "101.5",
                                "qty": "1",
                                "orderStatus": "New",
                                "updatedTime": str(WALL + 5),
                            },
                            {"price": "100", "qty": "1", "orderStatus": "New", "updatedTime": str(WALL + 5)},
                        ]
                    )
                ),
            )
        )
    body = result(items, outcome=draw(_text))
    if draw(st.booleans()):
        body["ack"] = {
            "retCode": 0,
            "retMsg": "OK",
            "retExtInfo": {"list": [{"code": it["exchangeCode"], "msg": it["exchangeMsg"]} for it in items]},
        }
    elif draw(st.booleans()):
        body["ack"] = None
    return body, steps, intent


@settings(max_examples=300, deadline=None)
@given(_results())
def test_any_result_round_trips(case: tuple[dict[str, Any], list[list[Any]], list[dict[str, Any]]]) -> None:
    body, steps, intent = case
    compact = json.loads(json.dumps(encode_result(body, steps, intent)))
    assert decode_result(compact, steps, intent) == body


@settings(max_examples=200, deadline=None)
@given(_results(), _results())
def test_any_delta_applies_back_to_the_new_result(
    old_case: tuple[dict[str, Any], list[list[Any]], list[dict[str, Any]]],
    new_case: tuple[dict[str, Any], list[list[Any]], list[dict[str, Any]]],
) -> None:
    old, _steps, intent = old_case
    new, steps, _ = new_case
    new = {**new, "reconciledLate": True}
    new["items"] = [{**it, "symbol": it["symbol"]} for it in new["items"] if it["index"] < len(intent)]
    delta = json.loads(json.dumps(result_delta(old, new, steps, intent)))
    assert apply_delta(old, delta, steps, intent) == new


# ---------------------------------------------------------------------------------- reading a request


def test_a_request_reads_back_as_its_steps_in_the_order_they_happened() -> None:
    items = [intent_item(0), intent_item(1)]
    first = result(
        [result_item(0), result_item(1, "unverified", exchangeCode=None, exchangeMsg=None, observed=None)],
        outcome="partial",
    )
    steps = [["sent", 1], ["ack", 2, 0, "OK", 10, 9, WALL + 999, None], event_step(0, t=3)]
    decided = {0: ("order_stream", 3), 1: ("deadline", 3000)}
    late = {**first, "outcome": "verified", "reconciledLate": True, "items": [result_item(0), result_item(1)]}
    late_steps = [["rest", 3500, 1, pack_view("101.5", "1", "1", "0", "New", WALL + 5), None]]
    records = [
        JournalRecord(
            1, WALL, "request", "r1", None, None, request_body("t", {"category": "linear", "request": []}, [])
        ),
        JournalRecord(
            2,
            WALL,
            "intent",
            "r1",
            "q1",
            None,
            {"req_id": "q1", "category": "linear", "sent_ts_ms": WALL, "items": encode_intent_items(items)},
        ),
        JournalRecord(
            3,
            WALL + 3000,
            "final",
            "r1",
            None,
            None,
            {"v": 2, "result": encode_result(first, steps, items, decided), "steps": steps},
        ),
        JournalRecord(
            4,
            WALL + 3500,
            "result_delta",
            "r1",
            "q1",
            1,
            {
                "v": 2,
                **result_delta(first, late, late_steps, items, {1: ("rest", 3500)}),
                "steps": late_steps,
            },
        ),
    ]
    assert current_result(records) == late
    got = expand(records)
    assert [s.kind for s in got] == [
        "request",
        "intent",
        "sent",
        "ack",
        "order_event",
        "item_outcome",
        "item_outcome",
        "final",
        "rest",
        "late_outcome",
        "result_delta",
    ]
    assert [s.order for s in got] == sorted(s.order for s in got)
    assert {s.req_id for s in got if s.kind not in ("request", "final")} == {"q1"}
    by_kind = {s.kind: s for s in got}
    assert by_kind["ack"].body["items"] == [
        {"code": 0, "msg": "OK", "orderId": "uuid-0", "orderLinkId": "link-0"},
        {"code": 0, "msg": "OK", "orderId": "uuid-1", "orderLinkId": "link-1"},
    ]
    assert by_kind["order_event"].body["view"]["orderId"] == "uuid-0"
    assert by_kind["order_event"].wall_ms == WALL + 3
    assert [(s.item_idx, s.body["outcome"], s.body["evidence"]) for s in got if s.kind == "item_outcome"] == [
        (0, "verified", "order_stream"),
        (1, "unverified", "deadline"),
    ]
    assert by_kind["late_outcome"].body["observed"] == late["items"][1]["observed"]
    assert by_kind["late_outcome"].body["evidence"] == "rest"
    assert by_kind["final"].body == first
    assert by_kind["result_delta"].body == late


def test_order_views_leave_out_only_the_fill_figures_they_imply() -> None:
    """leavesQty and cumExecQty are written only when they are not qty - cumExecQty and 0."""
    fresh = pack_view("100", "2", "2", "0", "New", WALL)
    partly = pack_view("100", "2", "0.5", "1.5", "PartiallyFilled", WALL)
    cancelled = pack_view("100", "2", "0", "0.5", "Cancelled", WALL, {"takeProfit": "120"})
    assert fresh == ["100", "2", "New", WALL]
    assert partly == ["100", "2", "PartiallyFilled", WALL, {"cumExecQty": "1.5"}]
    assert cancelled == [
        "100",
        "2",
        "Cancelled",
        WALL,
        {"takeProfit": "120", "cumExecQty": "0.5", "leavesQty": "0"},
    ]
    assert unpack_view(fresh) == {
        "price": "100",
        "qty": "2",
        "orderStatus": "New",
        "updatedTime": str(WALL),
        "leavesQty": "2",
        "cumExecQty": "0",
    }
    assert unpack_view(partly)["leavesQty"] == "0.5"
    assert unpack_view(cancelled) == {
        "price": "100",
        "qty": "2",
        "orderStatus": "Cancelled",
        "updatedTime": str(WALL),
        "leavesQty": "0",
        "cumExecQty": "0.5",
        "takeProfit": "120",
    }
