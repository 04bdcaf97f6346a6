"""Tests for sidecar/journal (the store): write-ahead, group commit, crash recovery, chain, shared state,
failures, secret refusal."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sidecar.logs as sidecar_logs
from sidecar.core.types import Category, Outcome
from sidecar.journal import MAX_BUFFERED_ROWS, Journal, JournalError, JournalInputError, encoding, to_jsonable
from sidecar.journal.format import decode_intent_items
from sidecar.logs import register_secret

WALL = 1_700_000_000_000


def items(n: int = 2) -> list[dict[str, object]]:
    return [
        {
            "index": i,
            "symbol": "BTCUSDT",
            "orderId": f"o{i}",
            "orderLinkId": "",
            "targets": {"price": Decimal("101.5")},
            "before": {"price": "100", "qty": "1", "updatedTime": WALL - 1000},
        }
        for i in range(n)
    ]


def intent(j: Journal, request_id: str = "r1", req_id: str = "q1", n: int = 2) -> None:
    j.record_intent(request_id, req_id, "order.amend-batch", "linear", items(n), WALL, 5000, "p1", WALL + 1)


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "var" / "journal.sqlite3"


@pytest.fixture
def journal(jpath: Path) -> Iterator[Journal]:
    j = Journal(jpath)
    yield j
    j.close()


# --- opening -----------------------------------------------------------------------------------


def test_open_creates_parent_dir_wal_and_the_chosen_synchronous(tmp_path: Path) -> None:
    """DESIGN §4.5: SQLite in WAL mode; `synchronous` configurable."""
    p = tmp_path / "a" / "b" / "j.sqlite3"
    with Journal(p, synchronous="full") as j:
        assert j.synchronous == "FULL"
        assert j._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Journal(p) as j:
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with pytest.raises(ValueError, match="synchronous"):
        Journal(p, synchronous="OFF")


def test_open_fails_with_journal_error_when_the_path_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError):
        Journal(blocker / "j.sqlite3")


def test_open_fails_with_journal_error_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "j.sqlite3"
    p.write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(JournalError):
        Journal(p)


def test_boot_counter_increments_and_survives_reopen(jpath: Path) -> None:
    with Journal(jpath) as j:
        assert j.next_boot() == 1
        assert j.next_boot() == 2
    with Journal(jpath) as j:
        assert j.next_boot() == 3


# --- writing and reading back --------------------------------------------------------------------


def test_request_lifecycle_reads_back_in_order(journal: Journal) -> None:
    journal.record_request("r1", "wsBatchAmendOrders", {"category": "linear", "request": []}, WALL)
    intent(journal)
    ticket = journal.record("ack", "r1", {"retCode": 0, "retMsg": "OK"}, WALL + 5, req_id="q1")
    assert (
        journal.record("item_outcome", "r1", {"outcome": Outcome.VERIFIED}, WALL + 6, "q1", 0) == ticket + 1
    )
    journal.record_final("r1", {"outcome": "verified", "items": []}, WALL + 7)
    rec = journal.get_request("r1")
    assert rec is not None
    assert (rec.tool, rec.status, rec.policy_version, rec.created_ms) == (
        "wsBatchAmendOrders",
        "final",
        "p1",
        WALL,
    )
    assert rec.result == {"outcome": "verified", "items": []}
    assert [r.kind for r in rec.records] == ["request", "intent", "ack", "item_outcome", "final"]
    assert [r.seq for r in rec.records] == sorted(r.seq for r in rec.records)
    assert rec.records[2].req_id == "q1"
    assert rec.records[3].item_idx == 0 and rec.records[3].body == {"outcome": "verified"}
    # Decimal as a string; the intent's items are a table (journal_format), read back as objects.
    assert decode_intent_items(rec.records[1].body["items"])[0]["targets"] == {"price": "101.5"}
    assert journal.get_request("nope") is None


def test_decimals_are_stored_as_plain_strings_without_exponent(journal: Journal) -> None:
    journal.record("verdict", "r1", {"qty": Decimal("1E-7"), "px": Decimal("1.5E+3")}, WALL)
    (r,) = journal.last_records(1)
    assert r.body == {"qty": "0.0000001", "px": "1500"}


def test_to_jsonable_handles_domain_values_and_refuses_the_rest() -> None:
    @dataclass(frozen=True)
    class V:
        category: Category
        price: Decimal
        tags: tuple[str, ...]

    assert to_jsonable({"v": V(Category.LINEAR, Decimal("2.50"), ("a",)), 1: {3, 2}}) == {
        "v": {"category": "linear", "price": "2.50", "tags": ["a"]},
        "1": [2, 3],
    }
    for bad in (b"bytes", float("nan"), Decimal("NaN"), object()):
        with pytest.raises(TypeError):
            to_jsonable(bad)


def test_unserialisable_body_raises_journal_error(journal: Journal) -> None:
    with pytest.raises(JournalError, match="JSON"):
        journal.record("ack", "r1", {"raw": b"\x00"}, WALL)


def test_update_result_rewrites_the_stored_result_and_appends_a_record(journal: Journal) -> None:
    """A late verdict: getAmendOutcome must show the upgraded result."""
    intent(journal)
    journal.record_final("r1", {"outcome": "unverified"}, WALL + 10)
    journal.update_result("r1", {"outcome": "verified"}, WALL + 9000)
    rec = journal.get_request("r1")
    assert rec is not None and rec.result == {"outcome": "verified"}
    assert [r.kind for r in rec.records][-2:] == ["final", "result_update"]
    assert journal.last_requests(1)[0].outcome == "verified"


def test_last_requests_are_newest_first_and_limited(journal: Journal) -> None:
    for i in range(5):
        journal.record_request(f"r{i}", "wsAmendOrder", {}, WALL + i)
    journal.record_request("same-ms", "wsAmendOrder", {}, WALL + 4)  # ties: insertion order decides
    journal.record_final("r2", {"outcome": "partial"}, WALL + 100)
    got = journal.last_requests(4)
    assert [s.request_id for s in got] == ["same-ms", "r4", "r3", "r2"]
    assert got[3].outcome == "partial" and got[3].status == "final"
    assert got[0].outcome is None and got[0].status == "received"
    assert journal.last_requests(0) == []


# --- write-ahead and crash recovery --------------------------------------------------------------


def test_intent_is_committed_before_record_intent_returns(journal: Journal, jpath: Path) -> None:
    """reliability.md §4.1 I1: the intent is durable before the frame leaves."""
    other = sqlite3.connect(jpath)
    try:
        intent(journal)
        rows = other.execute("SELECT kind, req_id, body FROM records WHERE kind = 'intent'").fetchall()
        assert len(rows) == 1 and rows[0][1] == "q1"
        assert json.loads(rows[0][2])["sent_ts_ms"] == WALL
        status = other.execute("SELECT status FROM requests WHERE request_id = 'r1'").fetchone()
        assert status == ("intent",)
    finally:
        other.close()


def test_intent_survives_kill_9_and_is_reported_unfinished(jpath: Path) -> None:
    """DESIGN §3: after kill -9 a restart reconciles every intent that has no verdict."""
    crash_items = [
        {"index": 0, "symbol": "BTCUSDT", "orderId": "o0", "targets": {"price": "1"}},
        {"index": 3, "symbol": "BTCUSDT", "orderId": "o3", "targets": {"price": "2"}},
    ]
    code = textwrap.dedent(
        f"""
        import json, os
        from sidecar.journal import Journal
        j = Journal({str(jpath)!r})
        items = json.loads({json.dumps(crash_items)!r})
        j.record_intent("r9", "q9", "order.amend-batch", "linear", items, {WALL}, 5000, "p1", {WALL})
        j.record("item_outcome", "r9", {{"outcome": "rejected"}}, {WALL}, req_id="q9", item_idx=0, done=[0])
        j.flush()
        # Buffered, never flushed: lost with the process, so item 3 stays pending (looked at again).
        j.record("item_outcome", "r9", {{"outcome": "verified"}}, {WALL}, req_id="q9", item_idx=3, done=[3])
        os._exit(9)  # no close, no checkpoint: as abrupt as kill -9
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    assert proc.returncode == 9, proc.stderr.decode()
    with Journal(jpath) as j:
        (it,) = j.unfinished_intents()
        assert (it.request_id, it.req_id, it.op, it.category) == ("r9", "q9", "order.amend-batch", "linear")
        assert (it.sent_ts_ms, it.recv_window_ms, it.policy_version) == (WALL, 5000, "p1")
        assert it.pending == (3,)
        assert it.items[1]["targets"] == {"price": "2"}
        assert j.verify_chain()


