"""`GET /healthz` and `GET /metrics` (DESIGN.md §4.7): on the HTTP transport's own port (/metrics
behind the bearer token, /healthz open) and on `serve --metrics-port N` (127.0.0.1, no token), scraped
and parsed with prometheus_client's parser; the health rules; the Grafana dashboard's queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import sys
import types
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sidecar.cli import main
from sidecar.core.types import AmendRequest
from sidecar.env import Environment
from sidecar.http_transport import run_http
from sidecar.logs import register_secret
from sidecar.mcp_server import build_server
from sidecar.metrics import Observability, health_verdict
from sidecar.testing.stack import build_service
from tests.e2e.e2e_kit import ROOT, Stack

TOKEN = "metrics-token-0123456789abcdefghij"
TOKEN_ENV = "SIDECAR_TEST_METRICS_TOKEN"
EXPECTED = {
    "sidecar_build_info",
    "sidecar_trading_state",
    "sidecar_socket_up",
    "sidecar_reference_age_seconds",
    "sidecar_rate_limit_remaining",
    "sidecar_rate_limit_max",
    "sidecar_in_flight_items",
    "sidecar_journal_bytes",
    "sidecar_item_outcomes",
    "sidecar_decision_seconds",
    "sidecar_ack_seconds",
    "sidecar_verification_seconds",
    "sidecar_mcp_call_seconds",
}


def samples(text: str) -> dict[str, list[Sample]]:
    """Every sample of a scrape by sample name (the parser rejects anything malformed)."""
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def family_names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    [match] = [s for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return match.value


# ------------------------------------------------------------------------------------ health rules

HEALTHY: dict[str, Any] = {
    "tradingState": "active",
    "haltReason": None,
    "tradeSocket": "up",
    "privateSocket": "up",
    "referenceAgesMs": {"linear:BTCUSDT": 120, "linear:ETHUSDT": 90},
    "policyVersion": "abc123",
    "pid": 4242,
    "outcomes": {"verified": 3},
}


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({}, 200, None),
        ({"tradingState": "reducing"}, 200, None),  # risk-reducing amends still pass
        ({"referenceAgesMs": {"linear:BTCUSDT": 9000, "linear:ETHUSDT": 90}}, 200, None),  # one stale
        ({"tradingState": "halted", "haltReason": "market event"}, 503, "trading is halted: market event"),
        ({"tradeSocket": "down"}, 503, "the trade socket is down"),
        ({"privateSocket": "down"}, 503, "the private order stream is down"),
        (
            {"referenceAgesMs": {"linear:BTCUSDT": 9000, "linear:ETHUSDT": None}},
            503,
            "reference prices are stale for every symbol (> 2000 ms)",
        ),
        ({"coordination": {"backend": "redis", "available": True}}, 200, None),
        (
            {"coordination": {"backend": "redis", "available": False}},
            503,
            "the coordination store (Redis) cannot be reached: amends are refused (COORDINATION_UNAVAILABLE)",
        ),
    ],
    ids=[
        "ok",
        "reducing",
        "one-stale",
        "halted",
        "trade-down",
        "private-down",
        "all-stale",
        "redis-up",
        "redis-unreachable",
    ],
)
def test_health_rules(change: dict[str, Any], status: int, reason: str | None) -> None:
    got_status, body = health_verdict({**HEALTHY, **change}, max_reference_age_ms=2000)
    assert got_status == status
    assert body["status"] == ("ok" if status == 200 else "unavailable")
    assert body["reasons"] == ([] if reason is None else [reason])
    assert body["tradingState"] == {**HEALTHY, **change}["tradingState"]
    assert "pid" not in body and "outcomes" not in body  # nothing beyond what a probe needs


def test_health_never_echoes_a_secret_in_a_halt_reason() -> None:
    register_secret("HALT-SECRET-77aa")
    _, body = health_verdict(
        {**HEALTHY, "tradingState": "halted", "haltReason": "key HALT-SECRET-77aa"}, 2000
    )
    assert "HALT-SECRET-77aa" not in json.dumps(body)


# ------------------------------------------------------------------------- the HTTP transport's port


async def test_http_transport_serves_healthz_open_and_metrics_behind_the_token(
    stack: Stack,
) -> None:
    config = types.SimpleNamespace(http=types.SimpleNamespace(token_env=TOKEN_ENV, allowed_origins=()))
    args = argparse.Namespace(host="127.0.0.1", port=0, allow_remote=False)
    observability = Observability(stack.service)
    observability.attach()
    urls: asyncio.Queue[str] = asyncio.Queue()

    def banner(where: str) -> str:
        urls.put_nowait(where)
        return where

    server = asyncio.create_task(
        run_http(
            build_server(stack.service),
            config,  # type: ignore[arg-type]
            args,
            banner,
            env=Environment({TOKEN_ENV: TOKEN}),
            observability=observability,
        )
    )
    try:
        async with asyncio.timeout(10):
            base = (await urls.get()).removesuffix("/mcp")
        # One verified and one denied call through the service, so the counters have something.
        verified = await stack.service.submit(
            AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94100.0"},))
        )
        assert verified.body["outcome"] == "verified"
        denied = await stack.service.submit(
            AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": "btc-b2", "price": "120000"},))
        )
        assert denied.body["outcome"] == "denied"
        async with httpx2.AsyncClient(timeout=10) as http:
            health = await http.get(f"{base}/healthz")  # no token: probes and load balancers
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "ok" and health.json()["tradingState"] == "active"
            assert TOKEN not in health.text
            assert (await http.get(f"{base}/metrics")).status_code == 401
            assert (
                await http.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong"})
            ).status_code == 401
            scraped = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain")
            found = samples(scraped.text)
            assert family_names(scraped.text) >= EXPECTED
            assert value(found, "sidecar_item_outcomes_total", outcome="verified", code="none") == 1
            assert (
                value(found, "sidecar_item_outcomes_total", outcome="denied", code="PRICE_OUT_OF_BAND") == 1
            )
            assert value(found, "sidecar_decision_seconds_count") == 2  # the send, and the refusal
            assert value(found, "sidecar_ack_seconds_count") == 1  # the sent call's ack
            # Counted from the call's arrival, like the answer that comes after it.
            assert (
                0
                < value(found, "sidecar_ack_seconds_sum")
                <= value(found, "sidecar_verification_seconds_sum")
            )
            assert value(found, "sidecar_mcp_call_seconds_count") == 0  # timed on stdio only
            assert value(found, "sidecar_verification_seconds_count") == 1
            assert 0 < value(found, "sidecar_verification_seconds_sum") < 10
            assert value(found, "sidecar_trading_state", state="active") == 1
            assert value(found, "sidecar_socket_up", socket="trade") == 1
            assert value(found, "sidecar_journal_bytes") > 0
            assert value(found, "sidecar_in_flight_items") == 0
            assert 0 <= value(found, "sidecar_reference_age_seconds", category="linear", symbol="BTCUSDT") < 5
            assert value(found, "sidecar_rate_limit_max", scope="tool", key="wsBatchAmendOrders") == 20
            assert TOKEN not in scraped.text and "btc-b1" not in scraped.text  # no secrets, no order data

            await stack.service.halt("maintenance window", who="test")
            halted = await http.get(f"{base}/healthz")
            assert halted.status_code == 503
            assert halted.json()["reasons"] == ["trading is halted: maintenance window"]
            after = samples(
                (await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
            )
            assert value(after, "sidecar_trading_state", state="halted") == 1
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # run_http's own stop path
        async with asyncio.timeout(10):
            assert await server == 0
        observability.detach()


async def test_healthz_says_why_before_the_exchange_is_connected(stack: Stack) -> None:
    # A service that has not (yet) connected: both sockets down, no reference price at all.
    idle = build_service(stack.config, stack.emu.url, journal=stack.service.journal)
    observability = Observability(idle)
    status, body = observability.health()
    assert status == 503
    assert body["reasons"] == [
        "the trade socket is down",
        "the private order stream is down",
        "reference prices are stale for every symbol (> 2000 ms)",
    ]
    found = samples(observability.exposition(None)[0].decode())
    assert value(found, "sidecar_socket_up", socket="trade") == 0
    assert value(found, "sidecar_socket_up", socket="private") == 0
    assert value(found, "sidecar_reference_age_seconds", category="linear", symbol="BTCUSDT") == float("inf")


# ------------------------------------------------------------------------------ serve --metrics-port


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_"))}


@pytest.mark.slow
async def test_metrics_port_serves_a_stdio_server_on_loopback_without_a_token(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "sidecar", "serve", "--config", str(_config(tmp_path)), "--metrics-port", "0"],
        env=_env(),
        cwd=tmp_path,
    )
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with asyncio.timeout(60), Client(stdio_client(params, errlog=errlog)) as client:
            # The port is logged before the MCP session starts, so it is in the log by now.
            errlog.seek(0)
            [listening] = [
                json.loads(line)
                for line in errlog.read().splitlines()
                if line.startswith("{") and '"metrics.listening"' in line
            ]
            base = listening["url"]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
            policy = await client.call_tool("getSafetyPolicy", {})
            assert policy.structured_content is not None
            preview = await client.call_tool(
                "wsBatchAmendOrders",
                {"category": "linear", "request": [{"symbol": "DOGEUSDT", "orderLinkId": "x", "price": "1"}]},
            )
            assert preview.is_error
            async with httpx2.AsyncClient(timeout=10) as http:
                health = await http.get(f"{base}/healthz")
                assert health.status_code == 200 and health.json()["status"] == "ok", health.text
                scraped = await http.get(f"{base}/metrics")
                assert scraped.status_code == 200
                found = samples(scraped.text)
                assert family_names(scraped.text) >= EXPECTED
                assert (
                    value(found, "sidecar_item_outcomes_total", outcome="denied", code="SYMBOL_NOT_ALLOWED")
                    == 1
                )
                # Both tool calls, each from its line read to its answer written on stdout.
                assert value(found, "sidecar_mcp_call_seconds_count") == 2
                assert 0 < value(found, "sidecar_mcp_call_seconds_sum") < 30
                # OpenMetrics when a scraper asks for it (prometheus_client's own content negotiation).
                om = await http.get(f"{base}/metrics", headers={"Accept": "application/openmetrics-text"})
                assert om.headers["content-type"].startswith("application/openmetrics-text")
                assert om.text.rstrip().endswith("# EOF")
                # DNS rebinding: a page on another name that resolves to 127.0.0.1 gets nothing.
                port = httpx2.URL(base).port
                assert (
                    await http.get(f"{base}/metrics", headers={"Host": f"evil.example:{port}"})
                ).status_code == 421
    with socket.socket() as probe:  # the server has stopped: the port is closed again
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
async def test_metrics_port_in_use_fails_in_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sidecar", "serve", "--config", str(_config(tmp_path)),
            "--metrics-port", str(port),
            env=_env(), cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode == 1
    assert out == b""
    lines = [line for line in err.decode().splitlines() if not line.startswith("{")]
    assert lines == [f"sidecar: cannot listen on 127.0.0.1:{port} for --metrics-port: Address already in use"]


@pytest.mark.parametrize("bad", ["-1", "65536", "http"])
def test_metrics_port_must_be_a_port(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--metrics-port", bad])
    assert done.value.code == 2
    assert "--metrics-port" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the dashboard


async def test_grafana_dashboard_queries_only_metrics_the_sidecar_exports(stack: Stack) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 8
    observability = Observability(stack.service)
    observability.attach()  # counters and histograms export samples once something was observed
    for price in ("94100.0", "120000"):  # one verified, one denied
        await stack.service.submit(
            AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": price},))
        )
    exported = set(samples(observability.exposition(None)[0].decode()))
    used = {name for expr in exprs for name in re.findall(r"\bsidecar_[a-z_]+", expr)}
    assert used - exported == set()
    # Every family the sidecar exports is on the dashboard.
    assert {n for n in EXPECTED if not any(u.startswith(n) for u in used)} == set()
