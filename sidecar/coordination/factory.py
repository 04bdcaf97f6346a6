"""Pick and build the coordination backend a config names.

One job: turn `coordination` (config) into a `Coordinator`. The Redis backend and its client
library are imported only when the config asks for them (`pip install '.[redis]'`). It must not
connect (the caller's `start()` does) or print the URL.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from sidecar.clock import Clock
from sidecar.config import ConfigError, SidecarConfig
from sidecar.coordination.api import Coordinator
from sidecar.coordination.local import LocalCoordinator, StateStore
from sidecar.core.inflight import InFlight
from sidecar.core.policy import Policy

__all__ = ["build_coordinator"]


def build_coordinator(
    config: SidecarConfig,
    policy: Policy,
    *,
    clock: Clock,
    store: StateStore,
    request_id_prefix: str,
    env: Mapping[str, str],
    who: str = "sidecar",
    known_namespace: bool = False,
    seen_gen: str = "",
    seen_epoch: int = 0,
    in_flight: InFlight | None = None,
) -> Coordinator:
    """The backend `config.coordination` names. `in_flight`: the local in-flight guard the local
    backend's leases live in (the service's own, which the validator reads); `known_namespace`,
    `seen_gen`, `seen_epoch`: what this instance's journal remembers of the shared state (redis).

    Raises:
        ConfigError: backend redis without the `redis` package installed, or `url_env` unset.
    """
    section = config.coordination
    if section.backend == "local":
        return LocalCoordinator(
            policy, clock=clock, store=store, request_id_prefix=request_id_prefix, in_flight=in_flight
        )
    if importlib.util.find_spec("redis") is None:
        raise ConfigError(
            "config",
            [
                "config: coordination.backend: redis needs the redis extra "
                "(pip install 'bybit-order-sidecar[redis]')"
            ],
        )
    url = section.resolve_url(env)
    from sidecar.coordination.redis_backend import RedisCoordinator  # noqa: PLC0415  # optional extra

    assert section.namespace is not None  # checked by the config model
    return RedisCoordinator(
        policy,
        url=url,
        namespace=section.namespace,
        clock=clock,
        local_id_prefix=request_id_prefix,
        timeout_ms=section.decision_timeout_ms,
        who=who,
        known_namespace=known_namespace,
        seen_gen=seen_gen,
        seen_epoch=seen_epoch,
    )