def test_unfinished_intents_ignore_items_closed_by_a_record(journal: Journal) -> None:
    """An item leaves the open intents with the record that gives it its last word (`done`): a
    definitive outcome, or given up (settled); an item with only `unverified` stays open."""
    intent(journal, "r1", "q1", n=3)
    intent(journal, "r2", "q2", n=1)
    journal.record("item_outcome", "r1", {"outcome": "verified"}, WALL, req_id="q1", item_idx=0, done=[0])
    journal.record("item_outcome", "r1", {"outcome": "unverified"}, WALL, req_id="q1", item_idx=1)
    journal.record("item_outcome", "r1", {"outcome": "unverified"}, WALL, req_id="q1", item_idx=2)
    journal.record("late_outcome", "r1", {"outcome": "not_applied"}, WALL, req_id="q1", item_idx=2, done=[2])
    journal.record("settled", "r2", {"unverified": [0]}, WALL, done=[0])
    (it,) = journal.unfinished_intents()
    assert (it.request_id, it.pending) == ("r1", (1,))
    journal.record_final("r1", {"outcome": "verified", "items": []}, WALL, done=[1])
    assert journal.unfinished_intents() == []


# --- tamper evidence ---------------------------------------------------------------------------


def test_hash_chain_verifies_and_detects_edits_and_deletions(journal: Journal, jpath: Path) -> None:
    assert journal.verify_chain()  # empty
    for i in range(4):
        journal.record("order_event", "r1", {"i": i}, WALL + i)
    assert journal.verify_chain() and journal.first_broken_seq() is None
    raw = sqlite3.connect(jpath)
    try:
        seqs = [r[0] for r in raw.execute("SELECT seq FROM records ORDER BY seq")]
        body = '{"i":99}'
        crc = raw.execute("SELECT crc FROM records WHERE seq = ?", (seqs[1],)).fetchone()[0]
        raw.execute("UPDATE records SET body = ? WHERE seq = ?", (body, seqs[1]))
        raw.commit()
        assert not journal.verify_chain() and journal.first_broken_seq() == seqs[1]
        # Even with a recomputed CRC, the chain still breaks.
        raw.execute("UPDATE records SET crc = ? WHERE seq = ?", (zlib.crc32(body.encode()), seqs[1]))
        raw.commit()
        assert crc != zlib.crc32(body.encode())
        assert journal.first_broken_seq() == seqs[1]
        raw.execute("UPDATE records SET body = ?, crc = ? WHERE seq = ?", ('{"i":1}', crc, seqs[1]))
        raw.commit()
        assert journal.verify_chain()
        raw.execute("DELETE FROM records WHERE seq = ?", (seqs[2],))
        raw.commit()
        assert journal.first_broken_seq() == seqs[3]
    finally:
        raw.close()


