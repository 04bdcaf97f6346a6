"""`sidecar probe` as a user runs it: a subprocess against a standalone `sidecar emulator`.

Against the emulator every check is `ok` or `skipped` (exit 0); a feed the emulator silences makes
`ticker_quiet_gap` differ (exit 1); `--allow-orders` on mainnet is refused before any connection
(exit 2); and the probe leaves none of its own orders open, whether a check breaks, the run is
interrupted, or it ends normally, without ever touching an order it did not create.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from sidecar.probe.report import CHECK_NAMES
from tests.probe.probe_kit import (
    finish,
    open_probe_orders,
    run_probe,
    standalone_emulator,
    start_probe,
    until,
    write_config,
)

pytestmark = pytest.mark.slow

# Checks the emulator cannot let pass: a race, a session limit, and a spot rule whose test needs a
# symbol the emulator does not list (each says why in its detail).
ALWAYS_SKIPPED = {"trade_session_limit", "post_ack_fill_race", "double_filled_push", "spot_min_order_qty"}


def _report(out: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(out)
    assert list(report) == ["exchange", "checks"]
    for check in report["checks"]:
        assert list(check) == ["name", "status", "expected", "observed", "detail"]
        assert isinstance(check["detail"], str) and check["detail"]
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    return report


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


async def test_every_check_passes_against_the_standalone_emulator(tmp_path: Path) -> None:
    config = write_config(tmp_path / "sidecar.yaml")
    async with standalone_emulator() as emu:
        code, out, err = await run_probe(
            "--config", str(config), "--exchange-url", emu.url, "--allow-orders", "--json",
            "--ticker-seconds", "2", cwd=tmp_path,
        )  # fmt: skip
        orders = await emu.orders()
    assert code == 0, err + out
    report = _report(out)
    assert report["exchange"]["restUrl"] == emu.url and report["exchange"]["allowOrders"] is True
    checks = _by_name(report)
    skipped = {n for n, c in checks.items() if c["status"] == "skipped"}
    assert skipped == ALWAYS_SKIPPED, {n: checks[n]["detail"] for n in skipped}
    assert {c["status"] for c in checks.values()} == {"ok", "skipped"}
    # The order checks really ran on the probe's own orders, and none is left open.
    mine = [o for o in orders if o["orderLinkId"].startswith("probe-")]
    assert {o["orderStatus"] for o in mine} == {"Cancelled", "Filled"}
    assert any(o["rejectReason"] == "EC_PostOnlyWillTakeLiquidity" for o in mine)
    assert open_probe_orders(orders) == []
    # The crossing fill was sold back: bought and sold quantities are equal.
    filled = [o for o in mine if o["orderStatus"] == "Filled"]
    assert {o["side"] for o in filled} == {"Buy", "Sell"} and len({o["cumExecQty"] for o in filled}) == 1
    # Read-only: without --allow-orders the order checks are skipped and nothing is placed. The
    # exchange's clock runs 2.5 s behind this host: the probe stamps requests on the exchange's
    # clock, as the sidecar does, so nothing is refused for the recv window.
    async with standalone_emulator() as emu:
        await emu.post("/emulator/clock", {"offsetMs": -2500})
        code, out, err = await run_probe(
            "--config", str(config), "--exchange-url", emu.url, "--json", "--ticker-seconds", "1",
            cwd=tmp_path,
        )  # fmt: skip
        assert [o for o in await emu.orders() if o["orderLinkId"].startswith("probe-")] == []
    assert code == 0, err + out
    checks = _by_name(_report(out))
    assert checks["batch_max_items"]["status"] == "skipped"
    assert "--allow-orders" in checks["amend_push_shape"]["detail"]
    assert abs(checks["clock_offset"]["observed"]["offsetMs"] + 2500) < 250
    assert "behind this host" in checks["clock_offset"]["detail"]


async def test_a_silent_feed_makes_ticker_quiet_gap_differ_and_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path / "sidecar.yaml")
    async with standalone_emulator() as emu:
        # Every public socket, including ones opened now, stays silent for 4 s: no snapshot, no pong.
        await emu.post("/emulator/faults", {"faults": [{"kind": "stall_public", "ms": 4000}]})
        code, out, err = await run_probe(
            "--config", str(config), "--exchange-url", emu.url, "--json", "--ticker-seconds", "1",
            cwd=tmp_path,
        )  # fmt: skip
    assert code == 1, err + out
    gap = _by_name(_report(out))["ticker_quiet_gap"]
    assert gap["status"] == "differs"
    assert gap["observed"]["everySymbolQuoted"] is False
    assert "REFERENCE_PRICE_MISSING" in gap["detail"]


async def test_human_output_names_every_check_and_counts_them(tmp_path: Path) -> None:
    config = write_config(tmp_path / "sidecar.yaml")
    async with standalone_emulator() as emu:
        code, out, err = await run_probe(
            "--config", str(config), "--exchange-url", emu.url, "--ticker-seconds", "1", cwd=tmp_path
        )  # fmt: skip
    assert code == 0, err + out
    lines = out.splitlines()
    assert lines[0].startswith("sidecar probe: ")
    for name in CHECK_NAMES:
        assert any(line.split()[1:2] == [name] for line in lines[1:-1]), name
    assert lines[-1].startswith("summary: ") and "0 differs" in lines[-1] and "0 error" in lines[-1]
    assert "emulator-secret" not in out + err


class _Listener:
    """A TCP port that counts the connections it accepts (and answers none)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_allow_orders_on_mainnet_is_refused_before_connecting(tmp_path: Path) -> None:
    listener = _Listener()
    async with listener as url:
        mainnet = write_config(tmp_path / "mainnet.yaml", env="mainnet")
        code, out, err = await run_probe(
            "--config", str(mainnet), "--exchange-url", url, "--allow-orders", cwd=tmp_path
        )  # fmt: skip
        assert code == 2 and out == ""
        assert "--allow-orders is refused on mainnet" in err
        # A custom env whose URLs are Bybit's live hosts is mainnet too.
        custom = write_config(
            tmp_path / "custom.yaml",
            env="custom",
            rest_url="https://api.bybit.com",
            ws_url="wss://stream.bybit.com",
        )
        code, _, err = await run_probe("--config", str(custom), "--allow-orders", cwd=tmp_path)
        assert code == 2 and "api.bybit.com" in err
        # So is --exchange-url naming one, whatever the env.
        code, _, err = await run_probe(
            "--config", str(custom), "--exchange-url", "https://api.bytick.com", "--allow-orders",
            cwd=tmp_path,
        )  # fmt: skip
        assert code == 2 and "api.bytick.com" in err
    assert listener.accepted == 0


