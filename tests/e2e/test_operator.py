"""The operator's controls from another terminal against a running server: `sidecar halt`,
`resume`, `status`, `journal`, `reload` (SIGHUP); and the automatic kill-switch trips.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from sidecar.core.types import AmendRequest
from tests.e2e.e2e_kit import ROOT, Stack, start_stack, stop_stack

pytestmark = pytest.mark.slow


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _write_config(path: Path, journal: Path, band_bps: str = "150") -> None:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(journal)
    data["symbols"][0]["price_band_bps"] = band_bps
    path.write_text(yaml.safe_dump(data))


async def _policy(client: Client) -> dict[str, Any]:
    body = (
        await client.call_tool("getSafetyPolicy", {"category": "linear", "symbol": "BTCUSDT"})
    ).structured_content
    assert isinstance(body, dict)
    return body


async def _amend(client: Client) -> dict[str, Any]:
    policy = await _policy(client)
    rule = policy["symbols"][0]
    tick = Decimal(rule["tickSize"])
    # 0.3 % below the reference: inside the 1.5 % band however the simulated price walks meanwhile.
    price = (Decimal(rule["referencePrice"]) * Decimal("0.997") / tick).to_integral_value(ROUND_DOWN) * tick
    result = await client.call_tool(
        "previewBatchAmendOrders",
        {
            "category": "linear",
            "request": [{"symbol": "BTCUSDT", "orderLinkId": "sim-btc-buy-1", "price": str(price)}],
        },
    )
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_halt_status_resume_journal_and_reload_from_another_terminal(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    journal = tmp_path / "journal.sqlite3"
    _write_config(config, journal)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_")}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "sidecar", "serve", "--config", str(config)], env=env, cwd=ROOT
    )
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with asyncio.timeout(90), Client(stdio_client(params, errlog=errlog)) as client:
            assert (await _amend(client))["items"][0]["outcome"] == "allowed"

            rc, out, _ = await _cli("halt", "--reason", "lunch break", "--config", str(config))
            assert rc == 0 and "halted" in out
            body = await _amend(client)  # the very next call is denied
            assert body["items"][0]["outcome"] == "denied"
            assert "TRADING_HALTED" in {r["code"] for r in body["items"][0]["reasons"]}
            policy = await _policy(client)
            assert policy["tradingState"] == "halted" and policy["haltReason"] == "lunch break"

            rc, out, _ = await _cli("status", "--json", "--config", str(config))
            assert rc == 0
            status = json.loads(out)
            assert status["tradingState"] == "halted" and status["reason"] == "lunch break"
            health = status["health"]
            assert health["tradeSocket"] == "up" and health["privateSocket"] == "up"
            assert set(health["referenceAgesMs"]) >= {"linear:BTCUSDT", "spot:BTCUSDT"}

            rc, out, _ = await _cli("resume", "--config", str(config))
            assert rc == 0
            assert (await _amend(client))["items"][0]["outcome"] == "allowed"

            # Hot reload: a valid file is swapped in, an invalid one is refused and the old policy kept.
            before = await _policy(client)
            _write_config(config, journal, band_bps="50")
            rc, out, _ = await _cli("reload", "--config", str(config))
            assert rc == 0, out
            async with asyncio.timeout(10):
                # Bounded poll of the product's own API: the signal has no completion event to await.
                while (await _policy(client))["symbols"][0]["priceBandBps"] != "50":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            after = await _policy(client)
            assert after["policyVersion"] != before["policyVersion"]
            config.write_text(config.read_text().replace("version: 1", "version: 1\nbogus_key: 1"))
            rc, _, err = await _cli("reload", "--config", str(config))
            assert rc == 2 and "bogus_key" in err  # refused before signalling
            assert (await _policy(client))["policyVersion"] == after["policyVersion"]
            _write_config(config, journal, band_bps="50")

        rc, out, _ = await _cli("journal", "--last", "5", "--config", str(config))
        assert rc == 0
        rc, out, _ = await _cli("journal", "--json", "--config", str(config))
        rows = json.loads(out)
        assert isinstance(rows, list)
        rc, out, _ = await _cli("journal", "--request", "nope", "--config", str(config))
        assert rc == 2
        errlog.seek(0)
        logs = errlog.read()
    assert "config.reloaded" in logs


# ------------------------------------------------------------------------- automatic trips


async def _submit(stack: Stack, link: str = "btc-b1", price: str = "94010") -> dict[str, Any]:
    result = await stack.service.submit(
        AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": link, "price": price},))
    )
    return result.body


async def test_journal_failure_halts_and_sends_nothing(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(tmp_path)
    stack = Stack(emu, service, config, orders)
    try:
        service.journal._conn.execute("PRAGMA query_only = 1")  # the disk refuses writes from now on
        body = await _submit(stack)
        assert body["outcome"] == "denied"
        assert "INTERNAL_ERROR" in {r["code"] for r in body["reasons"]}
        assert stack.sent_items() == []
        assert (await service.policy_view())["tradingState"] == "halted"
        body = await _submit(stack)
        assert "TRADING_HALTED" in {r["code"] for it in body["items"] for r in it["reasons"]}
        assert stack.sent_items() == []
    finally:
        await stop_stack(emu, service)


async def test_stale_reference_prices_trip_a_halt(tmp_path: Path) -> None:
    emu, service, _config, _orders = await start_stack(tmp_path, safety={"stale_reference_trip_ms": 1})
    try:
        far_future = service.clock.monotonic_ns() + 10_000_000_000
        service.check_trips(far_future)
        view = await service.policy_view()
        assert view["tradingState"] == "halted"
        assert "reference prices stale" in view["haltReason"]
    finally:
        await stop_stack(emu, service)


async def test_repeated_exchange_rate_limits_switch_to_reducing(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(tmp_path, safety={"max_exchange_rate_limited": 1})
    stack = Stack(emu, service, config, orders)
    try:
        emu.add_faults([{"kind": "rate_limit", "count": 2}])
        await _submit(stack, "btc-b1", "94010")
        await _submit(stack, "btc-b2", "94020")
        service.check_trips(service.clock.monotonic_ns())
        assert (await service.policy_view())["tradingState"] == "reducing"
        # Reducing: a buy moved up (towards the market) is denied; moved down is allowed.
        up = await _submit(stack, "btc-b1", "94500")
        assert "RISK_INCREASING" in {r["code"] for it in up["items"] for r in it["reasons"]}
        down = await _submit(stack, "btc-b1", "93900")
        assert down["items"][0]["outcome"] != "denied"
    finally:
        await stop_stack(emu, service)


async def test_too_many_unverified_trips_a_halt(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(
        tmp_path, safety={"max_unverified": 1}, verification={"timeout_ms": 300, "rest_fallback": False}
    )
    stack = Stack(emu, service, config, orders)
    try:
        emu.add_faults([{"kind": "drop_ack", "count": 2}, {"kind": "drop_order_events", "count": 2}])
        for link, price in (("btc-b1", "94010"), ("btc-b2", "94020")):
            body = await _submit(stack, link, price)
            assert body["items"][0]["outcome"] == "unverified"
        service.check_trips(service.clock.monotonic_ns())
        view = await service.policy_view()
        assert view["tradingState"] == "halted"
        assert "unverified" in view["haltReason"]
    finally:
        await stop_stack(emu, service)


async def test_socket_down_too_long_trips_a_halt(tmp_path: Path) -> None:
    emu, service, _config, _orders = await start_stack(tmp_path, safety={"socket_down_trip_s": 1})
    try:
        now = service.clock.monotonic_ns()
        service.check_trips(now)
        assert (await service.policy_view())["tradingState"] == "active"
        await emu.stop()  # the exchange goes away: every socket drops
        async with asyncio.timeout(10):
            # Bounded poll of the adapter's own state: the loss has no event a test can await.
            while service.trade.ready:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        now = service.clock.monotonic_ns()
        service.check_trips(now)  # first sighting: the outage starts now
        assert (await service.policy_view())["tradingState"] == "active"
        service.check_trips(now + 1_500_000_000)  # 1.5 s later, still down
        view = await service.policy_view()
        assert view["tradingState"] == "halted"
        assert "socket down" in view["haltReason"]
    finally:
        await service.stop()
        service.journal.close()


async def test_one_batch_with_many_unverified_items_counts_once(tmp_path: Path) -> None:
    emu, service, _config, _orders = await start_stack(
        tmp_path, safety={"max_unverified": 1}, verification={"timeout_ms": 300, "rest_fallback": False}
    )
    try:
        emu.add_faults([{"kind": "drop_ack", "count": 1}, {"kind": "drop_order_events", "count": 2}])
        result = await service.submit(
            AmendRequest(
                "linear",
                (
                    {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"},
                    {"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "94020"},
                ),
            )
        )
        assert [it["outcome"] for it in result.body["items"]] == ["unverified", "unverified"]
        service.check_trips(service.clock.monotonic_ns())
        assert (await service.policy_view())["tradingState"] == "active"  # one incident, not two
    finally:
        await stop_stack(emu, service)
