"""How one service joins its coordination backend, with what its journal remembers of the state.

One job: build the `Coordinator` the config names, telling a Redis backend what this instance saw of
the shared trading state before it stopped (namespace, the life of the state hash and its epoch,
kept in the journal's `control` table under `coordination`), so a Redis that came back empty, went
back to an older state, or was re-created by a sidecar that never knew it, reads as halted at the
first hello; and keep that memory current. It decides nothing and sends nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Final

import structlog

from sidecar.clock import Clock
from sidecar.config import SidecarConfig
from sidecar.coordination import Coordinator, build_coordinator
from sidecar.core.inflight import InFlight
from sidecar.core.policy import Policy
from sidecar.env import Environment
from sidecar.journal import Journal, JournalError

__all__ = ["MEMORY_KEY", "open_coordinator", "remember"]

log = structlog.get_logger("coordination")

# The journal control key holding {"namespace", "gen", "epoch"} of the shared state last seen.
MEMORY_KEY: Final = "coordination"


def _memory(journal: Journal) -> dict[str, object]:
    try:
        raw = journal.get_control(MEMORY_KEY)
        value = json.loads(raw) if raw else {}
    except (JournalError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def open_coordinator(
    config: SidecarConfig,
    policy: Policy,
    *,
    journal: Journal,
    clock: Clock,
    in_flight: InFlight,
    request_id_prefix: str,
    env: Mapping[str, str] | None = None,
) -> Coordinator:
    """The backend of `config.coordination` (not started).

    Raises:
        ConfigError: backend redis without the redis extra installed, or its `url_env` unset.
    """
    memory = _memory(journal)
    namespace = config.coordination.namespace
    same = namespace is not None and memory.get("namespace") == namespace
    gen = memory.get("gen") if same else ""
    epoch = memory.get("epoch") if same else 0
    return build_coordinator(
        config,
        policy,
        clock=clock,
        store=journal,
        request_id_prefix=request_id_prefix,
        env=Environment.from_process().values if env is None else env,
        who=f"sidecar pid {os.getpid()}",
        known_namespace=same,
        seen_gen=gen if isinstance(gen, str) else "",
        seen_epoch=epoch if isinstance(epoch, int) else 0,
        in_flight=in_flight,
    )


def remember(journal: Journal, coordinator: Coordinator, namespace: str | None) -> bool:
    """Store what this instance has seen of the shared state, if it changed. True if written."""
    generation, epoch = coordinator.seen_state
    if namespace is None or not generation:
        return False
    record = {"namespace": namespace, "gen": generation, "epoch": epoch}
    if _memory(journal) == record:
        return False
    try:
        journal.set_control(MEMORY_KEY, json.dumps(record))
    except JournalError as exc:
        log.warning("coordination.remember_failed", error=str(exc))
        return False
    return True