async def test_usage_and_config_errors_exit_2(tmp_path: Path) -> None:
    testnet = write_config(tmp_path / "testnet.yaml", env="testnet")
    code, _, err = await run_probe("--config", str(testnet), cwd=tmp_path)
    assert code == 2 and "BYBIT_API_KEY" in err
    code, _, err = await run_probe("--ticker-seconds", "0", cwd=tmp_path)
    assert code == 2 and "--ticker-seconds" in err
    (tmp_path / "bad.yaml").write_text("version: 1\nexchange: {env: nowhere}\n")
    code, _, err = await run_probe("--config", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert code == 2 and "exchange.env" in err


async def _rest_foreign_orders(emu: Any) -> list[dict[str, Any]]:
    """Orders the probe did not create: one plain, one whose link id looks like another probe run's."""
    placed = []
    for link in ("user-1", "probe-other-1"):
        body = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "qty": "0.010", "price": "80000.00"}
        placed.append((await emu.post("/emulator/orders", {**body, "orderLinkId": link}))["order"])
    return placed


async def _assert_untouched(emu: Any, foreign: list[dict[str, Any]]) -> None:
    now = {o["orderId"]: o for o in await emu.orders()}
    for before in foreign:
        assert now[before["orderId"]] == before  # same status, price, updatedTime: never touched
    frames = (await emu.get("/emulator/frames"))["frames"]
    text = json.dumps([f.get("args") for f in frames])
    for before in foreign:
        assert before["orderId"] not in text and before["orderLinkId"] not in text


async def test_no_order_of_the_probe_stays_open_when_a_check_breaks(tmp_path: Path) -> None:
    config = write_config(tmp_path / "sidecar.yaml")
    async with standalone_emulator() as emu:
        foreign = await _rest_foreign_orders(emu)
        # The first amend-batch (the no-op check's) cuts the probe's trade socket mid-run: every
        # later order check on it fails; the clean-up must still cancel all of the probe's orders.
        await emu.post(
            "/emulator/faults", {"faults": [{"kind": "disconnect_trade", "op": "order.amend-batch"}]}
        )
        code, out, err = await run_probe(
            "--config", str(config), "--exchange-url", emu.url, "--allow-orders", "--json",
            "--ticker-seconds", "1", cwd=tmp_path,
        )  # fmt: skip
        orders = await emu.orders()
        await _assert_untouched(emu, foreign)
    assert code == 1, err + out
    checks = _by_name(_report(out))
    assert checks["batch_limit_status_units"]["status"] == "error"
    mine = [
        o for o in orders if o["orderLinkId"].startswith("probe-") and o["orderLinkId"] != "probe-other-1"
    ]
    assert len(mine) >= 5
    assert [o["orderLinkId"] for o in mine if o["orderStatus"] in ("New", "PartiallyFilled")] == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_an_interrupted_probe_cancels_its_orders(tmp_path: Path, sig: signal.Signals) -> None:
    config = write_config(tmp_path / "sidecar.yaml")
    async with standalone_emulator() as emu:
        foreign = await _rest_foreign_orders(emu)
        proc = await start_probe(
            "--config", str(config), "--exchange-url", emu.url, "--allow-orders", "--ticker-seconds", "30",
            cwd=tmp_path,
        )  # fmt: skip

        async def resting() -> list[str]:
            return [link for link in open_probe_orders(await emu.orders()) if link != "probe-other-1"]

        await until(resting, "the probe's first resting order")
        proc.send_signal(sig)
        code, out, err = await finish(proc)
        left = await resting()
        await _assert_untouched(emu, foreign)
    assert code == 1, err
    assert "interrupted" in err and "cancelled" in err, err
    assert out == ""
    assert left == []


async def test_an_unreachable_exchange_is_an_error_for_every_check(tmp_path: Path) -> None:
    listener = _Listener()  # accepts and closes at once: no HTTP answer
    async with listener as url:
        code, out, err = await run_probe("--exchange-url", url, "--json", cwd=tmp_path)
    assert code == 1, err
    checks = _report(out)["checks"]
    assert {c["status"] for c in checks} == {"error"}
    assert all("cannot read the exchange's time" in c["detail"] for c in checks)
