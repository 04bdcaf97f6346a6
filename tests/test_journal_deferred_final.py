"""The `final` record of a sent request built and committed after the answer (issue 12: only the
intent commit stays before the reply): `record_final_later` buffers it with its body unbuilt, this
process reads it at once, another process only after the commit, a body the journal refuses is
recorded through the fallback, and a crash before that commit leaves the intent open, so the next
start looks at its items again."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.journal import Journal
from sidecar.logs import register_secret

WALL = 1_700_000_000_000
ITEMS = [
    {"index": 0, "symbol": "BTCUSDT", "orderId": "o0", "targets": {"price": "1"}},
    {"index": 1, "symbol": "BTCUSDT", "orderId": "o1", "targets": {"price": "2"}},
]
FINAL: dict[str, object] = {"requestId": "r1", "outcome": "verified", "items": []}


def _finals_seen_by_another_connection(path: Path) -> list[str]:
    with sqlite3.connect(path) as other:
        return [r[0] for r in other.execute("SELECT request_id FROM records WHERE kind = 'final'")]


def test_deferred_final_is_buffered_until_flush_and_read_here_at_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as j:
        j.record_intent("r1", "q1", "order.amend-batch", "linear", ITEMS, WALL, 5000, "p1", WALL)
        built: list[int] = []

        def build() -> dict[str, object]:
            built.append(1)
            return FINAL

        j.record_final_later("r1", build, WALL + 5, outcome="verified", done=[0, 1])
        assert j.buffered == 1 and built == []  # not even built yet
        assert _finals_seen_by_another_connection(path) == []  # not committed yet
        record = j.get_request("r1")  # a read in this process commits it first
        assert record is not None and record.status == "final" and record.result["outcome"] == "verified"
        assert built == [1]
        assert _finals_seen_by_another_connection(path) == ["r1"]
        assert j.unfinished_intents() == []


def test_deferred_final_is_committed_by_close(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as j:
        j.record_intent("r1", "q1", "order.amend-batch", "linear", ITEMS, WALL, 5000, "p1", WALL)
        j.record_final_later("r1", lambda: FINAL, WALL + 5, outcome="verified", done=[0, 1])
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
        final = json.loads({json.dumps(FINAL)!r})
        j.record_final_later("r1", lambda: final, {WALL + 5}, outcome="verified", done=[0, 1])
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


def test_a_refused_or_failing_body_is_recorded_through_the_fallback_and_never_fails_the_commit(
    tmp_path: Path,
) -> None:
    register_secret("s3cr3t-value-for-this-test")
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as j:
        j.record_intent("r1", "q1", "order.amend-batch", "linear", ITEMS, WALL, 5000, "p1", WALL)
        j.record_intent("r2", "q2", "order.amend-batch", "linear", ITEMS, WALL, 5000, "p1", WALL)
        leaky = {**FINAL, "note": "s3cr3t-value-for-this-test"}
        j.record_final_later(
            "r1", lambda: leaky, WALL + 5, outcome="verified", done=[0, 1], fallback=lambda b: {"note": "*"}
        )

        def broken() -> dict[str, object]:
            raise RuntimeError("a bug in a body builder")

        j.record_final_later("r2", broken, WALL + 6, outcome="verified", done=[0, 1])
        assert j.flush() == 2
        assert j.failed is None
        first, second = (j.get_request(r) for r in ("r1", "r2"))
        assert first is not None and first.result["note"] == "*"
        assert second is not None and second.result == {
            "requestId": "r2",
            "outcome": "verified",
            "recordRefused": "RuntimeError",
        }
        assert j.unfinished_intents() == []
        assert j.verify_chain()


def test_an_intent_commit_leaves_other_answers_unbuilt_unless_order_needs_them(tmp_path: Path) -> None:
    """No send waits for another request's answer record: an intent's commit keeps the buffered
    `record_final_later` rows buffered (unbuilt). A later record of the same request in the buffer
    would then be committed ahead of its final, so that case commits everything, in order."""
    path = tmp_path / "journal.sqlite3"
    built: list[str] = []

    def build(request_id: str) -> Callable[[], dict[str, object]]:
        def body() -> dict[str, object]:
            built.append(request_id)
            return {**FINAL, "requestId": request_id}

        return body

    with Journal(path) as j:
        j.record_intent("r1", "q1", "order.amend-batch", "linear", ITEMS, WALL, 5000, "p1", WALL)
        j.record_final_later("r1", build("r1"), WALL + 5, outcome="verified", done=[0, 1])
        j.record("request", "r2", {"tool": "wsBatchAmendOrders"}, WALL + 6)
        j.record_intent("r2", "q2", "order.amend-batch", "linear", ITEMS, WALL + 6, 5000, "p1", WALL + 6)
        assert built == [] and j.buffered == 1  # r2's request and intent committed, r1's final not
        with sqlite3.connect(path) as other:
            kinds = [r[0] for r in other.execute("SELECT kind FROM records ORDER BY seq")]
            status = other.execute("SELECT status FROM requests WHERE request_id = 'r1'").fetchone()
        assert kinds == ["intent", "request", "intent"] and status == ("intent",)
        j.flush()
        assert built == ["r1"]

        j.record_final_later("r2", build("r2"), WALL + 7, outcome="verified", done=[0])
        j.record("settled", "r2", {"unverified": [1]}, WALL + 8, done=[1])  # after r2's final
        j.record_intent("r3", "q3", "order.amend-batch", "linear", ITEMS, WALL + 9, 5000, "p1", WALL + 9)
        assert built == ["r1", "r2"] and j.buffered == 0
        kinds_r2 = [r.kind for r in (j.get_request("r2") or pytest.fail("r2")).records]
        assert kinds_r2 == ["request", "intent", "final", "settled"]
        assert [it.request_id for it in j.unfinished_intents()] == ["r3"]
        assert j.verify_chain()
