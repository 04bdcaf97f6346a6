"""Logs and start-up errors an operator sees, as processes: one JSON format on stderr (the in-process
and the standalone emulator included), no WARNING on a clean stop, `--log-level`/`SIDECAR_LOG_LEVEL`,
and one line (no aiohttp "Unclosed client session" dump) when the exchange refuses or cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.e2e.e2e_kit import ROOT, emulator_process

pytestmark = pytest.mark.slow

BANNER_FIRST_LINE = "bybit order-safety sidecar"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "SIDECAR_LOG"))}
    return env | extra


def _sim_config(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _custom_config(tmp_path: Path, url: str) -> Path:
    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    data["journal"]["path"] = str(tmp_path / "journal.sqlite3")
    data["exchange"] = {"env": "custom", "rest_url": url, "ws_url": url.replace("http", "ws")}
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def split_stderr(text: str) -> tuple[list[dict[str, object]], list[str]]:
    """(JSON log records, every other line except the start-up banner)."""
    records: list[dict[str, object]] = []
    other: list[str] = []
    in_banner = False
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))  # a line that looks like JSON must be JSON
            in_banner = False
        elif line == BANNER_FIRST_LINE:
            in_banner = True
        elif in_banner and line.startswith("  "):
            continue
        else:
            other.append(line)
    return records, other


async def test_clean_stop_logs_one_format_and_no_warning(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "sidecar", "serve", "--config", str(_sim_config(tmp_path))],
        env=_env(),
        cwd=tmp_path,
    )
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with asyncio.timeout(60), Client(stdio_client(params, errlog=errlog)) as client:
            policy = await client.call_tool("getSafetyPolicy", {})
            assert policy.structured_content is not None
        # Leaving the client closes stdin: the server stops cleanly.
        errlog.seek(0)
        stderr = errlog.read()
    records, other = split_stderr(stderr)
    assert other == [], other  # the emulator's lines are JSON too, no `key=value` or stdlib lines
    events = [r["event"] for r in records]
    assert "emulator.started" in events and "emulator.stopped" in events and "service.stopped" in events
    assert [r for r in records if r["level"] not in {"info", "debug"}] == []


async def test_standalone_emulator_logs_json_lines(tmp_path: Path) -> None:
    async with emulator_process(seed=3) as emu:
        assert emu.url.startswith("http://127.0.0.1:")
    records, other = split_stderr(emu.stderr)
    assert other == []
    assert [r["event"] for r in records][:1] == ["emulator.started"]
    assert "emulator.stopped" in [r["event"] for r in records]


async def _run(*args: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout_s):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _assert_one_line_failure(code: int, stderr: str, expected: str) -> None:
    assert code == 1, stderr
    _, other = split_stderr(stderr)
    assert len(other) == 1, other
    assert other[0].startswith("sidecar: ") and expected in other[0], other[0]
    assert "Unclosed" not in stderr and "Traceback" not in stderr


async def test_unreachable_exchange_fails_in_one_line(tmp_path: Path) -> None:
    config = _custom_config(tmp_path, "http://127.0.0.1:1")  # nothing listens on port 1
    code, out, err = await _run(
        "serve", "--config", str(config), env=_env(BYBIT_API_KEY="k" * 18, BYBIT_API_SECRET="s" * 36)
    )
    assert out == ""
    _assert_one_line_failure(code, err, "cannot reach the exchange")


async def test_unresolvable_exchange_host_fails_in_one_line(tmp_path: Path) -> None:
    # glibc refuses a name with "!" before asking any DNS server: a DNS failure that never leaves
    # this machine (checked with strace: no packet is sent).
    config = _custom_config(tmp_path, "http://bad_host!:9")
    code, _, err = await _run(
        "serve", "--config", str(config), env=_env(BYBIT_API_KEY="k" * 18, BYBIT_API_SECRET="s" * 36)
    )
    _assert_one_line_failure(code, err, "cannot reach the exchange")
    assert "DNS" in err


async def test_refused_key_fails_in_one_line(tmp_path: Path) -> None:
    key, secret = "OPSKEY1234567890ab", "OPSSECRET1234567890abcdef0123456789ab"
    async with emulator_process(api_key=key, api_secret=secret) as emu:
        config = _custom_config(tmp_path, emu.url)
        code, _, err = await _run(
            "serve", "--config", str(config), env=_env(BYBIT_API_KEY=key, BYBIT_API_SECRET=secret[::-1])
        )
    _assert_one_line_failure(code, err, "refused the API credentials")
    assert key not in err and secret not in err and secret[::-1] not in err


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--log-level", "warning"], {}), ([], {"SIDECAR_LOG_LEVEL": "WARNING"})],
    ids=["flag", "env"],
)
async def test_log_level_switch(args: list[str], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "emulator", "--port", "0", *args,
        env=_env(**env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        json.loads(await proc.stdout.readline())
    proc.terminate()
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    assert proc.returncode == 0
    assert err.decode() == ""  # start and stop are INFO: nothing at WARNING


async def test_console_log_format_and_bad_level(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "emulator", "--port", "0", "--log-format", "console",
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        json.loads(await proc.stdout.readline())
    proc.terminate()
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    text = err.decode()
    assert "emulator.started" in text and not text.lstrip().startswith("{")

    code, _, err2 = await _run("check-config", "config/sidecar.yaml", env=_env(SIDECAR_LOG_LEVEL="loud"))
    assert code == 2
    assert err2.strip().splitlines() == [
        "sidecar: SIDECAR_LOG_LEVEL: unknown log level 'loud' (use debug, info, warning or error)"
    ]
