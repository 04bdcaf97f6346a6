"""HTTP transport hardening (sidecar/http_guard.py): read deadlines for request heads and bodies, a
connection cap that sheds unauthenticated idle connections first, and bounded logs of refused
requests. The last test is the issue's proof: 1,100 half-open connections against a real
`sidecar serve --transport http` process limited to 1,024 descriptors do not stop an authorised call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import structlog
import uvicorn
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from sidecar.http_guard import ConnectionGuard, ConnectionLimits
from sidecar.http_transport import build_http_app
from sidecar.testing import FakeClock
from tests.e2e.e2e_kit import ROOT
from tests.e2e.test_http_transport import INIT, JSON_HEADERS, TOKEN, auth, tiny_server

HALF_OPEN_HEAD = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@contextlib.asynccontextmanager
async def guarded(
    limits: ConnectionLimits, clock: FakeClock | None = None
) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    """The tiny MCP server behind the guarded app and protocol, on a free loopback port."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    guard = ConnectionGuard(limits, clock=clock)
    app = build_http_app(tiny_server(), TOKEN, "127.0.0.1", port, (), guard=guard)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", ws="none", http=guard.protocol_class()
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not uv.started:
                assert not task.done(), "uvicorn stopped during start-up"
                await asyncio.sleep(0.01)
        yield port, guard
    finally:
        uv.should_exit = True
        await task
        sock.close()


async def _connect(port: int, first: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if first:
        writer.write(first)
        await writer.drain()
    return reader, writer


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    """True once the server has closed the connection (EOF or reset), False if still open."""
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def test_a_request_head_that_never_ends_is_closed_at_its_deadline() -> None:
    async with guarded(ConnectionLimits(header_timeout_s=0.3, body_timeout_s=30)) as (port, guard):
        reader, writer = await _connect(port, HALF_OPEN_HEAD)

        async def trickle() -> None:  # a slowloris client: one header byte every 50 ms
            with contextlib.suppress(ConnectionError):
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    writer.write(b"X")
                    await writer.drain()

        started = time.monotonic()
        trickler = asyncio.create_task(trickle())
        try:
            assert await _closed_by_server(reader, within_s=5)
        finally:
            trickler.cancel()
            writer.close()
        # The deadline counts from the connection's start: trickled bytes do not extend it.
        assert 0.25 <= time.monotonic() - started < 2.0
        assert len(guard) == 0


async def test_a_body_that_never_ends_is_closed_at_its_deadline() -> None:
    async with guarded(ConnectionLimits(header_timeout_s=30, body_timeout_s=0.3)) as (port, _):
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        reader, writer = await _connect(port, head + b'{"jsonrpc": "2.0",')
        started = time.monotonic()
        try:
            assert await _closed_by_server(reader, within_s=5)
        finally:
            writer.close()
        assert time.monotonic() - started < 2.0


async def test_a_slow_client_within_the_deadlines_is_served() -> None:
    async with guarded(ConnectionLimits(header_timeout_s=5, body_timeout_s=5)) as (port, _):
        body = json.dumps(INIT).encode()
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        reader, writer = await _connect(port)
        for chunk in (head[:20], head[20:], body[:10], body[10:]):
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.05)  # the client's own pace, well inside both deadlines
        async with asyncio.timeout(10):
            response = await reader.read()
        writer.close()
        assert response.startswith(b"HTTP/1.1 200")
        assert b"protocolVersion" in response


def _authorised_get(port: int, path: str = "/nothing-here") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()


