"""Operations an operator can trust (issue 10, items 1-5), with real processes.

A server is started the way an MCP host starts it (from a directory of its own, stdin held open)
and the operator's commands run from a third directory with `--config <absolute path>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from sidecar.emulator import DEFAULT_API_KEY
from sidecar.journal import Journal
from sidecar.presence import lock_path
from sidecar.runtime_lock import ProcessIdentity, acquire
from tests.e2e.e2e_kit import emulator_process
from tests.e2e.ops_kit import (
    base_env,
    cli,
    journal_rows,
    rows_so_far,
    serve,
    status_json,
    until,
    write_config,
)

pytestmark = pytest.mark.slow

OPERATOR_COMMANDS = (
    ("halt", "--reason", "test"),
    ("resume",),
    ("status",),
    ("status", "--json"),
    ("journal", "--last", "3"),
    ("reload",),
)


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(config dir, the MCP host's working dir, the operator's working dir)."""
    dirs = tmp_path / "conf", tmp_path / "host-cwd", tmp_path / "operator-cwd"
    for d in dirs:
        d.mkdir()
    return dirs


# ------------------------------------------------------------------ 1. paths and the kill switch


async def test_halt_from_a_third_directory_reaches_a_server_started_elsewhere(tmp_path: Path) -> None:
    conf, host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")  # journal.path: var/journal.sqlite3 (relative)
    env = base_env(tmp_path / "run")
    async with serve(config, cwd=host, env=env) as server:
        await server.ready()
        await server.initialize()

        rc, out, err = await cli("halt", "--reason", "lunch", "--config", str(config), cwd=operator, env=env)
        assert rc == 0, err
        assert f"applied by the server, pid {server.pid}" in out

        # The server itself now refuses: the very next call is denied, with the operator's reason.
        call = await server.request("tools/call", {"name": "getSafetyPolicy", "arguments": {}})
        policy = (await server.response(call))["result"]["structuredContent"]
        assert policy["tradingState"] == "halted" and policy["haltReason"] == "lunch"

        rc, out, err = await cli("resume", "--config", str(config), cwd=operator, env=env)
        assert rc == 0 and f"applied by the server, pid {server.pid}" in out, err
    # One journal, beside the config: none appeared in the host's or the operator's directory.
    assert (conf / "var" / "journal.sqlite3").exists()
    assert not (host / "var").exists() and not (operator / "var").exists()


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=" ".join)
async def test_operator_commands_on_a_missing_journal_exit_2_and_create_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    conf, _host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml", journal="data/journal.sqlite3")
    rc, out, err = await cli(*command, "--config", str(config), cwd=operator, env=base_env(tmp_path / "run"))
    assert rc == 2, (out, err)
    expected = conf.resolve() / "data" / "journal.sqlite3"
    assert f"no journal at {expected}" in err
    assert "Traceback" not in err
    assert not (conf / "data").exists() and not (operator / "data").exists()


async def test_halt_with_no_server_running_says_so(tmp_path: Path) -> None:
    conf, _host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")
    Journal(conf / "var" / "journal.sqlite3").close()  # a journal a stopped server left
    env = base_env(tmp_path / "run")
    rc, out, err = await cli("halt", "--reason", "weekend", "--config", str(config), cwd=operator, env=env)
    assert rc == 0, err
    assert "halted: weekend" in out and "no server is running" in out
    status = await status_json(config, cwd=operator, env=env)
    assert status["tradingState"] == "halted" and status["serverRunning"] is False


# ------------------------------------------------------------------ 2. honest status


