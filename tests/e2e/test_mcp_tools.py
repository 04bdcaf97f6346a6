"""The MCP surface through the SDK's `Client(build_server(service))`, against the real emulator.

Contracts from DESIGN.md §4.3: tool names, annotations, schemas, result fields, outcomes, denial
codes. A denied item must never reach the emulator (checked on `/emulator/frames`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from sidecar.mcp_server import TOOL_NAMES, build_server
from tests.e2e.e2e_kit import Stack, dec, start_stack, stop_stack

pytestmark = pytest.mark.slow

ITEM_KEYS = {
    "index",
    "symbol",
    "orderId",
    "orderLinkId",
    "outcome",
    "reasons",
    "exchangeCode",
    "exchangeMsg",
    "observed",
}
RESULT_KEYS = {"requestId", "outcome", "reasons", "items", "ack", "retryAfterMs", "latencyMs"}


async def call(stack: Stack, tool: str, args: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    async with Client(build_server(stack.service)) as client:
        result = await client.call_tool(tool, args)
    assert result.structured_content is not None, result.content
    return result.structured_content, bool(result.is_error)


def codes(body: dict[str, Any]) -> set[str]:
    return {r["code"] for it in body["items"] for r in it["reasons"]} | {r["code"] for r in body["reasons"]}


async def test_tools_are_listed_with_annotations_and_schemas(stack: Stack) -> None:
    async with Client(build_server(stack.service)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(TOOL_NAMES) <= set(tools)
    batch = tools["wsBatchAmendOrders"]
    assert batch.annotations is not None
    assert batch.annotations.destructive_hint is True
    assert batch.annotations.read_only_hint is False
    assert tools["wsAmendOrder"].annotations.destructive_hint is True  # type: ignore[union-attr]
    for name in ("previewBatchAmendOrders", "getSafetyPolicy", "getAmendOutcome", "getOrderState"):
        assert tools[name].annotations.read_only_hint is True  # type: ignore[union-attr]
    for name, tool in tools.items():
        assert tool.title, name
        assert tool.description, name
        assert tool.output_schema is not None, name
    props = batch.input_schema["properties"]
    assert set(props) == {"category", "request"}
    item = props["request"]["items"]["properties"]
    assert {
        "symbol",
        "orderId",
        "orderLinkId",
        "qty",
        "price",
        "takeProfit",
        "stopLoss",
        "triggerPrice",
    } <= set(item)
    assert "maxItems" not in props["request"]  # the validator says BATCH_TOO_LARGE with a code instead
    assert batch.description is not None
    assert "unverified" in batch.description and "getAmendOutcome" in batch.description


async def test_batch_amend_is_verified_and_observed_matches_the_exchange(stack: Stack) -> None:
    body, is_error = await call(
        stack,
        "wsBatchAmendOrders",
        {
            "category": "linear",
            "request": [
                {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500.5"},
                {"symbol": "ETHUSDT", "orderId": stack.orders["eth-b1"]["orderId"], "qty": 0.2},
                {"symbol": "SOLUSDT", "orderLinkId": "sol-b1", "price": 177.5, "qty": "2"},
            ],
        },
    )
    assert not is_error
    assert set(body) >= RESULT_KEYS
    assert body["outcome"] == "verified"
    assert body["ack"]["retCode"] == 0
    assert [it["outcome"] for it in body["items"]] == ["verified"] * 3
    for it in body["items"]:
        assert set(it) >= ITEM_KEYS
        exchange = stack.order(it["orderLinkId"])
        assert dec(it["observed"]["price"]) == dec(exchange["price"])
        assert dec(it["observed"]["qty"]) == dec(exchange["qty"])
        assert it["observed"]["updatedTime"] == exchange["updatedTime"]
    assert dec(stack.order("btc-b1")["price"]) == dec("94500.5")
    assert dec(stack.order("eth-b1")["qty"]) == dec("0.2")
    # One frame, no resend; numbers went out as plain decimal strings.
    [frame] = stack.frames("order.amend-batch")
    assert frame["args"][0]["request"][1]["qty"] == "0.2"


async def test_single_amend_is_verified(stack: Stack) -> None:
    body, is_error = await call(
        stack,
        "wsAmendOrder",
        {
            "category": "linear",
            "symbol": "ETHUSDT",
            "orderLinkId": "eth-s1",
            "price": "3540.5",
        },
    )
    assert not is_error, body
    assert body["outcome"] == "verified"
    assert stack.frames("order.amend") and not stack.frames("order.amend-batch")
    assert dec(stack.order("eth-s1")["price"]) == dec("3540.5")


async def test_single_amend_with_unknown_field_is_denied(stack: Stack) -> None:
    body, is_error = await call(
        stack,
        "wsAmendOrder",
        {
            "category": "linear",
            "symbol": "ETHUSDT",
            "orderLinkId": "eth-s1",
            "price": "3540.5",
            "leverage": "50",
        },
    )
    assert is_error
    assert "FIELD_NOT_SUPPORTED" in codes(body)
    assert stack.sent_items() == []


DENIALS: list[tuple[str, str, dict[str, Any]]] = [
    ("SYMBOL_NOT_ALLOWED", "linear", {"symbol": "DOGEUSDT", "orderLinkId": "x", "price": "1"}),
    ("SYMBOL_NOT_ALLOWED", "linear", {"symbol": "btcusdt", "orderLinkId": "btc-b1", "price": "94000"}),
    ("CATEGORY_NOT_ALLOWED", "option", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94000"}),
    ("PRICE_OUT_OF_BAND", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "80000"}),
    ("PRICE_OUT_OF_BAND", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "stopLoss": "10000"}),
    ("PRICE_NOT_ON_TICK", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94000.05"}),
    ("QTY_ABOVE_CAP", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "qty": "0.6"}),
    ("QTY_BELOW_MIN", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "qty": "0.0001"}),
    ("QTY_NOT_ON_STEP", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "qty": "0.0105"}),
    ("MISSING_ORDER_ID", "linear", {"symbol": "BTCUSDT", "price": "94000"}),
    ("NOTHING_TO_AMEND", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1"}),
    (
        "FIELD_NOT_SUPPORTED",
        "linear",
        {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "triggerPrice": "94000"},
    ),
    ("FIELD_NOT_SUPPORTED", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "side": "Sell"}),
    ("INVALID_NUMBER", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "NaN"}),
    ("INVALID_NUMBER", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "qty": "-1"}),
    ("INVALID_NUMBER", "linear", {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "qty": "١"}),
    ("UNKNOWN_ORDER", "linear", {"symbol": "BTCUSDT", "orderLinkId": "no-such-order", "price": "94000"}),
]


@pytest.mark.parametrize(
    ("code", "category", "item"), DENIALS, ids=[f"{d[0]}-{i}" for i, d in enumerate(DENIALS)]
)
async def test_every_denial_code_is_reachable_and_nothing_is_sent(
    stack: Stack, code: str, category: str, item: dict[str, Any]
) -> None:
    body, is_error = await call(stack, "wsBatchAmendOrders", {"category": category, "request": [item]})
    assert is_error
    assert body["outcome"] == "denied"
    assert body["ack"] is None
    assert body["policyVersion"] == stack.service.policy.version  # every verdict names its policy
    assert code in codes(body)
    for it in body["items"]:
        assert all(r["message"] for r in it["reasons"])
    assert stack.sent_items() == []


async def test_batch_level_denials(stack: Stack) -> None:
    item = {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94000"}
    body, _ = await call(stack, "wsBatchAmendOrders", {"category": "linear", "request": [item] * 21})
    assert "BATCH_TOO_LARGE" in {r["code"] for r in body["reasons"]}
    assert all("BATCH_TOO_LARGE" in {r["code"] for r in it["reasons"]} for it in body["items"])
    spot = {"symbol": "BTCUSDT", "orderLinkId": "spot-b1", "price": "94000"}
    body, _ = await call(stack, "wsBatchAmendOrders", {"category": "spot", "request": [spot] * 11})
    assert "BATCH_TOO_LARGE" in codes(body)
    body, _ = await call(stack, "wsBatchAmendOrders", {"category": "linear", "request": [item, dict(item)]})
    assert "DUPLICATE_ORDER_IN_BATCH" in codes(body)
    assert stack.sent_items() == []


async def test_all_or_nothing_denies_the_good_items_too(stack: Stack) -> None:
    body, is_error = await call(
        stack,
        "wsBatchAmendOrders",
        {
            "category": "linear",
            "request": [
                {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"},
                {"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "1"},
            ],
        },
    )
    assert is_error
    first, second = body["items"]
    assert first["outcome"] == second["outcome"] == "denied"
    assert [r["code"] for r in first["reasons"]] == ["BATCH_DENIED"]
    assert "PRICE_OUT_OF_BAND" in {r["code"] for r in second["reasons"]}
    assert stack.sent_items() == []


async def test_halt_denies_everything_before_the_next_call(stack: Stack) -> None:
    await stack.service.halt("test halt")
    body, is_error = await call(
        stack,
        "wsBatchAmendOrders",
        {"category": "linear", "request": [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"}]},
    )
    assert is_error
    assert "TRADING_HALTED" in codes(body)
    policy, _ = await call(stack, "getSafetyPolicy", {})
    assert policy["tradingState"] == "halted"
    assert policy["haltReason"] == "test halt"
    await stack.service.resume()
    body, is_error = await call(
        stack,
        "wsBatchAmendOrders",
        {"category": "linear", "request": [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"}]},
    )
    assert not is_error and body["outcome"] == "verified"


async def test_preview_sends_nothing_and_uses_no_budget(stack: Stack) -> None:
    policy_before, _ = await call(stack, "getSafetyPolicy", {})
    body, is_error = await call(
        stack,
        "previewBatchAmendOrders",
        {
            "category": "linear",
            "request": [
                {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"},
            ],
        },
    )
    assert not is_error
    assert body["items"][0]["outcome"] == "allowed"
    assert body["ack"] is None
    policy_after, _ = await call(stack, "getSafetyPolicy", {})
    assert policy_after["rateLimits"] == policy_before["rateLimits"]
    assert stack.sent_items() == []


async def test_safety_policy_shows_the_band_and_budgets(stack: Stack) -> None:
    body, is_error = await call(stack, "getSafetyPolicy", {"category": "linear", "symbol": "BTCUSDT"})
    assert not is_error
    assert body["tradingState"] == "active"
    [btc] = body["symbols"]
    assert dec(btc["referencePrice"]) == dec("95000")
    assert dec(btc["minPrice"]) == dec("95000") * (1 - dec("0.015"))
    assert dec(btc["maxPrice"]) == dec("95000") * (1 + dec("0.015"))
    assert btc["tickSize"] == "0.1" and btc["qtyStep"] == "0.001"
    assert btc["referenceAgeMs"] is not None and btc["referenceAgeMs"] < 2000
    scopes = {r["scope"] for r in body["rateLimits"]}
    assert {"tool", "symbol", "global", "exchange"} <= scopes


async def test_outcome_and_order_state(stack: Stack) -> None:
    body, _ = await call(
        stack,
        "wsBatchAmendOrders",
        {"category": "linear", "request": [{"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94200"}]},
    )
    later, is_error = await call(stack, "getAmendOutcome", {"requestId": body["requestId"]})
    assert not is_error
    assert later["outcome"] == "verified"
    assert later["items"][0]["observed"]["price"] == "94200"
    missing, _ = await call(stack, "getAmendOutcome", {"requestId": "nope"})
    assert missing["outcome"] == "unknown_request"
    state, _ = await call(
        stack, "getOrderState", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b2"}
    )
    assert state["found"] is True
    assert dec(state["order"]["price"]) == dec("94200")
    gone, _ = await call(
        stack, "getOrderState", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "zzz"}
    )
    assert gone["found"] is False


async def test_junk_arguments_get_a_coded_denial_not_a_crash(stack: Stack) -> None:
    for args in (
        {"category": "linear", "request": "not a list"},
        {"category": 7, "request": [{"symbol": "BTCUSDT"}]},
        {"category": "linear", "request": [[1, 2], None, {"symbol": {"nested": True}, "orderId": 5}]},
        {"category": "linear", "request": []},
        {"category": "spot"},  # no request at all
        {},  # nothing at all
    ):
        body, is_error = await call(stack, "wsBatchAmendOrders", args)
        assert is_error, args
        assert body["outcome"] == "denied"
        assert codes(body), args
    assert stack.sent_items() == []


async def test_notional_caps_per_item_and_per_batch(tmp_path: Path) -> None:
    symbols = [
        {
            "category": "linear",
            "symbol": "BTCUSDT",
            "max_qty": "0.5",
            "max_notional": "1500",
            "price_band_bps": "150",
        },
        {
            "category": "linear",
            "symbol": "ETHUSDT",
            "max_qty": "10",
            "max_notional": "400",
            "price_band_bps": "150",
        },
    ]
    emu, service, config, orders = await start_stack(
        tmp_path, symbols=symbols, batch={"max_notional": "1200"}
    )
    stack = Stack(emu, service, config, orders)
    try:
        body, _ = await call(
            stack,
            "wsBatchAmendOrders",
            {"category": "linear", "request": [{"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "qty": "0.2"}]},
        )  # 0.2 x 3450 = 690 > 400
        assert "NOTIONAL_ABOVE_CAP" in codes(body)
        body, _ = await call(
            stack,
            "wsBatchAmendOrders",
            {
                "category": "linear",
                "request": [
                    {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"},  # 940.1
                    {
                        "symbol": "BTCUSDT",
                        "orderLinkId": "btc-b2",
                        "price": "94020",
                    },  # 940.2: sum 1880.3 > 1200
                ],
            },
        )
        assert "BATCH_NOTIONAL_ABOVE_CAP" in codes(body)
        assert stack.sent_items() == []
    finally:
        await stop_stack(emu, service)
