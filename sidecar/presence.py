"""A running server's presence in its journal database, and how other processes read it.

One job: tell the operator's commands, truthfully, whether a live server serves this journal and
what it has acknowledged. The server side (`Presence`) writes a heartbeat record to the `control`
table every second, echoes the trading-state epoch it has seen within ~0.1 s (so `sidecar halt`
can confirm that a running server applied the halt), stores the result of each reload, and
removes its record on a clean stop. The reading side (`server_status`) trusts a record only while
the journal's lock is held by the same process and the heartbeat is fresh: after a SIGKILL the
kernel has dropped the lock, so a dead server is never shown as live.

This module must not decide trading state or apply settings; it reports what it is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from sidecar.clock import Clock
from sidecar.journal import Journal, JournalError
from sidecar.runtime_lock import ProcessIdentity, probe

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "STALE_AFTER_MS",
    "Presence",
    "ServerStatus",
    "lock_path",
    "read_json_control",
    "server_status",
]

log = structlog.get_logger("presence")

PRESENCE_KEY: Final = "server"
HEALTH_KEY: Final = "health"
RELOAD_KEY: Final = "reload_result"
# Written by servers before this module existed; removed on a clean stop so nothing reads it.
LEGACY_PID_KEY: Final = "server_pid"
HEARTBEAT_INTERVAL_S: Final = 1.0
# How often the server looks for a new state epoch to acknowledge.
WATCH_INTERVAL_S: Final = 0.1
# A heartbeat older than this means the server's event loop is not running: not serving.
STALE_AFTER_MS: Final = 5000


def lock_path(journal_path: str | Path) -> Path:
    """The lock file beside the journal that one `sidecar serve` holds while it runs."""
    return Path(f"{journal_path}.lock")


def read_json_control(journal: Journal, key: str) -> dict[str, Any] | None:
    raw = journal.get_control(key)
    if not raw:
        return None
    with contextlib.suppress(ValueError):
        parsed = json.loads(raw)
        if isinstance(parsed, dict):
            return parsed
    return None


class Presence:
    """The server's side. `start()` once the journal is open, `serving()` once it answers calls,
    `await stop()` on the way out (after the service has stopped)."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        *,
        identity: ProcessIdentity,
        config_path: str,
        transport: str,
        on_epoch: Callable[[int], None] | None = None,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._identity = identity
        self._on_epoch = on_epoch
        self._record: dict[str, Any] = {
            **identity.to_json(),
            "host": socket.gethostname(),
            "journalPath": str(journal.path),
            "configPath": config_path,
            "transport": transport,
            "phase": "starting",
            "startedMs": clock.wall_ms(),
            "heartbeatMs": 0,
            "appliedEpoch": 0,
        }
        self._reload_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._last_write_ns = 0
        self._write_failed = False

    @property
    def applied_epoch(self) -> int:
        return int(self._record["appliedEpoch"])

    def start(self) -> None:
        previous = read_json_control(self._journal, RELOAD_KEY)
        self._reload_seq = int(previous.get("seq", 0)) if previous else 0
        self._observe_epoch()
        self._write()
        self._task = asyncio.create_task(self._run(), name="presence")

    def serving(self) -> None:
        self._record["phase"] = "serving"
        self._write()

    def stopping(self) -> None:
        self._record["phase"] = "stopping"
        self._write()

    def record_reload(self, report: Mapping[str, Any]) -> None:
        """Store a reload's result for the `sidecar reload` that asked for it (numbered)."""
        self._reload_seq += 1
        body = {**report, "seq": self._reload_seq, "pid": self._identity.pid, "atMs": self._clock.wall_ms()}
        try:
            self._journal.set_control(RELOAD_KEY, json.dumps(body, default=str))
        except JournalError as exc:
            log.warning("presence.write_failed", key=RELOAD_KEY, error=str(exc))

    async def stop(self) -> None:
        """Stop the heartbeat and remove the presence (a clean stop: nobody may signal this pid)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            self._journal.delete_control(PRESENCE_KEY, HEALTH_KEY, LEGACY_PID_KEY)
        except JournalError as exc:
            log.warning("presence.clear_failed", error=str(exc))

    async def _run(self) -> None:
        interval_ns = int(HEARTBEAT_INTERVAL_S * 1e9)
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                changed = self._observe_epoch()
                if changed or self._clock.monotonic_ns() - self._last_write_ns >= interval_ns:
                    self._write()
            except Exception:  # a supervisor: the heartbeat must survive anything
                log.exception("presence.loop_failed")

    def _observe_epoch(self) -> bool:
        """Acknowledge a new trading-state epoch; True if there was one."""
        try:
            epoch = self._journal.trading_epoch()
        except JournalError as exc:
            log.warning("presence.read_failed", error=str(exc))
            return False
        if epoch == self._record["appliedEpoch"]:
            return False
        if self._on_epoch is not None:
            self._on_epoch(epoch)  # the server reads the state it now acknowledges
        self._record["appliedEpoch"] = epoch
        return True

    def _write(self) -> None:
        self._record["heartbeatMs"] = self._clock.wall_ms()
        self._last_write_ns = self._clock.monotonic_ns()
        try:
            self._journal.set_control(PRESENCE_KEY, json.dumps(self._record))
            self._write_failed = False
        except JournalError as exc:
            if not self._write_failed:  # once per outage, not once a second
                log.warning("presence.write_failed", key=PRESENCE_KEY, error=str(exc))
            self._write_failed = True


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What the operator's commands may believe about the server of a journal.

    `state`: "serving", "starting" or "stopping" (live), "unresponsive" (holds the lock, heartbeat
    stale), "locked" (holds the lock, no record yet), "crashed" (left a record, holds nothing: it
    did not stop cleanly), "none".
    """

    running: bool
    state: str
    pid: int | None
    identity: ProcessIdentity | None
    record: dict[str, Any] | None
    heartbeat_age_ms: int | None

    def to_json(self) -> dict[str, Any] | None:
        if self.record is None and self.pid is None:
            return None
        rec = self.record or {}
        return {
            "state": self.state,
            "pid": self.pid,
            "transport": rec.get("transport"),
            "configPath": rec.get("configPath"),
            "startedMs": rec.get("startedMs"),
            "heartbeatAgeMs": self.heartbeat_age_ms,
            "appliedEpoch": rec.get("appliedEpoch"),
        }


def server_status(journal: Journal, now_wall_ms: int) -> ServerStatus:
    """Whether a live server serves `journal` now: it must hold the journal's lock, and its record
    must name the lock holder's process with a heartbeat younger than STALE_AFTER_MS."""
    holder = probe(lock_path(journal.path))
    record = read_json_control(journal, PRESENCE_KEY)
    recorded = ProcessIdentity.from_json(record) if record is not None else None
    age = None
    if record is not None and isinstance(record.get("heartbeatMs"), int):
        age = max(0, now_wall_ms - int(record["heartbeatMs"]))
    if holder is None:
        pid = recorded.pid if recorded is not None else None
        return ServerStatus(False, "crashed" if record is not None else "none", pid, recorded, record, age)
    holding = ProcessIdentity.from_json(holder)
    if holding is None or record is None or recorded != holding or age is None:
        # The lock is held but the holder has not written its record yet (it is starting).
        pid = holding.pid if holding is not None else None
        return ServerStatus(False, "locked", pid, holding, None, None)
    if age > STALE_AFTER_MS or not holding.is_alive():
        return ServerStatus(False, "unresponsive", holding.pid, holding, record, age)
    return ServerStatus(True, str(record.get("phase", "serving")), holding.pid, holding, record, age)
