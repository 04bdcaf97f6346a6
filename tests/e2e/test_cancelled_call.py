"""A caller that goes away (MCP request cancelled) while its amend is in flight: the items were
sent, so they are still verified, and the stored result (getAmendOutcome) reaches the verdict."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.core.types import AmendRequest
from tests.e2e.e2e_kit import Stack

pytestmark = pytest.mark.slow


async def test_cancelled_caller_still_gets_its_verdict_stored(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "drop_order_events", "count": 5}])  # keep the call waiting
    task = asyncio.create_task(
        stack.service.submit(
            AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"},))
        )
    )
    async with asyncio.timeout(5):
        while not stack.frames("order.amend-batch"):  # noqa: ASYNC110 -- bounded: until the frame left
            await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [summary] = stack.service.journal.last_requests(1)
    async with asyncio.timeout(10):
        # Bounded poll of the product's API: the REST read-back proves the amend after ~1.5 s.
        while (stack.service.outcome(summary.request_id) or {}).get("outcome") != "verified":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    stored = stack.service.outcome(summary.request_id)
    assert stored is not None
    assert stored["items"][0]["outcome"] == "verified"
    assert stored["items"][0]["observed"]["price"] == "94010"
    assert len(stack.frames("order.amend-batch")) == 1  # never resent
    async with asyncio.timeout(5):
        while stack.service._pending:  # noqa: ASYNC110 -- the request is released once settled
            await asyncio.sleep(0.01)
