"""The journal: an append-only SQLite (WAL) record of every request, intent, ack, event and verdict.

One job: make what the sidecar did durable and readable again, before it matters. It is also the
channel the CLI uses to flip the kill switch of a running server (`control` table). It must not
decide anything, hold secrets, or swallow a write error: every sqlite/OS failure while writing
raises `JournalError`, and after one the journal refuses further writes (reliability.md §4.1 I5: a
failed write or fsync is not retried), so the service halts trading (fail closed).

Group commit (reliability.md §4.1 I3): evidence (`record`, `record_request`, `update_result`,
`record_late`) is encoded at once but buffered in memory; `flush()` commits everything buffered in
ONE transaction.
The calls a guarantee depends on flush before they return, buffered rows included:
- `record_intent` (I1 write-ahead: the request record and the intent are committed before the
  frame leaves), `record_final` (I2: every record the answer depends on is committed before the
  reply; a sent request's answer, `record_final_later`, right after it instead: its open intent
  covers a crash in between), `set_trading_state`, `set_control`, `next_boot` and `close()`.
- every read of `records`/`requests` (read-your-writes within the process).
A failed flush poisons the journal like any failed write; the rows it held were never reported
as durable to anyone (nothing that depends on them was answered), so they are lost but not lied
about. The buffer flushes itself at `MAX_BUFFERED_ROWS` rows or `MAX_BUFFERED_BYTES`.

Durability of a commit (`synchronous`, see docs/journal.md):
- "NORMAL" (default): a commit is in the WAL file when the call returns, so it survives a crash or
  `kill -9` of this process. A power loss or OS crash may roll back the last commits.
- "FULL": every commit also fsyncs the WAL, so it survives power loss too.

Tables (schema 2): `records` (append-only but for pruning; every row carries a CRC of its body and
a SHA-256 chain over the previous row's hash, for cheap tamper evidence; bodies in the compact
format of `sidecar/journal/format.py`), `requests` (one row per tool call: status and batch
outcome; the result is read from the records), `open_intents` (the items recovery must still look
at: a start reads this, never the history), `control` (trading state, shared with the CLI) and
`meta` (boot counter, schema version). Retention: `prune` deletes settled requests before a cutoff
in bounded transactions and anchors the chain across the gaps (`sidecar/journal/prune.py`).
Plain synchronous class: the asyncio service calls it from the event-loop thread (writes take
microseconds); `checkpoint`, `prune`, `reclaim` and `integrity_check` use connections of their own
and may run in worker threads; other processes (the CLI) open their own instance.
"""

from __future__ import annotations

import contextlib
import json
import json.encoder
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

from sidecar.core.types import TradingState
from sidecar.errors import JournalError, JournalInputError, JournalMissing, NotAJournal
from sidecar.journal.encoding import (
    GENESIS_HASH,
    body_crc,
    canonical_row,
    chain_hash,
    encode_body,
    link_hash,
)
from sidecar.journal.format import (
    Step,
    current_result,
    decode_intent_items,
    encode_intent_items,
    expand,
    is_compact,
    request_body,
)
from sidecar.journal.prune import MAX_REQUESTS_PER_PRUNE, Anchor, PrunePlan, anchors_in, plan_prune
from sidecar.journal.records import IntentRecord, JournalRecord, PruneResult, RequestRecord, RequestSummary
from sidecar.journal.schema import (
    BASE_SCHEMA,
    OPEN_INTENT_SQL,
    SCHEMA_VERSION,
    create_schema_2,
    migrate_to_2,
    open_intents_of_v1,
)

__all__ = ["MAX_BUFFERED_BYTES", "MAX_BUFFERED_ROWS", "Journal", "disk_bytes"]

BUSY_TIMEOUT_MS: Final = 5000
# The buffer commits itself beyond these (memory bound; a flush of 500 rows takes ~2 ms).
MAX_BUFFERED_ROWS: Final = 500
MAX_BUFFERED_BYTES: Final = 4 * 1024 * 1024
# A new journal's pages: a verified batch's records are ~2-3 KiB each, so 4 KiB pages would be
# a third empty (one record per page); 16 KiB pages pack them (docs/journal.md "Size").
PAGE_SIZE: Final = 16384
# After a checkpoint the WAL file is cut back to this (a burst must not keep its size forever).
WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024
# A WAL of this many frames (16 MiB of 16 KiB pages) is started over by `checkpoint`, even while
# commits keep coming (see there).
WAL_RESTART_FRAMES: Final = 1024
# How long that restart may keep a commit waiting (it gives up and is tried again a second later).
RESTART_WAIT_MS: Final = 20

