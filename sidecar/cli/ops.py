"""The operator's commands: `sidecar halt|resume|status|journal [prune]|reload`, from any directory.

Each takes the parsed argparse namespace and returns an exit code (0 ok, 2 usage/config, 1
runtime), with human output on stdout and one-line errors on stderr. The rules they keep:
- They never create a journal: with none at the configured (absolute) path they exit 2 and name it.
- `halt`/`resume` store the state, then wait (at most CONFIRM_S) until a running server has
  acknowledged that exact change, or say that no server is running.
- `status` shows a server as running only while it holds the journal's lock with a fresh heartbeat,
  and the trading state from the control table, never from a health snapshot.
- With `coordination.backend: redis` the kill switch is the fleet's, in Redis: `halt`/`resume` write
  it there (in force for every later admission of every sidecar on the namespace before they
  return: the admission script reads it; no server needs to confirm), `status` reads it there and
  says whether Redis is reachable (exit 1 when it is not: the state is unknown).
- `reload` signals only the live server that holds this journal (identity checked, never a bare
  pid), refuses a changed `journal.path` naming both paths, and prints what the server applied.

Each raises a `SidecarError` (the CLI prints it and exits 2 or 1) for what it cannot do.
This module wires the CLI to `presence`, `host_registry` and the journal; it holds no trading rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from sidecar.clock import SystemClock
from sidecar.config import SidecarConfig, load_config
from sidecar.coordination import (
    CoordinationUnavailable,
    Coordinator,
    StateView,
    build_coordinator,
    describe_url,
)
from sidecar.core.types import TradingState
from sidecar.env import Environment
from sidecar.errors import ExitCode, JournalMissing, SidecarError, UsageError
from sidecar.host_registry import live_servers, runtime_dir, same_path
from sidecar.journal import Journal, disk_bytes
from sidecar.journal.format import expand
from sidecar.presence import (
    HEALTH_KEY,
    PRESENCE_KEY,
    RELOAD_KEY,
    ServerStatus,
    read_json_control,
    server_status,
)

__all__ = ["CONFIRM_S", "halt", "journal", "prune", "reload", "resume", "status"]

# How long halt/resume/reload wait for the running server to acknowledge.
CONFIRM_S: Final = 5.0
_POLL_S: Final = 0.05
# Health keys that would contradict the control table if the snapshot is a second old.
_STATE_KEYS: Final = ("tradingState", "haltReason")


def _open(args: argparse.Namespace) -> Journal:
    """The existing journal the config names."""
    return _open_with_config(args)[1]


def _open_with_config(args: argparse.Namespace) -> tuple[SidecarConfig, Journal]:
    """The config and the existing journal it names.

    Raises:
        ConfigError: the config is not valid.
        UsageError: there is no journal at its `journal.path` (the operator's commands never create one).
        JournalError: the journal cannot be opened (NotAJournal: the file is something else, exit 2).
    """
    config = load_config(args.config)
    return config, _journal_of(config, args)


def _journal_of(config: SidecarConfig, args: argparse.Namespace) -> Journal:
    """The existing journal `config` (loaded from `args.config`) names; raises as `_open_with_config`."""
    try:
        return Journal(config.journal.path, config.journal.synchronous, create=False)
    except JournalMissing:
        raise UsageError(
            f"no journal at {config.journal.path} (journal.path of {Path(args.config).resolve()}); "
            "`sidecar serve` creates it when it starts. Is this the config the server runs with?"
        ) from None


def _who(env: Environment) -> str:
    return f"cli:{env.user}"


# ---------------------------------------------------------------------------- halt / resume


def halt(args: argparse.Namespace, env: Environment) -> int:
    return _set_state(args, env, "halted", args.reason, f"halted: {args.reason}")


def resume(args: argparse.Namespace, env: Environment) -> int:
    return _set_state(args, env, "active", "", "active")


def _set_state(args: argparse.Namespace, env: Environment, state: str, reason: str, done: str) -> int:
    config, j = _open_with_config(args)
    if config.coordination.backend == "redis":
        with contextlib.closing(j):
            return _set_shared_state(config, j, env, state=state, reason=reason, done=done)
    clock = SystemClock()
    with contextlib.closing(j):
        epoch = j.set_trading_state(state, reason, _who(env), clock.wall_ms())
        server = server_status(j, clock.wall_ms())
        if server.state == "unresponsive":
            print(done)
            raise SidecarError(
                f"{state} is stored in {j.path}, but the server holding it (pid {server.pid}) is not "
                f"responding (last heartbeat {_age(server)}): it cannot confirm; see `sidecar status`"
            )
        if not server.running:
            print(done)
            if server.state == "locked":
                print(f"a server (pid {server.pid}) is starting on {j.path}: it reads the state as it starts")
            else:
                print(f"no server is running on {j.path}: the state is stored and applies when one starts")
            return ExitCode.OK
        deadline_ns = clock.monotonic_ns() + int(CONFIRM_S * 1e9)
        while True:
            record = read_json_control(j, PRESENCE_KEY)
            applied = record.get("appliedEpoch") if record and record.get("pid") == server.pid else None
            if isinstance(applied, int) and applied >= epoch:
                print(f"{done} (applied by the server, pid {server.pid})")
                return ExitCode.OK
            if not server_status(j, clock.wall_ms()).running:
                print(done)
                print(f"the server (pid {server.pid}) stopped meanwhile: the state is stored for the next")
                return ExitCode.OK
            if clock.monotonic_ns() >= deadline_ns:
                raise SidecarError(
                    f"{state} is stored in {j.path}, but the server (pid {server.pid}) has not confirmed it "
                    f"within {CONFIRM_S:.0f} s; see `sidecar status`"
                )
            time.sleep(_POLL_S)  # a CLI waiting on another process: nothing to await


def _set_shared_state(
    config: SidecarConfig, j: Journal, env: Environment, *, state: str, reason: str, done: str
) -> int:
    """halt/resume on the fleet's state in Redis: in force before this returns (the admission script
    reads it), so no server has to confirm it."""
    shared = _shared_state(
        config, j, env, lambda c: c.set_trading_state(TradingState(state), reason, _who(env))
    )
    view, where = shared
    if isinstance(view, CoordinationUnavailable):
        raise SidecarError(
            f"{state} was NOT stored: {view.message.removesuffix(': nothing was sent')}; while Redis cannot "
            "be reached every sidecar on it refuses amends anyway (COORDINATION_UNAVAILABLE)"
        )
    print(done)
    print(
        f"stored in Redis ({where}, namespace {config.coordination.namespace}): in force for every sidecar "
        "on this account from their next call"
    )
    return ExitCode.OK


def _shared_state(
    config: SidecarConfig,
    j: Journal,
    env: Environment,
    act: Callable[[Coordinator], Awaitable[StateView | CoordinationUnavailable]],
) -> tuple[StateView | CoordinationUnavailable, str]:
    """Run one state call on the config's Redis (no registration: the CLI does not join the fleet).
    Returns (answer, where Redis is). Raises ConfigError when the URL cannot be resolved."""
    coordinator = build_coordinator(
        config,
        config.to_policy(),
        clock=SystemClock(),
        store=j,
        request_id_prefix="cli",
        env=env.values,
        who=_who(env),
    )

    async def run() -> StateView | CoordinationUnavailable:
        try:
            return await act(coordinator)
        finally:
            await coordinator.stop()

    return asyncio.run(run()), describe_url(config.coordination.resolve_url(env.values))


# ---------------------------------------------------------------------------- status


def status(args: argparse.Namespace, env: Environment) -> int:
    config, j = _open_with_config(args)
    clock = SystemClock()
    coordination: dict[str, Any] = {"backend": config.coordination.backend}
    with contextlib.closing(j):
        if config.coordination.backend == "redis":
            shared = _shared_state(config, j, env, lambda c: c.read_trading_state())
            view, where = shared
            coordination.update(namespace=config.coordination.namespace, where=where)
            if isinstance(view, CoordinationUnavailable):
                coordination.update(reachable=False, error=view.message.removesuffix(": nothing was sent"))
                state, reason, who, ts = None, "", "", 0
            else:
                coordination["reachable"] = True
                state, reason, who, ts = view.state.value, view.reason, view.who, view.updated_ms
        else:
            state, reason, who, ts = j.trading_state()
        server = server_status(j, clock.wall_ms())
        health = read_json_control(j, HEALTH_KEY) if server.running else None
        body: dict[str, Any] = {
            "journalPath": str(j.path),
            "serverRunning": server.running,
            "server": server.to_json(),
            "tradingState": state,
            "reason": reason or None,
            "by": who or None,
            "sinceMs": ts,
            "coordination": coordination,
        }
    if health is not None:
        body["health"] = {k: v for k, v in health.items() if k not in _STATE_KEYS}
    unknown = coordination.get("reachable") is False
    if args.json:
        print(json.dumps(body, indent=2))
        return ExitCode.RUNTIME if unknown else ExitCode.OK
    print(f"journal      : {body['journalPath']}")
    print(f"server       : {_server_line(server)}")
    print(f"coordination : {_coordination_line(coordination)}")
    if unknown:
        print(
            "trading state: UNKNOWN (Redis cannot be reached; every sidecar on it refuses amends meanwhile)"
        )
    else:
        print(f"trading state: {state}" + (f" ({reason}, by {who})" if reason else ""))
    h = body.get("health")
    if isinstance(h, dict):
        print("health (live):")
        for key, value in h.items():
            print(f"  {key}: {json.dumps(value)}")
    return ExitCode.RUNTIME if unknown else ExitCode.OK


def _coordination_line(c: dict[str, Any]) -> str:
    if c["backend"] != "redis":
        return "local (this sidecar alone; the kill switch is in this journal)"
    reach = "reachable" if c.get("reachable") else f"NOT REACHABLE: {c.get('error')}"
    return f"redis {c.get('where')}, namespace {c.get('namespace')} ({reach})"


def _age(s: ServerStatus) -> str:
    return f"{s.heartbeat_age_ms / 1000:.1f} s ago" if s.heartbeat_age_ms is not None else "never"


def _server_line(s: ServerStatus) -> str:
    rec = s.record or {}
    age = _age(s)
    if s.running:
        return f"running (pid {s.pid}, {rec.get('transport')}, {s.state}, heartbeat {age})"
    if s.state == "unresponsive":
        return f"NOT RESPONDING: pid {s.pid} holds the journal but its last heartbeat was {age}"
    if s.state == "locked":
        return f"starting: pid {s.pid} holds the journal and has not published its heartbeat yet"
    if s.state == "crashed":
        return f"not running (pid {s.pid} did not stop cleanly; last heartbeat {age})"
    return "not running"


# ---------------------------------------------------------------------------- journal


def journal(args: argparse.Namespace, env: Environment) -> int:
    if args.action == "prune":
        return prune(args, env)
    if args.older_than_days is not None:
        raise UsageError("--older-than-days goes with `sidecar journal prune`")
    j = _open(args)
    with contextlib.closing(j):
        if args.request:
            record = j.get_request(args.request)
            if record is None:
                raise UsageError(f"no request {args.request!r} in the journal")
            steps = expand(record.records)
            if args.json:
                whole = dataclasses.asdict(record)
                whole["steps"] = [dataclasses.asdict(st) for st in steps]
                print(json.dumps(whole, indent=2, default=str))
                return ExitCode.OK
            print(
                f"request {record.request_id}  tool {record.tool}  status {record.status}  "
                f"policy {record.policy_version}"
            )
            # Every step, those a record folds in unfolded (#record.step), in the order they happened.
            for st in steps:
                item = "" if st.item_idx is None else f" item {st.item_idx}"
                text = json.dumps(st.body, default=str)[:300]
                print(f"  #{st.seq}.{st.position} {_when(st.wall_ms)} {st.kind}{item}: {text}")
            if record.result is not None:
                print("result: " + json.dumps(record.result, default=str))
            return ExitCode.OK
        rows = j.last_requests(args.last)
        if args.json:
            print(json.dumps([dataclasses.asdict(r) for r in rows], default=str))
            return ExitCode.OK
        for r in rows:
            print(f"{_when(r.created_ms)}  {r.request_id}  {r.tool or '-'}  {r.status}  {r.outcome or '-'}")
        if not rows:
            print("the journal holds no requests yet")
    return ExitCode.OK


def prune(args: argparse.Namespace, env: Environment) -> int:
    """`sidecar journal prune`: delete settled requests older than the retention (sidecar.journal.prune),
    in short transactions a running server does not notice, then give the space back."""
    if args.request:
        raise UsageError("--request does not go with prune")
    loaded = load_config(args.config)
    days = args.older_than_days
    if days is None:
        if loaded.journal.retain_days is None:
            raise UsageError(
                f"journal.retain_days is null in {Path(args.config).resolve()} (keep everything): "
                "pass --older-than-days N to prune anyway"
            )
        days = float(loaded.journal.retain_days)
    j = _journal_of(loaded, args)
    clock = SystemClock()
    with contextlib.closing(j):
        before = j.size_bytes()
        wall_ms = clock.wall_ms()
        cutoff_ms = wall_ms - int(days * 86_400_000)
        requests = records = pinned = 0
        while True:  # a JournalError ends the command (exit 1) with its message
            done = j.prune(cutoff_ms, wall_ms)
            requests, records = requests + done.requests, records + done.records
            pinned = max(pinned, done.pinned)
            if not done.more:
                break
        released = j.reclaim()
        j.checkpoint()
        report = {
            "journalPath": str(j.path),
            "olderThanDays": days,
            "cutoffMs": cutoff_ms,
            "requests": requests,
            "records": records,
            "pinned": pinned,
            "pagesReleased": released,
            "bytesBefore": before,
        }
    # Measured once closed: the last connection to close folds the WAL in and removes it (with a
    # server running, its WAL stays and is counted).
    report["bytesAfter"] = disk_bytes(Path(report["journalPath"]))
    if args.json:
        print(json.dumps(report))
        return ExitCode.OK
    print(
        f"pruned {requests} settled request(s) ({records} records) created before {_when(cutoff_ms)} UTC "
        f"({days:g} days) from {report['journalPath']}"
    )
    if pinned:
        print(f"kept {pinned} older request(s) that are not settled yet (an amend still being looked at)")
    print(f"journal: {before / 2**20:.1f} MiB before, {report['bytesAfter'] / 2**20:.1f} MiB now")
    return ExitCode.OK


def _when(wall_ms: int) -> str:
    return datetime.datetime.fromtimestamp(wall_ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[
        :-3
    ]


# ---------------------------------------------------------------------------- reload


def reload(args: argparse.Namespace, env: Environment) -> int:
    """Make the live server of this config's journal re-read its config; print what it applied."""
    loaded = load_config(args.config)  # refuse to signal with a file that would be rejected anyway
    config_path = Path(args.config).resolve()
    for entry in live_servers(runtime_dir(env.runtime_dir)):
        if same_path(entry.config_path, str(config_path)) and not same_path(
            entry.journal_path, loaded.journal.path
        ):
            raise UsageError(
                f"journal.path changed: the server (pid {entry.identity.pid}) started from {config_path} "
                f"writes {entry.journal_path}, and the file now names {loaded.journal.path}; journal.path "
                "cannot change on reload: restart the server to move the journal"
            )
    j = _journal_of(loaded, args)
    clock = SystemClock()
    with contextlib.closing(j):
        server = server_status(j, clock.wall_ms())
        if not server.running or server.identity is None:
            raise SidecarError(f"no server is running on {j.path}: nothing to reload")
        started_with = (server.record or {}).get("configPath")
        if isinstance(started_with, str) and not same_path(started_with, str(config_path)):
            raise UsageError(
                f"the server on {j.path} (pid {server.pid}) was started with --config {started_with}; "
                f"a reload re-reads that file, not {config_path}: "
                f"run `sidecar reload --config {started_with}`"
            )
        previous = read_json_control(j, RELOAD_KEY)
        seq = int(previous.get("seq", 0)) if previous else 0
        try:
            server.identity.send_signal(signal.SIGHUP)
        except ProcessLookupError:
            raise SidecarError(
                f"the server of {j.path} (pid {server.pid}) has just stopped: nothing to reload"
            ) from None
        deadline_ns = clock.monotonic_ns() + int(CONFIRM_S * 1e9)
        while True:
            report = read_json_control(j, RELOAD_KEY)
            if report and report.get("pid") == server.pid and int(report.get("seq", 0)) > seq:
                return _print_reload(report, server.pid)
            if clock.monotonic_ns() >= deadline_ns:
                raise SidecarError(
                    f"asked the server (pid {server.pid}) to reload, but it has not reported within "
                    f"{CONFIRM_S:.0f} s; see its log (config.reload_*)"
                )
            time.sleep(_POLL_S)  # a CLI waiting on another process: nothing to await


def _print_reload(report: dict[str, Any], pid: int | None) -> int:
    if not report.get("ok"):
        print(f"sidecar: the server (pid {pid}) refused the reload; its policy stays:", file=sys.stderr)
        for line in report.get("problems") or ():
            print(f"  {line}", file=sys.stderr)
        return ExitCode.USAGE
    version, previous = report.get("policyVersion"), report.get("previousVersion")
    was = f" (was {previous})" if previous else ""
    print(f"reloaded by the server (pid {pid}): policy {version}{was}")
    applied = report.get("applied") or []
    print("applied now: " + (", ".join(applied) if applied else "nothing changed"))
    restart = report.get("needsRestart") or []
    if restart:
        print("needs a restart (the running value is kept): " + ", ".join(restart))
    return ExitCode.OK
