"""A journal's bytes on disk as a measurement must see them: everything committed copied into the
database file first. Used by the journal-size test and the benchmark (`journal_bytes_per_batch`).
It reads the file only; it changes nothing a running server relies on.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidecar.journal import disk_bytes

__all__ = ["checkpointed_disk_bytes"]


def checkpointed_disk_bytes(path: Path, attempts: int = 20, *, must_complete: bool = False) -> int:
    """Database + WAL bytes after a TRUNCATE checkpoint from a connection of our own, retried while
    the server's own connections keep it busy (its once-a-second checkpoint, a prune): a WAL left in
    one of two measurements and not the other would count its frames as growth, or as shrinkage.
    If it never completes, the WAL is counted as it is (with `must_complete`: AssertionError)."""
    conn = sqlite3.connect(path, timeout=10)  # the busy handler waits out a reader in the server
    try:
        for _ in range(attempts):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
    finally:
        conn.close()
    assert not (must_complete and busy), "the checkpoint could not complete"
    return int(disk_bytes(path))
