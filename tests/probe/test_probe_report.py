"""The probe's report: the JSON shape DESIGN §4.1 fixes, the human lines, the exit code, and values
that are scrubbed of secrets and bounded in size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sidecar.logs import register_secret
from sidecar.probe.report import (
    CHECK_NAMES,
    ORDER_CHECKS,
    differs,
    error,
    exit_code,
    judge,
    ok,
    render_human,
    render_json,
    skipped,
)


def test_the_check_names_are_the_documented_ones() -> None:
    assert len(CHECK_NAMES) == len(set(CHECK_NAMES)) == 30
    assert set(CHECK_NAMES) > ORDER_CHECKS
    with pytest.raises(ValueError, match="unknown probe check"):
        ok("no_such_check", 1, 1, "")


def test_json_is_exactly_exchange_and_checks() -> None:
    results = [ok("clock_offset", {"a": 1}, {"a": 1}, "fine"), skipped("post_ack_fill_race", None, "luck")]
    report = json.loads(render_json({"env": "testnet"}, results))
    assert report == {
        "exchange": {"env": "testnet"},
        "checks": [
            {
                "name": "clock_offset",
                "status": "ok",
                "expected": {"a": 1},
                "observed": {"a": 1},
                "detail": "fine",
            },
            {
                "name": "post_ack_fill_race",
                "status": "skipped",
                "expected": None,
                "observed": None,
                "detail": "luck",
            },
        ],
    }


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["ok", "skipped"], 0),
        ([], 0),
        (["ok", "differs"], 1),
        (["ok", "error"], 1),
        (["skipped", "differs", "error"], 1),
    ],
)
def test_exit_code_is_1_when_anything_differs_or_errs(statuses: list[str], code: int) -> None:
    make = {
        "ok": lambda: ok("clock_offset", 1, 1, ""),
        "skipped": lambda: skipped("clock_offset", 1, ""),
        "differs": lambda: differs("clock_offset", 1, 2, ""),
        "error": lambda: error("clock_offset", 1, ""),
    }
    assert exit_code([make[s]() for s in statuses]) == code


def test_judge_compares_expected_and_observed() -> None:
    assert judge("recv_window_code", {"a": 1}, {"a": 1}, agrees="yes", otherwise="no").detail == "yes"
    other = judge("recv_window_code", {"a": 1}, {"a": 2}, agrees="yes", otherwise="no")
    assert (other.status, other.detail) == ("differs", "no")


def test_values_are_scrubbed_and_bounded() -> None:
    register_secret("probe-test-secret-value-123")
    r = differs(
        "auth_error_codes",
        {"k": "x" * 1000},
        {"msg": "error sign! origin_string[probe-test-secret-value-123]", "list": list(range(500))},
        "echo probe-test-secret-value-123",
    )
    text = render_json({}, [r]) + render_human({}, [r])
    assert "probe-test-secret-value-123" not in text
    assert len(r.expected["k"]) == 300 and len(r.observed["list"]) == 50


def test_human_lines_show_expected_and_observed_only_where_it_matters() -> None:
    results = [
        ok("clock_offset", {"a": 1}, {"a": 1}, "fine"),
        differs("recv_window_code", {"stale": 10002}, {"stale": 10001}, "other code"),
    ]
    text = render_human({"env": "testnet"}, results)
    lines = text.splitlines()
    assert lines[0] == 'sidecar probe: {"env": "testnet"}'
    assert lines[1].split() == ["ok", "clock_offset", "fine"]
    assert lines[2].split()[:2] == ["differs", "recv_window_code"]
    assert lines[3].strip() == 'expected: {"stale": 10002}'
    assert lines[4].strip() == 'observed: {"stale": 10001}'
    assert lines[-1] == "summary: 1 ok, 1 differs, 0 skipped, 0 error"


def test_docs_list_every_check_in_report_order() -> None:
    """docs/emulator.md's table of unconfirmed points names exactly the probe's checks, in the order
    the probe reports them, and operations.md says what to do about each."""
    root = Path(__file__).resolve().parents[2]
    emulator = (root / "docs" / "emulator.md").read_text()
    table = emulator[emulator.index("| probe check |") :].split("\n\n", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE) == list(CHECK_NAMES)
    operations = (root / "docs" / "operations.md").read_text()
    for name in CHECK_NAMES:
        assert f"`{name}`" in operations, name


def test_an_error_with_nothing_to_compare_is_one_line() -> None:
    text = render_human({}, [error("clock_offset", None, "cannot read the exchange's time")])
    assert text.splitlines()[1:] == [
        "error    clock_offset  cannot read the exchange's time",
        "summary: 0 ok, 0 differs, 0 skipped, 1 error",
    ]
