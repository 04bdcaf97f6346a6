"""sidecar/logs.py: one format for structlog and stdlib records, redaction after exception formatting,
level and format switches, and the log-line limiter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from sidecar import logs
from sidecar.logs import REDACTED, LogLimiter, configure_logging, redact_secrets, register_secret, scrub

SECRET = "SeKrEt-9f3a71c2d8"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging configured into a buffer; the process's logging set-up is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buf = io.StringIO()
    try:
        yield buf
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line]


def test_structlog_and_stdlib_records_share_one_json_format(stream: io.StringIO) -> None:
    configure_logging("INFO", stream=stream)
    structlog.get_logger("t").info("amend.sent", request_id="r-1")
    # The emulator logs through stdlib in `component.verb key=value` form: its keys become fields.
    logging.getLogger("sidecar.emulator").info("emulator.connected kind=%s conn_id=%s", "trade", "c-1")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    first, second, third = _lines(stream)
    assert first["event"] == "amend.sent" and first["level"] == "info" and first["request_id"] == "r-1"
    assert second == {
        "event": "emulator.connected",
        "kind": "trade",
        "conn_id": "c-1",
        "level": "info",
        "logger": "sidecar.emulator",
        "timestamp": second["timestamp"],
    }
    assert third["event"] == "Invalid HTTP request received." and third["level"] == "warning"
    assert {"timestamp"} <= first.keys() & third.keys()


def test_tracebacks_are_scrubbed_after_formatting(stream: io.StringIO) -> None:
    register_secret(SECRET)
    configure_logging("INFO", stream=stream)
    try:
        raise RuntimeError(f"signature check failed for {SECRET}")
    except RuntimeError:
        structlog.get_logger("t").exception("service.event_failed")
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    text = stream.getvalue()
    assert SECRET not in text
    records = _lines(stream)
    assert len(records) == 2
    for record in records:
        assert "RuntimeError" in str(record["exception"])
        assert REDACTED in str(record["exception"])


def test_level_filters_both_kinds_of_record(stream: io.StringIO) -> None:
    configure_logging("warning", stream=stream)
    structlog.get_logger("t").info("amend.sent")
    logging.getLogger("sidecar.emulator").info("emulator.started host=127.0.0.1 port=1")
    structlog.get_logger("t").warning("safety.halted")
    assert [r["event"] for r in _lines(stream)] == ["safety.halted"]


def test_console_format_is_for_humans(stream: io.StringIO) -> None:
    configure_logging("INFO", fmt="console", stream=stream)
    structlog.get_logger("t").info("amend.sent", request_id="r-1")
    logging.getLogger("sidecar.emulator").info("emulator.stopped port=%s", 4242)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "amend.sent" in lines[0] and "request_id" in lines[0] and not lines[0].startswith("{")
    assert "emulator.stopped" in lines[1] and "4242" in lines[1]


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", fmt="xml")


def test_scrub_replaces_known_secrets_in_exchange_text() -> None:
    register_secret(SECRET)
    text = f'{{"retCode":10004,"retMsg":"error sign! origin_string[1700000000000{SECRET}5000]"}}'
    assert SECRET not in scrub(text)
    assert json.loads(scrub(text))["retCode"] == 10004


def test_log_limiter_allows_a_burst_then_reports_what_it_held_back() -> None:
    limiter = LogLimiter(burst=3, window_ns=1_000_000_000)
    t = 5_000_000_000
    assert [limiter.allow("http.rejected", t + i) for i in range(3)] == [0, 0, 0]
    assert all(limiter.allow("http.rejected", t + 10 + i) is None for i in range(500))
    assert limiter.allow("http.shed", t + 20) == 0  # each event name has its own budget
    # The next window: allowed again, and the first line says how many were held back.
    assert limiter.allow("http.rejected", t + 1_000_000_000) == 500
    assert limiter.allow("http.rejected", t + 1_000_000_001) == 0


def test_log_limiter_state_stays_bounded() -> None:
    limiter = LogLimiter(burst=1, window_ns=1_000, max_keys=8)
    for i in range(1000):
        limiter.allow(f"key-{i}", i)
    assert len(limiter) <= 8


def test_short_values_are_never_scrubbed_from_exchange_text() -> None:
    register_secret("true")  # not a plausible secret: remembering it would corrupt JSON frames
    assert scrub('{"reduceOnly": true}') == '{"reduceOnly": true}'


def test_secret_looking_keys_are_blanked_on_every_line_and_the_key_memo_stays_bounded() -> None:
    for _ in range(3):  # the first line fills the memo of key names, later ones read it
        line = redact_secrets(
            None, "info", {"event": "x.y", "api_key": "k", "Signature": "s", "order_id": "o"}
        )
        assert line == {"event": "x.y", "api_key": REDACTED, "Signature": REDACTED, "order_id": "o"}
    for n in range(3 * logs._SECRET_KEY_NAMES_MAX):
        redact_secrets(None, "info", {f"field_{n}": 1, f"token_{n}": 2})
    assert len(logs._SECRET_KEY_NAMES) <= logs._SECRET_KEY_NAMES_MAX
    assert redact_secrets(None, "info", {"password": "p", "token_0": 2}) == {
        "password": REDACTED,
        "token_0": REDACTED,
    }
