"""The sidecar's one exception tree and its one set of exit codes.

Every error the sidecar raises on purpose is a `SidecarError`: its message is a sentence for people
(an operator reads it on stderr, an agent in a result), and `exit_code` is what the `sidecar`
command exits with when the error ends a command (2 usage or config, 1 runtime). The CLI catches
`SidecarError` in one place (`sidecar.cli.main`) and prints `lines()`, never a traceback.

This module is a leaf: stdlib only, it imports nothing of the sidecar, so every layer (core excepted:
it raises ValueError and returns denials) may raise these. It must not decide anything else.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "AlreadyServing",
    "ConfigError",
    "CoordinationError",
    "DecodeError",
    "ExitCode",
    "JournalError",
    "JournalInputError",
    "JournalMissing",
    "LockBusy",
    "NotAJournal",
    "NotConnected",
    "RestError",
    "RestTransportError",
    "SidecarError",
    "StartupError",
    "UsageError",
]


class ExitCode(enum.IntEnum):
    """What every `sidecar` command exits with (DESIGN §4.1)."""

    OK = 0
    RUNTIME = 1  # a runtime failure: the exchange, the journal, a server that did not confirm
    USAGE = 2  # a usage or config error: nothing was done


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose. `str(err)` is a sentence for people."""

    exit_code: ClassVar[ExitCode] = ExitCode.RUNTIME
    # What the CLI puts before the message ("journal" -> "sidecar: journal: ..."), or nothing.
    topic: ClassVar[str] = ""

    def lines(self) -> list[str]:
        """What the CLI prints on stderr for this error, one line each."""
        topic = f"{self.topic}: " if self.topic else ""
        return [f"sidecar: {topic}{self}"]


class UsageError(SidecarError):
    """The command was asked for something it cannot do as asked (exit 2, nothing done)."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The config (or the credentials in the environment) is unusable.

    `problems` holds one line per problem, ``file: dotted.path: message``; the CLI prints them as
    they are (the `check-config` contract) and exits with 2.
    """

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(self.path, problems)

    def __str__(self) -> str:
        first = self.problems[0] if self.problems else f"{self.path}: invalid config"
        more = len(self.problems) - 1
        return first if more <= 0 else f"{first} (and {more} more problem{'s' if more > 1 else ''})"

    def lines(self) -> list[str]:
        return list(self.problems) or [f"{self.path}: invalid config"]


class StartupError(SidecarError):
    """The service could not start (bad credentials, exchange unreachable). The message says why."""


class CoordinationError(SidecarError):
    """The shared coordination store refused or could not take a state change. The message says why."""


class AlreadyServing(UsageError):
    """Another live `sidecar serve` holds this journal (the message names it and the pid)."""


class LockBusy(SidecarError):
    """Another live process holds the lock. `holder` is what it wrote (empty if unreadable)."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        pid = holder.get("pid")
        super().__init__(f"{path} is held by " + (f"pid {pid}" if pid is not None else "another process"))


class JournalError(SidecarError):
    """The journal could not write (or open, or verify) durably. The service halts trading on it."""

    topic = "journal"


class JournalInputError(JournalError):
    """This one body cannot be journaled (no JSON form, or it holds one of the sidecar's own secret
    values). Nothing was written and the journal stays healthy: the caller refuses that request
    only; it is no reason to halt trading."""


class JournalMissing(JournalError):
    """There is no journal at the path given, and the caller asked not to create one."""

    exit_code = ExitCode.USAGE


class NotAJournal(JournalError):
    """The file at the journal's path is not a sidecar journal (a wrong path, not a failure)."""

    exit_code = ExitCode.USAGE


class RestError(SidecarError):
    """Bybit answered with retCode != 0 (or something that is not a Bybit envelope)."""

    def __init__(self, ret_code: int, ret_msg: str, http_status: int | None = None) -> None:
        super().__init__(f"retCode {ret_code}: {ret_msg}" + (f" (HTTP {http_status})" if http_status else ""))
        self.ret_code = ret_code
        self.ret_msg = ret_msg
        self.http_status = http_status


class RestTransportError(RestError):
    """No answer: connection refused, timeout, broken response."""

    def __init__(self, ret_msg: str) -> None:
        super().__init__(-1, ret_msg)


class NotConnected(SidecarError):
    """The trade connection is not ready; the frame was not sent."""


class DecodeError(SidecarError, ValueError):
    """An inbound frame (or one order in it) could not be decoded."""
