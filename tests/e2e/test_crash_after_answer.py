"""A crash after the answer, before its `final` record is committed (issue 12: the reply does not
wait for that commit): `sidecar serve` dies with SIGKILL at the deferred commit, restarts on the same
journal, and the request still ends with exactly one correct verdict per item, none sent twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from sidecar.journal import Journal
from sidecar.testing.crash import ANSWERED_CRASH_POINTS
from tests.e2e import test_crash_recovery as crash

pytestmark = pytest.mark.slow

POINT = "before_final_commit"
emulator = crash.emulator  # the same emulator fixture (seeded, prices set)
_config, _frames, _journal_rows = crash._config, crash._frames, crash._journal_rows
_params, _rest_orders = crash._params, crash._rest_orders


async def test_kill_9_before_the_final_commit_then_restart_reconciles(tmp_path: Path, emulator: str) -> None:
    assert POINT in ANSWERED_CRASH_POINTS
    config = _config(tmp_path)
    links = await _rest_orders(emulator, "fa")
    request = [
        {"symbol": "BTCUSDT", "orderLinkId": links[0], "price": "94100.0"},
        {"symbol": "ETHUSDT", "orderLinkId": links[1], "qty": "0.2"},
    ]
    amend_frames_before = len([f for f in await _frames(emulator) if f.get("op") == "order.amend-batch"])
    answered = None
    with (tmp_path / "crash.log").open("w") as errlog:
        try:
            async with (
                asyncio.timeout(30),
                Client(stdio_client(_params(config, emulator, POINT), errlog=errlog)) as c,
            ):
                # Warm the server's call path first (a first call builds its caches), so the amend's
                # answer is normally written before the deferred commit (the crash) comes.
                await c.call_tool("previewBatchAmendOrders", {"category": "linear", "request": request})
                answered = (
                    await c.call_tool("wsBatchAmendOrders", {"category": "linear", "request": request})
                ).structured_content
                # The server dies at its deferred commit, moments after this answer: wait for that.
                with pytest.raises(Exception):  # noqa: B017 -- the server is gone: any client error
                    while True:
                        await c.send_ping()
                        await asyncio.sleep(0.05)
        except Exception:  # the server died (before or after writing the answer)
            pass
    if answered is not None:  # the agent got its answer before the crash: it said verified
        assert [it["outcome"] for it in answered["items"]] == ["verified", "verified"], answered
    journal = tmp_path / "journal.sqlite3"
    [(request_id,)] = _journal_rows(
        journal,
        "SELECT request_id FROM requests WHERE tool = 'wsBatchAmendOrders' ORDER BY created_ms DESC LIMIT 1",
    )
    [(req_id,)] = _journal_rows(
        journal, "SELECT req_id FROM records WHERE kind = 'intent' AND request_id = ?", request_id
    )
    # The crash came where it should, before the deferred commit: no final record, the intent open.
    assert (
        _journal_rows(journal, "SELECT seq FROM records WHERE kind = 'final' AND request_id = ?", request_id)
        == []
    )
    with Journal(journal, create=False) as j:
        assert [i.request_id for i in j.unfinished_intents()] == [request_id]

    with (tmp_path / "restart.log").open("w") as errlog:
        async with (
            asyncio.timeout(60),
            Client(stdio_client(_params(config, emulator, None), errlog=errlog)) as c,
        ):
            result = (await c.call_tool("getAmendOutcome", {"requestId": request_id})).structured_content
    assert result is not None
    assert [it["outcome"] for it in result["items"]] == ["verified", "verified"], result
    # Sent once, never again (recovery looks, it does not resend).
    frames = [f for f in await _frames(emulator) if f.get("op") == "order.amend-batch"]
    assert len([f for f in frames if f.get("reqId") == req_id]) == 1
    assert len(frames) == amend_frames_before + 1
    with Journal(journal, create=False) as j:
        assert j.unfinished_intents() == []  # never looked at again
