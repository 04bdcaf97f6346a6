"""Retention: which records a prune may delete, and the anchors that keep the chain verifiable.

One job: plan one bounded prune inside the caller's write transaction (it only reads): the
settled requests created before the cutoff, whole, and the request-less records (state changes,
policy loads, earlier prune records, ...) older than it, oldest first. It never chooses a request
with an open intent (an item without its last word: recovery still needs it) or one the caller
keeps (a running server's tracked requests), nor the newest record (the chain's tail). It does
not decide the cutoff and does not delete: `Journal.prune` deletes what the plan names and appends
one `prune` record carrying the anchors.

Anchors. Every record's link is sha256(previous record's link + its own columns), so deleting
records leaves the first record after each gap unable to show its link from what remains. The
prune record lists, for each such record N, the link of the record that preceded it and the
record kept right before the gap (`vouch`: [[N, link before N, P, link of P], ...], P null at the
start of the journal); the latest prune record always lists every anchor still needed (it
carries over the earlier ones whose records remain), so earlier prune records can be pruned in
turn. `Journal.verify_chain()` accepts a record whose link does not follow from the kept record
before it only when a later prune record vouches for exactly the link it was computed from AND
names that kept record: deleting a record next to a gap is caught like any other deletion.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

__all__ = [
    "MAX_REQUESTS_PER_PRUNE",
    "MAX_SCANNED_PER_PRUNE",
    "Anchor",
    "PrunePlan",
    "anchors_in",
    "plan_prune",
]

# Bounds of one prune (one write transaction, a few ms): the rest waits for the next one.
MAX_REQUESTS_PER_PRUNE: Final = 500
MAX_SCANNED_PER_PRUNE: Final = 20_000
_CHUNK: Final = 512


class Anchor(NamedTuple):
    """What a prune record vouches for a record right after a gap: the link it was computed from,
    and the record kept right before the gap (None at the start of the journal)."""

    link_before: str
    kept_seq: int | None
    kept_link: str | None


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """What one prune deletes: `seqs` (records, ascending), `requests` (their `requests` rows),
    and `vouch`: every anchor the chain needs once they are gone."""

    seqs: list[int] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    vouch: dict[int, Anchor] = field(default_factory=dict)
    pinned: int = 0  # requests created before the cutoff and kept: not settled (or kept by the caller)
    more: bool = False  # a bound stopped it: more records are old enough


def anchors_in(body: object, before_seq: int) -> Iterable[tuple[int, Anchor]]:
    """The anchors a prune record's body lists (only for records before it)."""
    vouch = body.get("vouch") if isinstance(body, dict) else None
    for entry in vouch if isinstance(vouch, list) else ():
        if (
            isinstance(entry, list)
            and len(entry) == 4
            and isinstance(entry[0], int)
            and entry[0] < before_seq
            and isinstance(entry[1], str)
            and (entry[2] is None or isinstance(entry[2], int))
            and (entry[3] is None or isinstance(entry[3], str))
        ):
            yield entry[0], Anchor(entry[1], entry[2], entry[3])


def _latest_anchors(conn: sqlite3.Connection) -> dict[int, Anchor]:
    row = conn.execute(
        "SELECT seq, body FROM records WHERE kind = 'prune' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return dict(anchors_in(json.loads(row[1]), row[0])) if row is not None else {}


def _next_row(conn: sqlite3.Connection, seq: int) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT seq, prev_hash FROM records WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
    ).fetchone()
    return (int(row[0]), str(row[1])) if row is not None else None


def _kept_before(
    conn: sqlite3.Connection, seq: int, delete: Mapping[int, str]
) -> tuple[int | None, str | None]:
    """The nearest record before `seq` that this prune keeps (None, None: there is none)."""
    at = seq
    while True:
        rows = conn.execute(
            "SELECT seq, prev_hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT ?", (at, _CHUNK)
        ).fetchall()
        for s, link in rows:
            if s not in delete:
                return int(s), str(link)
        if len(rows) < _CHUNK:
            return None, None
        at = rows[-1][0]


