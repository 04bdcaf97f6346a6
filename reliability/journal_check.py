"""The journal checker (reliability.md §5.1 oracle 3): does one journal hold, for every amend frame
the emulator received, an earlier intent and the complete chain of records that ends it?

Its one job is to read a journal (read-only) and the emulator's frames and count what is missing or
out of order. It must not change the journal or decide whether a part passed.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sidecar.journal.records import JournalRecord

__all__ = ["check_journal"]


def _by_request(path: Path) -> Iterator[tuple[str | None, list[JournalRecord]]]:
    """Every record grouped by request (request-less records first, as one group), oldest first
    within a group. One request's records are decoded at a time: a long run's journal holds
    ~10^5 requests and keeping every body would cost far more memory than the check needs."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        group: list[JournalRecord] = []
        current: str | None = None
        for row in conn.execute(
            "SELECT seq, ts_wall_ms, kind, request_id, req_id, item_idx, body FROM records"
            " ORDER BY request_id IS NOT NULL, request_id, seq"
        ):
            seq, ts_wall_ms, kind, request_id, req_id, item_idx, body = row
            record = JournalRecord(seq, ts_wall_ms, kind, request_id, req_id, item_idx, json.loads(body))
            if group and record.request_id != current:
                yield current, group
                group = []
            current = record.request_id
            group.append(record)
        if group:
            yield current, group
    finally:
        conn.close()


def check_journal(path: Path, frames: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The journal checker (reliability.md §5.1 oracle 3) over one journal and the emulator's frames.

    For every journaled intent, read back as steps (`sidecar.journal.format.expand`: the steps a record
    folds in, unfolded in the order they happened): `request` → `intent` → `sent` → an `ack`,
    `ack_timeout` or `connection_lost` for its reqId → one `item_outcome` per sent item → `final`.
    Also: every amend frame the emulator received has an earlier intent (write-ahead), no reqId
    reached it twice (no resend), and the CRC/hash chain holds.
    """
    from sidecar.journal import Journal  # noqa: PLC0415
    from sidecar.journal.format import decode_intent_items, expand  # noqa: PLC0415

    amend_frames = [f for f in frames if f.get("op") in ("order.amend", "order.amend-batch")]
    frame_counts = Counter(f.get("reqId") for f in amend_frames)
    problems: Counter[str] = Counter()
    examples: dict[str, str] = {}

    def bad(what: str, rid: str) -> None:
        problems[what] += 1
        examples.setdefault(what, rid)

    n_records = 0
    intents = 0
    sent = 0
    journaled_qids: set[str | None] = set()
    # Trade events journaled on their own (their request was no longer held), by reqId: the
    # request-less group comes first.
    loose_trade: set[str | None] = set()
    for rid, records in _by_request(path):
        n_records += len(records)
        if rid is None:
            loose_trade.update(
                r.req_id for r in records if r.kind in ("ack", "ack_timeout", "connection_lost")
            )
            continue
        intent = next((r for r in records if r.kind == "intent"), None)
        if intent is None:
            continue
        intents += 1
        qid = intent.req_id
        journaled_qids.add(qid)
        items = [
            int(it.get("index", n)) for n, it in enumerate(decode_intent_items(intent.body.get("items")))
        ]
        steps = expand(records)
        kinds = [st.kind for st in steps]
        if "request" not in kinds or kinds.index("request") > kinds.index("intent"):
            bad("request_missing_or_after_intent", rid)
        if "not_sent" in kinds:
            if frame_counts.get(qid, 0):
                bad("not_sent_but_received", rid)
            continue
        if "sent" not in kinds:
            bad("sent_missing", rid)
            continue
        sent += 1
        sent_at = kinds.index("sent")
        trade = [n for n, k in enumerate(kinds) if k in ("ack", "ack_timeout", "connection_lost")]
        if not trade and qid not in loose_trade:
            bad("ack_or_timeout_missing", rid)
        outcomes = {
            st.item_idx: n
            for n, st in enumerate(steps)
            if st.kind == "item_outcome" and st.item_idx is not None
        }
        if [i for i in items if i not in outcomes]:
            bad("item_outcome_missing", rid)
        finals = [n for n, k in enumerate(kinds) if k == "final"]
        if not finals:
            bad("final_missing", rid)
        elif outcomes and max(outcomes.values()) > finals[0]:
            bad("item_outcome_after_final", rid)
        if outcomes and min(outcomes.values()) < sent_at:
            bad("item_outcome_before_sent", rid)
        if trade and outcomes and min(trade) > min(outcomes.values()):
            bad("verdict_before_ack_or_timeout_record", rid)
        if frame_counts.get(qid, 0) != 1:
            bad("frame_count_not_1", rid)
    unjournaled = [q for q in frame_counts if q not in journaled_qids]
    with Journal(path) as j:
        chain_ok = j.verify_chain()
    return {
        "records": n_records,
        "intents": intents,
        "sent": sent,
        "amend_frames": len(amend_frames),
        "resent_req_ids": sum(1 for c in frame_counts.values() if c > 1),
        "frames_without_intent": len(unjournaled),
        "problems": dict(problems),
        "problem_examples": examples,
        "chain_ok": chain_ok,
    }
