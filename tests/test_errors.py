"""sidecar/errors.py: one exception tree, one set of exit codes, and the old import paths still
naming the same classes (so `except JournalError` anywhere catches what the journal raises)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecar import errors
from sidecar.bybit.codec import DecodeError
from sidecar.bybit.rest import RestError, RestTransportError
from sidecar.bybit.ws_trade import NotConnected
from sidecar.cli.serve_runtime import AlreadyServing
from sidecar.config import ConfigError
from sidecar.journal import JournalError, JournalInputError, JournalMissing
from sidecar.runtime_lock import LockBusy


def test_every_error_the_sidecar_raises_on_purpose_is_one_tree() -> None:
    reexported = {
        ConfigError: errors.ConfigError,
        JournalError: errors.JournalError,
        JournalInputError: errors.JournalInputError,
        JournalMissing: errors.JournalMissing,
        RestError: errors.RestError,
        RestTransportError: errors.RestTransportError,
        NotConnected: errors.NotConnected,
        DecodeError: errors.DecodeError,
        LockBusy: errors.LockBusy,
        AlreadyServing: errors.AlreadyServing,
    }
    for old, new in reexported.items():
        assert old is new and issubclass(old, errors.SidecarError), old
    assert issubclass(errors.StartupError, errors.SidecarError)
    assert issubclass(errors.CoordinationError, errors.SidecarError)
    assert issubclass(DecodeError, ValueError)  # codec callers catch ValueError too


PROBLEMS = ["f.yaml: a: bad", "f.yaml: b: bad"]


@pytest.mark.parametrize(
    ("error", "code", "lines"),
    [
        (
            errors.ConfigError("f.yaml", ["f.yaml: a: bad", "f.yaml: b: bad"]),
            2,
            ["f.yaml: a: bad", "f.yaml: b: bad"],
        ),
        (errors.JournalMissing("no journal at /x"), 2, ["sidecar: journal: no journal at /x"]),
        (
            errors.NotAJournal("/x is not a sidecar journal"),
            2,
            ["sidecar: journal: /x is not a sidecar journal"],
        ),
        (
            errors.JournalError("journal write failed: disk full"),
            1,
            ["sidecar: journal: journal write failed: disk full"],
        ),
        (errors.RestTransportError("refused"), 1, ["sidecar: retCode -1: refused"]),
        (
            errors.UsageError("--request does not go with prune"),
            2,
            ["sidecar: --request does not go with prune"],
        ),
        (errors.StartupError("cannot reach the exchange"), 1, ["sidecar: cannot reach the exchange"]),
    ],
)
def test_each_error_names_its_exit_code_and_its_lines(
    error: errors.SidecarError, code: int, lines: list[str]
) -> None:
    assert (error.exit_code, error.lines()) == (code, lines)


def test_the_cli_prints_a_sidecar_error_as_its_lines_and_exits_with_its_code(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("version: 1\nsymbols: []\nnot_a_section: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"{config}: ") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr
