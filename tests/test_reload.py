"""What a reload applies at once, what waits for a restart, and what it refuses (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidecar.config import SidecarConfig, load_config
from sidecar.reload import plan_reload

ROOT = Path(__file__).resolve().parents[1]


def _config(**sections: dict[str, Any]) -> SidecarConfig:
    data = load_config(ROOT / "config" / "sidecar.yaml").model_dump(mode="json")
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    return SidecarConfig.model_validate(data)


def test_nothing_changed() -> None:
    plan = plan_reload(_config(), _config())
    assert plan.effective is not None and plan.applied == [] and plan.needs_restart == []


def test_runtime_settings_apply_at_once() -> None:
    new = _config(exchange={"recv_window_ms": 2500}, verification={"ack_timeout_ms": 900, "timeout_ms": 700})
    plan = plan_reload(_config(), new)
    assert plan.applied == [
        "exchange.recv_window_ms",
        "verification.ack_timeout_ms",
        "verification.timeout_ms",
    ]
    assert plan.needs_restart == []
    assert plan.effective is not None and plan.effective.verification.ack_timeout_ms == 900


def test_connection_settings_keep_their_running_value_and_are_named() -> None:
    old = _config()
    new = _config(
        exchange={"ws_url": "ws://127.0.0.1:1", "recv_window_ms": 2500}, http={"token_env": "OTHER"}
    )
    plan = plan_reload(old, new)
    assert plan.needs_restart == ["exchange.ws_url", "http.token_env"]
    assert plan.applied == ["exchange.recv_window_ms"]
    assert plan.effective is not None
    assert plan.effective.exchange.ws_url == old.exchange.ws_url  # still what the connections use
    assert plan.effective.http == old.http
    assert plan.effective.exchange.recv_window_ms == 2500


def test_an_added_symbol_applies_but_its_price_feed_needs_a_restart() -> None:
    old = _config()
    data = old.model_dump(mode="json")
    data["symbols"] = [*data["symbols"], {**data["symbols"][0], "symbol": "XRPUSDT"}]
    plan = plan_reload(old, SidecarConfig.model_validate(data))
    assert "symbols" in plan.applied
    assert plan.needs_restart == ["symbols (price feed for linear:XRPUSDT)"]


def test_a_changed_journal_path_is_refused_naming_both() -> None:
    old = _config(journal={"path": "/srv/a/journal.sqlite3"})
    new = _config(journal={"path": "/srv/b/journal.sqlite3"}, exchange={"recv_window_ms": 2500})
    plan = plan_reload(old, new)
    assert plan.effective is None and plan.applied == []
    [problem] = plan.refused
    assert "/srv/a/journal.sqlite3" in problem and "/srv/b/journal.sqlite3" in problem
