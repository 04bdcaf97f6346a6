"""The operator's side of a fleet on Redis: `sidecar halt|resume|status` act on the shared state
(as subprocesses, from another directory), `getSafetyPolicy` shows the shared budgets (through the
MCP SDK's client), `/healthz` and `/metrics` say when Redis cannot be reached, and `sidecar serve`
itself runs on the shared state.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from sidecar.config import SidecarConfig
from sidecar.journal import Journal
from sidecar.mcp_server import build_server
from sidecar.metrics import Observability
from tests.coordination.fleet_kit import BUDGET, Fleet, fleet_config, item_codes, item_outcomes, running_fleet
from tests.coordination.redis_testkit import RedisServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 30


def config_file(config: SidecarConfig, path: Path) -> Path:
    """`config` written as the YAML an operator would keep."""
    data = config.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data))
    return path


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_TEST_"))}
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(run_dir)
    env.update(extra)
    return env


async def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
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
    async with asyncio.timeout(CLI_TIMEOUT_S):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def ids(fleet: Fleet) -> list[str]:
    return [o["orderId"] for o in fleet.orders]


async def test_halt_resume_and_status_from_the_command_line_act_on_the_fleet(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 2, redis_url=own_redis.url, namespace=namespace) as fleet:
        a, b = fleet.services
        order = ids(fleet)
        cfg = config_file(a.config, tmp_path / "a.yaml")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        env = cli_env(tmp_path, USER="alice")

        rc, out, err = await cli(
            "halt", "--reason", "desk review", "--config", str(cfg), env=env, cwd=elsewhere
        )
        assert rc == 0, err
        assert "halted: desk review" in out and "stored in Redis" in out
        # In force on every instance for the very next call (no wait for a confirmation or pub/sub).
        for i, service in enumerate((a, b)):
            assert item_codes([await service.submit(fleet.amend([order[i]]))]) == ["TRADING_HALTED"]

        rc, out, err = await cli("status", "--json", "--config", str(cfg), env=env, cwd=elsewhere)
        assert rc == 0, err
        body = json.loads(out)
        assert (body["tradingState"], body["reason"], body["by"]) == ("halted", "desk review", "cli:alice")

        async def journaled() -> bool:  # each sidecar's journal keeps the halt it saw, with who
            rows = [r.body for r in a.journal.last_records(50) if r.kind == "state"]
            return {"state": "halted", "reason": "desk review", "who": "cli:alice"}.items() <= (
                rows[-1].items() if rows else set()
            )

        async with asyncio.timeout(10):
            while not await journaled():  # noqa: ASYNC110 -- the safety loop journals it within a second
                await asyncio.sleep(0.05)
        assert body["coordination"] == {
            "backend": "redis",
            "namespace": namespace,
            "where": own_redis.url,
            "reachable": True,
        }
        rc, out, _ = await cli("status", "--config", str(cfg), env=env, cwd=elsewhere)
        assert rc == 0 and f"redis {own_redis.url}, namespace {namespace} (reachable)" in out

        rc, out, err = await cli("resume", "--config", str(cfg), env=env, cwd=elsewhere)
        assert rc == 0, err
        for i, service in enumerate((a, b)):
            assert item_outcomes([await service.submit(fleet.amend([order[2 + i]]))]) == ["verified"]

        own_redis.kill()
        rc, out, err = await cli("status", "--json", "--config", str(cfg), env=env, cwd=elsewhere)
        assert rc == 1
        body = json.loads(out)
        assert body["tradingState"] is None
        assert body["coordination"]["reachable"] is False
        assert "cannot be reached" in body["coordination"]["error"]
        rc, out, err = await cli("halt", "--reason", "x", "--config", str(cfg), env=env, cwd=elsewhere)
        assert rc == 1
        assert "halted was NOT stored" in err and "COORDINATION_UNAVAILABLE" in err
        assert "Traceback" not in err


async def test_the_command_line_never_shows_the_redis_password(
    tmp_path: Path, redis_binary: str, namespace: str
) -> None:
    """The URL comes from url_env with a password in it: right, the commands work; wrong, Redis
    refuses and the commands say why. Either way the password appears nowhere."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(redis_binary, tmp_path / "redis", password="hunter2-right")
    server.start()
    try:
        config = fleet_config(tmp_path, "i0", redis_url=server.url, namespace=namespace)
        Journal(config.journal.path).close()  # the operator's commands need the server's journal
        data = config.model_dump(mode="json", exclude_none=True)
        data["coordination"] = {"backend": "redis", "url_env": "FLEET_REDIS_URL", "namespace": namespace}
        cfg = tmp_path / "secret.yaml"
        cfg.write_text(yaml.safe_dump(data))
        for password, code in (("hunter2-right", 0), ("hunter2-wrong", 1)):
            env = cli_env(tmp_path, FLEET_REDIS_URL=server.url.replace("redis://", f"redis://:{password}@"))
            for args in (("status", "--json"), ("status",), ("halt", "--reason", "r"), ("resume",)):
                rc, out, err = await cli(*args, "--config", str(cfg), env=env, cwd=tmp_path)
                assert rc == code, (args, out, err)
                assert "hunter2" not in out + err
                assert "Traceback" not in err
    finally:
        server.stop()


