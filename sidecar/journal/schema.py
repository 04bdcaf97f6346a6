"""The journal's tables: the schema a new journal gets, and the one upgrade of a schema-1 file
(run once, in one transaction). It must not read or write records otherwise.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Final

from sidecar.journal.format import decode_intent_items

__all__ = [
    "BASE_SCHEMA",
    "DEFINITIVE_OUTCOMES",
    "OPEN_INTENT_SQL",
    "SCHEMA_VERSION",
    "create_schema_2",
    "migrate_to_2",
    "open_intents_of_v1",
]

SCHEMA_VERSION: Final = 2
# Item outcomes after which a restart need not look at the item again.
DEFINITIVE_OUTCOMES: Final = frozenset({"verified", "rejected", "not_applied", "superseded"})
_OUTCOME_KINDS: Final = ("item_outcome", "late_outcome")
OPEN_INTENT_SQL: Final = "INSERT OR REPLACE INTO open_intents (request_id, pending) VALUES (?, ?)"

BASE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_wall_ms INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    request_id TEXT,
    req_id     TEXT,
    item_idx   INTEGER,
    body       TEXT    NOT NULL,
    crc        INTEGER NOT NULL,
    prev_hash  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS records_request ON records(request_id, seq);
CREATE TABLE IF NOT EXISTS requests (
    request_id     TEXT PRIMARY KEY,
    tool           TEXT,
    created_ms     INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('received', 'intent', 'final')),
    policy_version TEXT,
    result         TEXT,
    outcome        TEXT
);
CREATE INDEX IF NOT EXISTS requests_created ON requests(created_ms);
CREATE TABLE IF NOT EXISTS control (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Schema 2 (journal format 2): the open intents (what recovery looks at, so a start reads only
# these) and the prune records (the chain's anchors after pruning), each found without a scan.
_SCHEMA_2: Final = """
CREATE TABLE IF NOT EXISTS open_intents (request_id TEXT PRIMARY KEY, pending TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_prune ON records(seq) WHERE kind = 'prune';
"""


def create_schema_2(cur: sqlite3.Cursor) -> None:
    for statement in _SCHEMA_2.split(";"):
        if statement.strip():
            cur.execute(statement)


def open_intents_of_v1(cur: sqlite3.Cursor) -> dict[str, list[int]]:
    """Per intent, the items without a definitive `item_outcome`/`late_outcome` or a `settled`
    marker, as schema 1 found them: by reading every outcome record (a full scan)."""
    done: set[tuple[str, int]] = set()
    for request_id, item_idx, body in cur.execute(
        "SELECT request_id, item_idx, body FROM records WHERE kind IN (?, ?) AND item_idx IS NOT NULL",
        _OUTCOME_KINDS,
    ).fetchall():
        b = json.loads(body)
        if isinstance(b, dict) and (b.get("outcome") in DEFINITIVE_OUTCOMES or b.get("settled") is True):
            done.add((request_id, item_idx))
    found: dict[str, list[int]] = {}
    for request_id, body in cur.execute(
        "SELECT request_id, body FROM records WHERE kind = 'intent' ORDER BY seq"
    ).fetchall():
        items = decode_intent_items(json.loads(body).get("items"))
        indices = [int(i.get("index", pos)) for pos, i in enumerate(items)]
        pending = [i for i in indices if (request_id, i) not in done]
        if pending:
            found[request_id] = pending
    return found


def migrate_to_2(cur: sqlite3.Cursor) -> int:
    """Upgrade a schema-1 journal (one transaction, once): add the open-intents table, filled by
    the one full scan of the outcome records this file will ever need, and the prune index; drop
    the kind index that scan was the only user of. Old records stay as they are (readers take
    both formats)."""
    columns = {row[1] for row in cur.execute("PRAGMA table_info(requests)")}
    if "outcome" not in columns:
        cur.execute("ALTER TABLE requests ADD COLUMN outcome TEXT")
    create_schema_2(cur)
    for request_id, pending in open_intents_of_v1(cur).items():
        cur.execute(OPEN_INTENT_SQL, (request_id, json.dumps(pending)))
    cur.execute("DROP INDEX IF EXISTS records_kind")
    cur.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    return SCHEMA_VERSION
