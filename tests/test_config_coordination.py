"""The `coordination` section and the exchange `guard_ms`: defaults, every misplacement is an
error, no password in the file or in a message, and the factory builds the backend named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import DEFAULT_EXCHANGE_GUARD_MS, ConfigError, SidecarConfig, load_config, summarize
from sidecar.coordination import Coordinator, LocalCoordinator, build_coordinator
from sidecar.coordination.redis_backend import RedisCoordinator, describe_url
from sidecar.core.types import Category
from sidecar.testing import FakeClock

BASE = """
version: 1
symbols:
  - {category: linear, symbol: BTCUSDT, max_qty: "1", max_notional: 100000, price_band_bps: 100}
"""


def load(tmp_path: Path, extra: str) -> SidecarConfig:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + extra, encoding="utf-8")
    return load_config(path)


def problems(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    return [p.split(": ", 1)[1] for p in info.value.problems]


def test_default_is_local_and_exchange_budgets_get_the_guard(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.coordination.backend == "local"
    assert config.coordination.decision_timeout_ms == 100
    policy = config.to_policy()
    assert {b.guard_ms for b in policy.exchange_budgets} == {DEFAULT_EXCHANGE_GUARD_MS}
    linear = next(
        b for b in policy.exchange_budgets if (b.op, b.category) == ("order.amend-batch", Category.LINEAR)
    )
    assert (linear.local_max, linear.admission_window_ms) == (8, 1100)


def test_guard_ms_is_set_per_exchange_budget_and_only_there(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "rate_limits:\n  - {scope: exchange, op: order.amend, category: linear, max: 10, guard_ms: 0}\n",
    )
    single = next(
        b for b in config.to_policy().exchange_budgets if b.op == "order.amend" and b.category == "linear"
    )
    assert single.admission_window_ms == 1000
    assert problems(tmp_path, "rate_limits:\n  - {scope: global, max: 5, guard_ms: 10}\n") == [
        "rate_limits.0.guard_ms: only for scope exchange, not global"
    ]


def test_a_redis_backend_needs_a_url_and_a_namespace(tmp_path: Path) -> None:
    config = load(
        tmp_path, "coordination: {backend: redis, url: 'redis://127.0.0.1:6379/0', namespace: acct-1}\n"
    )
    assert config.coordination.resolve_url({}) == "redis://127.0.0.1:6379/0"
    assert problems(tmp_path, "coordination: {backend: redis}\n") == [
        "coordination: backend redis needs exactly one of url and url_env",
        "coordination.namespace: required for backend redis (one per Bybit account)",
    ]
    assert problems(
        tmp_path, "coordination: {backend: redis, url: 'redis://h', url_env: R, namespace: '{x}'}\n"
    ) == [
        "coordination.namespace: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'",
        "coordination: backend redis needs exactly one of url and url_env",
    ]


def test_redis_only_keys_are_errors_under_local(tmp_path: Path) -> None:
    assert problems(tmp_path, "coordination: {url: 'redis://h', namespace: x, timeout_ms: 50}\n") == [
        "coordination.url: only for backend redis, not local",
        "coordination.namespace: only for backend redis, not local",
        "coordination.timeout_ms: only for backend redis, not local",
    ]
    assert problems(tmp_path, "coordination: {backend: memcached}\n")[0].startswith("coordination.backend:")


def test_a_password_never_goes_in_the_file_nor_in_a_message(tmp_path: Path) -> None:
    for url in ("redis://:hunter2@h:6379/0", "rediss://u:hunter2@h/0", "unix:///tmp/r.sock?password=hunter2"):
        found = problems(tmp_path, f"coordination: {{backend: redis, url: '{url}', namespace: x}}\n")
        assert found == [
            "coordination.url: holds a password; put the URL in an environment variable "
            "and name it with url_env"
        ]
    config = load(tmp_path, "coordination: {backend: redis, url_env: SIDECAR_REDIS_URL, namespace: x}\n")
    assert (
        config.coordination.resolve_url({"SIDECAR_REDIS_URL": "redis://:hunter2@h/0"})
        == "redis://:hunter2@h/0"
    )
    for env in ({}, {"SIDECAR_REDIS_URL": "http://:hunter2@h"}):
        with pytest.raises(ConfigError) as info:
            config.coordination.resolve_url(env)
        assert "hunter2" not in str(info.value.problems)
        assert "SIDECAR_REDIS_URL" in info.value.problems[0]
    assert describe_url("redis://user:hunter2@h:6379/2") == "redis://h:6379/2"


async def test_the_factory_builds_the_backend_the_config_names(tmp_path: Path) -> None:
    from sidecar.journal import Journal  # noqa: PLC0415

    journal = Journal(tmp_path / "j.sqlite3")
    try:

        def build(config: SidecarConfig, env: dict[str, str]) -> Coordinator:
            return build_coordinator(
                config,
                config.to_policy(),
                clock=FakeClock(),
                store=journal,
                request_id_prefix="r1-x",
                env=env,
            )

        config = load(tmp_path, "")
        assert isinstance(build(config, {}), LocalCoordinator)
        config = load(tmp_path, "coordination: {backend: redis, url_env: RURL, namespace: acct}\n")
        built = build(config, {"RURL": "redis://127.0.0.1:1/0"})
        assert isinstance(built, RedisCoordinator)
        await built.stop()  # never started: nothing to close but the client
        with pytest.raises(ConfigError):
            build(config, {})
    finally:
        journal.close()


def test_check_config_summarises_coordination_without_the_url(tmp_path: Path) -> None:
    assert "coordination  : local" in summarize(load(tmp_path, ""))
    text = summarize(load(tmp_path, "coordination: {backend: redis, url_env: RURL, namespace: acct-1}\n"))
    assert "coordination  : redis, namespace acct-1, url from $RURL, timeout 100 ms" in text
    assert "8/1.1s (0.8 × 10/1s, +100 ms guard)" in text
