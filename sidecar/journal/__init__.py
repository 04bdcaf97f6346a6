"""The journal: an append-only SQLite (WAL) record of every request, intent, ack, event and verdict.

The parts, each one job (read `store` first):
- `store`: the `Journal` class (connections, group commit, reads, retention, the kill-switch channel);
- `schema`: the tables and the one upgrade of an old file;
- `encoding`: bodies to text, the hash chain and CRCs, the refusal of secret values;
- `records`: the values reads return;
- `format`: the compact record format (format 2) and how a request's steps are rebuilt from it;
- `bodies`: the record bodies built from the service's objects (pure encoders, never deciding);
- `prune`: which settled requests a prune deletes and how the chain stays verifiable across gaps.

The public names are importable from `sidecar.journal`. Nothing here decides about orders.
"""

from sidecar.errors import JournalError, JournalInputError, JournalMissing, NotAJournal
from sidecar.journal.encoding import to_jsonable
from sidecar.journal.records import IntentRecord, JournalRecord, PruneResult, RequestRecord, RequestSummary
from sidecar.journal.schema import DEFINITIVE_OUTCOMES
from sidecar.journal.store import MAX_BUFFERED_BYTES, MAX_BUFFERED_ROWS, Journal, disk_bytes

__all__ = [
    "DEFINITIVE_OUTCOMES",
    "MAX_BUFFERED_BYTES",
    "MAX_BUFFERED_ROWS",
    "IntentRecord",
    "Journal",
    "JournalError",
    "JournalInputError",
    "JournalMissing",
    "JournalRecord",
    "NotAJournal",
    "PruneResult",
    "RequestRecord",
    "RequestSummary",
    "disk_bytes",
    "to_jsonable",
]