async def _response_head(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        [length] = [
            int(v)
            for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
            if k.lower() == b"content-length"
        ]
        await reader.readexactly(length)
    return head


async def test_the_cap_sheds_unauthenticated_idle_connections_first() -> None:
    clock = FakeClock()  # moved on below so the log budget of `http.connection_shed` renews
    async with guarded(ConnectionLimits(max_connections=4), clock) as (port, guard):
        # An authorised client, idle between two requests on its keep-alive connection.
        a_reader, a_writer = await _connect(port, _authorised_get(port))
        assert (await _response_head(a_reader)).startswith(b"HTTP/1.1 404")
        half_open = [await _connect(port, HALF_OPEN_HEAD) for _ in range(3)]  # at the cap now
        with structlog.testing.capture_logs() as logs:
            newcomers = [await _connect(port, HALF_OPEN_HEAD) for _ in range(3)]
            # Each newcomer pushed out the oldest unauthenticated idle connection, in age order.
            for reader, _ in half_open:
                assert await _closed_by_server(reader, within_s=5)
        shed = [e for e in logs if e["event"] == "http.connection_shed"]
        assert [(e["authenticated"], e["newcomer"]) for e in shed] == [(False, False)] * 3
        # Three more authorised clients: each one's arrival sheds one of the half-open newcomers.
        more = [await _connect(port, _authorised_get(port)) for _ in range(3)]
        for reader, _ in more:
            assert (await _response_head(reader)).startswith(b"HTTP/1.1 404")
        for reader, _ in newcomers:
            assert await _closed_by_server(reader, within_s=5)
        # Now every connection is authenticated and idle: an unauthenticated newcomer is the one refused.
        clock.advance_ms(10_000)
        with structlog.testing.capture_logs() as logs:
            last_reader, last_writer = await _connect(port, HALF_OPEN_HEAD)
            assert await _closed_by_server(last_reader, within_s=5)
        shed = [e for e in logs if e["event"] == "http.connection_shed"]
        assert [(e["authenticated"], e["newcomer"]) for e in shed] == [(False, True)]
        for reader, writer in [(a_reader, a_writer), *more]:  # all four kept, all still served
            writer.write(_authorised_get(port))
            await writer.drain()
            assert (await _response_head(reader)).startswith(b"HTTP/1.1 404")
        assert len(guard) == 4
        for _, writer in [*half_open, *newcomers, *more, (a_reader, a_writer), (last_reader, last_writer)]:
            writer.close()


async def test_refused_requests_are_logged_at_a_bounded_rate() -> None:
    clock = FakeClock()  # the log budget's window; the server's own timers are real
    async with guarded(ConnectionLimits(), clock) as (port, _):
        url = f"http://127.0.0.1:{port}/mcp"
        async with httpx2.AsyncClient(timeout=10) as http:

            async def refused(count: int) -> None:
                for i in range(count):
                    headers = {**JSON_HEADERS, "Authorization": f"Bearer wrong-{i}"}
                    assert (await http.post(url, json=INIT, headers=headers)).status_code == 401

            with structlog.testing.capture_logs() as logs:
                await refused(100)
                clock.advance_ms(10_000)  # the next window: one line says how many were held back
                await refused(1)
            # An authorised request is not held back by the flood.
            r = await http.post(url, json=INIT, headers={**JSON_HEADERS, **auth()})
            assert r.status_code == 200
        rejected = [e for e in logs if e["event"] == "http.rejected"]
        assert len(rejected) == 6  # a burst of 5, then silence until the next window
        assert "suppressed" not in rejected[0]
        assert rejected[-1]["suppressed"] == 95


# ---------------------------------------------------------------------------------------- the proof

FLOOD = 1100
FD_LIMIT = 1024


def _limit_descriptors() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _server_config(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    data["http"]["token_env"] = "SIDECAR_TEST_HTTP_TOKEN"
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
async def test_1100_half_open_connections_under_1024_descriptors_do_not_stop_an_authorised_call(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = FLOOD + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this test needs {needed} descriptors for its clients; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_"))}
    env["SIDECAR_TEST_HTTP_TOKEN"] = TOKEN
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "serve", "--config", str(_server_config(tmp_path)),
        "--transport", "http", "--port", "0",
        env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_limit_descriptors,  # only setrlimit between fork and exec
    )  # fmt: skip
    assert proc.stderr is not None
    stderr: list[bytes] = []
    listening: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def drain() -> None:  # keep reading so the server can never block on a full pipe
        assert proc.stderr is not None
        async for line in proc.stderr:
            stderr.append(line)
            if line.startswith(b"{") and not listening.done():
                record = json.loads(line)
                if record.get("event") == "http.listening":
                    listening.set_result(record)

    drainer = asyncio.create_task(drain())
    flood: list[asyncio.StreamWriter] = []
    try:
        async with asyncio.timeout(60):
            port = (await listening)["port"]
        assert f"Max open files            {FD_LIMIT}" in Path(f"/proc/{proc.pid}/limits").read_text()
        for _ in range(FLOOD):  # every connection sends a request head and never finishes it
            with contextlib.suppress(ConnectionError):
                _, writer = await _connect(port, HALF_OPEN_HEAD)
                flood.append(writer)
        url = f"http://127.0.0.1:{port}/mcp"
        async with (
            asyncio.timeout(30),
            httpx2.AsyncClient(headers=auth()) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            policy = await client.call_tool("getSafetyPolicy", {})
        assert not policy.is_error
        assert policy.structured_content is not None
        assert policy.structured_content["tradingState"] == "active"
        assert proc.returncode is None  # still serving
    finally:
        for writer in flood:
            writer.close()
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(30):
            returncode = await proc.wait()
            await drainer
    assert returncode == 0
    text = b"".join(stderr)
    assert len(text) < 32 * 1024, f"{len(text)} bytes of log"  # bounded, not ~90 MB
    events = [json.loads(line)["event"] for line in stderr if line.startswith(b"{")]
    assert "http.connection_shed" in events
    assert b"Too many open files" not in text and b"Traceback" not in text
