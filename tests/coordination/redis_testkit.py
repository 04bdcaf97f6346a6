"""A real `redis-server` process for tests: start on a free loopback port, stop, kill, freeze, thaw,
restart on the same port and directory (to see what survives).

Never a fake: the coordination backend is tested against the server it will run against. The
binary is Debian's `redis-server` on PATH; `find_redis_server`
returns None when there is none (the fixtures then skip, or fail under SIDECAR_REQUIRE_REDIS=1).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sidecar.clock import SystemClock
from sidecar.coordination.redis_backend import RedisCoordinator
from sidecar.core.policy import ExchangeBudget, Policy, RateRule, RateScope
from sidecar.core.types import Category

__all__ = ["RedisServer", "find_redis_server", "make_redis_coordinator", "redis_version", "small_policy"]

_START_DEADLINE_S = 10.0


def find_redis_server() -> str | None:
    """Debian's redis-server on PATH (tests/conftest.py's report header looks the same way)."""
    return shutil.which("redis-server")


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip() or "unknown"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server on 127.0.0.1. `appendonly` turns on AOF with fsync on every write."""

    def __init__(self, binary: str, directory: Path, *, appendonly: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (on a free port the first time, the same port after that) and wait until it answers."""
        for _ in range(5):  # another process may take the free port between probe and bind
            port = self.port or _free_port()
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.directory),
                    "--save", "",
                    "--appendonly", "yes" if self.appendonly else "no",
                    "--appendfsync", "always",
                    "--daemonize", "no",
                    "--protected-mode", "yes",
                    "--logfile", str(self.directory / "redis.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            # Polling with a deadline: a real external process must be awaited.
            deadline = time.monotonic() + _START_DEADLINE_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _ping(port):
                    self.port = port
                    return
                time.sleep(0.01)
            self._reap()
            if self.port:  # a fixed port that did not come up: no retry on another one
                break
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start: {log}")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: an AOF is flushed) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
        self._reap()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections; nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def _reap(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # A frozen process cannot act on SIGTERM: let it run so it can.
            os.kill(self.proc.pid, signal.SIGCONT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def make_redis_coordinator(
    url: str, namespace: str, policy: Policy | None = None, **kw: Any
) -> RedisCoordinator:
    """A RedisCoordinator on the real clock with test-friendly defaults (override any with **kw)."""
    options: dict[str, Any] = {"timeout_ms": 100, "local_id_prefix": "local", "heartbeat_s": 0.2}
    options.update(kw)
    return RedisCoordinator(
        policy if policy is not None else small_policy(),
        url=url,
        namespace=namespace,
        clock=SystemClock(),
        **options,
    )


def small_policy(global_max: int = 3, exchange_limit: int = 10) -> Policy:
    """Global budget `global_max` per second; Bybit's order.amend-batch linear budget `exchange_limit`
    at utilization 1 with no guard (so tests can count exactly)."""
    return Policy(
        symbols={},
        rate_rules=(RateRule(RateScope.GLOBAL, global_max, 1000),),
        exchange_budgets=(
            ExchangeBudget(
                "order.amend-batch", Category.LINEAR, limit=exchange_limit, utilization=Decimal(1)
            ),
        ),
    )
