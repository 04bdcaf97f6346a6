"""Issue 11 end to end: the sidecar against an emulator that behaves like Bybit, through the MCP SDK.

One test (or two) per finding of the fidelity audit: quiet tickers, a silent feed, cursor paging at
start-up, crossing amends, an exchange clock behind the host, outcomes after the ack, options and
inverse, closed orders found in order history, linear+inverse budget sharing and spot's deprecated
minOrderQty, and the exchange's own "unchanged" answer to a no-op amend that raced the sidecar's
view. Real emulator on loopback, real service and journal, the MCP SDK's `Client(server)`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets
from mcp import Client
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.bybit.codec import encode_amend, encode_auth
from sidecar.bybit.signing import ws_auth_args
from sidecar.clock import SystemClock
from sidecar.core.types import AmendItem, Category
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from sidecar.emulator.instruments import OPTION_SYMBOL
from sidecar.mcp_server import build_server
from sidecar.metrics import Observability, health_verdict
from tests.e2e.e2e_kit import Stack, dec, e2e_config, start_stack, stop_stack

pytestmark = pytest.mark.slow

TEST_TIMEOUT_S = 20
FUNDING_PERIOD_MS = 8 * 3600 * 1000


@asynccontextmanager
async def stack_of(tmp_path: Path, **kw: Any) -> AsyncIterator[Stack]:
    emu, service, config, orders = await start_stack(tmp_path, **kw)
    try:
        yield Stack(emu, service, config, orders)
    finally:
        await stop_stack(emu, service)


async def call(client: Client, tool: str, args: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    async with asyncio.timeout(TEST_TIMEOUT_S):
        result = await client.call_tool(tool, args)
    assert isinstance(result.structured_content, dict), result.content
    return result.structured_content, bool(result.is_error)


async def amend(client: Client, category: str = "linear", **item: Any) -> dict[str, Any]:
    body, _ = await call(client, "wsAmendOrder", {"category": category, **item})
    return body


def codes(item: dict[str, Any]) -> set[str]:
    return {r["code"] for r in item["reasons"]}


async def reference_age_ms(client: Client, category: str, symbol: str) -> int | None:
    policy, _ = await call(client, "getSafetyPolicy", {"category": category, "symbol": symbol})
    age = policy["symbols"][0]["referenceAgeMs"]
    return None if age is None else int(age)


async def until(probe: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 10) -> Any:
    """Poll the product's read API until `done` (the event comes from a real socket), bounded."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = await probe()
            if done(value):
                return value
            await asyncio.sleep(0.02)


class JumpClock:
    """The host's clock plus a jump a test adds (monotonic and wall alike): fake minutes passing."""

    def __init__(self) -> None:
        self._base = SystemClock()
        self.jump_ms = 0

    def monotonic_ns(self) -> int:
        return self._base.monotonic_ns() + self.jump_ms * 1_000_000

    def wall_ms(self) -> int:
        return self._base.wall_ms() + self.jump_ms


# ------------------------------------------------------------------------------ 1. quiet tickers


async def test_a_frozen_market_stays_tradable_for_minutes(tmp_path: Path) -> None:
    """Bybit sends nothing while nothing changes; answered pings keep the quotes vouched for."""
    clock = JumpClock()
    async with stack_of(tmp_path, clock=clock, safety={"stale_reference_trip_ms": 3_600_000}) as stack:
        emu = stack.emu
        # Fake minutes, both sides at once (sidecar clock and exchange clock), inside one funding
        # period so that not even nextFundingTime changes on the frozen ticker.
        left_ms = FUNDING_PERIOD_MS - emu.server_time_ms() % FUNDING_PERIOD_MS
        step_ms = min(60_000, (left_ms - 10_000) // 6)
        published = dict(emu.hub.public._cs)
        async with Client(build_server(stack.service)) as client:
            assert (await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500"))[
                "outcome"
            ] == "verified"
            for n in range(1, 6):
                clock.jump_ms += step_ms
                emu.set_clock_offset(clock.jump_ms)
                assert (await reference_age_ms(client, "linear", "BTCUSDT") or 0) >= step_ms
                await until(
                    lambda: reference_age_ms(client, "linear", "BTCUSDT"),
                    lambda a: a is not None and a < 2000,
                )
                body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price=str(94500 + 10 * n))
                assert body["outcome"] == "verified", body
        assert emu.hub.public._cs == published  # not one ticker frame in all that time
        assert stack.service.health()["clockOffsetMs"] is not None


