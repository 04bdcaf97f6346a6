"""The journal as an audit trail of one amend, end to end (docs/journal.md, DESIGN.md §3, §4.5).

For a verified batch the journal holds three records (request, intent, final) and, read back as
steps (`Journal.steps`), every step in causal order; the intent must be committed (visible to
another SQLite connection) before the frame reaches the exchange (write-ahead); a denied request
leaves request + verdict + final and no intent; and no secret (API key, API secret, auth
signature) is anywhere in the journal's bytes.
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

from sidecar.core.types import AmendRequest
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET
from sidecar.journal.format import Step, decode_intent_items
from tests.e2e.e2e_kit import Stack, start_stack, stop_stack

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


def steps_of(stack: Stack, request_id: str) -> list[Step]:
    steps = stack.service.journal.steps(request_id)
    assert steps is not None, request_id
    return steps


async def test_verified_batch_journals_every_step_in_causal_order(stack: Stack) -> None:
    body = await submit(stack, BATCH)
    assert [it["outcome"] for it in body["items"]] == ["verified", "verified"]
    record = stack.service.journal.get_request(body["requestId"])
    assert record is not None
    assert record.status == "final"
    assert record.result == body
    # One record per stage that must be durable on its own: the request, the write-ahead intent,
    # and the outcome with the steps it rests on folded in.
    assert [r.kind for r in record.records] == ["request", "intent", "final"]
    steps = steps_of(stack, body["requestId"])
    pos: dict[str, int] = {}
    for n, st in enumerate(steps):
        pos.setdefault(st.kind, n)
    assert pos["request"] < pos["intent"] < pos["sent"] < pos["ack"]
    assert steps[-1].kind == "final"
    assert [st.kind for st in steps].count("final") == 1
    assert steps[-1].body == body
    outcomes = {st.item_idx: n for n, st in enumerate(steps) if st.kind == "item_outcome"}
    assert set(outcomes) == {0, 1}
    intent = steps[pos["intent"]]
    assert {st.req_id for st in steps if st.kind in ("intent", "sent", "ack", "item_outcome")} == {
        intent.body["req_id"]
    }
    assert [i["targets"] for i in intent.body["items"]] == [{"price": "94500"}, {"qty": "0.2"}]
    assert [i["before"]["orderLinkId"] for i in intent.body["items"]] == ["btc-b1", "eth-b1"]
    # The order stream and the trade socket are separate connections with no mutual order, so only
    # causal order is checked: each item's push before its verdict, the ack before every verdict.
    for index, link in enumerate(("btc-b1", "eth-b1")):
        events = [
            n
            for n, st in enumerate(steps)
            if st.kind == "order_event" and st.body["view"]["orderLinkId"] == link
        ]
        assert events, link
        assert pos["sent"] < events[0] < outcomes[index]
        assert pos["ack"] < outcomes[index] < pos["final"]
        verdict = steps[outcomes[index]]
        assert verdict.body["evidence"] == "order_stream"
        assert steps[events[0]].body["view"]["updatedTime"] == verdict.body["observed"]["updatedTime"]
        assert steps[events[0]].wall_ms <= verdict.wall_ms
    assert stack.service.journal.verify_chain()


async def test_get_request_holds_the_order_events_of_its_items(stack: Stack) -> None:
    body = await submit(stack, BATCH)
    assert body["outcome"] == "verified"
    events = [st for st in steps_of(stack, body["requestId"]) if st.kind == "order_event"]
    assert {e.body["view"]["orderLinkId"] for e in events} == {"btc-b1", "eth-b1"}
    assert {e.body["view"]["orderId"] for e in events} == {
        stack.order("btc-b1")["orderId"],
        stack.order("eth-b1")["orderId"],
    }


async def test_the_request_record_leaves_out_only_what_the_intent_holds(stack: Stack) -> None:
    """The agent's items that the intent holds exactly are named, not repeated; read back they
    are the agent's arguments again. An item the intent does not hold as sent stays in full."""
    items = (
        {"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94500"},
        {"symbol": "ETHUSDT", "orderLinkId": "eth-b1", "qty": 0.2},  # a JSON number: kept as sent
    )
    body = await submit(stack, items)
    assert body["outcome"] == "verified"
    record = stack.service.journal.get_request(body["requestId"])
    assert record is not None
    stored = record.records[0].body
    assert stored["inIntent"] == [0]
    assert stored["args"]["request"] == [items[1]]
    [request] = [st for st in steps_of(stack, body["requestId"]) if st.kind == "request"]
    assert request.body["args"] == {"category": "linear", "request": list(items)}


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
    steps = steps_of(stack, body["requestId"])
    kinds = [st.kind for st in steps]
    intent = steps[kinds.index("intent")]
    assert intent.req_id == req_id
    assert kinds.index("intent") < kinds.index("sent")
    [frame] = [f for f in stack.emu.frames() if f.get("op") in AMEND_OPS]
    assert intent.wall_ms <= frame["receivedAt"]
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
        assert [i["index"] for i in decode_intent_items(intent.body["items"])] == [0]
        steps = service.journal.steps(body["requestId"]) or []
        assert [st.item_idx for st in steps if st.kind == "item_outcome"] == [0]
        final = next(st for st in steps if st.kind == "final")
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
        assert "allowed" not in verdict  # only what was denied; the intent lists what was sent
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
    # The same through the API: no record body mentions them, nor any step read back.
    records = stack.service.journal.last_records(5000)
    text = json.dumps([r.body for r in records])
    for request_id in {r.request_id for r in records if r.request_id is not None}:
        text += json.dumps([st.body for st in stack.service.journal.steps(request_id) or []])
    for needle in needles:
        assert needle not in text