_INSERT_CHUNKS: Final = (64, 32, 16, 8, 4, 2, 1)
_INSERT_SQL: Final = {
    n: "INSERT INTO records (ts_wall_ms, kind, request_id, req_id, item_idx, body, crc, prev_hash) VALUES "  # noqa: S608 -- placeholders only
    + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * n)
    for n in _INSERT_CHUNKS
}
_UPSERT_RECEIVED: Final = (
    "INSERT INTO requests (request_id, tool, created_ms, status) VALUES (?, ?, ?, 'received')"
    " ON CONFLICT(request_id) DO NOTHING"
)
_UPSERT_INTENT: Final = (
    "INSERT INTO requests (request_id, tool, created_ms, status, policy_version)"
    " VALUES (?, ?, ?, 'intent', ?)"
    " ON CONFLICT(request_id) DO UPDATE SET status = 'intent', policy_version = excluded.policy_version"
)
# The result itself is read from the records (format 2); the row keeps the batch outcome.
_UPSERT_FINAL: Final = (
    "INSERT INTO requests (request_id, tool, created_ms, status, outcome) VALUES (?, NULL, ?, 'final', ?)"
    " ON CONFLICT(request_id) DO UPDATE SET status = 'final', outcome = excluded.outcome"
)
_SET_OUTCOME: Final = "UPDATE requests SET outcome = ? WHERE request_id = ?"

_TRADING_STATE_SQL: Final = "SELECT key, value FROM control WHERE key LIKE 'trading_%'"

_T = TypeVar("_T")


def _nothing(_cur: sqlite3.Cursor) -> None:
    """The extra work of a plain flush: none."""


class _Row(NamedTuple):
    """A buffered `records` row: everything but its link, which needs the tail at commit time."""

    ts_wall_ms: int
    kind: str
    request_id: str | None
    req_id: str | None
    item_idx: int | None
    body: str
    crc: int
    canonical: bytes


class _LaterRow(NamedTuple):
    """A buffered `final` row whose body is built when the buffer is committed (record_final_later)."""

    ts_wall_ms: int
    request_id: str
    build: Callable[[], Mapping[str, Any]]
    fallback: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    outcome: str | None
    ops: tuple[Any, ...]  # its `requests`/`open_intents` changes (_Op), applied when it is committed


# A buffered change besides a record row: (sql, params), or (_CLOSE_ITEMS, (request_id, indices)).
_Op = tuple[str, tuple[Any, ...]]
_CLOSE_ITEMS: Final = "-- close items of an open intent"


def _close_items(conn: sqlite3.Connection, request_id: str, indices: Sequence[int]) -> None:
    """Items of an intent got their last word (a definitive outcome, or given up): recovery will
    not look at them again. The intent leaves `open_intents` with its last item."""
    row = conn.execute("SELECT pending FROM open_intents WHERE request_id = ?", (request_id,)).fetchone()
    if row is None:
        return
    done = set(indices)
    left = [i for i in json.loads(row[0]) if i not in done]
    if left:
        conn.execute(
            "UPDATE open_intents SET pending = ? WHERE request_id = ?", (json.dumps(left), request_id)
        )
    else:
        conn.execute("DELETE FROM open_intents WHERE request_id = ?", (request_id,))