# --- trading state (shared with the CLI) --------------------------------------------------------


def test_trading_state_defaults_to_active_and_is_shared_between_instances(jpath: Path) -> None:
    """DESIGN §4.1: `sidecar halt` takes effect before it returns: the server reads the same file."""
    server, cli = Journal(jpath), Journal(jpath)
    try:
        assert server.trading_state() == ("active", "", "", 0)
        cli.set_trading_state("halted", "operator halt", "cli:alice", WALL)
        assert server.trading_state() == ("halted", "operator halt", "cli:alice", WALL)
        server.set_trading_state("active", "resume", "cli:bob", WALL + 1)
        assert cli.trading_state() == ("active", "resume", "cli:bob", WALL + 1)
        kinds = [r.body for r in server.last_records(2)]
        assert kinds == [
            {"state": "halted", "reason": "operator halt", "who": "cli:alice"},
            {"state": "active", "reason": "resume", "who": "cli:bob"},
        ]
        assert server.verify_chain()  # two writers, one unbroken chain
        with pytest.raises(ValueError):
            cli.set_trading_state("paused", "", "", WALL)
    finally:
        server.close()
        cli.close()


# --- failures: fail closed ----------------------------------------------------------------------


def test_write_to_a_read_only_database_raises_journal_error_and_poisons_the_journal(
    journal: Journal,
) -> None:
    """reliability.md §4.1 I5: a failed write is not retried; the service halts."""
    journal.record("ack", "r1", {"ok": 1}, WALL)
    assert journal.flush() == 1
    journal._conn.execute("PRAGMA query_only = ON")  # the database now refuses writes
    with pytest.raises(JournalError, match="write failed"):
        intent(journal)
    assert journal.failed is not None
    journal._conn.execute("PRAGMA query_only = OFF")
    with pytest.raises(JournalError, match="refuses writes"):
        journal.record("ack", "r1", {"ok": 2}, WALL)
    assert [r.kind for r in journal.last_records(5)] == ["ack"]  # reads still work
    assert journal.unfinished_intents() == []  # the failed intent left nothing behind


