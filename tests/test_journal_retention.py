"""Retention (docs/journal.md "Retention"): `Journal.prune` deletes settled requests older than a
cutoff, whole, in bounded transactions, and never an unsettled one; the hash chain still verifies
what remains (anchors in the prune records) and still catches tampering; freed pages go back to
the file system; an older (schema 1) journal is upgraded once, and its open intents carried over."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.journal import Journal, JournalError, encoding
from sidecar.journal.store import PAGE_SIZE, WAL_RESTART_FRAMES

DAY_MS = 86_400_000
NOW = 1_800_000_000_000
OLD = NOW - 40 * DAY_MS
CUTOFF = NOW - 30 * DAY_MS


def items(n: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "symbol": "BTCUSDT",
            "orderId": f"o{i}",
            "orderLinkId": None,
            "targets": {"price": "101.5"},
            "before": {
                "orderId": f"o{i}",
                "orderLinkId": "",
                "price": "100",
                "qty": "1",
                "orderStatus": "New",
                "updatedTime": 1,
            },
        }
        for i in range(n)
    ]


def sent(j: Journal, rid: str, wall: int, *, settle: bool = True, pad: int = 0) -> None:
    """A sent request: its request, intent and (when `settle`) a final closing every item."""
    j.record_request(rid, "wsBatchAmendOrders", {"category": "linear", "request": [], "pad": "x" * pad}, wall)
    j.record_intent(rid, f"q-{rid}", "order.amend-batch", "linear", items(), wall, 5000, "p1", wall)
    if settle:
        j.record_final(rid, {"outcome": "verified", "items": [], "pad": "y" * pad}, wall + 5, done=[0, 1])


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def kinds(j: Journal) -> list[str]:
    return [r.kind for r in j.last_records(10_000)]


def test_prune_deletes_old_settled_requests_whole_and_keeps_every_unsettled_one(journal: Journal) -> None:
    sent(journal, "old-settled", OLD)
    sent(journal, "old-open", OLD + 1, settle=False)  # an intent without its last word
    sent(journal, "old-kept", OLD + 2)  # settled, but the caller still tracks it
    journal.set_trading_state("halted", "old halt", "cli:test", OLD + 3)
    journal.set_trading_state("active", "", "cli:test", OLD + 4)
    sent(journal, "recent", NOW - DAY_MS)

    done = journal.prune(CUTOFF, NOW, keep={"old-kept"})

    assert (done.requests, done.records, done.pinned, done.more) == (1, 5, 2, False)
    assert journal.get_request("old-settled") is None
    for rid in ("old-open", "old-kept", "recent"):
        assert journal.get_request(rid) is not None, rid
    [(request_id, pending)] = [(i.request_id, i.pending) for i in journal.unfinished_intents()]
    assert (request_id, pending) == ("old-open", (0, 1))
    assert journal.trading_state()[0] == "active"  # the control rows are never pruned
    assert kinds(journal)[-1] == "prune"
    assert "state" not in kinds(journal)  # request-less records older than the cutoff go too
    assert journal.verify_chain()
    assert [r.request_id for r in journal.last_requests(10)] == ["recent", "old-kept", "old-open"]
    # Nothing more is old enough: the next prune changes nothing and writes nothing.
    before = kinds(journal)
    assert journal.prune(CUTOFF, NOW, keep={"old-kept"}).records == 0
    assert kinds(journal) == before


def test_the_chain_verifies_across_many_prunes_and_still_catches_tampering(journal: Journal) -> None:
    for n in range(30):
        sent(journal, f"r{n}", OLD + n * DAY_MS // 2, settle=n % 7 != 3)  # some stay open
    for days in (39, 36, 31, 20, 1):  # the cutoff moves on; earlier prune records are pruned too
        journal.prune(NOW - days * DAY_MS, NOW - days * DAY_MS + 1)
        assert journal.verify_chain(), days
    # The latest prune record carries every anchor still needed, so earlier ones go in their turn
    # (but for the one that was the newest record, which a prune never deletes).
    assert sum(k == "prune" for k in kinds(journal)) == 2
    left = journal.last_records(10_000)
    assert {r.request_id for r in left if r.request_id} == {f"r{n}" for n in range(30) if n % 7 == 3}
    assert journal.unfinished_intents()

    path = journal.path
    # Deleting a record the prune kept breaks the chain at the record after it.
    victim = left[1]
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM records WHERE seq = ?", (victim.seq,))
    assert journal.first_broken_seq() == left[2].seq
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO records (seq, ts_wall_ms, kind, request_id, req_id, item_idx, body, crc, prev_hash)"
            " SELECT ?, ?, ?, ?, ?, ?, ?, 0, ''",
            (
                victim.seq,
                victim.ts_wall_ms,
                victim.kind,
                victim.request_id,
                victim.req_id,
                victim.item_idx,
                "{}",
            ),
        )
        conn.commit()
    finally:
        conn.close()
    assert journal.first_broken_seq() == victim.seq


def _rewrite(path: Path, seq: int, body: dict[str, Any]) -> None:
    """Replace a record's body with a consistent CRC and link (as a forger who can recompute the
    chain from that record on would): only the anchors' meaning can catch it."""
    conn = sqlite3.connect(path)
    try:
        ts, kind, rid, qid, idx = conn.execute(
            "SELECT ts_wall_ms, kind, request_id, req_id, item_idx FROM records WHERE seq = ?", (seq,)
        ).fetchone()
        [(prev,)] = conn.execute(
            "SELECT prev_hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1", (seq,)
        )
        text = json.dumps(body, separators=(",", ":"))
        link = encoding.chain_hash(prev, ts, kind, rid, qid, idx, text)
        conn.execute(
            "UPDATE records SET body = ?, crc = ?, prev_hash = ? WHERE seq = ?",
            (text, encoding.body_crc(text), link, seq),
        )
        conn.commit()
    finally:
        conn.close()


