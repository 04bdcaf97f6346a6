"""Operations test kit: `sidecar serve` as a real subprocess (its own working directory, stdin held
open), the operator's commands as subprocesses from another directory, raw MCP lines over stdio,
and read-only looks into the journal file.

Every wait on another process is bounded by a deadline; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.e2e_kit import ROOT

# Polls of another process's state: how often, and the longest any one may take.
POLL_S = 0.02
WAIT_S = 30.0


def base_env(run_dir: Path, **extra: str) -> dict[str, str]:
    """The test's environment without exchange keys or crash hooks, with a private host registry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_TEST_"))}
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(run_dir)
    env.update(extra)
    return env


def write_config(path: Path, journal: str = "var/journal.sqlite3", **sections: dict[str, Any]) -> Path:
    """The shipped sim config with `journal.path` as given (relative: to the config's directory)."""
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = journal
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


async def cli(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT_S):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status_json(config: Path, *, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    rc, out, err = await cli("status", "--json", "--config", str(config), cwd=cwd, env=env)
    assert rc == 0, err
    body: dict[str, Any] = json.loads(out)
    return body


@dataclass
class ServerProc:
    """A running `sidecar serve`; its stderr lines are collected as they come."""

    proc: asyncio.subprocess.Process
    stderr: list[str] = field(default_factory=list)
    banner: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _next_id: int = 1

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return "".join(self.stderr)

    async def ready(self) -> None:
        """Until the banner is printed (the server answers calls from then on)."""
        async with asyncio.timeout(WAIT_S):
            waiter = asyncio.ensure_future(self.banner.wait())
            ender = asyncio.ensure_future(self.ended.wait())
            await asyncio.wait({waiter, ender}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            ender.cancel()
        assert self.banner.is_set(), f"server ended before its banner:\n{self.log()}"

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def request(self, method: str, params: dict[str, Any]) -> int:
        self._next_id += 1
        await self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return self._next_id

    async def response(self, request_id: int) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT_S):
            while True:
                line = await self.proc.stdout.readline()
                assert line, f"stdout closed before the answer to {request_id}:\n{self.log()}"
                message: dict[str, Any] = json.loads(line)
                if message.get("id") == request_id:
                    return message

    async def initialize(self) -> None:
        """The MCP handshake over raw JSON lines (stdin stays open afterwards)."""
        init = await self.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "ops-test", "version": "0"},
            },
        )
        assert "result" in await self.response(init)
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def exit_code(self, timeout_s: float = WAIT_S) -> int:
        async with asyncio.timeout(timeout_s):
            return await self.proc.wait()


@contextlib.asynccontextmanager
async def serve(
    config: Path, *, cwd: Path, env: dict[str, str], args: tuple[str, ...] = ()
) -> AsyncIterator[ServerProc]:
    """`python -m sidecar serve --config CONFIG ARGS` started in `cwd`; killed if still running after."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "serve",
        "--config",
        str(config),
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    server = ServerProc(proc)

    async def collect() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace")
            server.stderr.append(text)
            if text.startswith("  connect  :"):
                server.banner.set()
        server.ended.set()

    reader = asyncio.create_task(collect())
    try:
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(WAIT_S):
            await proc.wait()
            await reader


def journal_rows(path: Path, sql: str, *params: Any) -> list[Any]:
    """Read the journal as an outsider would (read-only; never creates the file)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def rows_so_far(path: Path, sql: str, *params: Any) -> list[Any]:
    """`journal_rows`, or [] while a starting server has not created the file or its tables yet."""
    if not path.exists():
        return []
    try:
        return journal_rows(path, sql, *params)
    except sqlite3.OperationalError:  # no such table (yet), or the file is still being created
        return []


async def until(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll another process's visible state until `check()` holds (bounded)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not check():  # noqa: ASYNC110 -- another process: nothing to await
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
