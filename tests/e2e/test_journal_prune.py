"""Retention end to end: `sidecar journal prune` (a subprocess, from another directory) and the
running server's own pruning (`journal.retain_days`), each keeping every unsettled request, never
creating a journal, and leaving a chain that verifies; and the integrity check a server runs in
the background now that opening the journal no longer reads every page."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from sidecar.clock import SystemClock
from sidecar.core.types import AmendRequest
from sidecar.journal import Journal
from sidecar.testing.stack import build_service
from tests.e2e.e2e_kit import ROOT, emulator_process, start_stack, stop_stack
from tests.e2e.ops_kit import base_env, cli, journal_rows, until, write_config

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000


def items(n: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "symbol": "BTCUSDT",
            "orderId": f"o{i}",
            "orderLinkId": None,
            "targets": {"price": "101.5"},
            "before": None,
        }
        for i in range(n)
    ]


def sent(j: Journal, rid: str, wall: int, *, settle: bool = True, pad: int = 0) -> None:
    j.record_request(rid, "wsBatchAmendOrders", {"category": "linear", "request": [], "pad": "x" * pad}, wall)
    j.record_intent(rid, f"q-{rid}", "order.amend-batch", "linear", items(), wall, 5000, "p1", wall)
    if settle:
        j.record_final(rid, {"outcome": "verified", "items": [], "pad": "y" * pad}, wall + 5, done=[0, 1])


def retain(config: Path, days: str | None) -> Path:
    """Set `journal.retain_days` in a written config."""
    data = yaml.safe_load(config.read_text())
    data["journal"]["retain_days"] = days
    config.write_text(yaml.safe_dump(data))
    return config


# ---------------------------------------------------------------------------------- the command


async def test_sidecar_journal_prune_deletes_old_settled_requests_and_keeps_unsettled(tmp_path: Path) -> None:
    config = write_config(tmp_path / "conf" / "sidecar.yaml")  # journal: conf/var/journal.sqlite3
    journal = tmp_path / "conf" / "var" / "journal.sqlite3"
    now = SystemClock().wall_ms()
    with Journal(journal) as j:
        sent(j, "old-open", now - 40 * DAY_MS, settle=False)  # an intent still without its last word
        for n in range(200):
            sent(j, f"old-{n}", now - 40 * DAY_MS + n, pad=2000)
        sent(j, "recent", now - DAY_MS)
        j.set_trading_state("active", "", "cli:test", now)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = base_env(tmp_path / "run")

    rc, out, err = await cli("journal", "prune", "--config", str(config), "--json", cwd=elsewhere, env=env)
    assert rc == 0, err
    report = json.loads(out)
    assert report["journalPath"] == str(journal)
    assert (report["requests"], report["pinned"], report["olderThanDays"]) == (200, 1, 30.0)  # the default
    assert report["bytesAfter"] < report["bytesBefore"] / 4, report
    with Journal(journal, create=False) as j:
        assert j.get_request("old-7") is None
        assert j.get_request("recent") is not None
        assert [i.request_id for i in j.unfinished_intents()] == ["old-open"]
        assert j.verify_chain()

    rc, out, err = await cli(
        "journal", "prune", "--config", str(config), "--older-than-days", "0", cwd=elsewhere, env=env
    )
    assert rc == 0, err
    assert "pruned 1 settled request(s)" in out and "kept 1 older request(s) that are not settled" in out
    with Journal(journal, create=False) as j:
        assert [r.request_id for r in j.last_requests(10)] == ["old-open"]
        assert j.verify_chain()


async def test_sidecar_journal_prune_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    env = base_env(tmp_path / "run")
    config = write_config(tmp_path / "sidecar.yaml")
    journal = tmp_path / "var" / "journal.sqlite3"
    rc, _out, err = await cli("journal", "prune", "--config", str(config), cwd=tmp_path, env=env)
    assert rc == 2 and str(journal) in err, err
    assert not journal.exists() and not journal.parent.exists()  # nothing created
    for bad in ("-1", "nan", "inf", "x"):
        rc, _out, err = await cli(
            "journal", "prune", "--config", str(config), "--older-than-days", bad, cwd=tmp_path, env=env
        )
        assert rc == 2 and "older-than-days" in err, (bad, err)
    rc, _out, err = await cli(
        "journal", "--older-than-days", "3", "--config", str(config), cwd=tmp_path, env=env
    )
    assert rc == 2 and "goes with `sidecar journal prune`" in err
    keep_all = retain(write_config(tmp_path / "keep" / "sidecar.yaml", journal=str(journal)), None)
    with Journal(journal):
        pass
    rc, _out, err = await cli("journal", "prune", "--config", str(keep_all), cwd=tmp_path, env=env)
    assert rc == 2 and "retain_days is null" in err, err


# ---------------------------------------------------------------------------------- the server


@pytest.fixture
async def emulator() -> AsyncIterator[str]:
    async with emulator_process(seed=5) as emu:
        async with aiohttp.ClientSession() as http:
            price = {"category": "linear", "symbol": "BTCUSDT", "markPrice": "95000", "lastPrice": "95000"}
            assert (await http.post(f"{emu.url}/emulator/prices", json=price)).status == 200
            for link in ("stuck-b1", "go-b1"):
                order = {
                    "category": "linear",
                    "symbol": "BTCUSDT",
                    "side": "Buy",
                    "qty": "0.01",
                    "price": "94000",
                    "orderLinkId": link,
                }
                assert (await http.post(f"{emu.url}/emulator/orders", json=order)).status == 200
        yield emu.url


async def _faults(url: str, faults: list[dict[str, Any]] | None) -> None:
    async with aiohttp.ClientSession() as http:
        if faults is None:
            assert (await http.delete(f"{url}/emulator/faults")).status == 200
        else:
            assert (await http.post(f"{url}/emulator/faults", json={"faults": faults})).status == 200


def _request_rows(journal: Path, request_id: str) -> int:
    return int(journal_rows(journal, "SELECT count(*) FROM records WHERE request_id = ?", request_id)[0][0])


async def test_the_server_prunes_settled_requests_by_itself_and_keeps_the_unsettled(
    tmp_path: Path, emulator: str
) -> None:
    journal = tmp_path / "journal.sqlite3"
    config = write_config(
        tmp_path / "sidecar.yaml",
        journal=str(journal),
        verification={"timeout_ms": 500, "ack_timeout_ms": 300, "rest_fallback": False},
    )
    retain(config, "0.00002")  # ~1.7 s: requests settle in a moment; the test watches them go
    with Journal(journal) as j:
        sent(j, "from-last-month", SystemClock().wall_ms() - 40 * DAY_MS)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "sidecar", "serve", "--config", str(config), "--exchange-url", emulator],
        env=base_env(tmp_path / "run"),
        cwd=ROOT,
    )
    with (tmp_path / "serve.log").open("w") as errlog:
        async with asyncio.timeout(60), Client(stdio_client(params, errlog=errlog)) as client:
            # An amend nobody can prove: no ack, no push, no read-back. It stays tracked (60 s).
            await _faults(
                emulator, [{"kind": "drop_ack", "count": 5}, {"kind": "drop_order_events", "count": 50}]
            )
            stuck = await client.call_tool(
                "wsAmendOrder",
                {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "stuck-b1", "price": "94100"},
            )
            assert stuck.structured_content is not None
            assert stuck.structured_content["outcome"] == "unverified"
            await _faults(emulator, None)
            done = await client.call_tool(
                "wsAmendOrder",
                {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "go-b1", "price": "94100"},
            )
            assert done.structured_content is not None
            assert done.structured_content["outcome"] == "verified"
            stuck_id, done_id = stuck.structured_content["requestId"], done.structured_content["requestId"]
            await until(
                lambda: (
                    _request_rows(journal, done_id) == 0 and _request_rows(journal, "from-last-month") == 0
                ),
                "the server to prune the settled requests",
            )
            assert _request_rows(journal, stuck_id) >= 3, "an unsettled request is never pruned"
            assert journal_rows(journal, "SELECT request_id FROM open_intents") == [(stuck_id,)]
            with Journal(journal, create=False) as j:
                assert j.verify_chain()
                assert any(r.kind == "prune" for r in j.last_records(50))
            # Still answerable while it is kept.
            later = await client.call_tool("getAmendOutcome", {"requestId": stuck_id})
            assert later.structured_content is not None
            assert later.structured_content["items"][0]["outcome"] == "unverified"


# ---------------------------------------------------------------------------------- integrity


def _break_a_page(path: Path) -> None:
    """Damage the header of one b-tree page of `records` that a start does not read (not the
    newest): opening works, the full check does not."""
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        [(page,)] = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'records' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1"
        ).fetchall()
    finally:
        conn.close()
    with path.open("r+b") as f:
        f.seek((page - 1) * page_size + 3)
        f.write(b"\xff\xff")  # the page's cell count


async def test_a_damaged_journal_halts_trading_once_the_background_check_finds_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    now = SystemClock().wall_ms()
    with Journal(path) as j:
        for n in range(60):
            sent(j, f"r{n}", now - n, pad=3000)
        j.checkpoint()
        assert j.integrity_check() == []
    _break_a_page(path)
    with Journal(path) as j:  # opening does not read every page: it works
        assert j.integrity_check() != []
    emu, service, _config, _orders = await start_stack(tmp_path)
    try:
        checks = service.lookups.named("journal-check")
        if checks:
            await asyncio.wait_for(checks[0], 30)
        state, reason = service.trading_state()
        assert str(state) == "halted" and "integrity check" in reason, reason
    finally:
        await stop_stack(emu, service)
    assert os.path.exists(path)


# ---------------------------------------------------------------------------------- recovery's share


async def test_an_intent_recovery_cannot_read_back_is_closed_not_kept_open_forever(tmp_path: Path) -> None:
    """An open intent recovery cannot act on (here: a category this sidecar does not know) is
    closed with a `settled` record saying why, so it is not taken up at every start and never pins
    pruning."""
    now = SystemClock().wall_ms()
    with Journal(tmp_path / "journal.sqlite3") as j:
        j.record_intent("odd", "q-odd", "order.amend-batch", "futures", items(), now, 5000, "p1", now)
    emu, service, _config, _orders = await start_stack(tmp_path)
    try:
        assert service.journal.unfinished_intents() == []
        steps = service.journal.steps("odd") or []
        assert steps[-1].kind == "settled"
        assert steps[-1].body == {"unverified": [0, 1], "unrecoverable": "category 'futures'"}
    finally:
        await stop_stack(emu, service)


async def test_a_late_verdict_after_a_restart_is_a_delta_on_the_answer_given_before(tmp_path: Path) -> None:
    """Answered `unverified`, then the server stops before reconciliation ends: the next start
    looks at the item, and its verdict is journaled as a small delta on the stored answer."""
    emu, service, config, _orders = await start_stack(
        tmp_path, verification={"timeout_ms": 400, "rest_fallback": False}
    )
    try:
        emu.add_faults([{"kind": "drop_ack", "count": 1}, {"kind": "drop_order_events", "count": 1}])
        async with asyncio.timeout(10):
            result = await service.submit(
                AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},))
            )
        assert result.body["outcome"] == "unverified"
        request_id = result.body["requestId"]
    finally:
        await service.stop()
        service.journal.close()
    emu.clear_faults()
    # Now the read-back may prove it, with time to do so before start() returns.
    verification = config.verification.model_copy(update={"rest_fallback": True, "timeout_ms": 3000})
    service = build_service(config.model_copy(update={"verification": verification}), emu.url)
    try:
        async with asyncio.timeout(20):
            await service.start()  # recovery: answered before start() returns
        later = service.outcome(request_id)
        assert later is not None
        assert (
            later["outcome"] == "verified" and later["recovered"] is True and later["reconciledLate"] is True
        )
        assert later["items"][0]["outcome"] == "verified"
        record = service.journal.get_request(request_id)
        assert record is not None
        assert [r.kind for r in record.records] == ["request", "intent", "final", "result_delta"]
        assert service.journal.unfinished_intents() == []
        verdicts = [s for s in service.journal.steps(request_id) or [] if s.kind.endswith("_outcome")]
        assert [(s.kind, s.body["outcome"]) for s in verdicts] == [
            ("item_outcome", "unverified"),
            ("late_outcome", "verified"),
        ]
    finally:
        await stop_stack(emu, service)
