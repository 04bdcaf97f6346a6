"""The `final` record of a sent request committed after the answer (issue 12: only the intent
commit stays before the reply): `record_final(commit=False)` buffers it, this process reads it at
once, another process only after the commit, and a crash before that commit leaves the intent open,
so the next start looks at its items again."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from sidecar.journal import Journal

WALL = 1_700_000_000_000
ITEMS = [
    {"index": 0, "symbol": "BTCUSDT", "orderId": "o0", "targets": {"price": "1"}},
    {"index": 1, "symbol": "BTCUSDT", "orderId": "o1", "targets": {"price": "2"}},
]
FINAL = {"requestId": "r1", "outcome": "verified", "items": []}


def _finals_seen_by_another_connection(path: Path) -> list[str]:
    with sqlite3.connect(path) as other:
        return [r[0] for r in other.execute("SELECT request_id FROM records WHERE kind = 'final'")]


def test_deferred_final_is_buffered_until_flush_and_read_here_at_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as j:
        j.record_intent("r1", "q1", "order.amend-batch", "linear", ITEMS, WALL, 5000, "p1", WALL)
        j.record_final("r1", FINAL, WALL + 5, done=[0, 1], commit=False)
        assert j.buffered == 1
        assert _finals_seen_by_another_connection(path) == []  # not committed yet
        record = j.get_request("r1")  # a read in this process commits it first
        assert record is not None and record.status == "final" and record.result["outcome"] == "verified"
        assert _finals_seen_by_another_connection(path) == ["r1"]
        assert j.unfinished_intents() == []


def test_deferred_final_is_committed_by_close(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as j:
        j.record_intent("r1", "q1", "order.amend-batch", "linear", ITEMS, WALL, 5000, "p1", WALL)
        j.record_final("r1", FINAL, WALL + 5, done=[0, 1], commit=False)
    assert _finals_seen_by_another_connection(path) == ["r1"]
    with Journal(path) as j:
        assert j.unfinished_intents() == []


def test_crash_before_the_deferred_commit_leaves_the_intent_open(tmp_path: Path) -> None:
    """kill -9 after the answer, before its record's commit: the final is lost, the intent is not,
    and both items are pending again (recovery reconciles them by looking)."""
    path = tmp_path / "journal.sqlite3"
    code = textwrap.dedent(
        f"""
        import json, os
        from sidecar.journal import Journal
        j = Journal({str(path)!r})
        j.record_intent("r1", "q1", "order.amend-batch", "linear", json.loads({json.dumps(ITEMS)!r}),
                        {WALL}, 5000, "p1", {WALL})
        j.record_final("r1", json.loads({json.dumps(FINAL)!r}), {WALL + 5}, done=[0, 1], commit=False)
        os._exit(9)  # no close: as abrupt as kill -9
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    assert proc.returncode == 9, proc.stderr.decode()
    assert _finals_seen_by_another_connection(path) == []
    with Journal(path) as j:
        (it,) = j.unfinished_intents()
        assert (it.request_id, it.req_id, it.pending) == ("r1", "q1", (0, 1))
        record = j.get_request("r1")
        assert record is not None and record.status == "intent"
        assert j.verify_chain()
