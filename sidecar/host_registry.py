"""The per-host registry of running `sidecar serve` processes, under the user's runtime directory.

One job: let a server and the operator's commands see the other servers on this host without any
shared service. Each server writes one entry file and holds an exclusive lock on it for its whole
life (`runtime_lock`), so an entry whose lock is free belongs to a dead process and is swept.
What it answers:
- which live servers use the same exchange account (a hash of the REST URL and API key — never the
  key itself), so a second server on one key without a shared coordination backend is warned about;
- which journal a live server started from a given config file uses, so `sidecar reload` can refuse
  a config whose `journal.path` has changed and name both paths.

Where: `$XDG_RUNTIME_DIR/bybit-sidecar`, else `<tmp>/bybit-sidecar-<uid>`, created 0700 and used
only if this user owns it and nobody else can write to it. Registry trouble never stops a server:
it is advisory (the journal lock is what refuses a second server on one journal). This module must
not decide what to do about what it finds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sidecar.runtime_lock import HeldLock, ProcessIdentity, acquire, probe

__all__ = [
    "Registration",
    "ServerEntry",
    "account_hash",
    "live_servers",
    "register",
    "runtime_dir",
    "same_path",
]

_DIR_NAME: Final = "bybit-sidecar"
_ENTRY_PREFIX: Final = "server-"
_ENTRY_SUFFIX: Final = ".json"
# Never read more than this many entries (a directory filled by something else stays harmless).
_MAX_ENTRIES: Final = 1024


def runtime_dir(xdg: str | None) -> Path | None:
    """This user's private registry directory (created if needed), or None if none is safe.
    `xdg` is `$XDG_RUNTIME_DIR` (`Environment.runtime_dir`), None when unset."""
    base = Path(xdg) / _DIR_NAME if xdg else Path(tempfile.gettempdir()) / f"{_DIR_NAME}-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, parents=bool(xdg), exist_ok=True)
        st = base.lstat()
    except OSError:
        return None
    # Someone else's directory (or a symlink planted in /tmp) is never used.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return base


def account_hash(rest_url: str, api_key: str) -> str:
    """Who the server trades as, without the key: one account is one key on one exchange."""
    digest = hashlib.sha256(b"bybit-sidecar account\0" + rest_url.encode() + b"\0" + api_key.encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """What a running server tells the other processes on this host about itself."""

    identity: ProcessIdentity
    config_path: str
    journal_path: str
    account: str
    coordination: str  # the coordination backend: "local" or "redis"
    started_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            **self.identity.to_json(),
            "configPath": self.config_path,
            "journalPath": self.journal_path,
            "account": self.account,
            "coordination": self.coordination,
            "startedMs": self.started_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerEntry | None:
        identity = ProcessIdentity.from_json(dict(data))
        fields = (
            data.get("configPath"),
            data.get("journalPath"),
            data.get("account"),
            data.get("coordination"),
        )
        started = data.get("startedMs")
        if identity is None or not all(isinstance(f, str) for f in fields) or type(started) is not int:
            return None
        config_path, journal_path, account, coordination = (str(f) for f in fields)
        return cls(identity, config_path, journal_path, account, coordination, started)


class Registration:
    """This server's entry; `close()` (a clean stop) removes it. A crash leaves a stale file that
    the next reader sweeps."""

    def __init__(self, lock: HeldLock) -> None:
        self._lock = lock

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._lock.path.unlink()  # unlinked while still locked: no reader can take it for live
        self._lock.release()


def register(entry: ServerEntry, directory: Path | None) -> Registration | None:
    """Publish `entry` in `directory` (`runtime_dir(...)`) for as long as this process runs; None
    when there is no usable directory."""
    base = directory
    if base is None:
        return None
    ident = entry.identity
    path = base / f"{_ENTRY_PREFIX}{ident.pid}-{ident.start_ticks or 0}{_ENTRY_SUFFIX}"
    try:
        return Registration(acquire(path, entry.to_json()))
    except OSError:  # LockBusy included: cannot happen for our own pid and start time
        return None


def live_servers(directory: Path | None) -> list[ServerEntry]:
    """Every live server's entry in `directory` (`runtime_dir(...)`; this process's own included);
    stale ones are swept."""
    base = directory
    if base is None:
        return []
    out: list[ServerEntry] = []
    try:
        names = sorted(p for p in base.iterdir() if p.name.startswith(_ENTRY_PREFIX))[:_MAX_ENTRIES]
    except OSError:
        return []
    for path in names:
        try:
            holder = probe(path)
        except OSError:
            continue
        if holder is None:
            _sweep(path)
            continue
        entry = ServerEntry.from_json(holder)
        if entry is not None:
            out.append(entry)
    return out


def _sweep(path: Path) -> None:
    """Remove a dead server's entry, taking its lock first so a live one is never removed."""
    with contextlib.suppress(OSError):
        held = acquire(path, {})
        try:
            path.unlink()
        finally:
            held.release()


def same_path(a: str, b: str) -> bool:
    """Two paths name one file (or, when either is missing, the same normalised name)."""
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return os.path.normpath(a) == os.path.normpath(b)
