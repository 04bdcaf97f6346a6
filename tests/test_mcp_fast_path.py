"""The amend tools' fast path (sidecar/mcp_server.py `_Middleware`): an amend call on a handshake
session with approval off is answered by the middleware itself, and the agent must not be able to
tell: the answer line is the one the SDK's own path writes for the same result (the SDK's path is the
reference, taken here by switching approval on, which no client of these tests can be asked about).
Over real pipes to `serve_stdio` in this process; the service is a stand-in returning fixed bodies."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from sidecar import mcp_server
from sidecar.core.types import AmendRequest
from sidecar.mcp_server import build_server
from sidecar.service import AmendResult
from sidecar.stdio_transport import serve_stdio
from sidecar.testing.pipes import PipeClient


def _body(outcome: str, note: str = "") -> dict[str, Any]:
    item = {
        "index": 0,
        "symbol": "BTCUSDT",
        "orderId": "o-1",
        "orderLinkId": None,
        "outcome": outcome,
        "reasons": [] if outcome == "verified" else [{"code": "PRICE_OUT_OF_BAND", "message": "no" + note}],
        "exchangeCode": None,
        "exchangeMsg": None,
        "observed": None,
    }
    return {
        "requestId": "r-1",
        "outcome": outcome,
        "reasons": [],
        "items": [item, {**item, "index": 1}],
        "ack": None,
        "retryAfterMs": None,
        "latencyMs": 0.5,
        "policyVersion": "v1",
    }


@dataclass
class _Policy:
    approval_above_notional: Decimal | None = None


@dataclass
class _StandIn:
    """What build_server needs of a Service, with a fixed answer; records what it was given."""

    answer: AmendResult
    policy: _Policy = field(default_factory=_Policy)
    seen: list[tuple[AmendRequest, bool]] = field(default_factory=list)  # (request, via the SDK's path)

    async def submit(self, request: AmendRequest, approval: object = None) -> AmendResult:
        self.seen.append((request, mcp_server._RAW_ARGS.get() is not None))
        return self.answer

    def approval_needed(self, request: AmendRequest) -> str | None:
        return None


@contextlib.asynccontextmanager
async def _serving(service: _StandIn, version: str | None) -> AsyncIterator[PipeClient]:
    client = PipeClient()
    await client.open()
    task = asyncio.create_task(serve_stdio(build_server(service), wire=client.wire))  # type: ignore[arg-type]
    try:
        if version is not None:
            await client.initialize(version, request_id=0)
        yield client
    finally:
        await client.close(task)


_CALLS: list[tuple[str, dict[str, Any]]] = [
    (
        "wsBatchAmendOrders",
        {"category": "linear", "request": [{"symbol": "BTCUSDT", "orderId": "o-1", "px": 1}]},
    ),
    ("wsAmendOrder", {"category": "linear", "symbol": "BTCUSDT", "orderId": "o-1", "price": "94000"}),
    ("wsBatchAmendOrders", {"request": "not a list"}),  # missing category, bad request: still the validator's
]
_ANSWERS = [
    AmendResult(_body("verified"), False),
    AmendResult(_body("denied", " ünïcode"), True),
]


async def _answer_line(service: _StandIn, version: str, tool: str, arguments: dict[str, Any]) -> bytes:
    async with _serving(service, version) as client:
        client.send(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
        )
        return await client.line()


@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
@pytest.mark.parametrize(("tool", "arguments"), _CALLS)
@pytest.mark.parametrize("answer", _ANSWERS)
async def test_fast_path_answers_exactly_what_the_sdk_path_answers(
    version: str, tool: str, arguments: dict[str, Any], answer: AmendResult
) -> None:
    fast = _StandIn(answer)
    sdk = _StandIn(answer, _Policy(approval_above_notional=Decimal(1)))
    fast_line = await _answer_line(fast, version, tool, arguments)
    sdk_line = await _answer_line(sdk, version, tool, arguments)
    assert [via_sdk for _, via_sdk in fast.seen] == [False]  # the fast path answered
    assert [via_sdk for _, via_sdk in sdk.seen] == [True]  # the reference went the SDK's way
    assert json.loads(fast_line) == json.loads(sdk_line)
    assert fast_line == sdk_line  # byte for byte
    # The service got the same request either way: the agent's arguments, unchanged.
    assert fast.seen[0][0] == sdk.seen[0][0]


async def test_unknown_item_fields_reach_the_service_unchanged_on_the_fast_path() -> None:
    service = _StandIn(_ANSWERS[0])
    await _answer_line(service, HANDSHAKE_PROTOCOL_VERSIONS[-1], *_CALLS[0])
    ((request, via_sdk),) = service.seen
    assert not via_sdk
    assert request.items == ({"symbol": "BTCUSDT", "orderId": "o-1", "px": 1},)
    assert (request.category, request.batch, request.tool) == ("linear", True, "wsBatchAmendOrders")


async def test_a_call_before_initialize_is_refused_as_the_sdk_refuses_it() -> None:
    service = _StandIn(_ANSWERS[0])
    async with _serving(service, None) as client:
        client.send(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": _CALLS[0][0], "arguments": _CALLS[0][1]},
            }
        )
        answer = json.loads(await client.line())
    assert answer["id"] == 3 and "error" in answer and "result" not in answer
    assert service.seen == []


async def test_a_call_with_meta_goes_the_sdks_way() -> None:
    service = _StandIn(_ANSWERS[0])
    async with _serving(service, HANDSHAKE_PROTOCOL_VERSIONS[-1]) as client:
        params = {"name": _CALLS[0][0], "arguments": _CALLS[0][1], "_meta": {"progressToken": 1}}
        client.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": params})
        answer = json.loads(await client.line())
    assert answer["result"]["structuredContent"] == _ANSWERS[0].body
    assert [via_sdk for _, via_sdk in service.seen] == [True]
