"""What the journal hands back when it is read: plain frozen values (records, intents, request
summaries, prune results). It must not read or write the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["IntentRecord", "JournalRecord", "PruneResult", "RequestRecord", "RequestSummary"]


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
class PruneResult:
    """What one `Journal.prune` deleted, and whether more is old enough (call again)."""

    requests: int
    records: int
    pinned: int  # requests before the cutoff kept because they are not settled
    more: bool


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    tool: str | None
    created_ms: int
    status: str
    policy_version: str | None
    result: Any  # the stored tool result (latest, including late verdicts), or None
    records: tuple[JournalRecord, ...]
