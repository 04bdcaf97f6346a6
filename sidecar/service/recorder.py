"""Journal writes of evidence that must never cost an answer: a failure is reported, not raised.

One job: append a record (or the final one of a request) and, when the journal refuses it, say so
to whoever was given as `on_failure` (the kill switch, which halts: fail closed) instead of raising
into the request path. A body the journal refuses as input (an exchange message echoing a secret)
is recorded scrubbed and never halts trading. Writes whose failure the caller must handle itself
(the request and the intent, before anything is sent) go to `journal` directly.

It decides nothing and builds no bodies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from sidecar.clock import Clock
from sidecar.journal import Journal, JournalError, JournalInputError
from sidecar.logs import scrub

__all__ = ["Recorder"]

log = structlog.get_logger("service")


def _ignore(exc: JournalError) -> None:
    return None


class Recorder:
    """Fail-closed journal appends for the service's parts."""

    def __init__(self, journal: Journal, clock: Clock) -> None:
        self.journal = journal
        self._clock = clock
        # Set by the façade to the kill switch's journal-failure trip (wired after both exist).
        self.on_failure: Callable[[JournalError], None] = _ignore

    def record(
        self,
        kind: str,
        request_id: str | None,
        body: Mapping[str, Any],
        *,
        req_id: str | None = None,
        item_idx: int | None = None,
        final: bool = False,
        done: Sequence[int] | None = None,
    ) -> None:
        """Append evidence. `final`: the request's answer. `done`: items of the request's intent this
        record closes (journal `record`)."""
        try:
            self._write(kind, request_id, body, req_id, item_idx, final, done)
        except JournalInputError as exc:
            log.warning("journal.record_refused", kind=kind, request_id=request_id, error=str(exc))
            with contextlib.suppress(JournalError):
                self._write(kind, request_id, scrub(body), req_id, item_idx, final, done)
        except JournalError as exc:
            self.on_failure(exc)

    def _write(  # noqa: PLR0917 -- record()'s arguments, passed on as they are
        self,
        kind: str,
        request_id: str | None,
        body: Mapping[str, Any],
        req_id: str | None,
        item_idx: int | None,
        final: bool,
        done: Sequence[int] | None,
    ) -> None:
        wall_ms = self._clock.wall_ms()
        if final and request_id is not None:
            self.journal.record_final(request_id, body, wall_ms, done=done or ())
        else:
            self.journal.record(kind, request_id, body, wall_ms, req_id, item_idx, done=done)

    def record_final_later(
        self,
        request_id: str,
        build: Callable[[], Mapping[str, Any]],
        *,
        outcome: str | None,
        done: Sequence[int],
    ) -> None:
        """Buffer the `final` record of a sent request, its body built at the next commit
        (journal `record_final_later`); a body the journal refuses is recorded scrubbed."""
        try:
            self.journal.record_final_later(
                request_id,
                build,
                self._clock.wall_ms(),
                outcome=outcome,
                done=done,
                fallback=lambda body: self._scrubbed(request_id, body),
            )
        except JournalError as exc:
            self.on_failure(exc)

    @staticmethod
    def _scrubbed(request_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        log.warning("journal.record_refused", kind="final", request_id=request_id)
        scrubbed: Mapping[str, Any] = scrub(body)
        return scrubbed

    def flush(self) -> None:
        """Commit everything buffered (a failure halts, as any failed write does)."""
        try:
            self.journal.flush()
        except JournalError as exc:
            self.on_failure(exc)

    def control(self, key: str, value: str) -> None:
        """Write a control value (health for `sidecar status`)."""
        try:
            self.journal.set_control(key, value)
        except JournalError as exc:
            self.on_failure(exc)