def test_a_forged_anchor_does_not_vouch_for_a_gap(journal: Journal) -> None:
    for n in range(5):
        sent(journal, f"r{n}", OLD + n)
    sent(journal, "recent", NOW)
    journal.prune(CUTOFF, NOW)
    assert journal.verify_chain()
    [prune] = [r for r in journal.last_records(100) if r.kind == "prune"]
    [[after_gap, link, kept, kept_link]] = prune.body["vouch"]
    assert kept is None  # the gap is at the start of the journal
    _rewrite(journal.path, prune.seq, {**prune.body, "vouch": [[after_gap, "0" * 64, kept, kept_link]]})
    assert journal.first_broken_seq() == after_gap
    # An anchor naming a kept record that is not there either.
    _rewrite(journal.path, prune.seq, {**prune.body, "vouch": [[after_gap, link, 1, "0" * 64]]})
    assert journal.first_broken_seq() == after_gap
    _rewrite(journal.path, prune.seq, prune.body)
    assert journal.verify_chain()


def test_deleting_the_record_kept_right_before_a_gap_is_caught(journal: Journal) -> None:
    sent(journal, "open", OLD, settle=False)  # kept: its intent is open
    sent(journal, "settled", OLD + 1)  # pruned: a gap right after the open one
    sent(journal, "recent", NOW)
    journal.prune(CUTOFF, NOW)
    assert journal.verify_chain()
    record = journal.get_request("open")
    assert record is not None
    [_request, intent] = record.records
    with sqlite3.connect(journal.path) as conn:
        conn.execute("DELETE FROM records WHERE seq = ?", (intent.seq,))
    assert journal.first_broken_seq() is not None


