"""Hot reload of the config (`sidecar reload`, SIGHUP): what changed, what applies now, what waits.

One job: compare the running config with the file as it is now and decide, per setting, whether it
is applied at once or needs a restart — and say so, so a reload never reports success while a
setting silently keeps its old value.
- Applied at once: the policy (symbols, defaults, batch, reference_price, rate_limits, approval),
  `exchange.recv_window_ms`, every `verification` setting (the ack timeout included), `safety`,
  `journal.retain_days` (the next prune uses it).
- Need a restart (the running value is kept and the key is named): `exchange.env`/`rest_url`/
  `ws_url` (the connections), `journal.synchronous`, `http` (the listening app), `coordination`,
  and a price feed for an added symbol (denied, no reference price, until then).
- Refused (nothing applied): a changed `journal.path`: the operator's commands would then meet a
  different file than the one the server writes.

It must not read files or signals itself beyond `load_config`; the service applies what it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from sidecar.config import ConfigError, SidecarConfig, load_config

__all__ = ["ReloadPlan", "ReloadTarget", "plan_reload", "reload_from_file"]

log = structlog.get_logger("config")

# Dotted keys (or key prefixes) whose running value is kept until a restart.
RESTART_KEYS: Final = (
    "exchange.env",
    "exchange.rest_url",
    "exchange.ws_url",
    "journal.synchronous",
    "http",
    "coordination",
)


@dataclass(frozen=True)
class ReloadPlan:
    """`effective` is the new config with every restart-only setting kept at its running value."""

    effective: SidecarConfig | None
    applied: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class ReloadTarget(Protocol):
    """What a reload acts on (the service): its running config and the swap."""

    @property
    def config(self) -> SidecarConfig: ...

    def reload(self, config: SidecarConfig) -> bool: ...


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def changed_keys(old: SidecarConfig, new: SidecarConfig) -> list[str]:
    """Dotted keys whose value differs (lists such as `symbols` compare whole, at their key)."""
    a, b = _flatten(old.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _needs_restart(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RESTART_KEYS)


def plan_reload(old: SidecarConfig, new: SidecarConfig) -> ReloadPlan:
    if new.journal.path != old.journal.path:
        return ReloadPlan(
            None,
            refused=[
                f"journal.path changed from {old.journal.path} to {new.journal.path}: the server keeps "
                "writing the journal it started with; restart it to move the journal"
            ],
        )
    changed = changed_keys(old, new)
    applied = [k for k in changed if not _needs_restart(k)]
    restart = [k for k in changed if _needs_restart(k)]
    added = sorted(
        {f"{s.category}:{s.symbol}" for s in new.symbols} - {f"{s.category}:{s.symbol}" for s in old.symbols}
    )
    if added:
        # The rule applies now (denied without a price); the price subscription waits for a restart.
        restart.append("symbols (price feed for " + ", ".join(added) + ")")
    updates: dict[str, Any] = {
        "exchange": new.exchange.model_copy(
            update={"env": old.exchange.env, "rest_url": old.exchange.rest_url, "ws_url": old.exchange.ws_url}
        ),
        "journal": new.journal.model_copy(update={"synchronous": old.journal.synchronous}),
        "http": old.http,
    }
    if "coordination" in type(old).model_fields:  # the coordination backend, where this build has it
        updates["coordination"] = getattr(old, "coordination")  # noqa: B009 -- absent in older builds
    return ReloadPlan(new.model_copy(update=updates), applied, restart)


def reload_from_file(target: ReloadTarget, path: Path) -> dict[str, Any]:
    """Re-read `path` and apply what can be applied to `target`. Returns the report the server
    stores for `sidecar reload` (`ok`, `problems` or `applied`/`needsRestart`, policy versions)."""
    old_version = getattr(getattr(target, "policy", None), "version", None)
    try:
        new = load_config(path)
    except ConfigError as err:
        log.error("config.reload_rejected", problems=err.problems, kept=old_version)
        return {"ok": False, "problems": err.problems, "policyVersion": old_version}
    plan = plan_reload(target.config, new)
    if plan.effective is None:
        log.error("config.reload_rejected", problems=plan.refused, kept=old_version)
        return {"ok": False, "problems": plan.refused, "policyVersion": old_version}
    target.reload(plan.effective)
    version = getattr(getattr(target, "policy", None), "version", None)
    log.info(
        "config.reload_applied",
        policy_version=version,
        previous=old_version,
        applied=plan.applied,
        needs_restart=plan.needs_restart,
    )
    return {
        "ok": True,
        "policyVersion": version,
        "previousVersion": old_version,
        "applied": plan.applied,
        "needsRestart": plan.needs_restart,
    }
