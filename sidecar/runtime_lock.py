"""Exclusive file locks that say who holds them, and process identities that survive pid reuse.

One job: answer "is a live process holding this, and which one?" without trusting a bare pid.
- `ProcessIdentity`: a pid plus its start time (Linux `/proc/PID/stat`, in clock ticks since boot)
  and the boot id, so a pid reused by an unrelated process after a crash is never mistaken for the
  server that wrote it.
- `acquire()`: an exclusive `flock` on a lock file, with the holder's identity written inside. The
  kernel drops the lock when the holder dies (even by SIGKILL), so a held lock means a live holder.
- `probe()`: who holds a lock, without ever creating the file.

The lock file is never deleted: a process that unlinks it could race another that has just opened
the old inode, and two servers would then each hold "the" lock. This module must not know what the
lock protects (journals, registries); callers name the files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sidecar.errors import LockBusy

__all__ = ["HeldLock", "LockBusy", "ProcessIdentity", "acquire", "probe"]

_BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
# A holder writes its identity right after taking the lock; a reader that finds the file still
# empty tries again for this long before reporting the holder as unknown.
_READ_RETRIES: Final = 20
_READ_RETRY_S: Final = 0.005
# Taking a lock tries again for this long: an operator's `probe()` holds a shared lock for
# microseconds, and a server starting at that instant must not mistake it for another server.
_ACQUIRE_RETRIES: Final = 50
_ACQUIRE_RETRY_S: Final = 0.01
_MAX_HOLDER_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process as it can be recognised later: pid, start time and boot (None where unknown)."""

    pid: int
    start_ticks: int | None
    boot_id: str | None

    @classmethod
    def current(cls) -> ProcessIdentity:
        me = cls.of(os.getpid())
        return me if me is not None else cls(os.getpid(), None, None)

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The process with this pid now, or None if there is none."""
        if pid <= 0:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return None if Path("/proc/self/stat").exists() else cls._without_proc(pid)
        except OSError:
            return cls._without_proc(pid)
        return cls(pid, _start_ticks(stat), _boot_id())

    @classmethod
    def _without_proc(cls, pid: int) -> ProcessIdentity | None:
        """No /proc (macOS, BSD): existence only; the start time is unknown."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # it exists, owned by someone else
            pass
        return cls(pid, None, None)

    def is_alive(self) -> bool:
        """True when the process that was recorded still runs (same pid, start time and boot).

        A recorded start time that cannot be checked now (no /proc) counts as not proven: False.
        """
        now = ProcessIdentity.of(self.pid)
        if now is None:
            return False
        if self.start_ticks is None or now.start_ticks is None:
            return self.start_ticks is None and now.start_ticks is None
        return now.start_ticks == self.start_ticks and now.boot_id == self.boot_id

    def send_signal(self, sig: int) -> None:
        """Signal this process, and only it: where Linux has pidfds, the pid is pinned first and its
        start time checked after, so a pid reused in between is never signalled.

        Raises:
            ProcessLookupError: the recorded process no longer runs (or its pid was reused).
        """
        pidfd_open = getattr(os, "pidfd_open", None)
        pidfd_send = getattr(signal, "pidfd_send_signal", None)
        if pidfd_open is None or pidfd_send is None:
            if not self.is_alive():
                raise ProcessLookupError(self.pid)
            os.kill(self.pid, sig)
            return
        try:
            fd = pidfd_open(self.pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise ProcessLookupError(self.pid) from None
            raise
        try:
            if not self.is_alive():  # checked while the pidfd pins the process
                raise ProcessLookupError(self.pid)
            pidfd_send(fd, sig)
        finally:
            os.close(fd)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "startTicks": self.start_ticks, "bootId": self.boot_id}

    @classmethod
    def from_json(cls, data: object) -> ProcessIdentity | None:
        if not isinstance(data, dict):
            return None
        pid, start, boot = data.get("pid"), data.get("startTicks"), data.get("bootId")
        if type(pid) is not int or not (start is None or type(start) is int):
            return None
        return cls(pid, start, boot if isinstance(boot, str) else None)


def _start_ticks(stat: str) -> int | None:
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22, starttime; fields[0] is field 3
    except (IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    try:
        return _BOOT_ID_PATH.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


class HeldLock:
    """An exclusive lock this process holds until `release()` (or until it dies)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(path: Path, holder: dict[str, Any]) -> HeldLock:
    """Take the exclusive lock at `path` (created 0600 if missing) and write `holder` into it.

    Raises:
        LockBusy: another live process holds it.
        OSError: the file cannot be created or locked.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        for attempt in range(_ACQUIRE_RETRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if attempt == _ACQUIRE_RETRIES - 1:
                    raise LockBusy(path, _read_holder(fd)) from None
                time.sleep(_ACQUIRE_RETRY_S)
        data = json.dumps(holder, separators=(",", ":")).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(path, fd)


def probe(path: Path) -> dict[str, Any] | None:
    """What the live holder of the lock at `path` wrote (empty if unreadable), or None when no
    process holds it. Never creates the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict[str, Any]:
    for attempt in range(_READ_RETRIES):
        raw = os.pread(fd, _MAX_HOLDER_BYTES, 0)
        if raw:
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
                if isinstance(parsed, dict):
                    return parsed
        if attempt < _READ_RETRIES - 1:
            time.sleep(_READ_RETRY_S)
    return {}
