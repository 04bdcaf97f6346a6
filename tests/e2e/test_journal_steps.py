"""The journal as an audit trail of one amend, end to end (docs/journal.md, DESIGN.md §3, §4.5).

For a verified batch the journal must show every step in causal order; the intent must be
committed (visible to another SQLite connection) before the frame reaches the exchange
(write-ahead); a denied request leaves request + verdict + final and no intent; and no secret
(API key, API secret, auth signature) is anywhere in the journal's bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import Stack, start_stack, stop_stack

from sidecar.core.types import AmendRequest
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET
from sidecar.journal import JournalRecord

pytestmark = pytest.mark.slow

AMEND_OPS = ("order.amend", "order.amend-batch")
BATCH = (
    {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
    {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "qty": "0.2"},
)


async def submit(stack: Stack, items: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    async with asyncio.timeout(10):
        result = await stack.service.submit(AmendRequest("linear", items))
    return result.body


def order_events_for(stack: Stack, link: str, after_seq: int) -> list[JournalRecord]:
    return [
        r
        for r in stack.service.journal.last_records(5000)
        if r.kind == "order_event" and r.seq > after_seq and r.body["view"]["orderLinkId"] == link
    ]


async def test_verified_batch_journals_every_step_in_causal_order(stack: Stack) -> None:
    body = await submit(stack, BATCH)
    assert [it["outcome"] for it in body["items"]] == ["verified", "verified"]
    record = stack.service.journal.get_request(body["requestId"])
    assert record is not None
    assert record.status == "final"
    assert record.result == body
    seq: dict[str, int] = {}
    for r in record.records:
        seq.setdefault(r.kind, r.seq)
    assert seq["request"] < seq["intent"] < seq["sent"] < seq["ack"]
    assert record.records[-1].kind == "final"
    assert [r.kind for r in record.records].count("final") == 1
    outcomes = {r.item_idx: r for r in record.records if r.kind == "item_outcome"}
    assert set(outcomes) == {0, 1}
    intent = next(r for r in record.records if r.kind == "intent")
    assert {r.req_id for r in record.records if r.kind in ("intent", "sent", "ack", "item_outcome")} == {
        intent.body["req_id"]
    }
    assert [i["targets"] for i in intent.body["items"]] == [{"price": "94500"}, {"qty": "0.2"}]
    assert [i["before"]["orderLinkId"] for i in intent.body["items"]] == ["btc-b1", "eth-b1"]
    # The order stream and the trade socket are separate connections with no mutual order, so only
    # causal order is checked: each item's push before its verdict, the ack before every verdict.
    for index, link in enumerate(("btc-b1", "eth-b1")):
        events = order_events_for(stack, link, intent.seq)
        assert events, link
        assert seq["sent"] < events[0].seq < outcomes[index].seq
        assert seq["ack"] < outcomes[index].seq < seq["final"]
        assert outcomes[index].body["evidence"] == "order_stream"
        assert events[0].body["view"]["updatedTime"] == outcomes[index].body["observed"]["updatedTime"]
    assert stack.service.journal.verify_chain()


async def test_get_request_holds_the_order_events_of_its_items(stack: Stack) -> None:
    body = await submit(stack, BATCH)
    assert body["outcome"] == "verified"
    record = stack.service.journal.get_request(body["requestId"])
    assert record is not None
    events = [r for r in record.records if r.kind == "order_event"]
    assert {e.body["view"]["orderLinkId"] for e in events} == {"btc-b1", "eth-b1"}


async def test_intent_is_committed_before_the_frame_reaches_the_exchange(stack: Stack) -> None:
    """Inside the emulator, on receipt of the amend frame, a second SQLite connection (another
    reader, as after a crash) must already see the intent for that reqId."""
    path = Path(stack.config.journal.path)
    seen: list[tuple[str, list[Any]]] = []
    original = stack.emu.hub.on_trade_text

    def check_intent(conn: Any, session: Any, text: str) -> None:
        msg = json.loads(text)
        if msg.get("op") in AMEND_OPS:
            reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows = reader.execute(
                    "SELECT seq, kind FROM records WHERE req_id = ? ORDER BY seq", (msg["reqId"],)
                ).fetchall()
            finally:
                reader.close()
            seen.append((msg["reqId"], rows))
        original(conn, session, text)

    stack.emu.hub.on_trade_text = check_intent  # type: ignore[method-assign]  # a test hook on the witness
    body = await submit(stack, BATCH)
    assert body["outcome"] == "verified"
    [(req_id, rows)] = seen
    assert [kind for _seq, kind in rows][:1] == ["intent"]
    record = stack.service.journal.get_request(body["requestId"])
    assert record is not None
    intent = next(r for r in record.records if r.kind == "intent")
    sent = next(r for r in record.records if r.kind == "sent")
    assert intent.req_id == req_id
    assert intent.seq < sent.seq
    [frame] = [f for f in stack.emu.frames() if f.get("op") in AMEND_OPS]
    assert intent.ts_wall_ms <= frame["receivedAt"]
    assert intent.body["sent_ts_ms"] == int(frame["header"]["X-BAPI-TIMESTAMP"])


async def test_denied_request_journals_request_verdict_final_and_no_intent(stack: Stack) -> None:
    body = await submit(stack, ({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "1"},))
    assert body["outcome"] == "denied"
    record = stack.service.journal.get_request(body["requestId"])
    assert record is not None
    assert [r.kind for r in record.records] == ["request", "verdict", "final"]
    verdict = record.records[1].body
    assert "PRICE_OUT_OF_BAND" in {r["code"] for it in verdict["denied"] for r in it["reasons"]}
    assert record.records[0].body["args"]["request"][0]["price"] == "1"
    assert [f for f in stack.emu.frames() if f.get("op") in AMEND_OPS] == []
    assert stack.service.journal.unfinished_intents() == []


PER_ITEM_BATCH = (
    {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
    {"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "1"},  # out of band: denied
)


async def test_per_item_batch_sends_only_the_allowed_item_and_journals_both(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(tmp_path, batch={"mode": "per_item"})
    stack = Stack(emu, service, config, orders)
    try:
        body = await submit(stack, PER_ITEM_BATCH)
        assert [it["outcome"] for it in body["items"]] == ["verified", "denied"]
        assert body["outcome"] == "partial"
        [frame] = [f for f in emu.frames() if f.get("op") in AMEND_OPS]
        assert [i["orderLinkId"] for i in frame["args"][0]["request"]] == ["btc-b1"]
        record = service.journal.get_request(body["requestId"])
        assert record is not None
        intent = next(r for r in record.records if r.kind == "intent")
        assert [i["index"] for i in intent.body["items"]] == [0]
        assert [r.item_idx for r in record.records if r.kind == "item_outcome"] == [0]
        final = next(r for r in record.records if r.kind == "final")
        assert "PRICE_OUT_OF_BAND" in {r["code"] for r in final.body["items"][1]["reasons"]}
    finally:
        await stop_stack(emu, service)


async def test_sent_request_journals_the_validation_verdict_before_the_intent(tmp_path: Path) -> None:
    emu, service, config, orders = await start_stack(tmp_path, batch={"mode": "per_item"})
    stack = Stack(emu, service, config, orders)
    try:
        body = await submit(stack, PER_ITEM_BATCH)
        assert [it["outcome"] for it in body["items"]] == ["verified", "denied"]
        record = service.journal.get_request(body["requestId"])
        assert record is not None
        kinds = [r.kind for r in record.records]
        assert "verdict" in kinds
        assert kinds.index("request") < kinds.index("verdict") < kinds.index("intent")
        verdict = record.records[kinds.index("verdict")].body
        assert verdict["itemCount"] == 2
        assert verdict["allowed"] == [0]  # the allowed item, with no reasons
        [denied] = verdict["denied"]
        assert denied["index"] == 1
        assert "PRICE_OUT_OF_BAND" in {r["code"] for r in denied["reasons"]}
    finally:
        await stop_stack(emu, service)


async def test_no_secret_reaches_the_journal_file(stack: Stack) -> None:
    await submit(stack, BATCH)
    stack.emu.add_faults([{"kind": "drop_ack", "count": 1}])  # more record kinds: ack_timeout
    await submit(stack, ({"symbol": "SOLUSDT", "orderLinkId": "sol-b1", "price": "177.5"},))
    await submit(stack, ({"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "1"},))  # denied
    await stack.service.halt("secret check", who="test")
    await stack.service.resume(who="test")
    # The trade socket's auth signatures, recomputed from the expiry the emulator kept.
    signatures = [
        hmac.new(
            DEFAULT_API_SECRET.encode(), f"GET/realtime{f['args'][1]}".encode(), hashlib.sha256
        ).hexdigest()
        for f in stack.emu.frames()
        if f.get("op") == "auth"
    ]
    assert signatures
    needles = [DEFAULT_API_KEY, DEFAULT_API_SECRET, *signatures]
    path = Path(stack.config.journal.path)
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert path in files
    blob = b"".join(p.read_bytes() for p in files)
    assert len(blob) > 0
    for needle in needles:
        assert needle.encode() not in blob, f"secret-like value found in {[p.name for p in files]}"
    # The same through the API: no record body mentions them.
    text = json.dumps([r.body for r in stack.service.journal.last_records(5000)])
    for needle in needles:
        assert needle not in text