async def test_get_safety_policy_shows_the_budget_the_whole_fleet_has_left(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 2, redis_url=redis_server.url, namespace=namespace) as fleet:
        a, b = fleet.services
        result = await a.submit(fleet.amend(ids(fleet)[:3]))  # 3 units of Bybit's batch budget
        assert item_outcomes([result]) == ["verified"] * 3
        async with Client(build_server(b)) as client:
            answer = await client.call_tool("getSafetyPolicy", {})
        body: dict[str, Any] = answer.structured_content or {}
        [batch] = [r for r in body["rateLimits"] if r["key"] == "order.amend-batch:linear"]
        assert (batch["max"], batch["remaining"]) == (BUDGET, BUDGET - 3)  # b sees a's sends
        assert body["coordination"]["backend"] == "redis" and body["coordination"]["available"] is True


async def test_healthz_and_metrics_say_when_redis_cannot_be_reached(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    async with running_fleet(tmp_path, 1, redis_url=own_redis.url, namespace=namespace) as fleet:
        [a] = fleet.services
        observability = Observability(a)
        status, body = observability.health()
        assert status == 200, body
        assert body["coordination"] == {"backend": "redis", "available": True}
        own_redis.kill()
        assert item_codes([await a.submit(fleet.amend(ids(fleet)[:1]))]) == ["COORDINATION_UNAVAILABLE"]
        status, body = observability.health()
        assert status == 503
        assert any("coordination store (Redis) cannot be reached" in r for r in body["reasons"])
        text, _ = observability.exposition(None)
        [up] = [
            s
            for f in text_string_to_metric_families(text.decode())
            for s in f.samples
            if s.name == "sidecar_coordination_up"
        ]
        assert (up.labels, up.value) == ({"backend": "redis"}, 0.0)


async def test_sidecar_serve_runs_on_the_shared_state(
    tmp_path: Path, redis_server: RedisServer, namespace: str
) -> None:
    """`sidecar serve` (stdio, its built-in emulator) with coordination.backend redis: it trades,
    `sidecar halt` from another directory stops its next call, `resume` lets it go on."""
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["coordination"] = {"backend": "redis", "url": redis_server.url, "namespace": namespace}
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump(data))
    env = cli_env(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "serve",
        "--config",
        str(cfg),
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    ids_seen = iter(range(1, 1000))

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        rid = next(ids_seen)
        proc.stdin.write(
            (json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}) + "\n").encode()
        )
        await proc.stdin.drain()
        async with asyncio.timeout(CLI_TIMEOUT_S):
            while True:
                message: dict[str, Any] = json.loads(await proc.stdout.readline())
                if message.get("id") == rid:
                    return message

    async def tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
        reply = await call("tools/call", {"name": name, "arguments": args})
        content: dict[str, Any] = reply["result"]["structuredContent"]
        return content

    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            while b"connect  :" not in await proc.stderr.readline():
                pass  # the banner's last line: the server answers from now on
        await call(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        )
        proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        order = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "sim-btc-buy-1"}

        async def amend_down() -> dict[str, Any]:
            state = await tool("getOrderState", order)
            price = float(state["order"]["price"])
            return await tool("wsAmendOrder", {**order, "price": f"{price - 1:.1f}"})

        first = await amend_down()
        assert first["items"][0]["outcome"] == "verified", first
        assert first["requestId"].startswith("c")  # a fleet-unique id from Redis

        rc, _out, err = await cli(
            "halt", "--reason", "serve test", "--config", str(cfg), env=env, cwd=tmp_path
        )
        assert rc == 0, err
        halted = await amend_down()
        assert [r["code"] for r in halted["items"][0]["reasons"]] == ["TRADING_HALTED"]
        rc, _out, err = await cli("resume", "--config", str(cfg), env=env, cwd=tmp_path)
        assert rc == 0, err
        again = await amend_down()
        assert again["items"][0]["outcome"] == "verified", again
    finally:
        proc.stdin.close()
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(CLI_TIMEOUT_S):
            await proc.wait()
