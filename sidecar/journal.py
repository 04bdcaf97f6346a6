"""The journal: an append-only SQLite (WAL) record of every request, intent, ack, event and verdict.

One job: make what the sidecar did durable and readable again, before it matters (write-ahead:
`record_intent` returns only after the intent is committed). It is also the channel the CLI uses to
flip the kill switch of a running server (`control` table). It must not decide anything, hold
secrets, or swallow a write error: every sqlite/OS failure while writing raises `JournalError`, and
after one the journal refuses further writes (reliability.md §4.1 I5: a failed write or fsync is
not retried), so the service halts trading (fail closed).

Durability (`synchronous`, see docs/journal.md):
- "NORMAL" (default): a commit is in the WAL file when the call returns, so it survives a crash or
  `kill -9` of this process. A power loss or OS crash may roll back the last commits. Cost ~10-20 µs.
- "FULL": every commit also fsyncs the WAL, so it survives power loss too. Cost one fsync per
  commit (0.2-5 ms depending on the disk).

Tables: `records` (append-only; every row carries a CRC of its body and a SHA-256 chain over the
previous row's hash, for cheap tamper evidence), `requests` (one row per tool call with its final
result, rewritten when a late verdict arrives), `control` (trading state, shared with the CLI) and
`meta` (boot counter, schema version). Plain synchronous class: the asyncio service calls it from
the event-loop thread (writes take microseconds); other processes (the CLI) open their own instance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Final

from sidecar.core.types import TradingState

__all__ = [
    "DEFINITIVE_OUTCOMES",
    "IntentRecord",
    "Journal",
    "JournalError",
    "JournalRecord",
    "RequestRecord",
    "RequestSummary",
    "to_jsonable",
]

SCHEMA_VERSION: Final = 1
GENESIS_HASH: Final = "0" * 64
BUSY_TIMEOUT_MS: Final = 5000
# Item outcomes after which a restart need not look at the item again.
DEFINITIVE_OUTCOMES: Final = frozenset({"verified", "rejected", "not_applied", "superseded"})
_OUTCOME_KINDS: Final = ("item_outcome", "late_outcome")

# Keys that must never reach the journal, compared lower-case with "-" and "_" removed.
_SECRET_KEYS: Final = frozenset(
    {
        "apikey",
        "apisecret",
        "secret",
        "secretkey",
        "signature",
        "sign",
        "xbapisign",
        "xbapiapikey",
        "password",
    }
)

_SCHEMA: Final = """
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
CREATE INDEX IF NOT EXISTS records_kind ON records(kind, seq);
CREATE TABLE IF NOT EXISTS requests (
    request_id     TEXT PRIMARY KEY,
    tool           TEXT,
    created_ms     INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('received', 'intent', 'final')),
    policy_version TEXT,
    result         TEXT
);
CREATE INDEX IF NOT EXISTS requests_created ON requests(created_ms);
CREATE TABLE IF NOT EXISTS control (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JournalError(Exception):
    """The journal could not write (or open, or verify) durably. The service halts trading on it."""


# --------------------------------------------------------------------------------------------
# Values read back


@dataclass(frozen=True, slots=True)
class JournalRecord:
    seq: int
    ts_wall_ms: int
    kind: str
    request_id: str | None
    req_id: str | None
    item_idx: int | None
    body: Any  # the decoded JSON body


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """A journaled intent, for crash recovery. `pending` are the indices of `items` that have no
    definitive outcome yet (they must be reconciled by looking, never resent)."""

    seq: int
    request_id: str
    req_id: str
    op: str
    category: str
    items: tuple[Mapping[str, Any], ...]
    sent_ts_ms: int
    recv_window_ms: int
    policy_version: str | None
    wall_ms: int
    pending: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RequestSummary:
    request_id: str
    tool: str | None
    created_ms: int
    status: str
    policy_version: str | None
    outcome: str | None  # the batch outcome of the stored result, if any


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    tool: str | None
    created_ms: int
    status: str
    policy_version: str | None
    result: Any  # the stored tool result (latest, including late verdicts), or None
    records: tuple[JournalRecord, ...]


# --------------------------------------------------------------------------------------------
# JSON


def to_jsonable(value: object) -> Any:
    """Convert to plain JSON values: Decimal -> plain decimal string (no exponent), Enum -> value,
    dataclass -> dict, Mapping -> dict (string keys), sequences/sets -> list.

    Raises:
        TypeError: a value with no JSON form (bytes, arbitrary objects, non-finite floats).
    """
    if isinstance(value, Enum):  # before str/int: StrEnum and IntEnum are both
        return to_jsonable(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"non-finite Decimal {value!r} has no JSON form")
        return format(value, "f")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"non-finite float {value!r} has no JSON form")
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [to_jsonable(v) for v in items]
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _secret_path(value: Any, path: str = "$") -> str | None:
    """The path of the first key that names a secret, or of an auth frame; None if clean."""
    if isinstance(value, dict):
        if value.get("op") == "auth":  # auth frames carry the key and signature positionally
            return f"{path}.op=auth"
        for k, v in value.items():
            if k.lower().replace("-", "").replace("_", "") in _SECRET_KEYS:
                return f"{path}.{k}"
            found = _secret_path(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _secret_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _encode(body: object) -> str:
    try:
        plain = to_jsonable(body)
        text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise JournalError(f"journal body is not JSON-serialisable: {exc}") from exc
    where = _secret_path(plain)
    if where is not None:
        # Say where, never what: the value itself must not reach a log either.
        raise JournalError(f"refusing to journal a secret-like field at {where}")
    return text


def _chain(  # noqa: PLR0917 -- one row's columns, in table order
    prev_hash: str,
    ts_wall_ms: int,
    kind: str,
    request_id: str | None,
    req_id: str | None,
    item_idx: int | None,
    body: str,
) -> str:
    """This row's link: sha256(previous link + this row's columns). Editing, inserting or deleting
    any row breaks every link after it."""
    canonical = json.dumps([ts_wall_ms, kind, request_id, req_id, item_idx, body], ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _crc(body: str) -> int:
    return zlib.crc32(body.encode())


# --------------------------------------------------------------------------------------------


class Journal:
    """The SQLite journal. One instance per process; safe to share a file between processes."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        """Open (creating if needed) the journal at `path` and check its integrity.

        Raises:
            ValueError: `synchronous` is not "NORMAL" or "FULL".
            JournalError: the file cannot be created, opened, set to WAL, or fails `quick_check`.
        """
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.synchronous = sync
        self._lock = threading.Lock()
        self._failed: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {self.path}: WAL mode unavailable (got {mode!r})")
            self._conn.execute(f"PRAGMA synchronous = {sync}")
            check = [r[0] for r in self._conn.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise JournalError(f"journal {self.path} failed quick_check: {'; '.join(check[:5])}")
            # One transaction, so two processes opening a new file at once cannot interleave.
            self._conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            with self._write() as cur:
                row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise JournalError(
                        f"journal {self.path} has schema {row[0]}; this sidecar knows {SCHEMA_VERSION}"
                    )
        except JournalError:
            self._conn.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self._conn.close()
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def failed(self) -> str | None:
        """Why the journal stopped accepting writes, or None if healthy."""
        return self._failed

    # ---------------------------------------------------------------- Writes

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction; any failure rolls back, poisons the journal, raises JournalError."""
        with self._lock:
            if self._failed is not None:
                raise JournalError(f"journal is failed and refuses writes: {self._failed}")
            try:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE")  # take the write lock now: the chain reads the tail
                try:
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                self._failed = f"{type(exc).__name__}: {exc}"
                raise JournalError(f"journal write failed: {self._failed}") from exc

    def _append(
        self,
        cur: sqlite3.Cursor,
        *,
        kind: str,
        request_id: str | None,
        body_text: str,
        wall_ms: int,
        req_id: str | None = None,
        item_idx: int | None = None,
    ) -> int:
        row = cur.execute("SELECT prev_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row is not None else GENESIS_HASH
        digest = _chain(prev, wall_ms, kind, request_id, req_id, item_idx, body_text)
        cur.execute(
            "INSERT INTO records (ts_wall_ms, kind, request_id, req_id, item_idx, body, crc, prev_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (wall_ms, kind, request_id, req_id, item_idx, body_text, _crc(body_text), digest),
        )
        seq = cur.lastrowid
        assert seq is not None
        return seq

    def next_boot(self) -> int:
        """Increment and return the boot counter (part of reqIds that never repeat across restarts)."""
        with self._write() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key = 'boot'").fetchone()
            boot = (int(row[0]) if row is not None else 0) + 1
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('boot', ?)", (str(boot),))
            return boot

    def record(  # noqa: PLR0917 -- the service's agreed positional signature
        self,
        kind: str,
        request_id: str | None,
        body: Mapping[str, Any],
        wall_ms: int,
        req_id: str | None = None,
        item_idx: int | None = None,
    ) -> int:
        """Append one record; returns its seq. Committed (durable per `synchronous`) on return.

        Raises:
            JournalError: the body is not JSON-serialisable or holds a secret-like key, or the write failed.
        """
        text = _encode(body)
        with self._write() as cur:
            return self._append(
                cur,
                kind=kind,
                request_id=request_id,
                body_text=text,
                wall_ms=wall_ms,
                req_id=req_id,
                item_idx=item_idx,
            )

    def record_request(self, request_id: str, tool: str, args: Mapping[str, Any], wall_ms: int) -> None:
        """Journal a received tool call (before validation)."""
        text = _encode({"tool": tool, "args": args})
        with self._write() as cur:
            cur.execute(
                "INSERT INTO requests (request_id, tool, created_ms, status) VALUES (?, ?, ?, 'received')"
                " ON CONFLICT(request_id) DO NOTHING",
                (request_id, tool, wall_ms),
            )
            self._append(cur, kind="request", request_id=request_id, body_text=text, wall_ms=wall_ms)

    def record_intent(  # noqa: PLR0917 -- the service's agreed positional signature
        self,
        request_id: str,
        req_id: str,
        op: str,
        category: str,
        items: Sequence[Mapping[str, Any]],
        sent_ts_ms: int,
        recv_window_ms: int,
        policy_version: str | None,
        wall_ms: int,
    ) -> None:
        """Journal the write-ahead intent; it is committed before this returns (call it before the
        frame is written). Each item: index, symbol, orderId, orderLinkId, targets (strings), before.
        """
        text = _encode(
            {
                "req_id": req_id,
                "op": op,
                "category": category,
                "items": list(items),
                "sent_ts_ms": sent_ts_ms,
                "recv_window_ms": recv_window_ms,
                "policy_version": policy_version,
            }
        )
        with self._write() as cur:
            cur.execute(
                "INSERT INTO requests (request_id, tool, created_ms, status, policy_version)"
                " VALUES (?, ?, ?, 'intent', ?)"
                " ON CONFLICT(request_id) DO UPDATE"
                " SET status = 'intent', policy_version = excluded.policy_version",
                (request_id, op, wall_ms, policy_version),
            )
            self._append(
                cur, kind="intent", request_id=request_id, body_text=text, wall_ms=wall_ms, req_id=req_id
            )

    def record_final(self, request_id: str, result: Mapping[str, Any], wall_ms: int) -> None:
        """Journal the tool result the agent gets, and store it on the request."""
        text = _encode(result)
        with self._write() as cur:
            cur.execute(
                "INSERT INTO requests (request_id, tool, created_ms, status, result)"
                " VALUES (?, NULL, ?, 'final', ?)"
                " ON CONFLICT(request_id) DO UPDATE SET status = 'final', result = excluded.result",
                (request_id, wall_ms, text),
            )
            self._append(cur, kind="final", request_id=request_id, body_text=text, wall_ms=wall_ms)

    def update_result(self, request_id: str, result: Mapping[str, Any], wall_ms: int) -> None:
        """A late verdict changed the result: rewrite the stored result, append a `result_update`."""
        text = _encode(result)
        with self._write() as cur:
            cur.execute(
                "INSERT INTO requests (request_id, tool, created_ms, status, result)"
                " VALUES (?, NULL, ?, 'final', ?)"
                " ON CONFLICT(request_id) DO UPDATE SET result = excluded.result, status = 'final'",
                (request_id, wall_ms, text),
            )
            self._append(cur, kind="result_update", request_id=request_id, body_text=text, wall_ms=wall_ms)

    def set_trading_state(self, state: str, reason: str, who: str, wall_ms: int) -> None:
        """Set the kill switch (visible to every process at its next read) and journal a `state` record."""
        value = TradingState(state).value  # ValueError on an unknown state: a programming error
        text = _encode({"state": value, "reason": reason, "who": who})
        with self._write() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO control (key, value) VALUES (?, ?)",
                [
                    ("trading_state", value),
                    ("trading_reason", reason),
                    ("trading_who", who),
                    ("trading_ts_ms", str(wall_ms)),
                ],
            )
            self._append(cur, kind="state", request_id=None, body_text=text, wall_ms=wall_ms)

    def set_control(self, key: str, value: str) -> None:
        """Store a status value shared with other processes (e.g. `health`, `server_pid`).

        Not an audit record: nothing is appended to the chain. Keys starting with `trading_` belong
        to `set_trading_state` and are refused.
        """
        if key.startswith("trading_"):
            raise ValueError(f"{key!r} is set through set_trading_state")
        with self._write() as cur:
            cur.execute("INSERT OR REPLACE INTO control (key, value) VALUES (?, ?)", (key, value))

    def get_control(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM control WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    # ---------------------------------------------------------------- Reads

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(f"journal read failed: {type(exc).__name__}: {exc}") from exc

    def trading_state(self) -> tuple[str, str, str, int]:
        """(state, reason, who, ts_wall_ms); ("active", "", "", 0) if never set."""
        rows = dict(self._read("SELECT key, value FROM control WHERE key LIKE 'trading_%'"))
        return (
            rows.get("trading_state", TradingState.ACTIVE.value),
            rows.get("trading_reason", ""),
            rows.get("trading_who", ""),
            int(rows.get("trading_ts_ms", "0")),
        )

    @staticmethod
    def _to_record(row: Sequence[Any]) -> JournalRecord:
        return JournalRecord(
            seq=row[0],
            ts_wall_ms=row[1],
            kind=row[2],
            request_id=row[3],
            req_id=row[4],
            item_idx=row[5],
            body=json.loads(row[6]),
        )

    def unfinished_intents(self) -> list[IntentRecord]:
        """Intents with at least one item that has no definitive outcome record (for crash recovery).

        An item counts as finished when an `item_outcome` or `late_outcome` record for its request
        and index carries an `outcome` in DEFINITIVE_OUTCOMES, or `"settled": true` (the service
        stopped looking after its background timeout). Oldest first.
        """
        done: set[tuple[str, int]] = set()
        for request_id, item_idx, body in self._read(
            "SELECT request_id, item_idx, body FROM records WHERE kind IN (?, ?) AND item_idx IS NOT NULL",
            _OUTCOME_KINDS,
        ):
            b = json.loads(body)
            if isinstance(b, dict) and (b.get("outcome") in DEFINITIVE_OUTCOMES or b.get("settled") is True):
                done.add((request_id, item_idx))
        out: list[IntentRecord] = []
        for seq, wall_ms, request_id, body in self._read(
            "SELECT seq, ts_wall_ms, request_id, body FROM records WHERE kind = 'intent' ORDER BY seq"
        ):
            b = json.loads(body)
            items = tuple(b.get("items", ()))
            indices = [int(i.get("index", pos)) for pos, i in enumerate(items)]
            pending = tuple(i for i in indices if (request_id, i) not in done)
            if pending:
                out.append(
                    IntentRecord(
                        seq=seq,
                        request_id=request_id,
                        req_id=b["req_id"],
                        op=b["op"],
                        category=b["category"],
                        items=items,
                        sent_ts_ms=b["sent_ts_ms"],
                        recv_window_ms=b["recv_window_ms"],
                        policy_version=b.get("policy_version"),
                        wall_ms=wall_ms,
                        pending=pending,
                    )
                )
        return out

    def get_request(self, request_id: str) -> RequestRecord | None:
        """The request with its stored result and every record that names it, in order.

        None if nothing names it; status "unknown" if only records (no `requests` row) name it.
        """
        rows = self._read(
            "SELECT request_id, tool, created_ms, status, policy_version, result FROM requests"
            " WHERE request_id = ?",
            (request_id,),
        )
        records = tuple(
            self._to_record(r)
            for r in self._read(
                "SELECT seq, ts_wall_ms, kind, request_id, req_id, item_idx, body FROM records"
                " WHERE request_id = ? ORDER BY seq",
                (request_id,),
            )
        )
        if not rows:
            if not records:
                return None
            # Records that name a request the `requests` table never saw (e.g. written by `record`).
            rows = [(request_id, None, records[0].ts_wall_ms, "unknown", None, None)]
        rid, tool, created_ms, status, policy_version, result = rows[0]
        return RequestRecord(
            request_id=rid,
            tool=tool,
            created_ms=created_ms,
            status=status,
            policy_version=policy_version,
            result=json.loads(result) if result is not None else None,
            records=records,
        )

    def last_requests(self, n: int) -> list[RequestSummary]:
        """The `n` most recent requests, newest first."""
        out: list[RequestSummary] = []
        for rid, tool, created_ms, status, policy_version, result in self._read(
            "SELECT request_id, tool, created_ms, status, policy_version, result FROM requests"
            " ORDER BY created_ms DESC, rowid DESC LIMIT ?",
            (max(0, n),),
        ):
            outcome = None
            if result is not None:
                parsed = json.loads(result)
                if isinstance(parsed, dict) and isinstance(parsed.get("outcome"), str):
                    outcome = parsed["outcome"]
            out.append(RequestSummary(rid, tool, created_ms, status, policy_version, outcome))
        return out

    def last_records(self, n: int) -> list[JournalRecord]:
        """The `n` most recent records, oldest first."""
        rows = self._read(
            "SELECT seq, ts_wall_ms, kind, request_id, req_id, item_idx, body FROM records"
            " ORDER BY seq DESC LIMIT ?",
            (max(0, n),),
        )
        return [self._to_record(r) for r in reversed(rows)]

    def first_broken_seq(self) -> int | None:
        """The seq of the first record whose CRC or hash chain does not hold, or None if all hold."""
        prev = GENESIS_HASH
        for seq, ts, kind, request_id, req_id, item_idx, body, crc, digest in self._read(
            "SELECT seq, ts_wall_ms, kind, request_id, req_id, item_idx, body, crc, prev_hash"
            " FROM records ORDER BY seq"
        ):
            if _crc(body) != crc or _chain(prev, ts, kind, request_id, req_id, item_idx, body) != digest:
                return int(seq)
            prev = digest
        return None

    def verify_chain(self) -> bool:
        """True when every record's CRC and the whole hash chain hold."""
        return self.first_broken_seq() is None
