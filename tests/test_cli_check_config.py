"""`sidecar check-config`: exit 0 and a summary, or exit 2 and one line per problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["sidecar.yaml", "example.yaml"])
def test_valid_config_prints_a_summary(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / name)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("config OK")
    assert "BTCUSDT" in out and "max age 2000 ms" in out
    assert err == ""


def test_invalid_config_prints_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\n"
        "symbols:\n"
        "  - {category: linear, symbol: BTCUSDT, max_qty: 0.5, max_notional: '1', price_band_bps: '1'}\n"
        "batch: {max_orders: 99}\n"
        "colour: red\n",
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines == [
        f'{path}: symbols.0.max_qty: write decimals as strings, e.g. "0.5" '
        "(a YAML float is binary and loses precision); got 0.5 [linear BTCUSDT]",
        f"{path}: batch.max_orders: Input should be less than or equal to 20",
        f"{path}: colour: unknown key; allowed here: version, exchange, defaults, symbols, batch, "
        "reference_price, rate_limits, verification, approval, journal, http, safety, coordination",
    ]


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'nope.yaml'}: file not found\n"


def test_as_a_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", "config/sidecar.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("config OK")
    assert "linear  BTCUSDT" in done.stdout


def test_demo_refuses_a_config_that_names_a_real_venue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "config" / "sidecar.yaml").read_text().replace("env: sim", "env: testnet", 1)
    path = tmp_path / "testnet.yaml"
    path.write_text(text)
    assert main(["demo", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "built-in emulator only" in err and "Traceback" not in err
