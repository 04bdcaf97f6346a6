"""The amend tools on a handshake-era session (`Client(..., mode="legacy")`), where the server's
middleware answers them itself (the fast path; the SDK's own client negotiates the 2026-07-28 era,
which goes the SDK's way and is what tests/e2e/test_mcp_tools.py covers): the same behaviour against
the real emulator: verified amends, coded denials of unknown fields and junk, nothing sent for them.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from sidecar.mcp_server import build_server
from tests.e2e.e2e_kit import Stack, dec

pytestmark = pytest.mark.slow


async def call(stack: Stack, tool: str, args: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    async with Client(build_server(stack.service), mode="legacy") as client:
        result = await client.call_tool(tool, args)
    assert result.structured_content is not None, result.content
    text = result.content[0]
    assert text.type == "text" and text.text  # the JSON text block is there too
    return result.structured_content, bool(result.is_error)


def codes(body: dict[str, Any]) -> set[str]:
    return {r["code"] for it in body["items"] for r in it["reasons"]} | {r["code"] for r in body["reasons"]}


async def test_batch_amend_is_verified_on_a_handshake_session(stack: Stack) -> None:
    body, is_error = await call(
        stack,
        "wsBatchAmendOrders",
        {
            "category": "linear",
            "request": [
                {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500.5"},
                {"symbol": "ETHUSDT", "orderId": stack.orders["eth-b1"]["orderId"], "qty": 0.2},
            ],
        },
    )
    assert not is_error, body
    assert body["outcome"] == "verified"
    assert [it["outcome"] for it in body["items"]] == ["verified"] * 2
    assert dec(stack.order("btc-b1")["price"]) == dec("94500.5")
    assert dec(stack.order("eth-b1")["qty"]) == dec("0.2")
    [frame] = stack.frames("order.amend-batch")
    assert frame["args"][0]["request"][1]["qty"] == "0.2"


async def test_single_amend_is_verified_and_an_unknown_field_denied(stack: Stack) -> None:
    args = {"category": "linear", "symbol": "ETHUSDT", "orderLinkId": "eth-s1", "price": "3540.5"}
    body, is_error = await call(stack, "wsAmendOrder", {**args, "leverage": "50"})
    assert is_error
    assert "FIELD_NOT_SUPPORTED" in codes(body)
    assert stack.sent_items() == []
    body, is_error = await call(stack, "wsAmendOrder", args)
    assert not is_error, body
    assert body["outcome"] == "verified"
    assert dec(stack.order("eth-s1")["price"]) == dec("3540.5")


async def test_junk_arguments_get_a_coded_denial_on_a_handshake_session(stack: Stack) -> None:
    for args in (
        {"category": "linear", "request": "not a list"},
        {"category": 7, "request": [{"symbol": "BTCUSDT"}]},
        {"category": "spot"},  # no request at all
        {},  # nothing at all
    ):
        body, is_error = await call(stack, "wsBatchAmendOrders", args)
        assert is_error, args
        assert body["outcome"] == "denied"
        assert codes(body), args
    assert stack.sent_items() == []
