"""The per-host registry of running servers: entries live as long as their process, keys hashed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sidecar.host_registry import ServerEntry, account_hash, live_servers, register, runtime_dir
from sidecar.runtime_lock import ProcessIdentity

HOLDER = """
import sys, time
from pathlib import Path
from sidecar.host_registry import ServerEntry, register
from sidecar.runtime_lock import ProcessIdentity
entry = ServerEntry(ProcessIdentity.current(), "/c.yaml", "/j.sqlite3", "acct", "local", 1)
assert register(entry, Path(sys.argv[1])) is not None
print("registered", flush=True)
time.sleep(60)
"""


def _entry(account: str = "acct") -> ServerEntry:
    return ServerEntry(ProcessIdentity.current(), "/etc/s.yaml", "/var/j.sqlite3", account, "local", 5)


def test_an_entry_lives_while_registered(tmp_path: Path) -> None:
    registration = register(_entry(), tmp_path)
    assert registration is not None
    [entry] = live_servers(tmp_path)
    assert entry == _entry()
    registration.close()
    assert live_servers(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_a_dead_servers_entry_is_swept(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"registered\n"
    assert [e.identity.pid for e in live_servers(tmp_path)] == [proc.pid]
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert live_servers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # the stale file is gone


def test_the_account_is_a_hash_never_the_key() -> None:
    key = "AbCdEfGhIjKlMnOp"
    digest = account_hash("https://api.bybit.com", key)
    assert key not in digest and len(digest) == 32
    assert digest != account_hash("https://api-testnet.bybit.com", key)  # another exchange, another account
    assert digest == account_hash("https://api.bybit.com", key)


def test_runtime_dir_is_private_and_refuses_a_shared_one(tmp_path: Path) -> None:
    base = runtime_dir(str(tmp_path))  # $XDG_RUNTIME_DIR
    assert base == tmp_path / "bybit-sidecar"
    assert (base.stat().st_mode & 0o777) == 0o700
    os.chmod(base, 0o777)  # writable by anyone: never used
    assert runtime_dir(str(tmp_path)) is None