async def test_status_shows_a_live_server_then_not_after_sigkill(tmp_path: Path) -> None:
    conf, host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")
    env = base_env(tmp_path / "run")
    journal_path = str((conf / "var" / "journal.sqlite3").resolve())
    async with serve(config, cwd=host, env=env) as server:
        await server.ready()
        live = await status_json(config, cwd=operator, env=env)
        assert live["serverRunning"] is True and live["journalPath"] == journal_path
        assert live["server"]["pid"] == server.pid and live["server"]["transport"] == "stdio"
        await until(
            lambda: bool(rows_so_far(Path(journal_path), "SELECT 1 FROM control WHERE key = 'health'")),
            "the first health snapshot",
        )
        live = await status_json(config, cwd=operator, env=env)
        assert live["health"]["tradeSocket"] == "up"

        # Right after a halt the state comes from the control table, never from the health
        # snapshot the server wrote a moment before (which still said "active").
        rc, _, err = await cli("halt", "--reason", "check", "--config", str(config), cwd=operator, env=env)
        assert rc == 0, err
        halted = await status_json(config, cwd=operator, env=env)
        assert halted["tradingState"] == "halted"
        assert "tradingState" not in halted["health"] and "haltReason" not in halted["health"]
        rc, human, _ = await cli("status", "--config", str(config), cwd=operator, env=env)
        assert rc == 0
        assert f"server       : running (pid {server.pid}" in human
        assert "trading state: halted (check" in human
        assert "active" not in human

        server.proc.kill()  # SIGKILL: no clean-up at all
        assert await server.exit_code() == -signal.SIGKILL
    dead = await status_json(config, cwd=operator, env=env)
    assert dead["serverRunning"] is False
    assert dead["server"]["state"] == "crashed" and dead["server"]["pid"] == server.pid
    assert "health" not in dead  # a dead server's last snapshot is not shown as health
    rc, human, _ = await cli("status", "--config", str(config), cwd=operator, env=env)
    assert "not running" in human and "did not stop cleanly" in human and "tradeSocket" not in human


async def test_a_clean_stop_clears_the_heartbeat_and_pid(tmp_path: Path) -> None:
    conf, host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")
    env = base_env(tmp_path / "run")
    async with serve(config, cwd=host, env=env) as server:
        await server.ready()
        server.proc.send_signal(signal.SIGTERM)
        assert await server.exit_code() == 0
    status = await status_json(config, cwd=operator, env=env)
    assert status["serverRunning"] is False and status["server"] is None
    journal = conf / "var" / "journal.sqlite3"
    keys = {k for (k,) in journal_rows(journal, "SELECT key FROM control")}
    assert not keys & {"server", "server_pid", "health"}


# ------------------------------------------------------------------ 5. one server per journal


async def test_a_second_server_on_the_same_journal_exits_2_naming_the_holder(tmp_path: Path) -> None:
    conf, host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")
    env = base_env(tmp_path / "run")
    async with serve(config, cwd=host, env=env) as first:
        await first.ready()
        # Another copy of the same file, elsewhere, naming the same journal by an absolute path.
        other = write_config(
            tmp_path / "copy" / "sidecar.yaml", journal=str(conf / "var" / "journal.sqlite3")
        )
        async with serve(other, cwd=operator, env=env) as second:
            assert await second.exit_code() == 2
        log = second.log()
        assert f"pid {first.pid}" in log and str((conf / "var" / "journal.sqlite3").resolve()) in log
        assert "Traceback" not in log
        assert first.proc.returncode is None  # the first one is untouched
        status = await status_json(config, cwd=operator, env=env)
        assert status["serverRunning"] is True and status["server"]["pid"] == first.pid


async def test_a_new_server_may_start_once_the_old_one_is_killed(tmp_path: Path) -> None:
    conf, host, _operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")
    env = base_env(tmp_path / "run")
    async with serve(config, cwd=host, env=env) as first:
        await first.ready()
        first.proc.kill()
        await first.exit_code()
    async with serve(config, cwd=host, env=env) as second:
        await second.ready()  # the kernel released the dead server's lock


def _sim_config_on(url_dir: Path, journal: Path) -> Path:
    return write_config(url_dir / "sidecar.yaml", journal=str(journal))


async def test_two_servers_on_one_api_key_warn_without_a_coordination_backend(tmp_path: Path) -> None:
    env = base_env(tmp_path / "run")
    async with emulator_process(seed=3) as emu:
        a = _sim_config_on(tmp_path / "a", tmp_path / "a" / "journal.sqlite3")
        b = _sim_config_on(tmp_path / "b", tmp_path / "b" / "journal.sqlite3")
        args = ("--exchange-url", emu.url)
        async with serve(a, cwd=tmp_path, env=env, args=args) as first:
            await first.ready()
            async with serve(b, cwd=tmp_path, env=env, args=args) as second:
                await second.ready()  # a warning, not a refusal
                assert second.proc.returncode is None
                entries = list((tmp_path / "run" / "bybit-sidecar").glob("server-*.json"))
                assert len(entries) == 2
                # The registry knows the account by a hash, never by the key itself.
                assert all(DEFAULT_API_KEY not in e.read_text() for e in entries)
        assert "WARNING: another sidecar" in second.log() and f"pid {first.pid}" in second.log()
        assert "coordination.backend: redis" in second.log()
        assert "WARNING: another sidecar" not in first.log()


