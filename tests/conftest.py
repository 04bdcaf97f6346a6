"""Shared test settings: hypothesis profiles (`dev` default, `ci` via HYPOTHESIS_PROFILE=ci), and a
header line saying whether the Redis coordination tests can run (tests/coordination/conftest.py)."""

from __future__ import annotations

import os
import shutil

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CI: derandomized so a failure reproduces from the log alone.
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_report_header() -> str:
    # The same lookup as bench/redis_server.py find_redis_server (PATH only).
    found = shutil.which("redis-server")
    if found:
        return f"redis-server: {found} (the Redis coordination tests run)"
    required = os.environ.get("SIDECAR_REQUIRE_REDIS") == "1"
    return "redis-server: NOT FOUND - the Redis coordination tests " + ("FAIL" if required else "are SKIPPED")
