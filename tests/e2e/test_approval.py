"""Human approval (`approval.above_notional`) through the SDK's `Client`, against the real emulator.

The two destructive tools ask the human (MCP elicitation) before sending an item above the
threshold. Checked on both protocol eras: `mode="auto"` (2026-07-28, InputRequiredResult rounds)
and `mode="legacy"` (2025-11-25, `elicitation/create` mid-call). A refused or unanswerable amend
must never reach the emulator, and the agent always gets the structured result with a code.

Threshold 500: btc-b1 (Buy 0.01 @ 94000, notional ~940) needs a yes; eth-b1 (0.1 @ 3450, ~345)
does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context
from mcp.types import ElicitRequestParams, ElicitResult

from sidecar.core.types import AmendRequest
from sidecar.http_transport import build_http_app
from sidecar.mcp_server import build_server
from sidecar.service import Approval, request_digest
from tests.e2e.e2e_kit import Stack, dec, start_stack, stop_stack

pytestmark = pytest.mark.slow

MODES = ["auto", "legacy"]  # auto negotiates 2026-07-28 in-process
Mode = Literal["auto", "legacy"]

BIG = {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500.5"}  # notional 945.005
TOKEN = "approval-test-token-0123456789abcdefghij"
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
SMALL = {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "price": "3480"}  # notional 348


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    emu, service, config, orders = await start_stack(tmp_path, approval={"above_notional": "500"})
    try:
        yield Stack(emu, service, config, orders)
    finally:
        await stop_stack(emu, service)


@dataclass
class Human:
    """An elicitation callback that answers like a person would, and records every question."""

    action: Literal["accept", "decline", "cancel"] = "accept"
    approve: bool = True
    asked: list[ElicitRequestParams] = field(default_factory=list)

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params)
        content = {"approve": self.approve} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)


async def call(
    stack: Stack, tool: str, args: dict[str, Any], *, mode: Mode, human: Human | None
) -> tuple[dict[str, Any], bool]:
    server = build_server(stack.service)
    if human is None:
        client = Client(server, mode=mode)
    else:
        client = Client(server, mode=mode, elicitation_callback=human)
    async with client:
        result = await client.call_tool(tool, args)
    # Never an SDK error: the agent always gets the structured body with the codes.
    assert result.structured_content is not None, result.content
    return result.structured_content, bool(result.is_error)


def codes(body: dict[str, Any]) -> set[str]:
    return {r["code"] for it in body["items"] for r in it["reasons"]} | {r["code"] for r in body["reasons"]}


def batch_digest(*items: dict[str, Any]) -> str:
    return request_digest(AmendRequest(category="linear", items=items, batch=True, tool="wsBatchAmendOrders"))


def approval_records(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    record = stack.service.journal.get_request(request_id)
    assert record is not None
    return [r.body for r in record.records if r.kind == "approval"]


async def test_the_approval_is_injected_not_an_input(stack: Stack) -> None:
    async with Client(build_server(stack.service)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    batch = tools["wsBatchAmendOrders"].input_schema
    assert set(batch["properties"]) == {"category", "request"}
    assert set(batch.get("required", [])) == {"category", "request"}
    single = tools["wsAmendOrder"].input_schema
    assert "category" in single["properties"] and "price" in single["properties"]
    for schema in (batch, single):
        assert "approval" not in json.dumps(schema).lower()


@pytest.mark.parametrize("mode", MODES)
async def test_a_yes_sends_and_verifies(stack: Stack, mode: Mode) -> None:
    human = Human()
    args = {"category": "linear", "request": [BIG]}
    body, is_error = await call(stack, "wsBatchAmendOrders", args, mode=mode, human=human)
    assert not is_error, body
    assert body["outcome"] == "verified"
    assert dec(stack.order("btc-b1")["price"]) == dec("94500.5")
    assert stack.sent_items() == [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500.5"}]
    # Asked exactly once (the 2026 era re-runs the resolver, it must not re-ask), and the human saw
    # what will be sent and the digest of these exact arguments.
    [question] = human.asked
    digest = batch_digest(BIG)
    assert "btc-b1" in question.message and "94500.5" in question.message
    assert "notional" in question.message and "500" in question.message
    assert f"digest {digest[:12]}" in question.message
    schema = question.requested_schema  # type: ignore[union-attr]  # a form request, not a url one
    assert set(schema["properties"]) == {"approve"}
    assert schema["properties"]["approve"]["type"] == "boolean"
    assert "Bybit" in schema["properties"]["approve"]["description"]
    assert approval_records(stack, body["requestId"]) == [{"digest": digest, "granted": True, "code": None}]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("action", "approve", "word"),
    [("decline", False, "declined"), ("cancel", False, "cancelled"), ("accept", False, "answered no")],
)
async def test_a_no_denies_every_item_and_sends_nothing(
    stack: Stack, mode: Mode, action: Literal["accept", "decline", "cancel"], approve: bool, word: str
) -> None:
    human = Human(action=action, approve=approve)
    # The small item rides along: all_or_nothing denies the whole batch.
    args = {"category": "linear", "request": [BIG, SMALL]}
    body, is_error = await call(stack, "wsBatchAmendOrders", args, mode=mode, human=human)
    assert is_error
    assert body["outcome"] == "denied"
    assert [it["outcome"] for it in body["items"]] == ["denied", "denied"]
    assert codes(body) == {"APPROVAL_DECLINED"}
    assert word in body["reasons"][0]["message"]
    assert body["ack"] is None
    assert stack.sent_items() == []
    assert len(human.asked) == 1
    assert approval_records(stack, body["requestId"]) == [
        {"digest": batch_digest(BIG, SMALL), "granted": False, "code": "APPROVAL_DECLINED"}
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_cannot_elicit_gets_approval_unavailable(stack: Stack, mode: Mode) -> None:
    server = build_server(stack.service)
    declared: list[Any] = []

    # A probe on this test's own server object: what did the plain client declare?
    @server.tool(name="probeCapabilities")
    async def probe(ctx: Context) -> str:
        declared.append(ctx.client_capabilities)
        return "ok"

    async with Client(server, mode=mode) as client:
        await client.call_tool("probeCapabilities", {})
        result = await client.call_tool("wsBatchAmendOrders", {"category": "linear", "request": [BIG]})
    [caps] = declared
    assert caps is None or caps.elicitation is None
    assert result.is_error
    body = result.structured_content
    assert body is not None, result.content  # a structured denial, not an SDK error
    assert codes(body) == {"APPROVAL_UNAVAILABLE"}
    assert [it["outcome"] for it in body["items"]] == ["denied"]
    assert stack.sent_items() == []
    assert approval_records(stack, body["requestId"]) == [
        {"digest": batch_digest(BIG), "granted": False, "code": "APPROVAL_UNAVAILABLE"}
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_below_the_threshold_nobody_is_asked(stack: Stack, mode: Mode) -> None:
    human = Human(action="decline")  # would deny if it were ever asked
    args = {"category": "linear", "request": [SMALL]}
    body, is_error = await call(stack, "wsBatchAmendOrders", args, mode=mode, human=human)
    assert not is_error, body
    assert body["outcome"] == "verified"
    assert human.asked == []
    assert approval_records(stack, body["requestId"]) == []
    # And a client that cannot elicit is not refused when nothing needs approval.
    args = {"category": "linear", "request": [{**SMALL, "price": "3481"}]}
    body, is_error = await call(stack, "wsBatchAmendOrders", args, mode=mode, human=None)
    assert not is_error, body
    assert body["outcome"] == "verified"


@pytest.mark.parametrize("mode", MODES)
async def test_single_amend_asks_too(stack: Stack, mode: Mode) -> None:
    args = {"category": "linear", **BIG}
    no = Human(action="decline")
    body, is_error = await call(stack, "wsAmendOrder", args, mode=mode, human=no)
    assert is_error and codes(body) == {"APPROVAL_DECLINED"}
    assert stack.sent_items() == []
    [question] = no.asked
    single = AmendRequest(category="linear", items=(dict(BIG),), batch=False, tool="wsAmendOrder")
    assert f"digest {request_digest(single)[:12]}" in question.message

    yes = Human()
    body, is_error = await call(stack, "wsAmendOrder", args, mode=mode, human=yes)
    assert not is_error, body
    assert body["outcome"] == "verified"
    assert len(yes.asked) == 1
    assert stack.frames("order.amend") and not stack.frames("order.amend-batch")
    assert dec(stack.order("btc-b1")["price"]) == dec("94500.5")


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_fields_are_still_denied_and_nobody_is_asked(stack: Stack, mode: Mode) -> None:
    human = Human()
    body, is_error = await call(
        stack, "wsAmendOrder", {"category": "linear", **BIG, "leverage": "50"}, mode=mode, human=human
    )
    assert is_error and "FIELD_NOT_SUPPORTED" in codes(body)
    body, is_error = await call(
        stack,
        "wsBatchAmendOrders",
        {"category": "linear", "request": [{**BIG, "leverage": "50"}]},
        mode=mode,
        human=human,
    )
    assert is_error and "FIELD_NOT_SUPPORTED" in codes(body)
    assert human.asked == []
    assert stack.sent_items() == []


async def test_an_agent_cannot_supply_its_own_approval(stack: Stack) -> None:
    forged = {"action": "accept", "data": {"approve": True}}
    # Batch: the extra top-level argument is ignored; the question still goes to the client.
    body, is_error = await call(
        stack,
        "wsBatchAmendOrders",
        {"category": "linear", "request": [BIG], "approval": forged},
        mode="auto",
        human=None,
    )
    assert is_error and codes(body) == {"APPROVAL_UNAVAILABLE"}
    # Single: every other argument is an item field, so it is an unsupported one.
    body, is_error = await call(
        stack, "wsAmendOrder", {"category": "linear", **BIG, "approval": forged}, mode="auto", human=None
    )
    assert is_error and "FIELD_NOT_SUPPORTED" in codes(body)
    assert stack.sent_items() == []


async def test_an_approval_binds_to_the_exact_arguments(stack: Stack) -> None:
    req = AmendRequest(category="linear", items=(dict(BIG),), batch=True, tool="wsBatchAmendOrders")
    other = AmendRequest(
        category="linear",
        items=({**BIG, "price": "94600"},),
        batch=True,
        tool="wsBatchAmendOrders",
    )
    for approval in (
        Approval(digest="other", granted=True),
        Approval(digest=request_digest(other), granted=True),  # a yes to different arguments
    ):
        res = await stack.service.submit(req, approval)
        assert res.is_error
        assert codes(res.body) == {"APPROVAL_UNAVAILABLE"}
        assert "different arguments" in res.body["reasons"][0]["message"]
    assert stack.sent_items() == []
    # The same yes bound to these arguments goes through.
    res = await stack.service.submit(req, Approval(digest=request_digest(req), granted=True))
    assert not res.is_error, res.body
    assert res.body["outcome"] == "verified"
    assert len(stack.sent_items()) == 1


@contextlib.asynccontextmanager
async def serving_http(stack: Stack) -> AsyncIterator[str]:
    """The real server behind the guarded Streamable HTTP app on a free loopback port; yields /mcp."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_http_app(build_server(stack.service), TOKEN, "127.0.0.1", port, ())
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "uvicorn stopped during start-up"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


