"""A real `redis-server` process: start on a free loopback port, stop, kill, freeze, thaw, restart on
the same port and directory (to see what survives).

One job: own one server process for the coordination tests (tests/coordination) and benchmarks
(`python -m bench coordination`). It only ever binds 127.0.0.1. The binary is Debian's
`redis-server` on PATH; `find_redis_server` returns None when there is none.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "find_redis_server"]

_START_DEADLINE_S = 10.0


def find_redis_server() -> str | None:
    """Debian's redis-server on PATH (tests/conftest.py's report header looks the same way)."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    """Whether a server answers on `port` (a server that requires a password answers NOAUTH)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One redis-server on 127.0.0.1. `appendonly` turns on AOF with fsync on every write;
    `password` makes it require one (`url` stays without it: tests add it where they mean to)."""

    def __init__(
        self, binary: str, directory: Path, *, appendonly: bool = False, password: str | None = None
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.password = password  # requirepass: clients must AUTH (the URL then needs it)
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
                    *(["--requirepass", self.password] if self.password else []),
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
