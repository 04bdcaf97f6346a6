"""Locks that say who holds them, and process identities that survive pid reuse (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.runtime_lock import LockBusy, ProcessIdentity, acquire, probe

HOLDER = """
import sys, time
from pathlib import Path
from sidecar.runtime_lock import ProcessIdentity, acquire
acquire(Path(sys.argv[1]), ProcessIdentity.current().to_json())
print("held", flush=True)
time.sleep(60)
"""


def test_probe_names_the_holder_and_never_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j.lock"
    assert probe(path) is None and not path.exists()
    me = ProcessIdentity.current()
    with acquire(path, {**me.to_json(), "note": "x"}):
        holder = probe(path)
        assert holder is not None and holder["pid"] == os.getpid() and holder["note"] == "x"
        assert ProcessIdentity.from_json(holder) == me
        with pytest.raises(LockBusy) as busy:
            acquire(path, {"pid": -1})
        assert busy.value.holder["pid"] == os.getpid()
        assert f"pid {os.getpid()}" in str(busy.value)
    assert probe(path) is None  # released
    assert path.exists()  # kept: unlinking a lock file races with a process opening it


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    path = tmp_path / "j.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        holder = probe(path)
        assert holder is not None and holder["pid"] == proc.pid
        identity = ProcessIdentity.from_json(holder)
        assert identity is not None and identity.is_alive()
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert probe(path) is None
    assert not identity.is_alive()
    with acquire(path, ProcessIdentity.current().to_json()):
        pass


def test_a_reused_pid_is_not_the_recorded_process_and_is_never_signalled() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        real = ProcessIdentity.of(proc.pid)
        assert real is not None and real.start_ticks is not None
        # The same pid with another start time: what a journal left by a crash names after reuse.
        impostor = ProcessIdentity(proc.pid, real.start_ticks + 1, real.boot_id)
        assert not impostor.is_alive()
        with pytest.raises(ProcessLookupError):
            impostor.send_signal(signal.SIGINT)
        real.send_signal(signal.SIGTERM)  # delivered after any SIGINT that had been sent
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_identity_round_trip_and_bad_records() -> None:
    me = ProcessIdentity.current()
    assert ProcessIdentity.from_json(me.to_json()) == me and me.is_alive()
    assert ProcessIdentity.from_json({"pid": "12"}) is None
    assert ProcessIdentity.from_json(None) is None
    assert ProcessIdentity.of(0) is None