def test_each_prune_is_bounded_and_the_next_one_goes_on(journal: Journal) -> None:
    for n in range(50):
        sent(journal, f"r{n}", OLD + n)
    sent(journal, "recent", NOW)
    got = [journal.prune(CUTOFF, NOW, max_requests=20) for _ in range(4)]
    assert [(g.requests, g.more) for g in got] == [(20, True), (20, True), (10, False), (0, False)]
    assert [r.request_id for r in journal.last_requests(100)] == ["recent"]
    assert journal.verify_chain()


def test_the_newest_record_is_never_pruned(journal: Journal) -> None:
    for n in range(3):
        sent(journal, f"r{n}", OLD + n)
    done = journal.prune(CUTOFF, NOW)
    assert done.requests == 2 and done.pinned == 1  # the request holding the chain's tail stays
    assert journal.get_request("r2") is not None
    assert journal.verify_chain()


def test_pruning_gives_the_space_back(journal: Journal) -> None:
    for n in range(300):
        sent(journal, f"r{n}", OLD + n, pad=3000)
    sent(journal, "recent", NOW)
    journal.checkpoint()
    full = journal.path.stat().st_size
    while journal.prune(CUTOFF, NOW).more:
        pass
    assert journal.reclaim() > 0
    journal.checkpoint()
    assert journal.path.stat().st_size < full / 10, (full, journal.path.stat().st_size)
    assert journal.verify_chain()


def test_prune_from_a_worker_thread_while_the_owner_writes(journal: Journal) -> None:
    for n in range(200):
        sent(journal, f"old{n}", OLD + n)
    stop = threading.Event()
    errors: list[BaseException] = []

    def pruner() -> None:
        try:
            # As the server does (once a second there): a short prune, then a pause in which the
            # owner's writes get the lock (a pruner that never pauses would starve them).
            while not stop.wait(0.002):
                journal.prune(CUTOFF, NOW, max_requests=10)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=pruner)
    thread.start()
    try:
        for n in range(200):
            sent(journal, f"new{n}", NOW + n)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    while journal.prune(CUTOFF, NOW).more:
        pass
    assert {r.request_id for r in journal.last_requests(1000)} == {f"new{n}" for n in range(200)}
    assert journal.verify_chain()


# ---------------------------------------------------------------------------------- an older journal