# ------------------------------------------------------------------------------ 1b. silent feed


async def test_a_silent_feed_is_denied_within_max_age_and_recovers(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with (
        stack_of(tmp_path, reference_price={"max_age_ms": 1000}) as stack,
        Client(build_server(stack.service)) as client,
    ):

        async def preview() -> dict[str, Any]:
            body, _ = await call(
                client,
                "previewBatchAmendOrders",
                {
                    "category": "linear",
                    "request": [{"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"}],
                },
            )
            item: dict[str, Any] = body["items"][0]
            return item

        assert (await preview())["outcome"] == "allowed"
        silent_at = loop.time()
        stack.emu.add_faults([{"kind": "stall_public", "ms": 2500}])
        denied = await until(preview, lambda it: it["outcome"] == "denied")
        assert loop.time() - silent_at <= 1.0 + 0.5  # max_age_ms, plus a margin for a busy machine
        assert codes(denied) == {"REFERENCE_PRICE_STALE"}
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
        assert body["outcome"] == "denied" and body["ack"] is None  # nothing sent while silent
        await until(preview, lambda it: it["outcome"] == "allowed")
        assert loop.time() - silent_at >= 2.5  # not before the stall ended
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
        assert body["outcome"] == "verified"
        assert len(stack.frames("order.amend")) == 1  # only the one sent after the recovery


# ------------------------------------------------------------------------------ 2. cursors


async def test_120_resting_orders_at_start_up_are_all_known(tmp_path: Path) -> None:
    def rest_many(emu: Emulator) -> None:
        for i in range(120):
            emu.place_order("linear", "ETHUSDT", "Buy", "0.01", f"{3000 + i}.00", order_link_id=f"many-{i}")
        emu.place_order("linear", "BTCPERP", "Buy", "0.001", "60000.00", order_link_id="usdc-1")

    async with (
        stack_of(tmp_path, before_start=rest_many) as stack,
        Client(build_server(stack.service)) as client,
    ):
        for i in range(120):
            state, is_error = await call(
                client,
                "getOrderState",
                {"category": "linear", "symbol": "ETHUSDT", "orderLinkId": f"many-{i}"},
            )
            assert not is_error and state["found"], state
            assert state["order"]["orderStatus"] == "New" and dec(state["order"]["price"]) == 3000 + i
        usdc, _ = await call(
            client, "getOrderState", {"category": "linear", "symbol": "BTCPERP", "orderLinkId": "usdc-1"}
        )
        assert usdc["order"]["orderStatus"] == "New"  # USDC-settled: settleCoin USDT alone misses it
        assert (await amend(client, symbol="ETHUSDT", orderLinkId="many-119", price="3449.00"))[
            "outcome"
        ] == "verified"


# ------------------------------------------------------------------------------ 3. crossing amends


async def test_crossing_amends_report_the_fill_and_the_postonly_cancel(tmp_path: Path) -> None:
    def rest_postonly(emu: Emulator) -> None:
        emu.place_order(
            "linear", "BTCUSDT", "Sell", "0.01", "96300.0", order_link_id="btc-po", timeInForce="PostOnly"
        )

    async with (
        stack_of(tmp_path, before_start=rest_postonly) as stack,
        Client(build_server(stack.service)) as client,
    ):
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="95500")
        [item] = body["items"]
        assert item["outcome"] == "verified"
        assert item["observed"]["orderStatus"] == "Filled" and dec(item["observed"]["price"]) == 95500
        assert stack.order("btc-b1")["avgPrice"] == "95000.1"  # taken at the ask, at once

        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-po", price="94900")
        [item] = body["items"]
        assert item["outcome"] == "superseded"  # the order is gone, not resting at 94900
        assert item["observed"]["orderStatus"] == "Cancelled"
        assert stack.order("btc-po")["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"


# ------------------------------------------------------------------------------ 4. closed orders


async def test_amending_an_order_that_just_filled_is_superseded(stack: Stack) -> None:
    stack.emu.add_faults([{"kind": "fill_before_amend", "count": 1}])
    async with Client(build_server(stack.service)) as client:
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
    [item] = body["items"]
    assert (item["outcome"], item["exchangeCode"]) == ("superseded", 110001)  # not "rejected": it existed
    assert item["exchangeMsg"] == "order not exists or too late to replace"
    assert item["observed"]["orderStatus"] == "Filled"


# ------------------------------------------------------------------------------ 5. clock skew


async def test_an_exchange_clock_2500_ms_behind_the_host_still_verifies(tmp_path: Path) -> None:
    def behind(emu: Emulator) -> None:
        emu.set_clock_offset(-2500)

    async with (
        stack_of(tmp_path, before_start=behind) as stack,
        Client(build_server(stack.service)) as client,
    ):
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
        assert body["items"][0]["outcome"] == "verified", body
        sent = next(f for f in stack.frames() if f.get("op") == "order.amend")
        assert abs(int(sent["header"]["X-BAPI-TIMESTAMP"]) - sent["receivedAt"]) < 500  # on Bybit's clock
        health = stack.service.health()
        assert abs(health["clockOffsetMs"] + 2500) < 250
        assert health["clockSampleAgeMs"] is not None

        async def published() -> dict[str, Any] | None:  # what `sidecar status` reads (every second)
            text = stack.service.journal.get_control("health")
            return None if text is None else json.loads(text)

        status = await until(published, lambda h: h is not None and h.get("clockOffsetMs") is not None)
        assert abs(status["clockOffsetMs"] + 2500) < 250
        _, healthz = health_verdict(stack.service.health(), max_reference_age_ms=2000)
        assert abs(healthz["clockOffsetMs"] + 2500) < 250
        scraped = generate_latest(Observability(stack.service).registry).decode()
        [offset] = [
            s.value
            for f in text_string_to_metric_families(scraped)
            for s in f.samples
            if s.name == "sidecar_exchange_clock_offset_seconds"
        ]
        assert abs(offset + 2.5) < 0.25


# ------------------------------------------------------------------------------ 6. after the ack


@pytest.mark.parametrize(
    ("fault", "outcome", "status", "price"),
    [
        ({"kind": "fill_after_ack"}, "superseded", "Filled", "94000"),  # the fill won: double Filled
        ({"kind": "cancel_after_ack"}, "superseded", "Cancelled", "94000"),
        ({"kind": "fill_after_ack", "amended": True}, "verified", "New", "94500"),  # landed, then filled
        ({"kind": "cancel_after_ack", "amended": True}, "verified", "New", "94500"),
    ],
    ids=["fill-won", "cancel-won", "amended-then-filled", "amended-then-cancelled"],
)
async def test_outcomes_after_the_ack(
    stack: Stack, fault: dict[str, Any], outcome: str, status: str, price: str
) -> None:
    stack.emu.add_faults([{**fault, "count": 1}])
    async with Client(build_server(stack.service)) as client:
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
        [item] = body["items"]
        assert body["ack"]["retCode"] == 0
        assert (item["outcome"], item["observed"]["orderStatus"]) == (outcome, status), item
        assert dec(item["observed"]["price"]) == dec(price)
        state, _ = await call(
            client, "getOrderState", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "btc-b1"}
        )
    assert state["order"]["orderStatus"] in ("Filled", "Cancelled")  # the book followed the exchange
    assert stack.emu.hub.faults.active() == []


