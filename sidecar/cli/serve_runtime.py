"""The life of one `sidecar serve` process: one server per journal, signals, a bounded clean stop.

One job: the process-level rules around the service, which `sidecar.cli.serve` wires together.
- `hold_journal`: the exclusive lock beside the journal; a second server on it is refused with the
  journal and the pid that holds it (exit 2).
- `register_on_host`: the host registry entry, and a warning (not a refusal) when another server on
  this host trades with the same API key and no shared coordination backend.
- `StopSignals`: SIGINT/SIGTERM ask for a stop; a second one (or one during start-up) forces it.
- `CallTracker` (+ `DRAIN_S`, `CLOSE_S`): on a stop the stdio transport (`sidecar.stdio_transport`)
  stops handing messages over, lets the tool calls in flight finish (at most `DRAIN_S`), then ends
  its input, so the whole stop fits in 2 s even while the client keeps stdin open.
- `install_reload`: SIGHUP re-reads the config (`sidecar.reload`) and stores the result for
  `sidecar reload` to print.

It must not hold business rules: what a reload applies is `sidecar.reload`'s, what a halt means is
the service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from sidecar.errors import AlreadyServing
from sidecar.host_registry import Registration, ServerEntry, account_hash, live_servers, register
from sidecar.presence import Presence, lock_path
from sidecar.reload import ReloadTarget, reload_from_file
from sidecar.runtime_lock import HeldLock, LockBusy, ProcessIdentity, acquire

__all__ = [
    "CLOSE_S",
    "DRAIN_S",
    "AlreadyServing",
    "CallTracker",
    "StopSignals",
    "hold_journal",
    "install_reload",
    "print_warning",
    "register_on_host",
]

log = structlog.get_logger("server")

# A stop: tool calls in flight get this long to be answered (their verdicts journaled) ...
DRAIN_S: Final = 0.8
# ... then the transport gets this long to wind down before it is cancelled. The service and the
# journal close after it; the whole stop stays within 2 s.
CLOSE_S: Final = 0.3


@contextlib.contextmanager
def hold_journal(journal_path: str, identity: ProcessIdentity) -> Iterator[HeldLock]:
    """Hold the journal's lock for the life of the block.

    Raises:
        AlreadyServing: another live server holds it (the message names the journal and its pid).
        OSError: the lock file cannot be created (e.g. the directory is not writable).
    """
    Path(journal_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        held = acquire(lock_path(journal_path), {**identity.to_json(), "journalPath": journal_path})
    except LockBusy as busy:
        pid = busy.holder.get("pid")
        who = f"pid {pid}" if pid is not None else "another process"
        raise AlreadyServing(
            f"another sidecar serve ({who}) already serves the journal {journal_path}; stop it first, "
            "or give this server its own journal.path"
        ) from None
    try:
        yield held
    finally:
        held.release()


def register_on_host(
    *,
    identity: ProcessIdentity,
    config_path: str,
    journal_path: str,
    rest_url: str,
    api_key: str | None,
    coordination: str,
    started_ms: int,
    warn: Callable[[str], None],
    registry: Path | None,
) -> Registration | None:
    """Publish this server on the host; warn if another live one trades with the same key.

    `api_key` None means a private in-process emulator: an account of its own. `registry` is the
    host registry's directory (`host_registry.runtime_dir`), None when there is no usable one.
    """
    account = account_hash(rest_url, api_key) if api_key is not None else f"in-process:{identity.pid}"
    others = [e for e in live_servers(registry) if e.account == account and e.identity.pid != identity.pid]
    entry = ServerEntry(identity, config_path, journal_path, account, coordination, started_ms)
    registration = register(entry, registry)
    if others and coordination == "local":
        other = others[0]
        log.warning(
            "server.shared_api_key",
            other_pid=other.identity.pid,
            other_journal=other.journal_path,
            coordination=coordination,
        )
        warn(
            f"WARNING: another sidecar (pid {other.identity.pid}, journal {other.journal_path}) trades "
            "with the same API key on this host, and coordination.backend is local: each applies the "
            "whole rate budget on its own, so together they can exceed Bybit's per-UID limits (10006). "
            "Use coordination.backend: redis for several sidecars on one account (docs/operations.md)."
        )
    return registration


class StopSignals:
    """SIGINT/SIGTERM → `requested`. Before `serving()` (start-up) or on a second signal the
    main task is cancelled at once instead: nothing is in flight yet, or the operator insists."""

    _SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self._main = asyncio.current_task()
        self._serving = False
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed = []

    def serving(self) -> None:
        self._serving = True

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("server.stopping", by=sig.name, forced=self.requested.is_set() or not self._serving)
        if (self.requested.is_set() or not self._serving) and self._main is not None:
            self._main.cancel()
        self.requested.set()


class CallTracker:
    """MCP middleware counting the tool calls in flight, so a stop can wait for their answers."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        self.in_flight += 1
        self._idle.clear()
        try:
            return await call_next(ctx)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


def install_reload(target: ReloadTarget, config_path: Path, presence: Presence) -> Callable[[], None]:
    """SIGHUP: re-read `config_path`, apply (see `sidecar.reload`), store the report. Returns a
    function that removes the handler."""

    def on_hup() -> None:
        try:
            report = reload_from_file(target, config_path)
        except Exception as exc:  # a reload must never take the server down
            log.exception("config.reload_failed")
            report = {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"]}
        presence.record_reload(report)

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError):
        return lambda: None

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove


def print_warning(message: str) -> None:
    print(f"sidecar: {message}", file=sys.stderr, flush=True)
