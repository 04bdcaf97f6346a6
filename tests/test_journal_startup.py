"""Start-up does not grow with history (docs/journal.md "Start-up"): opening the journal and the
reads a server makes before it serves (boot counter, open intents for recovery, trading state,
presence, a first write) do the same work on a journal holding 100,000 settled requests as on an
empty one. Work is counted as SQLite virtual-machine instructions (every row read is several),
which does not depend on the machine's load; the wall time is checked with a generous bound too.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.journal import Journal

pytestmark = pytest.mark.slow

WALL = 1_700_000_000_000
SETTLED = 100_000
# VM instructions per progress callback: every one (SQLite counts per statement, so a coarser
# step would miss the short statements a start makes).
_STEP = 1


def _history(path: Path, n: int) -> None:
    """`n` settled requests (request, intent, item outcome, final) written straight into the
    tables, as a long-running server would have left them."""
    with Journal(path) as j:
        j.next_boot()
    intent = {
        "req_id": "q",
        "op": "order.amend-batch",
        "category": "linear",
        "items": [
            {"index": 0, "symbol": "BTCUSDT", "orderId": "o", "orderLinkId": "", "targets": {"price": "1"}}
        ],
        "sent_ts_ms": WALL,
        "recv_window_ms": 5000,
        "policy_version": "p",
    }
    final = json.dumps({"outcome": "verified", "items": []})
    bodies = (
        ("request", None, json.dumps({"tool": "wsBatchAmendOrders", "args": {}})),
        ("intent", None, json.dumps(intent)),
        ("item_outcome", 0, json.dumps({"outcome": "verified", "evidence": "order_stream"})),
        ("final", None, final),
    )
    conn = sqlite3.connect(path)
    try:
        conn.executemany(
            "INSERT INTO records (ts_wall_ms, kind, request_id, req_id, item_idx, body, crc, prev_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (
                (WALL + i, kind, f"r{i}", f"q{i}", idx, body, "0" * 64)
                for i in range(n)
                for kind, idx, body in bodies
            ),
        )
        conn.executemany(
            "INSERT INTO requests (request_id, tool, created_ms, status, policy_version, result)"
            " VALUES (?, 'wsBatchAmendOrders', ?, 'final', 'p', ?)",
            ((f"r{i}", WALL + i, final) for i in range(n)),
        )
        conn.commit()
    finally:
        conn.close()


def _start_up(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, float]:
    """What a server does with its journal before serving: VM instructions and seconds."""
    count = [0]
    real = sqlite3.connect

    def counted(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real(*args, **kwargs)
        conn.set_progress_handler(lambda: count.__setitem__(0, count[0] + 1), _STEP)
        return conn

    monkeypatch.setattr(sqlite3, "connect", counted)
    started = time.perf_counter()
    journal = Journal(path)
    try:
        journal.next_boot()
        assert journal.unfinished_intents() == []
        journal.trading_state()
        journal.get_control("server")
        journal.record("policy", None, {"version": "p", "event": "start"}, WALL)
        journal.flush()
    finally:
        journal.close()
        monkeypatch.undo()
    return count[0] * _STEP, time.perf_counter() - started


def test_start_up_work_does_not_grow_with_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty, full = tmp_path / "empty.sqlite3", tmp_path / "full.sqlite3"
    with Journal(empty) as j:
        j.next_boot()
    _history(full, SETTLED)
    _start_up(empty, monkeypatch)  # warm the code paths, so the two runs compare alike
    small_ops, small_s = _start_up(empty, monkeypatch)
    big_ops, big_s = _start_up(full, monkeypatch)
    # Reading the history once would take millions of instructions (>= 10 per row of 400,000).
    assert small_ops > 0
    print(f"start-up: empty {small_ops} VM instructions, {small_s * 1000:.1f} ms;", end=" ")
    print(f"{SETTLED} settled requests {big_ops} VM instructions, {big_s * 1000:.1f} ms")
    assert big_ops <= small_ops + 20_000, (small_ops, big_ops)
    assert big_s <= 10 * small_s + 0.5, (small_s, big_s)