def test_disk_full_raises_journal_error(journal: Journal) -> None:
    pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(JournalError, match="full"):
        for i in range(1000):
            journal.record("order_event", "r1", {"pad": "x" * 2000, "i": i}, WALL)


def test_write_after_the_connection_is_gone_raises_journal_error(journal: Journal) -> None:
    journal._conn.close()
    with pytest.raises(JournalError):
        journal.set_trading_state("halted", "x", "y", WALL)
    with pytest.raises(JournalError):
        journal.trading_state()


# --- secrets ----------------------------------------------------------------------------------------

SECRET_KEY_VALUE = "journal-test-api-key-4f1c9b"
SECRET_VALUE = "journal-test-api-secret-77e0aa"


@pytest.fixture
def registered_secrets() -> Iterator[None]:
    register_secret(SECRET_KEY_VALUE)
    register_secret(SECRET_VALUE)
    try:
        yield
    finally:
        sidecar_logs._secret_values.discard(SECRET_KEY_VALUE)
        sidecar_logs._secret_values.discard(SECRET_VALUE)


@pytest.mark.parametrize(
    "body",
    [
        {"frame": {"op": "auth", "args": [SECRET_KEY_VALUE, 1, "sig"]}},
        {"headers": {"X-BAPI-API-KEY": SECRET_KEY_VALUE}},
        {"retMsg": f"error sign! origin_string[{SECRET_KEY_VALUE}1700000000000]"},
        {"nested": [{"deep": {"s": SECRET_VALUE}}]},
    ],
)
def test_bodies_holding_a_real_secret_value_are_refused_and_nothing_is_written(
    journal: Journal, registered_secrets: None, body: dict[str, object]
) -> None:
    """DESIGN §3: the sidecar's own secrets never appear in the journal (screened by value)."""
    with pytest.raises(JournalInputError, match="secret") as err:
        journal.record("sent", "r1", body, WALL)
    assert SECRET_KEY_VALUE not in str(err.value) and SECRET_VALUE not in str(err.value)
    assert journal.last_records(10) == []
    assert journal.failed is None  # a refused body is not a broken disk: the journal stays healthy
    journal.record("sent", "r1", {"op": "order.amend-batch", "signed": False}, WALL)


