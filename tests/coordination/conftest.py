"""Fixtures for the coordination tests: a real redis-server per session (and one per test for the
tests that kill, freeze or restart it), a fresh namespace per test.

Without a redis-server binary the Redis tests are skipped with a visible reason, unless
SIDECAR_REQUIRE_REDIS=1 (set by .ci/run): then a missing server is a failure, so CI never skips them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.coordination.redis_testkit import RedisServer, find_redis_server

REQUIRE_REDIS = os.environ.get("SIDECAR_REQUIRE_REDIS") == "1"
MISSING = (
    "redis-server not found: the Redis coordination tests are skipped "
    "(apt-get install redis-server; CI sets SIDECAR_REQUIRE_REDIS=1 and never skips them)"
)
_namespaces = itertools.count()


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = find_redis_server()
    if binary is None:
        if REQUIRE_REDIS:
            pytest.fail("SIDECAR_REQUIRE_REDIS=1 but " + MISSING)
        pytest.skip(MISSING)
    return binary


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the session (no persistence). Tests use their own namespace on it."""
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, to kill, freeze or restart (no persistence)."""
    server = RedisServer(redis_binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aof_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own with the append-only file (fsync on every write): what it
    acknowledged survives `kill -9`."""
    server = RedisServer(redis_binary, tmp_path, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    return f"t{os.getpid()}-{next(_namespaces)}"