# ------------------------------------------------------------------------ 7. option, inverse; 9. budgets


def extra_symbols(base: list[dict[str, Any]], *extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [*base, *extra]


async def test_option_and_inverse_amends_and_the_shared_budget(tmp_path: Path) -> None:
    base = e2e_config(tmp_path).model_dump(mode="json")
    symbols = extra_symbols(
        base["symbols"],
        {
            "category": "inverse",
            "symbol": "BTCUSD",
            "max_qty": "10000",
            "max_notional": "100000",
            "price_band_bps": "150",
        },
        {
            "category": "option",
            "symbol": OPTION_SYMBOL,
            "max_qty": "5",
            "max_notional": "100000",
            "price_band_bps": "500",
        },
    )
    limits = [
        *[r for r in base["rate_limits"] if r.get("op") != "order.amend"],
        {"scope": "exchange", "op": "order.amend", "category": "linear", "max": 3, "window_s": 60},
    ]

    def rest_more(emu: Emulator) -> None:
        emu.set_price("inverse", "BTCUSD", mark_price="95000", last_price="95000")
        emu.place_order("inverse", "BTCUSD", "Buy", "100", "94000.00", order_link_id="inv-b1")
        emu.place_order("option", OPTION_SYMBOL, "Buy", "0.10", "2400", order_link_id="opt-b1")
        emu.set_rate_limit("order.amend", "linear", 100)  # Bybit's own budget is not the one tested here

    async with (
        stack_of(tmp_path, symbols=symbols, rate_limits=limits, before_start=rest_more) as stack,
        Client(build_server(stack.service)) as client,
    ):
        opt = await amend(client, "option", symbol=OPTION_SYMBOL, orderLinkId="opt-b1", price="2450")
        assert opt["items"][0]["outcome"] == "verified", opt
        inv = await amend(client, "inverse", symbol="BTCUSD", orderLinkId="inv-b1", price="94100.50")
        assert inv["items"][0]["outcome"] == "verified", inv
        lin = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
        assert lin["items"][0]["outcome"] == "verified", lin
        # 3 per minute at 80 %: 2 for linear AND inverse together (one "inverse+linear" budget)
        again = await amend(client, "inverse", symbol="BTCUSD", orderLinkId="inv-b1", price="94200.00")
        [item] = again["items"]
        assert item["outcome"] == "throttled" and codes(item) == {"RATE_LIMITED"}
        assert "order.amend:linear" in item["reasons"][0]["message"]
        policy, _ = await call(client, "getSafetyPolicy", {"category": "option"})
        assert (
            policy["symbols"][0]["referencePrice"] == "2500" and policy["symbols"][0]["referenceAgeMs"] < 2000
        )


# ------------------------------------------------------------------------------ 8. order history


async def test_a_closed_order_realtime_forgot_is_found_in_history(stack: Stack) -> None:
    stack.emu.set_realtime_retention(0)  # as after a Bybit release
    stack.emu.add_faults(
        [
            {"kind": "fill_after_ack", "count": 1},
            {"kind": "drop_order_events", "count": 10, "symbol": "BTCUSDT"},
        ]
    )
    async with Client(build_server(stack.service)) as client:
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
    [item] = body["items"]
    assert (item["outcome"], item["observed"]["orderStatus"]) == ("superseded", "Filled"), item
    steps = stack.service.journal.steps(body["requestId"])  # the read-backs the answer rests on
    assert steps is not None
    rest = [s for s in steps if s.kind == "rest"]
    assert rest and rest[-1].body["view"]["orderStatus"] == "Filled"


# ------------------------------------------------------------------------------ 9. spot minOrderQty


async def test_spot_qty_below_the_deprecated_min_order_qty_is_the_exchanges_to_judge(stack: Stack) -> None:
    async with Client(build_server(stack.service)) as client:
        body = await amend(client, "spot", symbol="BTCUSDT", orderLinkId="spot-b1", qty="0.000047")
    [item] = body["items"]
    # Not QTY_BELOW_MIN from the deprecated minOrderQty 0.000048: Bybit checks the order value.
    assert (item["outcome"], item["exchangeCode"]) == ("rejected", 170140), item


# ------------------------------------------------------------------------------ 10. no-op race


async def test_an_unchanged_answer_from_the_exchange_is_rejected_10001(stack: Stack) -> None:
    """Another session moved the order first and the sidecar did not see the push: the exchange
    answers 10001 "The order remains unchanged ..." and the sidecar reports exactly that."""
    emu = stack.emu
    emu.add_faults([{"kind": "drop_order_events", "count": 1, "symbol": "BTCUSDT"}])
    order_id = stack.order("btc-b1")["orderId"]
    async with websockets.connect(f"{emu.ws_url}/v5/trade") as other:
        await other.send(
            encode_auth(ws_auth_args(DEFAULT_API_KEY, DEFAULT_API_SECRET, emu.server_time_ms() + 10_000))
        )
        assert json.loads(await other.recv())["retCode"] == 0
        item = AmendItem("BTCUSDT", order_id, None, {"price": dec("94500")})
        await other.send(encode_amend("other-1", Category.LINEAR, item, emu.server_time_ms(), 5000))
        assert json.loads(await other.recv())["retCode"] == 0
    assert stack.service.order_state("linear", "BTCUSDT", None, "btc-b1")["price"] == "94000"  # type: ignore[index]
    async with Client(build_server(stack.service)) as client:
        body = await amend(client, symbol="BTCUSDT", orderLinkId="btc-b1", price="94500")
    [result] = body["items"]
    assert (result["outcome"], result["exchangeCode"]) == ("rejected", 10001), result
    assert (
        result["exchangeMsg"]
        == "The order remains unchanged as the parameters entered match the existing ones."
    )
    assert codes(result) == {"NO_CHANGE"}  # reported as such (DESIGN §4.3)
