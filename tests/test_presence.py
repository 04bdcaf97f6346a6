"""What the operator's commands may believe about a journal's server (real lock, real journal)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sidecar.journal import Journal
from sidecar.presence import STALE_AFTER_MS, lock_path, server_status
from sidecar.runtime_lock import ProcessIdentity, acquire

NOW_MS = 1_800_000_000_000


def _record(journal: Journal, identity: ProcessIdentity, heartbeat_ms: int) -> None:
    body = {**identity.to_json(), "phase": "serving", "transport": "stdio", "heartbeatMs": heartbeat_ms}
    journal.set_control("server", json.dumps(body))


def test_states(tmp_path: Path) -> None:
    me = ProcessIdentity.current()
    with Journal(tmp_path / "j.sqlite3") as j:
        assert server_status(j, NOW_MS).state == "none"
        _record(j, me, NOW_MS - 100)
        crashed = server_status(j, NOW_MS)  # a record, but nobody holds the lock
        assert (crashed.running, crashed.state, crashed.pid) == (False, "crashed", os.getpid())
        with acquire(lock_path(j.path), me.to_json()):
            live = server_status(j, NOW_MS)
            assert (live.running, live.state, live.heartbeat_age_ms) == (True, "serving", 100)
            stale = server_status(j, NOW_MS + STALE_AFTER_MS + 1)
            assert (stale.running, stale.state) == (False, "unresponsive")
            _record(j, ProcessIdentity(os.getpid() + 1, 1, me.boot_id), NOW_MS)  # not the lock holder
            assert server_status(j, NOW_MS).state == "locked"
            assert not server_status(j, NOW_MS).running
