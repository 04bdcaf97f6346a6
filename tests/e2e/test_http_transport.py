"""Streamable HTTP transport: bearer token, Host/Origin checks, loopback binding, SDK and Inspector clients.

The point here is the transport, so most cases serve a tiny MCPServer with one tool; the real
tools are tested elsewhere. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import structlog
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

from sidecar.config import load_config
from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from sidecar.env import Environment
from sidecar.errors import SidecarError, UsageError
from sidecar.http_transport import build_http_app, run_http
from sidecar.journal import Journal
from sidecar.mcp_server import TOOL_NAMES, build_server
from sidecar.testing.stack import build_service

TOKEN = "test-token-0123456789abcdefghijklmnop"
REPO = Path(__file__).resolve().parents[2]
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
JSON_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def tiny_server() -> MCPServer[Any]:
    srv: MCPServer[Any] = MCPServer("tiny")

    @srv.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return srv


@contextlib.asynccontextmanager
async def serving(server: MCPServer[Any], origins: tuple[str, ...] = ()) -> AsyncIterator[str]:
    """Run the guarded app under uvicorn on a free loopback port; yield the /mcp URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_http_app(server, TOKEN, "127.0.0.1", port, origins)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws="none", http="h11")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not uv.started:
                assert not task.done(), "uvicorn stopped during start-up"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        uv.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serving(tiny_server(), origins=("https://agent.example",)) as u:
        yield u


async def post_init(url: str, headers: dict[str, str] | None = None, suffix: str = "") -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(url + suffix, json=INIT, headers={**JSON_HEADERS, **(headers or {})})


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_is_401_with_bearer_challenge(url: str) -> None:
    r = await post_init(url)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN[:-1]}x", "Bearer", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"],
    ids=["wrong", "empty", "basic-scheme", "no-scheme", "longer"],
)
async def test_wrong_token_is_401(url: str, header: str) -> None:
    r = await post_init(url, {"Authorization": header})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_non_ascii_token_is_401_not_500(url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        raw = [(k.encode(), v.encode()) for k, v in JSON_HEADERS.items()]
        r = await http.post(url, json=INIT, headers=[*raw, (b"Authorization", "Bearer é".encode("latin-1"))])
    assert r.status_code == 401


async def test_token_required_on_every_path(url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        r = await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource"))
    assert r.status_code == 401


@pytest.mark.parametrize("with_token", [True, False])
async def test_bad_origin_is_403(url: str, with_token: bool) -> None:
    headers = {"Origin": "http://evil.example", **(auth() if with_token else {})}
    r = await post_init(url, headers)
    assert r.status_code == 403


async def test_bad_host_is_421(url: str) -> None:
    port = httpx2.URL(url).port
    r = await post_init(url, {"Host": f"evil.example:{port}", **auth()})
    assert r.status_code == 421
    r = await post_init(url, {"Host": "127.0.0.1:1", **auth()})  # right name, wrong port
    assert r.status_code == 421


async def test_token_in_query_string_is_refused(url: str) -> None:
    r = await post_init(url, auth(), suffix=f"?access_token={TOKEN}")
    assert r.status_code == 400


async def test_oversized_body_is_413(url: str) -> None:
    big = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"padding": "x" * 70_000}}
    async with httpx2.AsyncClient(timeout=10) as http:
        r = await http.post(url, json=big, headers={**JSON_HEADERS, **auth()})
    assert r.status_code == 413


async def test_allowed_origins_and_hosts_pass(url: str) -> None:
    port = httpx2.URL(url).port
    for headers in (
        {},
        {"Origin": f"http://localhost:{port}"},
        {"Origin": f"http://127.0.0.1:{port}"},
        {"Origin": "https://agent.example"},  # from the configured allowed_origins
        {"Host": f"localhost:{port}"},
    ):
        r = await post_init(url, {**headers, **auth()})
        assert r.status_code == 200, headers