async def test_servers_on_their_own_emulators_do_not_warn(tmp_path: Path) -> None:
    env = base_env(tmp_path / "run")
    a = write_config(tmp_path / "a" / "sidecar.yaml")
    b = write_config(tmp_path / "b" / "sidecar.yaml")
    async with serve(a, cwd=tmp_path, env=env) as first:
        await first.ready()
        async with serve(b, cwd=tmp_path, env=env) as second:
            await second.ready()
        assert "WARNING" not in second.log()


# ------------------------------------------------------------------ 4. reload


async def test_reload_reports_what_it_applied_and_what_needs_a_restart(tmp_path: Path) -> None:
    conf, host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")
    env = base_env(tmp_path / "run")
    async with serve(config, cwd=host, env=env) as server:
        await server.ready()
        data = yaml.safe_load(config.read_text())
        data["exchange"]["recv_window_ms"] = 2500
        data["verification"]["timeout_ms"] = 4000
        data["verification"]["ack_timeout_ms"] = 1500
        data["exchange"]["ws_url"] = "ws://127.0.0.1:1"  # a connection setting: restart only
        config.write_text(yaml.safe_dump(data))
        rc, out, err = await cli("reload", "--config", str(config), cwd=operator, env=env)
        assert rc == 0, err
        assert f"reloaded by the server (pid {server.pid})" in out
        applied = next(line for line in out.splitlines() if line.startswith("applied now:"))
        for key in ("exchange.recv_window_ms", "verification.timeout_ms", "verification.ack_timeout_ms"):
            assert key in applied
        restart = next(line for line in out.splitlines() if line.startswith("needs a restart"))
        assert "exchange.ws_url" in restart and "exchange.ws_url" not in applied
        assert server.proc.returncode is None
    assert "config.reload_applied" in server.log()


async def test_reload_refuses_a_changed_journal_path_naming_both(tmp_path: Path) -> None:
    conf, host, operator = _dirs(tmp_path)
    config = write_config(conf / "sidecar.yaml")
    env = base_env(tmp_path / "run")
    async with serve(config, cwd=host, env=env) as server:
        await server.ready()
        write_config(config, journal="elsewhere/journal.sqlite3")
        rc, out, err = await cli("reload", "--config", str(config), cwd=operator, env=env)
        assert rc == 2, (out, err)
        old, new = (
            conf.resolve() / "var" / "journal.sqlite3",
            conf.resolve() / "elsewhere" / "journal.sqlite3",
        )
        assert str(old) in err and str(new) in err
        assert not new.parent.exists()
        assert "config.reload" not in server.log()  # never signalled