@pytest.mark.parametrize(
    "body",
    [
        {"api_key": "k"},
        {"headers": {"X-BAPI-SIGN": "abc"}},
        {"Signature": "deadbeef"},
        {"sign": "x"},
        {"op": "AUTH"},
        {"OP": "auth", "args": ["not-a-real-key"]},
        {"clientSecret": "s", "Password": "p"},
        {"note": "my secret password is not an api_key, sign here"},
    ],
)
def test_secret_looking_names_are_data_and_are_journaled(
    journal: Journal, registered_secrets: None, body: dict[str, object]
) -> None:
    """Issue 9: an agent's field names cannot make the journal refuse a record (only real secret
    values are screened), so no agent input can halt trading this way."""
    journal.record_request("r1", "wsBatchAmendOrders", {"request": [body]}, WALL)
    journal.record("verdict", "r1", body, WALL)
    assert journal.last_records(1)[0].body == body
    record = journal.get_request("r1")
    assert record is not None
    [request] = [r for r in record.records if r.kind == "request"]
    assert request.body["args"] == {"request": [body]}


def test_get_request_shows_records_even_without_a_request_row(journal: Journal) -> None:
    journal.record("recovery_start", "r7", {"items": 1}, WALL)
    rec = journal.get_request("r7")
    assert rec is not None and rec.status == "unknown" and rec.created_ms == WALL
    assert [r.kind for r in rec.records] == ["recovery_start"]


def test_non_finite_numbers_are_refused_and_nothing_is_written(journal: Journal) -> None:
    """Chosen: refuse (JournalError), never write NaN/Infinity or a string in its place."""
    for bad in (float("nan"), float("inf"), -float("inf"), Decimal("NaN"), Decimal("-Infinity")):
        with pytest.raises(JournalError, match="JSON"):
            journal.record("ack", "r1", {"nested": [{"x": bad}]}, WALL)
    assert journal.last_records(5) == [] and journal.failed is None


def test_to_jsonable_returns_plain_data_as_is_and_converts_the_rest() -> None:
    plain = {"a": [1, 2.5, None, True, {"b": "c"}]}
    assert to_jsonable(plain) is plain  # no copy: the journal encodes it next anyway
    assert to_jsonable((1, Category.LINEAR)) == [1, "linear"]
    assert to_jsonable({Decimal("1.50"): 1, Category.SPOT: {2: Decimal("1E+2")}}) == {
        "1.50": 1,
        "spot": {"2": "100"},
    }
    with pytest.raises(TypeError):
        to_jsonable({"a": [float("inf")]})
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError):
        to_jsonable(cyclic)


# --- group commit ---------------------------------------------------------------------------------


def _rows(path: Path, sql: str = "SELECT kind FROM records ORDER BY seq") -> list[Any]:
    """What a second connection (another process, or the disk after a crash) sees."""
    other = sqlite3.connect(path)
    try:
        return other.execute(sql).fetchall()
    finally:
        other.close()


def _count_commits(journal: Journal) -> list[str]:
    seen: list[str] = []
    journal._conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def test_records_are_buffered_until_flush_then_committed_in_one_transaction(
    journal: Journal, jpath: Path
) -> None:
    commits = _count_commits(journal)
    for i in range(5):
        journal.record("order_event", None, {"i": i}, WALL + i)
    journal.update_result("r0", {"outcome": "verified"}, WALL)
    assert journal.buffered == 6 and _rows(jpath) == [] and commits == []
    assert journal.flush() == 6
    assert commits == ["COMMIT"] and journal.buffered == 0
    assert _rows(jpath) == [("order_event",)] * 5 + [("result_update",)]
    assert journal.flush() == 0 and commits == ["COMMIT"]  # nothing buffered: no transaction
    assert journal.verify_chain()


def test_record_intent_commits_the_buffer_and_the_intent_together_before_returning(
    journal: Journal, jpath: Path
) -> None:
    """I1 write-ahead: when record_intent returns, the request record, the evidence buffered before
    it and the intent are all visible to another connection, in call order."""
    commits = _count_commits(journal)
    journal.record_request("r1", "wsBatchAmendOrders", {"category": "linear"}, WALL)
    journal.record("approval", "r1", {"granted": True}, WALL)
    assert _rows(jpath) == []
    intent(journal)
    assert commits == ["COMMIT"]
    assert _rows(jpath, "SELECT kind, request_id FROM records ORDER BY seq") == [
        ("request", "r1"),
        ("approval", "r1"),
        ("intent", "r1"),
    ]
    assert _rows(jpath, "SELECT status, tool, policy_version FROM requests") == [
        ("intent", "wsBatchAmendOrders", "p1")
    ]