async def test_sdk_client_lists_and_calls_tools(url: str) -> None:
    async with (
        httpx2.AsyncClient(headers=auth()) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        tools = await client.list_tools()
        assert [t.name for t in tools.tools] == ["add"]
        result = await client.call_tool("add", {"a": 2, "b": 3})
        assert not result.is_error
        assert result.structured_content == {"result": 5}


TOKEN_SET = Environment({"SIDECAR_TEST_HTTP_TOKEN": TOKEN})


def _args(host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False) -> argparse.Namespace:
    return argparse.Namespace(host=host, port=port, allow_remote=allow_remote)


def _config() -> Any:
    http = types.SimpleNamespace(token_env="SIDECAR_TEST_HTTP_TOKEN", allowed_origins=())
    return types.SimpleNamespace(http=http)


def _no_banner(url: str) -> str:
    raise AssertionError("must not start")


@pytest.mark.parametrize("value", [None, "", "short-token"], ids=["unset", "empty", "short"])
async def test_refuses_to_start_without_a_usable_token(
    value: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    env = Environment({} if value is None else {"SIDECAR_TEST_HTTP_TOKEN": value})
    with pytest.raises(UsageError) as refused:
        await run_http(tiny_server(), _config(), _args(), _no_banner, env=env)
    assert refused.value.exit_code == 2
    [line] = refused.value.lines()
    assert "SIDECAR_TEST_HTTP_TOKEN" in line
    assert capsys.readouterr().err == ""  # nothing printed before the refusal
    if value:
        assert value not in line


async def test_refuses_non_loopback_without_allow_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(UsageError, match="--allow-remote"):
        await run_http(tiny_server(), _config(), _args(host="0.0.0.0"), _no_banner, env=TOKEN_SET)


async def test_allow_remote_warns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 192.0.2.1 (TEST-NET-1) is not on this machine, so binding fails after the warning: nothing listens.
    args = _args(host="192.0.2.1", allow_remote=True)
    with pytest.raises(SidecarError) as failed:
        await run_http(tiny_server(), _config(), args, _no_banner, env=TOKEN_SET)
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert "non-loopback" in err
    assert failed.value.exit_code == 1 and "cannot listen" in str(failed.value)
    assert TOKEN not in err and TOKEN not in str(failed.value)


async def test_run_http_serves_then_stops_cleanly_on_sigterm_and_never_logs_the_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SIDECAR_TEST_HTTP_TOKEN", TOKEN)
    urls: asyncio.Queue[str] = asyncio.Queue()

    def banner(where: str) -> str:
        urls.put_nowait(where)
        return f"banner {where}"

    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(run_http(tiny_server(), _config(), _args(), banner, env=TOKEN_SET))
        async with asyncio.timeout(10):
            url = await urls.get()
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/mcp")
        assert (await post_init(url)).status_code == 401
        assert (await post_init(url, auth(TOKEN[:-1] + "x"))).status_code == 401
        async with (
            httpx2.AsyncClient(headers=auth()) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert (await client.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await task == 0

    events = [e["event"] for e in logs]
    assert "http.listening" in events
    assert "http.stopped" in events
    rejected = [e for e in logs if e["event"] == "http.rejected"]
    assert {(e["reason"], e["status"]) for e in rejected} == {("token_missing", 401), ("token_invalid", 401)}
    out, err = capsys.readouterr()
    assert f"banner {url}" in err
    for text in (repr(logs), out, err, caplog.text):
        assert TOKEN not in text
        assert TOKEN[:-1] not in text


async def test_mcp_inspector_cli_lists_tools(url: str) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not on PATH: the MCP Inspector CLI cannot run here")
    cmd = [npx, "-y", INSPECTOR, "--cli", url, "--transport", "http"]
    cmd += ["--header", f"Authorization: Bearer {TOKEN}", "--method", "tools/list"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.skip(f"{INSPECTOR} could not be fetched and run within 60 s")
    if proc.returncode != 0 and b"npm error" in err:
        pytest.skip(f"npx could not fetch {INSPECTOR}: {err.decode(errors='replace').strip()[-200:]}")
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert b'"name": "add"' in out


async def test_real_sidecar_tools_over_http(tmp_path: Path) -> None:
    """The real `build_server(service)` on the in-process emulator, reached over guarded HTTP."""
    config = load_config(REPO / "config" / "sidecar.yaml")
    journal = Journal(tmp_path / "journal.sqlite3", "NORMAL")
    try:
        async with Emulator(seed=7, api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET) as emu:
            service = build_service(config, emu.url, journal=journal)
            async with (
                service,
                serving(build_server(service)) as url,
                httpx2.AsyncClient(headers=auth()) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                tools = await client.list_tools()
                assert {t.name for t in tools.tools} == set(TOOL_NAMES)
                policy = await client.call_tool(
                    "getSafetyPolicy", {"category": "linear", "symbol": "BTCUSDT"}
                )
                assert not policy.is_error
                assert policy.structured_content is not None
                assert policy.structured_content["tradingState"] == "active"
    finally:
        journal.close()