def plan_prune(
    conn: sqlite3.Connection,
    cutoff_ms: int,
    keep: Iterable[str] = (),
    *,
    max_requests: int = MAX_REQUESTS_PER_PRUNE,
    max_scanned: int = MAX_SCANNED_PER_PRUNE,
) -> PrunePlan:
    """The next prune: walk records oldest first until the cutoff, the tail or a bound."""
    tail = conn.execute("SELECT seq FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    if tail is None:
        return PrunePlan()
    tail_seq = int(tail[0])
    held = {str(r[0]) for r in conn.execute("SELECT request_id FROM open_intents")} | set(keep)
    anchors = _latest_anchors(conn)
    delete: dict[int, str] = {}  # seq -> its link
    region: list[tuple[int, str, bool]] = []  # the walked records in order: seq, link, deleted
    decided: dict[str, bool] = {}
    requests: list[str] = []
    pinned = 0
    more = False
    after = 0
    done = False
    while not done:
        batch = conn.execute(
            "SELECT seq, ts_wall_ms, request_id, prev_hash FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, _CHUNK),
        ).fetchall()
        if not batch:
            break
        for seq, ts_ms, request_id, link in batch:
            if seq == tail_seq or ts_ms >= cutoff_ms:
                done = True
                break
            if len(requests) >= max_requests or len(region) >= max_scanned:
                more = done = True
                break
            if seq in delete:
                region.append((seq, link, True))
                continue
            if request_id is None:
                delete[seq] = link
                region.append((seq, link, True))
                continue
            gone = decided.get(request_id)
            if gone is None:
                gone = request_id not in held and _created_before(conn, request_id, cutoff_ms)
                if gone:
                    rows = conn.execute(
                        "SELECT seq, prev_hash FROM records WHERE request_id = ?", (request_id,)
                    ).fetchall()
                    if any(s == tail_seq for s, _ in rows):
                        gone = False
                    else:
                        delete.update((int(s), str(h)) for s, h in rows)
                        requests.append(request_id)
                if not gone:
                    pinned += 1
                decided[request_id] = gone
            region.append((seq, link, gone))
        after = batch[-1][0]
    if not delete:
        return PrunePlan(pinned=pinned, more=more)
    return PrunePlan(sorted(delete), requests, _anchors(conn, region, delete, anchors), pinned, more)


def _anchors(
    conn: sqlite3.Connection,
    region: Sequence[tuple[int, str, bool]],
    delete: Mapping[int, str],
    earlier: Mapping[int, Anchor],
) -> dict[int, Anchor]:
    """Every anchor the chain needs once `delete` is gone: for each kept record right after a
    deleted run (now, or by an earlier prune), the link it was computed from (the deleted record
    right before it, unless an earlier prune had already taken that one: then the earlier
    anchor's) and the record kept right before the run."""
    out: dict[int, Anchor] = {}

    def anchor(seq: int, before_link: str, kept: tuple[int | None, str | None]) -> None:
        old = earlier.get(seq)
        out[seq] = Anchor(old.link_before if old is not None else before_link, kept[0], kept[1])

    kept: tuple[int | None, str | None] = (None, None)
    previous: tuple[int, str] | None = None  # the walked record right before, if deleted
    for seq, link, deleted in region:
        if deleted:
            previous = (seq, link)
            continue
        if previous is not None or seq in earlier:
            anchor(seq, previous[1] if previous is not None else "", kept)
        kept, previous = (seq, link), None
    region_end = region[-1][0] if region else 0
    # Deleted records beyond the walk (later records of a request pruned whole) end runs too.
    ends = sorted(s for s in delete if s > region_end)
    if previous is not None:
        ends.insert(0, previous[0])
    for seq in ends:
        following = _next_row(conn, seq)
        if following is not None and following[0] not in delete:
            anchor(following[0], delete[seq], _kept_before(conn, following[0], delete))
    # Earlier anchors of records beyond the walk stay, with the kept record before them found
    # again if this prune deletes it.
    for seq, old in earlier.items():
        if seq in out or seq in delete or seq <= region_end:
            continue
        if old.kept_seq is not None and old.kept_seq in delete:
            out[seq] = Anchor(old.link_before, *_kept_before(conn, seq, delete))
        else:
            out[seq] = old
    return out


def _created_before(conn: sqlite3.Connection, request_id: str, cutoff_ms: int) -> bool:
    row: Any = conn.execute("SELECT created_ms FROM requests WHERE request_id = ?", (request_id,)).fetchone()
    return row is None or int(row[0]) < cutoff_ms