_BYSTANDER = """
import signal, sys, time
seen = []
signal.signal(signal.SIGHUP, lambda *_: seen.append(1))
def report(*_):
    print("SIGHUP" if seen else "no signal", flush=True)
    sys.exit(0)
signal.signal(signal.SIGUSR1, report)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


async def test_reload_never_signals_a_process_that_is_not_the_live_server(tmp_path: Path) -> None:
    """A journal left by a crashed server names a pid that now belongs to an unrelated process."""
    conf, _host, operator = _dirs(tmp_path)
    journal = conf / "var" / "journal.sqlite3"
    config = write_config(conf / "sidecar.yaml", journal=str(journal))
    bystander = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BYSTANDER, stdout=asyncio.subprocess.PIPE
    )
    assert bystander.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert await bystander.stdout.readline() == b"ready\n"
        with Journal(journal) as j:
            j.set_control("server_pid", str(bystander.pid))  # what older servers left behind
            j.set_control("server", json.dumps({"pid": bystander.pid, "heartbeatMs": 0, "startTicks": 1}))
        env = base_env(tmp_path / "run")
        rc, out, err = await cli("reload", "--config", str(config), cwd=operator, env=env)
        assert rc == 1 and "no server is running" in err, (out, err)
        # Ask the bystander what it received (a SIGHUP sent earlier is handled before SIGUSR1).
        bystander.send_signal(signal.SIGUSR1)
        async with asyncio.timeout(30):
            assert await bystander.stdout.readline() == b"no signal\n"
    finally:
        if bystander.returncode is None:
            bystander.kill()
        await bystander.wait()


# ------------------------------------------------------------------ 3. clean stops within 2 s

STOP_LIMIT_S = 2.0
# Nothing resolves by itself during the test: acks and order events are dropped, no REST fallback.
UNRESOLVED = {"timeout_ms": 10000, "ack_timeout_ms": 10000, "rest_fallback": False}
AMEND = {
    "category": "linear",
    "request": [{"symbol": "BTCUSDT", "orderLinkId": "stop-b1", "price": "94100.0"}],
}


async def _emulator_with_a_stuck_order(url: str) -> None:
    """Frozen prices, one resting order, and faults that keep its amend unverified."""
    async with aiohttp.ClientSession() as http:
        for body in (
            {"category": "linear", "symbol": "BTCUSDT", "markPrice": "95000", "lastPrice": "95000"},
            {"category": "linear", "symbol": "ETHUSDT", "markPrice": "3500", "lastPrice": "3500"},
        ):
            assert (await http.post(f"{url}/emulator/prices", json=body)).status == 200
        order = {
            "category": "linear",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "qty": "0.01",
            "price": "94000.0",
            "orderLinkId": "stop-b1",
        }
        assert (await http.post(f"{url}/emulator/orders", json=order)).status == 200
        faults = {"faults": [{"kind": "drop_ack", "count": 5}, {"kind": "drop_order_events", "count": 50}]}
        assert (await http.post(f"{url}/emulator/faults", json=faults)).status == 200


def _pending_request(journal: Path) -> str | None:
    rows = rows_so_far(journal, "SELECT request_id FROM records WHERE kind = 'intent'")
    return str(rows[0][0]) if rows else None


def _assert_settled_in_journal(journal: Path, request_id: str) -> None:
    [(status,)] = journal_rows(journal, "SELECT status FROM requests WHERE request_id = ?", request_id)
    assert status == "final", "a request in flight at the stop gets its final record"
    with Journal(journal, create=False) as j:
        record = j.get_request(request_id)
        assert record is not None and record.result is not None
        assert [it["outcome"] for it in record.result["items"]] == ["unverified"]
        assert j.verify_chain()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_a_signal_stops_a_stdio_server_within_2s_with_stdin_open_and_a_call_in_flight(
    tmp_path: Path, sig: signal.Signals
) -> None:
    journal = tmp_path / "journal.sqlite3"
    config = write_config(tmp_path / "sidecar.yaml", journal=str(journal), verification=UNRESOLVED)
    env = base_env(tmp_path / "run")
    async with emulator_process(seed=4) as emu:
        await _emulator_with_a_stuck_order(emu.url)
        async with serve(config, cwd=tmp_path, env=env, args=("--exchange-url", emu.url)) as server:
            await server.ready()
            await server.initialize()
            await server.request("tools/call", {"name": "wsBatchAmendOrders", "arguments": AMEND})
            await until(lambda: _pending_request(journal) is not None, "the amend's intent")
            request_id = _pending_request(journal)
            assert request_id is not None
            loop = asyncio.get_running_loop()
            started = loop.time()
            server.proc.send_signal(sig)  # stdin stays open: the client never closes it
            assert await server.exit_code(timeout_s=10) == 0, server.log()
            took_s = loop.time() - started
        assert took_s < STOP_LIMIT_S, f"stopped in {took_s:.2f} s"
        assert "Traceback" not in server.log()
        _assert_settled_in_journal(journal, request_id)


async def test_sigterm_stops_an_idle_stdio_server_within_2s(tmp_path: Path) -> None:
    config = write_config(tmp_path / "sidecar.yaml")
    async with serve(config, cwd=tmp_path, env=base_env(tmp_path / "run")) as server:
        await server.ready()
        await server.initialize()
        loop = asyncio.get_running_loop()
        started = loop.time()
        server.proc.send_signal(signal.SIGTERM)
        assert await server.exit_code(timeout_s=10) == 0
        assert loop.time() - started < STOP_LIMIT_S
    warnings = [line for line in server.log().splitlines() if '"level": "warning"' in line]
    assert not [w for w in warnings if "server." in w], warnings


async def test_sigterm_stops_an_http_server_within_2s_with_a_call_in_flight(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    config = write_config(tmp_path / "sidecar.yaml", journal=str(journal), verification=UNRESOLVED)
    token = "stop-test-token-0123456789abcdef"
    env = base_env(tmp_path / "run", SIDECAR_HTTP_TOKEN=token)
    async with emulator_process(seed=6) as emu:
        await _emulator_with_a_stuck_order(emu.url)
        args = ("--transport", "http", "--port", "0", "--exchange-url", emu.url)
        async with serve(config, cwd=tmp_path, env=env, args=args) as server:
            await server.ready()
            banner = next(line for line in server.stderr if line.startswith("  connect  :"))
            found = re.search(r"http://\S+/mcp", banner)
            assert found is not None, banner
            url = found.group(0)

            async def call() -> None:
                headers = {"Authorization": f"Bearer {token}"}
                async with (
                    httpx2.AsyncClient(headers=headers) as http,
                    Client(streamable_http_client(url, http_client=http)) as client,
                ):
                    await client.call_tool("wsBatchAmendOrders", AMEND)

            caller = asyncio.create_task(call())
            try:
                await until(lambda: _pending_request(journal) is not None, "the amend's intent")
                request_id = _pending_request(journal)
                assert request_id is not None
                loop = asyncio.get_running_loop()
                started = loop.time()
                server.proc.send_signal(signal.SIGTERM)
                assert await server.exit_code(timeout_s=10) == 0, server.log()
                took_s = loop.time() - started
            finally:
                caller.cancel()
                with contextlib.suppress(BaseException):
                    await caller
        assert took_s < STOP_LIMIT_S, f"stopped in {took_s:.2f} s"
        _assert_settled_in_journal(journal, request_id)


async def test_halt_on_a_server_that_holds_the_journal_but_does_not_respond_exits_1(tmp_path: Path) -> None:
    conf, _host, operator = _dirs(tmp_path)
    journal = conf / "var" / "journal.sqlite3"
    config = write_config(conf / "sidecar.yaml", journal=str(journal))
    me = ProcessIdentity.current()  # this test process plays a server whose event loop is stuck
    with Journal(journal) as j, acquire(lock_path(journal), me.to_json()):
        j.set_control("server", json.dumps({**me.to_json(), "phase": "serving", "heartbeatMs": 1}))
        env = base_env(tmp_path / "run")
        rc, out, err = await cli("halt", "--reason", "stuck", "--config", str(config), cwd=operator, env=env)
        assert rc == 1, (out, err)
        assert "not responding" in err and f"pid {me.pid}" in err
        status = await status_json(config, cwd=operator, env=env)
        assert status["tradingState"] == "halted"  # stored all the same
        assert status["serverRunning"] is False and status["server"]["state"] == "unresponsive"


async def test_a_signal_during_start_up_stops_the_server_at_once(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    config = write_config(tmp_path / "sidecar.yaml", journal=str(journal))
    env = base_env(tmp_path / "run")
    # An exchange that accepts connections and never answers: start-up waits (up to its timeouts).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with serve(config, cwd=tmp_path, env=env, args=("--exchange-url", url)) as server:
            await until(
                # rows_so_far: the file can exist a moment before its tables do
                lambda: bool(rows_so_far(journal, "SELECT 1 FROM control WHERE key='server'")),
                "the starting server's presence",
            )
            status = await status_json(config, cwd=tmp_path, env=env)
            assert status["serverRunning"] is True, (status, server.log())
            assert status["server"]["state"] == "starting"
            loop = asyncio.get_running_loop()
            started = loop.time()
            server.proc.send_signal(signal.SIGTERM)
            assert await server.exit_code(timeout_s=10) == 0, server.log()
            assert loop.time() - started < STOP_LIMIT_S
    status = await status_json(config, cwd=tmp_path, env=env)
    assert status["serverRunning"] is False and status["server"] is None