def test_record_final_and_state_and_control_writes_commit_what_is_buffered(
    journal: Journal, jpath: Path
) -> None:
    """I2 decision before reply: every record the answer depends on is durable with it."""
    intent(journal)
    journal.record("ack", "r1", {"retCode": 0}, WALL)
    journal.record("item_outcome", "r1", {"outcome": "verified"}, WALL, "q1", 0)
    journal.record_final("r1", {"outcome": "verified"}, WALL)
    assert [k for (k,) in _rows(jpath)] == ["intent", "ack", "item_outcome", "final"]
    journal.record("late_outcome", "r1", {"outcome": "verified"}, WALL, "q1", 1)
    journal.set_trading_state("halted", "test", "me", WALL)
    assert [k for (k,) in _rows(jpath)][-2:] == ["late_outcome", "state"]
    journal.record("policy", None, {"version": "p2"}, WALL)
    journal.set_control("health", "ok")
    assert [k for (k,) in _rows(jpath)][-1] == "policy"
    journal.record("policy", None, {"version": "p3"}, WALL)
    assert journal.next_boot() == 1
    assert [k for (k,) in _rows(jpath)][-1] == "policy" and journal.buffered == 0
    assert journal.verify_chain()


def test_reads_see_this_processs_buffered_writes_but_trading_state_does_not_commit(
    journal: Journal, jpath: Path
) -> None:
    journal.record_request("r1", "wsAmendOrder", {}, WALL)
    assert journal.trading_state()[0] == "active" and journal.get_control("x") is None
    assert journal.buffered == 1  # the per-submit kill-switch read stays a plain SELECT
    rec = journal.get_request("r1")
    assert rec is not None and rec.status == "received" and journal.buffered == 0
    for read in (
        lambda: journal.last_records(1),
        lambda: journal.last_requests(1),
        journal.unfinished_intents,
        journal.verify_chain,
    ):
        journal.record("ack", "r1", {"n": 1}, WALL)
        read()
        assert journal.buffered == 0
    assert len(_rows(jpath)) == 5


def test_another_instance_sees_buffered_rows_only_after_the_flush(jpath: Path) -> None:
    server, cli = Journal(jpath), Journal(jpath)
    try:
        server.record("ack", "r1", {"n": 1}, WALL)
        assert cli.last_records(5) == []
        server.flush()
        assert [r.kind for r in cli.last_records(5)] == ["ack"]
    finally:
        server.close()
        cli.close()


def test_the_buffer_commits_itself_when_full(journal: Journal, jpath: Path) -> None:
    for i in range(MAX_BUFFERED_ROWS - 1):
        journal.record("order_event", None, {"i": i}, WALL)
    assert _rows(jpath, "SELECT count(*) FROM records") == [(0,)]
    journal.record("order_event", None, {"i": "last"}, WALL)
    assert _rows(jpath, "SELECT count(*) FROM records") == [(MAX_BUFFERED_ROWS,)]
    assert journal.buffered == 0 and journal.verify_chain()


def test_close_commits_the_buffer(jpath: Path) -> None:
    j = Journal(jpath)
    j.record("ack", "r1", {"n": 1}, WALL)
    j.close()
    assert _rows(jpath) == [("ack",)]