def _as_schema_1(path: Path) -> None:
    """Turn a new journal into what a schema-1 sidecar left: per-item outcome records, no open
    intents table, results stored whole."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(
            "DROP TABLE open_intents; DROP INDEX records_prune;"
            " CREATE INDEX records_kind ON records(kind, seq);"
            " UPDATE meta SET value = '1' WHERE key = 'schema_version';"
        )
        conn.commit()
    finally:
        conn.close()


def test_an_older_journal_is_upgraded_once_and_its_open_intents_carried_over(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    old_items = [{**it, "orderLinkId": ""} for it in items(3)]  # format 1: a list of objects
    with Journal(path) as j:  # what a schema-1 sidecar wrote, record by record
        for rid, n in (("r1", 3), ("r2", 1)):
            body = {
                "req_id": f"q-{rid}",
                "op": "order.amend-batch",
                "category": "linear",
                "items": old_items[:n],
                "sent_ts_ms": OLD,
                "recv_window_ms": 5000,
                "policy_version": "p1",
            }
            j.record("intent", rid, body, OLD, f"q-{rid}")
        for kind, rid, outcome, idx in (
            ("item_outcome", "r1", {"outcome": "verified"}, 0),
            ("item_outcome", "r1", {"outcome": "unverified"}, 1),
            ("item_outcome", "r1", {"outcome": "unverified"}, 2),
            ("late_outcome", "r1", {"outcome": "not_applied"}, 2),
            ("item_outcome", "r2", {"outcome": "unverified", "settled": True}, 0),
        ):
            j.record(kind, rid, outcome, OLD + 1, "q", idx)
    _as_schema_1(path)
    with Journal(path, create=False) as j:
        assert j.schema == 1  # an operator's command never upgrades a journal
        assert [(i.request_id, i.pending) for i in j.unfinished_intents()] == [("r1", (1,))]
        with pytest.raises(JournalError, match="start `sidecar serve` on it once"):
            j.prune(CUTOFF, NOW)
    with Journal(path) as j:  # a server opens it: upgraded, in one transaction
        assert j.schema == 2
        [it] = j.unfinished_intents()
        assert (it.request_id, it.pending) == ("r1", (1,))
        assert it.items[1]["targets"] == {"price": "101.5"}
        assert j.verify_chain()
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        [(pending,)] = conn.execute("SELECT pending FROM open_intents").fetchall()
    assert "records_kind" not in names and pending == "[1]"


def test_the_wal_is_started_over_while_commits_never_pause(tmp_path: Path) -> None:
    # The server checkpoints from a worker thread (PASSIVE, never blocking a commit). Under
    # back-to-back commits a passive pass never catches up with the writer, so without more the WAL
    # is never started over and keeps every frame written (measured: 1.7 GB in 4 s): its size only
    # grows. Past WAL_RESTART_FRAMES the checkpoint starts it over, commits or not.
    journal = Journal(tmp_path / "j.sqlite3")
    wal = tmp_path / "j.sqlite3-wal"
    done = threading.Event()
    failures: list[BaseException] = []

    def upkeep() -> None:  # the server's once-a-second checkpoint, faster
        while not done.wait(0.02):
            try:
                journal.checkpoint()
            except BaseException as exc:  # reported below (a thread cannot raise into the test)
                failures.append(exc)

    worker = threading.Thread(target=upkeep)
    worker.start()
    sizes: list[int] = []
    try:
        for n in range(4000):
            journal.record("order_event", None, {"x": "y" * 2000}, 1_700_000_000_000 + n, req_id=f"q{n}")
            journal.flush()
            if n % 20 == 0:
                sizes.append(wal.stat().st_size)
    finally:
        done.set()
        worker.join()
    assert not failures
    restarts = sum(1 for before, after in itertools.pairwise(sizes) if after < before)
    assert restarts >= 2, f"the WAL only grew: {sizes[-1] / 1e6:.0f} MB after 4000 commits"
    journal.checkpoint()  # the writer is idle now: what is left is at most the restart threshold
    assert wal.stat().st_size <= WAL_RESTART_FRAMES * (PAGE_SIZE + 24) + 32
    assert journal.verify_chain()  # nothing lost or reordered by starting the WAL over
    journal.close()


def test_a_reader_holding_an_old_snapshot_never_makes_a_commit_wait_for_the_restart(tmp_path: Path) -> None:
    # The truncating pass waits for readers to reach the newest snapshot, and while it waits no
    # writer may start: with a long reader open (the background integrity check, an operator's
    # `sidecar journal`), a commit on the event loop would wait as long as the pass is willing to.
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    for n in range(WAL_RESTART_FRAMES + 50):  # a WAL past the restart threshold
        journal.record("order_event", None, {"x": "y" * 2000}, 1_700_000_000_000 + n, req_id=f"q{n}")
        journal.flush()
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM records").fetchall()  # holds this snapshot
    journal.record("order_event", None, {"x": "y"}, 1_700_000_100_000, req_id="late")
    journal.flush()  # the reader's snapshot is now an old one
    checkpointing = threading.Thread(target=journal.checkpoint)
    checkpointing.start()
    try:
        waited_s = [0.0]
        n = 0
        while checkpointing.is_alive() or n < 20:  # commits for as long as the checkpoint runs
            started = time.perf_counter()
            journal.record("order_event", None, {"x": "y"}, 1_700_000_200_000 + n, req_id=f"w{n}")
            journal.flush()
            waited_s.append(time.perf_counter() - started)
            n += 1
    finally:
        checkpointing.join()
        reader.rollback()
        reader.close()
    assert max(waited_s) < 0.25, f"a commit waited {max(waited_s):.2f} s behind the checkpoint"
    journal.close()