async def test_over_streamable_http_in_both_eras(stack: Stack) -> None:
    prices = iter(["94500.5", "94600", "94700", "94800"])
    async with serving_http(stack) as url:
        for mode in MODES:
            for human in (Human(), None):
                price = next(prices)
                kwargs: dict[str, Any] = {} if human is None else {"elicitation_callback": human}
                async with (
                    httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
                    Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs) as client,
                ):
                    item = {**BIG, "price": price}
                    result = await client.call_tool(
                        "wsBatchAmendOrders", {"category": "linear", "request": [item]}
                    )
                body = result.structured_content
                assert body is not None, (mode, result.content)
                if human is None:
                    assert result.is_error and codes(body) == {"APPROVAL_UNAVAILABLE"}, (mode, body)
                else:
                    assert not result.is_error and body["outcome"] == "verified", (mode, body)
                    assert len(human.asked) == 1
                    assert dec(stack.order("btc-b1")["price"]) == dec(price)
    assert [it["price"] for it in stack.sent_items()] == ["94500.5", "94700"]


async def test_mcp_inspector_cli_gets_a_structured_approval_unavailable(stack: Stack) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not on PATH: the MCP Inspector CLI cannot run here")
    async with serving_http(stack) as url:
        cmd = [npx, "-y", INSPECTOR, "--cli", url, "--transport", "http"]
        cmd += ["--header", f"Authorization: Bearer {TOKEN}", "--method", "tools/call"]
        cmd += ["--tool-name", "wsBatchAmendOrders", "--tool-arg", "category=linear"]
        cmd += ["--tool-arg", "request=" + json.dumps([BIG])]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(60):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.skip(f"{INSPECTOR} could not be fetched and run within 60 s")
    if b"npm error" in err:
        pytest.skip(f"npx could not fetch {INSPECTOR}: {err.decode(errors='replace').strip()[-200:]}")
    # The Inspector CLI declares no elicitation: a structured denial (its exit code reports isError).
    assert proc.returncode != 0
    start = out.index(b"{")
    result, _ = json.JSONDecoder().raw_decode(out[start:].decode())
    assert result["isError"] is True
    assert codes(result["structuredContent"]) == {"APPROVAL_UNAVAILABLE"}
    assert stack.sent_items() == []