def test_a_failed_flush_poisons_the_journal_and_drops_the_buffer(journal: Journal, jpath: Path) -> None:
    """reliability.md §4.1 I5: like any failed write. The buffered rows were never reported durable."""
    journal.record("ack", "r1", {"n": 1}, WALL)
    journal.flush()
    journal.record_request("r2", "wsAmendOrder", {}, WALL)
    journal.record("ack", "r2", {"n": 2}, WALL)
    journal._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(JournalError, match="write failed"):
        journal.flush()
    journal._conn.execute("PRAGMA query_only = OFF")
    assert journal.failed is not None and journal.buffered == 0
    for write in (
        lambda: journal.record("ack", "r2", {"n": 3}, WALL),
        lambda: journal.record_request("r3", "wsAmendOrder", {}, WALL),
        lambda: intent(journal, "r3"),
        lambda: journal.record_final("r3", {}, WALL),
        lambda: journal.set_control("health", "ok"),
        journal.flush,
    ):
        with pytest.raises(JournalError, match="refuses writes"):
            write()
    assert [r.kind for r in journal.last_records(5)] == ["ack"]  # reads still work, nothing half-written
    assert journal.get_request("r2") is None and _rows(jpath) == [("ack",)]


def test_a_failed_automatic_flush_raises_from_record_and_poisons(journal: Journal) -> None:
    journal._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(JournalError, match="write failed"):
        for i in range(MAX_BUFFERED_ROWS):
            journal.record("order_event", None, {"i": i}, WALL)
    assert journal.failed is not None


# --- the chain's exact form ---------------------------------------------------------------------


def test_every_link_is_the_documented_sha256_over_the_previous_link_and_the_row(
    journal: Journal, jpath: Path
) -> None:
    """docs/journal.md: prev_hash(n) = sha256(prev_hash(n-1) + "\\n" + json.dumps([columns],
    ensure_ascii=False)); recomputed here independently of the module."""
    journal.record_request("r1", "wsAmendOrder", {"é": '€\n\t"\\\u2028'}, WALL)
    intent(journal)
    journal.record("item_outcome", "r1", {"outcome": "verified"}, WALL + 3, "q1", 1)
    journal.set_trading_state("halted", "x", "y", WALL + 4)
    prev = "0" * 64
    rows = _rows(
        jpath, "SELECT ts_wall_ms, kind, request_id, req_id, item_idx, body, crc, prev_hash FROM records"
    )
    assert len(rows) == 4
    for ts, kind, request_id, req_id, item_idx, body, crc, link in rows:
        canonical = json.dumps([ts, kind, request_id, req_id, item_idx, body], ensure_ascii=False)
        assert link == hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()
        assert crc == zlib.crc32(body.encode())
        prev = link


_ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    ts=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    kind=_ANY_TEXT,
    request_id=st.none() | _ANY_TEXT,
    req_id=st.none() | _ANY_TEXT,
    item_idx=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
    body=_ANY_TEXT,
)
def test_the_fast_canonical_row_is_exactly_json_dumps(
    ts: int, kind: str, request_id: str | None, req_id: str | None, item_idx: int | None, body: str
) -> None:
    expected = "\n" + json.dumps([ts, kind, request_id, req_id, item_idx, body], ensure_ascii=False)
    assert encoding.canonical_row(ts, kind, request_id, req_id, item_idx, body) == expected.encode()


def test_checkpoint_copies_the_wal_without_losing_anything(jpath: Path) -> None:
    j = Journal(jpath)
    for n in range(50):
        j.record("order_event", f"r{n}", {"n": n}, 1_700_000_000_000 + n)
    j.flush()
    j.checkpoint()  # what the service runs in a worker thread once a second
    with sqlite3.connect(jpath) as other:
        assert other.execute("SELECT count(*) FROM records WHERE kind = 'order_event'").fetchone() == (50,)
    assert j.verify_chain()
    j.close()
    j.checkpoint()  # after close: a no-op, never a use of a closed connection


def test_checkpoint_runs_beside_writes_from_another_thread(jpath: Path) -> None:
    j = Journal(jpath)

    def checkpoints() -> None:
        for _ in range(20):
            j.checkpoint()

    worker = threading.Thread(target=checkpoints)
    worker.start()
    for n in range(200):
        j.record("order_event", "r", {"n": n}, 1_700_000_000_000 + n)
        if n % 20 == 0:
            j.flush()
    worker.join(timeout=30)
    j.flush()
    assert len(j.last_records(500)) == 200
    assert j.verify_chain()
    j.close()