def disk_bytes(path: Path) -> int:
    """Bytes of a journal on disk: the database file plus its WAL (0 for what is not there)."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(OSError):
            total += part.stat().st_size
    return total


def _outcome_of(body: Mapping[str, Any]) -> str | None:
    """The batch outcome a result body (a tool result, or a format-2 body holding one) states."""
    result = body.get("result") if is_compact(body) else body
    outcome = result.get("outcome") if isinstance(result, Mapping) else None
    return outcome if isinstance(outcome, str) else None


# --------------------------------------------------------------------------------------------


class Journal:
    """The SQLite journal. One instance per process; safe to share a file between processes."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL", *, create: bool = True) -> None:
        """Open (with `create`, creating if needed, and upgrading an older journal) the journal at
        `path`. Opening reads a fixed number of pages whatever the history (`integrity_check`
        is the full check, run by the server in the background).

        The operator's commands open with `create=False`: a mistyped or relative path must never
        produce a fresh empty journal that a running server does not read.

        Raises:
            ValueError: `synchronous` is not "NORMAL" or "FULL".
            JournalMissing: `create` is False and there is no journal at `path`.
            JournalError: the file cannot be created, opened or set to WAL, or is not a journal.
        """
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.synchronous = sync
        self._lock = threading.Lock()
        self._failed: str | None = None
        # The group-commit buffer: `requests` upserts and `records` rows, each in call order.
        self._ops: list[_Op] = []
        self._rows: list[_Row | _LaterRow] = []
        self._buffered_bytes = 0
        self._appended = 0
        self._ckpt_conn: sqlite3.Connection | None = None
        # Serialises checkpoint() (run in a worker thread) with close(): a connection is never
        # closed while a checkpoint is using it.
        self._ckpt_lock = threading.Lock()
        self._closed = False
        self._create = create
        self._schema = SCHEMA_VERSION
        # The connection of a running `integrity_check()` (interrupted by `close()`).
        self._check_conn: sqlite3.Connection | None = None
        with self._lock:
            self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        """Open the file, set it up (WAL, `synchronous`), check it and its schema (under `_lock`)."""
        sync = self.synchronous
        create = self._create
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target: str | Path = self.path
            else:
                # mode=rw: open an existing file, never create one (no race with a check before).
                target = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=rw"
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
            conn = sqlite3.connect(
                target,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
                uri=not create,
            )
        except sqlite3.OperationalError as exc:
            if not create and not self.path.exists():
                raise JournalMissing(f"no journal at {self.path.absolute()}") from exc
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._conn = conn
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if create and self._conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                # A new, empty file: only now can the page size and the vacuum mode be chosen.
                # INCREMENTAL lets pruning give space back to the file system (`reclaim`).
                self._conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {self.path}: WAL mode unavailable (got {mode!r})")
            self._conn.execute(f"PRAGMA synchronous = {sync}")
            # Checkpoints (the WAL -> database copy, which fsyncs) are kept off the request path:
            # the owner calls `checkpoint()` from a worker thread, and SQLite checkpoints on close.
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            # No `quick_check` here: it reads every page, so opening would take longer the more
            # history the file holds (minutes for gigabytes, and `sidecar halt` opens it too).
            # The server runs `integrity_check()` in the background after it starts.
            if not create and not self._is_journal():
                raise NotAJournal(f"{self.path.absolute()} is not a sidecar journal")
            # One transaction, so two processes opening a new file at once cannot interleave.
            self._conn.executescript("BEGIN IMMEDIATE;" + BASE_SCHEMA + "COMMIT;")
            schema = self._commit_locked(self._check_schema)
            if schema > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self.path} has schema {schema}; this sidecar knows {SCHEMA_VERSION}"
                )
            if schema < SCHEMA_VERSION and create:
                # Only a server upgrades a journal (an operator's command against an older
                # server must not change the file under it); it reads both formats meanwhile.
                schema = self._commit_locked(migrate_to_2)
            self._schema = schema
        except JournalError:
            conn.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        return conn

    def reopen(self) -> None:
        """After a failure: drop the connection and what it held, open the file afresh, and accept
        writes again. Only the operator's `sidecar resume` leads here (the service never retries a
        failed write on its own, reliability.md §4.1 I5).

        Raises:
            JournalError: the file still cannot be opened or checked (the journal stays failed).
        """
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._ops, self._rows, self._buffered_bytes = [], [], 0
            failed, self._failed = self._failed, None
            try:
                self._conn = self._connect()
            except JournalError as exc:
                self._failed = f"{failed}; reopen failed: {exc}"
                raise

    def _is_journal(self) -> bool:
        row = self._conn.execute(
            "SELECT count(*) FROM sqlite_master"
            " WHERE type = 'table' AND name IN ('meta', 'control', 'records')"
        ).fetchone()
        return bool(row[0] == 3)

    @staticmethod
    def _check_schema(cur: sqlite3.Cursor) -> int:
        row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:  # a new journal
            create_schema_2(cur)
            cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return SCHEMA_VERSION
        return int(row[0])

    @property
    def schema(self) -> int:
        """The schema version of the open file (1: written by an older sidecar, not yet upgraded)."""
        return self._schema

    def close(self) -> None:
        """Commit what is buffered, then close.

        Raises:
            JournalError: the final commit failed (the connection is closed anyway).
        """
        try:
            with self._lock:
                if self._rows or self._ops:
                    self._commit_locked(_nothing)
        finally:
            with self._ckpt_lock:
                self._closed = True
                if self._check_conn is not None:
                    self._check_conn.interrupt()  # a long integrity check must not hold up a stop
                if self._ckpt_conn is not None:
                    self._ckpt_conn.close()
                    self._ckpt_conn = None
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

    @property
    def buffered(self) -> int:
        """How many records are waiting for the next commit."""
        return len(self._rows)

    # ---------------------------------------------------------------- Writes

    def _refuse_if_failed(self) -> None:
        if self._failed is not None:
            raise JournalError(f"journal is failed and refuses writes: {self._failed}")

    def _commit(self, op: Callable[[sqlite3.Cursor], _T]) -> _T:
        with self._lock:
            return self._commit_locked(op)

    def _commit_locked(self, op: Callable[[sqlite3.Cursor], _T]) -> _T:
        """One transaction: the buffered `requests` upserts, then the buffered rows (linked to the
        tail read under the write lock), then `op`. Any failure rolls back, poisons the journal and
        raises JournalError; the buffer is dropped either way (it is in the database or refused)."""
        self._refuse_if_failed()
        ops, later = self._ops, self._rows
        self._ops, self._rows, self._buffered_bytes = [], [], 0
        rows: list[_Row] = []
        for r in later:
            if type(r) is _Row:
                rows.append(r)
            else:  # built now; its changes go after the others (none of them concerns its request)
                rows.append(self._built(r))  # type: ignore[arg-type]
                ops.extend(r.ops)  # type: ignore[union-attr]
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: the chain reads the tail
            try:
                for sql, params in ops:
                    if sql is _CLOSE_ITEMS:
                        _close_items(conn, params[0], params[1])
                    else:
                        conn.execute(sql, params)
                if rows:
                    tail = conn.execute("SELECT prev_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                    prev = tail[0] if tail is not None else GENESIS_HASH
                    values: list[Any] = []
                    for r in rows:
                        prev = link_hash(prev, r.canonical)
                        values += (
                            r.ts_wall_ms,
                            r.kind,
                            r.request_id,
                            r.req_id,
                            r.item_idx,
                            r.body,
                            r.crc,
                            prev,
                        )
                    # Multi-row INSERTs of 64/32/.../1 rows (7 cached statements): ~40 % cheaper
                    # than executemany, which binds and steps one row at a time.
                    start = 0
                    for size in _INSERT_CHUNKS:
                        while len(rows) - start >= size:
                            end = start + size
                            conn.execute(_INSERT_SQL[size], values[start * 8 : end * 8])
                            start = end
                result = op(conn.cursor())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            # Rows handed to the buffer are gone now: never accept another write (fail closed).
            self._failed = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, sqlite3.Error | OSError):
                raise JournalError(f"journal write failed: {self._failed}") from exc
            raise
        return result

    def flush(self) -> int:
        """Commit everything buffered in one transaction (durable per `synchronous` on return).

        Returns the number of records committed (0 if nothing was buffered).

        Raises:
            JournalError: the commit failed (the journal is now failed and refuses writes), or the
                journal had already failed.
        """
        with self._lock:
            n = len(self._rows)
            if n or self._ops or self._failed is not None:
                self._commit_locked(_nothing)
            return n

    def _buffer(self, row: _Row, *ops: _Op) -> int:
        """Add a row (and its `requests`/`open_intents` changes) to the buffer; commit if the
        buffer is full."""
        with self._lock:
            self._refuse_if_failed()
            self._ops.extend(ops)
            self._rows.append(row)
            self._buffered_bytes += len(row.body)
            self._appended += 1
            ticket = self._appended
            if len(self._rows) >= MAX_BUFFERED_ROWS or self._buffered_bytes >= MAX_BUFFERED_BYTES:
                self._commit_locked(_nothing)
            return ticket

    @staticmethod
    def _row(  # noqa: PLR0917 -- one row's columns, in table order
        wall_ms: int,
        kind: str,
        request_id: str | None,
        req_id: str | None,
        item_idx: int | None,
        text: str,
    ) -> _Row:
        return _Row(
            wall_ms,
            kind,
            request_id,
            req_id,
            item_idx,
            text,
            body_crc(text),
            canonical_row(wall_ms, kind, request_id, req_id, item_idx, text),
        )

    def next_boot(self) -> int:
        """Increment and return the boot counter (part of reqIds that never repeat across restarts).
        Commits the buffer with it."""

        def bump(cur: sqlite3.Cursor) -> int:
            row = cur.execute("SELECT value FROM meta WHERE key = 'boot'").fetchone()
            boot = (int(row[0]) if row is not None else 0) + 1
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('boot', ?)", (str(boot),))
            return boot

        return self._commit(bump)

    def _closing(self, request_id: str | None, done: Sequence[int] | None) -> tuple[_Op, ...]:
        if request_id is None or not done or self._schema < SCHEMA_VERSION:
            return ()
        return ((_CLOSE_ITEMS, (request_id, tuple(done))),)

    def record(  # noqa: PLR0917 -- the service's agreed positional signature
        self,
        kind: str,
        request_id: str | None,
        body: Mapping[str, Any],
        wall_ms: int,
        req_id: str | None = None,
        item_idx: int | None = None,
        *,
        done: Sequence[int] | None = None,
    ) -> int:
        """Append one record to the buffer (committed by the next `flush()` or flushing call).

        `done`: item indices of the request's intent that this record gives their last word
        (a definitive outcome, or given up, or never sent): crash recovery will not look at them
        again once it is committed.

        Returns a ticket: this instance's running count of appended records. It is not the
        record's `seq`, which sqlite assigns at commit (read it back with `get_request` etc.).

        Raises:
            JournalError: the body is not JSON-serialisable or holds a secret-like key, the journal
                has failed, or the buffer was full and its commit failed.
        """
        text = encode_body(body)
        return self._buffer(
            self._row(wall_ms, kind, request_id, req_id, item_idx, text), *self._closing(request_id, done)
        )

    def record_request(
        self,
        request_id: str,
        tool: str,
        args: Mapping[str, Any],
        wall_ms: int,
        *,
        in_intent: Sequence[int] = (),
    ) -> None:
        """Journal a received tool call. Buffered: `record_intent` or `record_final` for the same
        call commits it. `in_intent`: positions of `args["request"]` that the intent of this call
        holds exactly (`journal.bodies.args_in_intent`); the record leaves them out."""
        text = encode_body(request_body(tool, args, in_intent))
        self._buffer(
            self._row(wall_ms, "request", request_id, None, None, text),
            (_UPSERT_RECEIVED, (request_id, tool, wall_ms)),
        )

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
        """Journal the write-ahead intent; it and everything buffered before it are committed in
        one transaction before this returns (call it before the frame is written). Each item:
        index, symbol, orderId/orderLinkId as the agent gave them, targets (text), before (the
        order as validated: its ids, price, qty, orderStatus, updatedTime and every targeted
        field), stored as a table (journal_format.encode_intent_items). The intent is open
        (recovery looks at it) until every item is closed by a record's `done`.

        Raises:
            JournalError: the body is refused, or the commit failed (then nothing of it is durable
                and the frame must not be sent).
        """
        text = encode_body(
            {
                "req_id": req_id,
                "op": op,
                "category": category,
                "items": encode_intent_items(items),
                "sent_ts_ms": sent_ts_ms,
                "recv_window_ms": recv_window_ms,
                "policy_version": policy_version,
            }
        )
        row = self._row(wall_ms, "intent", request_id, req_id, None, text)
        indices = [int(it.get("index", pos)) for pos, it in enumerate(items)]
        with self._lock:
            self._refuse_if_failed()
            self._ops.append((_UPSERT_INTENT, (request_id, op, wall_ms, policy_version)))
            if self._schema >= SCHEMA_VERSION:
                self._ops.append((OPEN_INTENT_SQL, (request_id, json.dumps(indices))))
            held = self._hold_later()  # other requests' answers are not built on this send's path
            self._rows.append(row)
            self._appended += 1
            try:
                self._commit_locked(_nothing)
            finally:
                self._rows[:0] = held

    def _hold_later(self) -> list[_Row | _LaterRow]:
        """Take the `record_final_later` rows out of the buffer (to stay buffered past this commit),
        unless a record of the same request follows one (then nothing: all commit, in order)."""
        later_of: set[str] = set()
        for r in self._rows:
            if type(r) is _LaterRow:
                later_of.add(r.request_id)
            elif r.request_id in later_of:
                return []
        if not later_of:
            return []
        held = [r for r in self._rows if type(r) is _LaterRow]
        self._rows = [r for r in self._rows if type(r) is _Row]
        return held  # type: ignore[return-value]

    def record_final(
        self, request_id: str, body: Mapping[str, Any], wall_ms: int, *, done: Sequence[int] = ()
    ) -> None:
        """Journal the answer the agent gets (a tool result, or a format-2 `final` body holding it
        with the steps it ends: journal.bodies.final_body); it and every buffered record are
        committed before this returns (decision before reply). `done` as in `record`. (A sent
        request's answer goes through `record_final_later` instead.)"""
        text = encode_body(body)
        row = self._row(wall_ms, "final", request_id, None, None, text)
        with self._lock:
            self._refuse_if_failed()
            self._ops.append((_UPSERT_FINAL, (request_id, wall_ms, _outcome_of(body))))
            self._ops.extend(self._closing(request_id, done))
            self._rows.append(row)
            self._appended += 1
            self._commit_locked(_nothing)

    def record_final_later(
        self,
        request_id: str,
        build: Callable[[], Mapping[str, Any]],
        wall_ms: int,
        *,
        outcome: str | None,
        done: Sequence[int] = (),
        fallback: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
    ) -> None:
        """The `final` record of a sent request (its intent is durable), buffered with its body not
        yet built: `build()` runs when the buffer is committed by `flush`, a read in this process,
        `close` or any other committing write except an intent's, which leaves it buffered (no send
        waits for another request's answer record), so neither building, encoding nor committing it
        delays the answer. Its `requests`/`open_intents` changes go with it. A body the
        journal refuses is recorded as `fallback(body)` (e.g. scrubbed), and if that is refused too
        (or `build` fails) as a bare `{requestId, outcome, recordRefused}`: a record is never lost
        to its body, and a commit never fails for it. Lost in a crash before the commit, the
        request's intent stays open, so the next start reconciles its items by looking."""
        ops = ((_UPSERT_FINAL, (request_id, wall_ms, outcome)), *self._closing(request_id, done))
        row = _LaterRow(wall_ms, request_id, build, fallback, outcome, ops)
        with self._lock:
            self._refuse_if_failed()
            self._rows.append(row)
            self._appended += 1
            if len(self._rows) >= MAX_BUFFERED_ROWS:
                self._commit_locked(_nothing)

    def _built(self, later: _LaterRow) -> _Row:
        """The row of a `record_final_later` record, its body built and encoded now."""
        try:
            body = later.build()
            try:
                text = encode_body(body)
            except JournalInputError:
                text = encode_body(later.fallback(body))
        except Exception as exc:  # never fail a commit (and so trading) over one answer's record
            text = encode_body(
                {"requestId": later.request_id, "outcome": later.outcome, "recordRefused": type(exc).__name__}
            )
        return self._row(later.ts_wall_ms, "final", later.request_id, None, None, text)

    def update_result(
        self, request_id: str, body: Mapping[str, Any], wall_ms: int, *, done: Sequence[int] = ()
    ) -> None:
        """A result for a request that had none journaled yet (its caller went away, or it was
        recovered after a restart): append a `result_update` holding it whole. Buffered; every
        read (`get_request`, `last_requests`) commits it first. `done` as in `record`."""
        text = encode_body(body)
        self._buffer(
            self._row(wall_ms, "result_update", request_id, None, None, text),
            (_UPSERT_FINAL, (request_id, wall_ms, _outcome_of(body))),
            *self._closing(request_id, done),
        )

    def record_late(
        self,
        request_id: str,
        body: Mapping[str, Any],
        wall_ms: int,
        req_id: str | None,
        item_idx: int | None,
        *,
        done: Sequence[int] = (),
    ) -> None:
        """A late verdict changed the stored result: append a `result_delta`
        (journal.bodies.late_body). Buffered like `update_result`."""
        text = encode_body(body)
        sets = body.get("set")
        outcome = sets.get("outcome") if isinstance(sets, Mapping) else None
        ops: list[_Op] = [(_SET_OUTCOME, (outcome, request_id))] if isinstance(outcome, str) else []
        self._buffer(
            self._row(wall_ms, "result_delta", request_id, req_id, item_idx, text),
            *ops,
            *self._closing(request_id, done),
        )

    def set_trading_state(self, state: str, reason: str, who: str, wall_ms: int) -> int:
        """Set the kill switch (visible to every process at its next read) and journal a `state`
        record, committing the buffer with them before this returns.

        Returns the new state epoch: a counter bumped in the same transaction by every change, so
        a running server can acknowledge exactly which change it has seen (`sidecar halt` waits
        for that acknowledgement)."""
        value = TradingState(state).value  # ValueError on an unknown state: a programming error
        text = encode_body({"state": value, "reason": reason, "who": who})
        row = self._row(wall_ms, "state", None, None, None, text)

        def write_control(cur: sqlite3.Cursor) -> int:
            found = cur.execute("SELECT value FROM control WHERE key = 'trading_epoch'").fetchone()
            epoch = (int(found[0]) if found is not None else 0) + 1
            cur.executemany(
                "INSERT OR REPLACE INTO control (key, value) VALUES (?, ?)",
                [
                    ("trading_state", value),
                    ("trading_reason", reason),
                    ("trading_who", who),
                    ("trading_ts_ms", str(wall_ms)),
                    ("trading_epoch", str(epoch)),
                ],
            )
            return epoch

        with self._lock:
            self._refuse_if_failed()
            self._rows.append(row)
            self._appended += 1
            return self._commit_locked(write_control)

    def checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: never blocks writers) on a second connection;
        once the WAL holds WAL_RESTART_FRAMES or more, also start it over (TRUNCATE).

        Why the second step: SQLite starts the WAL over only when a writer finds it fully copied,
        and under back-to-back commits a passive pass never catches up with the writer, so the WAL
        would keep every frame written for as long as commits keep coming (measured: 1.7 GB in
        4 s at full speed, ~0.7 MB/s at 50 commits/s). TRUNCATE waits for the writer between two
        commits and blocks the next one only while it copies what the passive pass just missed
        (a few frames) and syncs, then empties the file; it waits at most RESTART_WAIT_MS for
        the writer or an old reader, else it is tried again at the next call.

        Safe to call from a worker thread while the owner keeps writing. Errors are reported as
        JournalError but do not poison the journal: committed data is already durable in the WAL.
        """
        with self._ckpt_lock:
            if self._closed:
                return
            try:
                aux = self._aux()
                row = aux.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if row is not None and row[1] >= WAL_RESTART_FRAMES:  # (busy, WAL frames, copied)
                    # While this pass waits (for the writer, or a reader on an old snapshot: the
                    # background integrity check, an operator's read), no commit may start, and
                    # commits run on the event loop: wait briefly; if it cannot, try next second.
                    aux.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
                    try:
                        aux.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    finally:
                        aux.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(f"journal checkpoint failed: {type(exc).__name__}: {exc}") from exc

    def set_control(self, key: str, value: str) -> None:
        """Store a status value shared with other processes (e.g. `health`, `server`); committed
        (with the buffer) before this returns.

        Not an audit record: nothing is appended to the chain. Keys starting with `trading_` belong
        to `set_trading_state` and are refused.
        """
        if key.startswith("trading_"):
            raise ValueError(f"{key!r} is set through set_trading_state")

        def write(cur: sqlite3.Cursor) -> None:
            cur.execute("INSERT OR REPLACE INTO control (key, value) VALUES (?, ?)", (key, value))

        self._commit(write)

    def delete_control(self, *keys: str) -> None:
        """Remove status values (e.g. a stopping server's presence); committed before this returns."""
        if any(key.startswith("trading_") for key in keys):
            raise ValueError("the trading_ keys belong to set_trading_state")

        def delete(cur: sqlite3.Cursor) -> None:
            cur.executemany("DELETE FROM control WHERE key = ?", [(key,) for key in keys])

        self._commit(delete)

    def trading_epoch(self) -> int:
        """The state epoch (see `set_trading_state`); 0 if the state was never set."""
        value = self.get_control("trading_epoch")
        return int(value) if value is not None and value.isdigit() else 0

    def get_control(self, key: str) -> str | None:
        """A `control` value (never buffered, so no commit first)."""
        rows = self._read("SELECT value FROM control WHERE key = ?", (key,), flush=False)
        return str(rows[0][0]) if rows else None

    # ---------------------------------------------------------------- Reads

    def _read(self, sql: str, params: Sequence[Any] = (), *, flush: bool = True) -> list[Any]:
        """Run a query; with `flush`, commit the buffer first so this process reads its own writes.

        Raises:
            JournalError: the query failed, or the commit before it did (the journal is then failed).
        """
        with self._lock:
            if flush and (self._rows or self._ops):
                self._commit_locked(_nothing)
            try:
                return self._conn.execute(sql, params).fetchall()
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(f"journal read failed: {type(exc).__name__}: {exc}") from exc

    def trading_state(self) -> tuple[str, str, str, int]:
        """(state, reason, who, ts_wall_ms); ("active", "", "", 0) if never set. Reads `control`
        only (never buffered): no commit, so the per-submit check stays cheap."""
        rows = dict(self._read(_TRADING_STATE_SQL, flush=False))
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
        """Intents with at least one item that has no last word yet (for crash recovery), oldest
        first: those in the small `open_intents` table (an item leaves it with the record that
        gives it a definitive outcome, gives it up, or says it was never sent). A start reads
        these and nothing else, however long the history."""
        if self._schema < SCHEMA_VERSION:
            open_items: Sequence[tuple[str, str]] = [
                (rid, json.dumps(pending)) for rid, pending in self._legacy_open().items()
            ]
        else:
            open_items = self._read("SELECT request_id, pending FROM open_intents")
        out: list[IntentRecord] = []
        for request_id, pending in open_items:
            found = self._read(
                "SELECT seq, ts_wall_ms, body FROM records WHERE request_id = ? AND kind = 'intent'"
                " ORDER BY seq LIMIT 1",
                (request_id,),
                flush=False,
            )
            if not found:
                continue
            seq, wall_ms, body = found[0]
            b = json.loads(body)
            out.append(
                IntentRecord(
                    seq=seq,
                    request_id=request_id,
                    req_id=b["req_id"],
                    op=b["op"],
                    category=b["category"],
                    items=decode_intent_items(b.get("items")),
                    sent_ts_ms=b["sent_ts_ms"],
                    recv_window_ms=b["recv_window_ms"],
                    policy_version=b.get("policy_version"),
                    wall_ms=wall_ms,
                    pending=tuple(json.loads(pending)),
                )
            )
        return sorted(out, key=lambda r: r.seq)

    def _legacy_open(self) -> dict[str, list[int]]:
        """A schema-1 file's open intents, by the full scan schema 2 replaces (read-only opens)."""
        with self._lock:
            try:
                return open_intents_of_v1(self._conn.cursor())
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(f"journal read failed: {type(exc).__name__}: {exc}") from exc

    def get_request(self, request_id: str) -> RequestRecord | None:
        """The request with its current result and every record that names it, in order.

        The result is the last `final`/`result_update` with every later `result_delta` applied
        (journal_format.current_result); a request journaled before format 2 has it stored whole.
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
                flush=False,
            )
        )
        if not rows:
            if not records:
                return None
            # Records that name a request the `requests` table never saw (e.g. written by `record`).
            rows = [(request_id, None, records[0].ts_wall_ms, "unknown", None, None)]
        rid, tool, created_ms, status, policy_version, stored = rows[0]
        return RequestRecord(
            request_id=rid,
            tool=tool,
            created_ms=created_ms,
            status=status,
            policy_version=policy_version,
            result=json.loads(stored) if stored is not None else current_result(records),
            records=records,
        )

    def steps(self, request_id: str) -> list[Step] | None:
        """Every step of one request in the order it happened, with the steps a format-2 record
        folds unfolded (journal_format.expand); None if nothing names the request."""
        record = self.get_request(request_id)
        return None if record is None else expand(record.records)

    def last_requests(self, n: int) -> list[RequestSummary]:
        """The `n` most recent requests, newest first."""
        outcome_col = "outcome" if self._schema >= SCHEMA_VERSION else "NULL"
        out: list[RequestSummary] = []
        for rid, tool, created_ms, status, policy_version, stored, column in self._read(
            f"SELECT request_id, tool, created_ms, status, policy_version, result, {outcome_col}"  # noqa: S608 -- a column name, not input
            " FROM requests ORDER BY created_ms DESC, rowid DESC LIMIT ?",
            (max(0, n),),
        ):
            outcome = column
            if outcome is None and stored is not None:
                parsed = json.loads(stored)
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
        """The seq of the first record whose CRC or hash chain does not hold, or None if all hold.

        After pruning, the first record after each gap is checked against the anchor a later
        `prune` record lists for it (journal_prune): the link it was computed from, and the kept
        record that must come right before it."""
        anchors: dict[int, Anchor] = {}
        for seq, body in self._read("SELECT seq, body FROM records WHERE kind = 'prune' ORDER BY seq"):
            with contextlib.suppress(ValueError):
                anchors.update(anchors_in(json.loads(body), int(seq)))
        prev = GENESIS_HASH
        prev_seq: int | None = None
        for seq, ts, kind, request_id, req_id, item_idx, body, crc, digest in self._read(
            "SELECT seq, ts_wall_ms, kind, request_id, req_id, item_idx, body, crc, prev_hash"
            " FROM records ORDER BY seq",
            flush=False,
        ):
            if body_crc(body) != crc:
                return int(seq)
            if chain_hash(prev, ts, kind, request_id, req_id, item_idx, body) != digest:
                anchor = anchors.get(seq)
                if (
                    anchor is None
                    or (anchor.kept_seq, anchor.kept_link)
                    != ((prev_seq, prev) if prev_seq is not None else (None, None))
                    or chain_hash(anchor.link_before, ts, kind, request_id, req_id, item_idx, body) != digest
                ):
                    return int(seq)
            prev, prev_seq = digest, int(seq)
        return None

    def verify_chain(self) -> bool:
        """True when every record's CRC and the whole hash chain (across pruned gaps) hold."""
        return self.first_broken_seq() is None

    # ---------------------------------------------------------------- Retention and upkeep

    def _aux(self) -> sqlite3.Connection:
        """The second connection (under `_ckpt_lock`): checkpoints, pruning and vacuuming run on it,
        possibly in a worker thread, while the owner keeps writing on the first."""
        if self._ckpt_conn is None:
            self._ckpt_conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._ckpt_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return self._ckpt_conn

    def prune(
        self,
        cutoff_ms: int,
        wall_ms: int,
        *,
        keep: Iterable[str] = (),
        max_requests: int = MAX_REQUESTS_PER_PRUNE,
    ) -> PruneResult:
        """Delete the settled requests created before `cutoff_ms` (all their records and their
        `requests` row) and the request-less records older than it, oldest first, at most
        `max_requests` requests in one short transaction (call again while `more`). Never a
        request with an open intent, one in `keep`, the `control` or `meta` rows, or the newest
        record. Appends one `prune` record holding the anchors the chain needs across the gaps
        (journal_prune). Safe from a worker thread while the owner writes; a failure rolls back
        and leaves the journal healthy.

        Raises:
            JournalError: the prune failed (nothing was deleted), or the file is a schema-1 journal
                not yet upgraded (start `sidecar serve` on it once).
        """
        if self._schema < SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path.absolute()} was written by an older sidecar (schema {self._schema}); "
                "start `sidecar serve` on it once to upgrade it, then prune"
            )
        with self._ckpt_lock:
            if self._closed:
                raise JournalError("journal is closed")
            try:
                conn = self._aux()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    plan = plan_prune(conn, cutoff_ms, keep, max_requests=max_requests)
                    if plan.seqs:
                        self._delete_planned(conn, plan, cutoff_ms, wall_ms)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(f"journal prune failed: {type(exc).__name__}: {exc}") from exc
        return PruneResult(len(plan.requests), len(plan.seqs), plan.pinned, plan.more)

    def _delete_planned(
        self, conn: sqlite3.Connection, plan: PrunePlan, cutoff_ms: int, wall_ms: int
    ) -> None:
        for start in range(0, len(plan.seqs), 500):
            chunk = plan.seqs[start : start + 500]
            conn.execute(f"DELETE FROM records WHERE seq IN ({','.join('?' * len(chunk))})", chunk)  # noqa: S608 -- placeholders only
        for start in range(0, len(plan.requests), 500):
            ids = plan.requests[start : start + 500]
            conn.execute(f"DELETE FROM requests WHERE request_id IN ({','.join('?' * len(ids))})", ids)  # noqa: S608 -- placeholders only
        body = {
            "cutoffMs": cutoff_ms,
            "requests": len(plan.requests),
            "records": len(plan.seqs),
            "pinned": plan.pinned,
            "vouch": [[seq, *anchor] for seq, anchor in sorted(plan.vouch.items())],
        }
        row = self._row(wall_ms, "prune", None, None, None, encode_body(body))
        tail = conn.execute("SELECT prev_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        link = link_hash(tail[0] if tail is not None else GENESIS_HASH, row.canonical)
        conn.execute(_INSERT_SQL[1], (*row[:7], link))

    def reclaim(self, max_pages: int | None = None) -> int:
        """Give the pages pruning freed back to the file system (`PRAGMA incremental_vacuum`, at most
        `max_pages`; the file shrinks at the next checkpoint). Returns the pages released; 0 for a
        journal created before format 2 (not in incremental vacuum mode: its free pages are reused
        by new records instead). Safe from a worker thread.

        Raises:
            JournalError: the vacuum failed (the journal stays healthy).
        """
        with self._ckpt_lock:
            if self._closed:
                return 0
            try:
                conn = self._aux()
                if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2: INCREMENTAL
                    return 0
                free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
                pages = free if max_pages is None else min(free, max_pages)
                if pages:
                    # executescript steps the pragma to its end (one execute() frees one page).
                    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
                return free - int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            except (sqlite3.Error, OSError) as exc:
                raise JournalError(f"journal vacuum failed: {type(exc).__name__}: {exc}") from exc

    def size_bytes(self) -> int:
        """Bytes of the journal on disk: the database file plus its WAL."""
        return disk_bytes(self.path)

    def integrity_check(self) -> list[str]:
        """`PRAGMA quick_check` of the whole file on a connection of its own (it reads every page:
        the server runs it in a worker thread after it starts; `close()` interrupts it). Returns
        the problems found, [] when the file is sound.

        Raises:
            JournalError: the check could not run (or was interrupted by `close()`).
        """
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"journal integrity check failed to start: {exc}") from exc
        with self._ckpt_lock:
            if self._closed:
                conn.close()
                raise JournalError("journal is closed")
            self._check_conn = conn
        try:
            found = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.OperationalError as exc:  # interrupted, locked, I/O: no verdict
            raise JournalError(f"journal integrity check did not finish: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # SQLite stopped at damage it could not walk past
            found = [f"{type(exc).__name__}: {exc}"]
        except OSError as exc:
            raise JournalError(f"journal integrity check did not finish: {exc}") from exc
        finally:
            with self._ckpt_lock:
                self._check_conn = None
            conn.close()
        return [] if found == ["ok"] else found
