"""Tests for sidecar/config.py: loading, every problem at once, compile to the core Policy."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from sidecar.config import (
    ConfigError,
    SidecarConfig,
    load_config,
    policy_hash,
    summarize,
    to_policy,
)
from sidecar.core.policy import DEFAULT_EXCHANGE_LIMITS_PER_S, RateScope
from sidecar.core.types import BatchMode, Category, ReferenceKind

ROOT = Path(__file__).resolve().parents[1]
D = Decimal

MINIMAL = """\
version: 1
symbols:
  - {category: linear, symbol: BTCUSDT, max_qty: "0.5", max_notional: "50000", price_band_bps: "150"}
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert all(line.startswith(f"{path}: ") for line in info.value.problems)
    return [line[len(f"{path}: ") :] for line in info.value.problems]


@pytest.mark.parametrize("name", ["sidecar.yaml", "example.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(ROOT / "config" / name)
    policy = config.to_policy()
    assert (Category.LINEAR, "BTCUSDT") in policy.symbols
    assert config.exchange.env == "sim"
    assert summarize(config).startswith("config OK")


def test_default_config_matches_the_emulator() -> None:
    policy = load_config(ROOT / "config" / "sidecar.yaml").to_policy()
    assert set(policy.symbols) == {
        (Category.LINEAR, "BTCUSDT"),
        (Category.LINEAR, "ETHUSDT"),
        (Category.LINEAR, "SOLUSDT"),
        (Category.SPOT, "BTCUSDT"),
    }
    assert policy.batch_max_orders == 20 and policy.batch_mode is BatchMode.ALL_OR_NOTHING
    assert policy.reference_max_age_ms == 2000


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.exchange.recv_window_ms == 5000
    assert config.batch.max_orders == 20 and config.batch.max_notional is None
    assert config.reference_price.max_age_ms == 2000
    assert config.verification.timeout_ms == 5000 and config.verification.rest_fallback is True
    assert config.verification.ack_timeout_ms == 3000
    assert config.verification.not_applied_margin_ms == 2000
    assert config.verification.background_timeout_ms == 60_000
    # Relative to the config file's directory, made absolute (never the working directory).
    assert config.journal.path == str((tmp_path / "var" / "journal.sqlite3").resolve())
    assert config.journal.synchronous == "FULL"
    assert config.http.token_env == "SIDECAR_HTTP_TOKEN" and config.http.allowed_origins == ()
    assert config.approval.above_notional is None
    rule = config.to_policy().symbols[(Category.LINEAR, "BTCUSDT")]
    assert rule.reference is ReferenceKind.MARK
    assert (rule.max_qty, rule.max_notional, rule.price_band_bps) == (D("0.5"), D("50000"), D("150"))


def test_every_problem_is_reported_at_once_with_file_and_dotted_path(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        """\
        version: 1
        exchange: {env: custom, recv_window_ms: 0}
        symbols:
          - {category: linear, symbol: BTCUSDT, max_qty: 0.5, max_notional: "50000", price_band_bps: "150"}
          - {category: linear, symbol: BTCUSDT, max_qty: "-1", max_notional: "1_000", price_band_bps: "20000"}
          - {category: linear, symbol: ETHUSDT, max_notional: "NaN", colour: red}
        batch: {max_orders: 25, mode: yolo}
        rate_limits:
          - {scope: tool, max: 0, window_s: "0.0001"}
          - {scope: exchange, op: order.amend, max: 10}
          - {scope: global, max: 1, utilization: "0.5"}
        verfication: {}
        """,
    )
    where = [line.split(": ", 1)[0] for line in lines]
    for expected in [
        "exchange.recv_window_ms",
        "exchange.rest_url",
        "exchange.ws_url",
        "symbols.0.max_qty",
        "symbols.1.max_qty",
        "symbols.1.max_notional",
        "symbols.1.price_band_bps",
        "symbols.1.symbol",
        "symbols.2.max_notional",
        "symbols.2.colour",
        "symbols.2.max_qty",
        "symbols.2.price_band_bps",
        "batch.max_orders",
        "batch.mode",
        "rate_limits.0.max",
        "rate_limits.0.window_s",
        "rate_limits.1.category",
        "rate_limits.2.utilization",
        "verfication",
    ]:
        assert expected in where, (expected, lines)
    text = "\n".join(lines)
    assert "[linear ETHUSDT]" in text  # the symbol is named next to its index
    assert "already defined at symbols.0" in text


def test_float_money_is_refused_with_a_hint(tmp_path: Path) -> None:
    lines = problems(tmp_path, MINIMAL.replace('max_qty: "0.5"', "max_qty: 0.5"))
    assert len(lines) == 1
    assert lines[0].startswith('symbols.0.max_qty: write decimals as strings, e.g. "0.5"')


def test_ints_are_accepted_for_decimals(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL.replace('max_notional: "50000"', "max_notional: 50000")))
    assert config.symbols[0].max_notional == D("50000")


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ("max_qty: true", "symbols.0.max_qty"),
        ('max_qty: " 1"', "symbols.0.max_qty"),
        ('max_qty: "0"', "symbols.0.max_qty"),
        ('max_qty: "1e400"', "symbols.0.max_qty"),
        ('max_qty: "٣"', "symbols.0.max_qty"),
    ],
)
def test_bad_decimals(tmp_path: Path, snippet: str, where: str) -> None:
    lines = problems(tmp_path, MINIMAL.replace('max_qty: "0.5"', snippet))
    assert [line.split(": ", 1)[0] for line in lines] == [where]


def test_unknown_keys_are_errors_everywhere(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        MINIMAL
        + """\
batch: {max_order: 5}
trading: {state_on_start: halted}
""",
    )
    assert any(
        line.startswith("batch.max_order: unknown key; allowed here: max_orders, mode, max_notional")
        for line in lines
    )
    assert any(line.startswith("trading: unknown key") for line in lines)


def test_duplicate_symbol(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        MINIMAL
        + '  - {category: linear, symbol: BTCUSDT, max_qty: "1", max_notional: "1", price_band_bps: "1"}\n',
    )
    assert lines == ["symbols.1.symbol: linear BTCUSDT is already defined at symbols.0 [linear BTCUSDT]"]


def test_same_symbol_in_two_categories_is_fine(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + '  - {category: spot, symbol: BTCUSDT, max_qty: "1", max_notional: "1", price_band_bps: "1"}\n',
        )
    )
    assert len(config.to_policy().symbols) == 2


def test_defaults_fill_symbol_rules_and_missing_ones_are_named(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            version: 1
            defaults: {price_band_bps: "100", reference: last, max_notional: "1000"}
            symbols:
              - {category: linear, symbol: BTCUSDT, max_qty: "1"}
              - {category: spot, symbol: ETHUSDT, max_qty: "2", price_band_bps: "50", reference: mid}
            """,
        )
    )
    rules = config.to_policy().symbols
    btc, eth = rules[(Category.LINEAR, "BTCUSDT")], rules[(Category.SPOT, "ETHUSDT")]
    assert (btc.price_band_bps, btc.reference, btc.max_notional) == (D("100"), ReferenceKind.LAST, D("1000"))
    assert (eth.price_band_bps, eth.reference) == (D("50"), ReferenceKind.MID)
    lines = problems(
        tmp_path, 'version: 1\nsymbols:\n  - {category: linear, symbol: BTCUSDT, max_qty: "1"}\n'
    )
    assert lines == [
        "symbols.0.max_notional: not set here and not in defaults [linear BTCUSDT]",
        "symbols.0.price_band_bps: not set here and not in defaults [linear BTCUSDT]",
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 2\n" + MINIMAL.split("\n", 1)[1], "version"),
        ("symbols: []\nversion: 1\n", "symbols"),
        ("version: 1\n", "symbols"),
        (MINIMAL.replace('"150"', '"0"'), "symbols.0.price_band_bps"),
        (MINIMAL.replace('"150"', '"10001"'), "symbols.0.price_band_bps"),
        (MINIMAL.replace("BTCUSDT", "btcusdt"), "symbols.0.symbol"),
        (MINIMAL.replace("linear", "futures"), "symbols.0.category"),
        (MINIMAL + "batch: {max_orders: 0}\n", "batch.max_orders"),
        (MINIMAL + "reference_price: {max_age_ms: 0}\n", "reference_price.max_age_ms"),
        (MINIMAL + "rate_limits: [{scope: tool, max: 5, window_s: 0}]\n", "rate_limits.0.window_s"),
        (MINIMAL + "rate_limits: [{scope: tool, max: 1.5}]\n", "rate_limits.0.max"),
        (
            MINIMAL
            + "rate_limits: [{scope: exchange, op: order.amend, category: spot, max: 1, utilization: '2'}]\n",
            "rate_limits.0.utilization",
        ),
        (
            MINIMAL + "rate_limits: [{scope: exchange, op: order.create, category: linear, max: 10}]\n",
            "rate_limits.0.op",
        ),
        (MINIMAL + "exchange: {env: mainnet, rest_url: 'ftp://x'}\n", "exchange.rest_url"),
        (MINIMAL + "exchange: {env: testnet, ws_url: 'https://stream.bybit.com'}\n", "exchange.ws_url"),
        (MINIMAL + "journal: {synchronous: OFF}\n", "journal.synchronous"),
        (MINIMAL + "http: {token_env: 'not a name'}\n", "http.token_env"),
        (MINIMAL + "verification: {rest_fallback: 'yes'}\n", "verification.rest_fallback"),
        (MINIMAL + "approval: {above_notional: 1.5}\n", "approval.above_notional"),
    ],
)
def test_single_problems_point_at_their_key(tmp_path: Path, text: str, where: str) -> None:
    lines = problems(tmp_path, text)
    assert [line.split(": ", 1)[0] for line in lines] == [where], lines


def test_duplicate_exchange_budget(tmp_path: Path) -> None:
    budget = "{scope: exchange, op: order.amend-batch, category: linear, max: 10}"
    lines = problems(tmp_path, MINIMAL + f"rate_limits: [{budget}, {budget}]\n")
    assert lines == ["rate_limits.1.op: order.amend-batch linear is already budgeted at rate_limits.0"]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nsymbols:\n  - {category: linear\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: line 4, column 1: YAML error")


def test_repeated_yaml_key_is_an_error(tmp_path: Path) -> None:
    lines = problems(tmp_path, MINIMAL + "batch: {max_orders: 5, max_orders: 50}\n")
    assert len(lines) == 1 and "duplicate key 'max_orders'" in lines[0] and lines[0].startswith("line 4,")


@pytest.mark.parametrize(
    ("text", "fragment"), [("", "empty"), ("- 1\n- 2\n", "mapping"), ("just text\n", "mapping")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, fragment: str) -> None:
    lines = problems(tmp_path, text) if text else problems(tmp_path, "# only a comment\n")
    assert len(lines) == 1 and fragment in lines[0]


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}: file not found"]
    assert str(info.value) == f"{path}: file not found"


def test_comment_only_section_means_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + "approval:\n  # above_notional: '1'\n"))
    assert config.approval.above_notional is None


def test_models_are_frozen_and_forbid_extras() -> None:
    config = load_config(ROOT / "config" / "sidecar.yaml")
    with pytest.raises(ValidationError):
        config.batch.max_orders = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        SidecarConfig.model_validate({"version": 1, "symbols": [], "extra": 1})


def test_to_policy_compiles_rules_rates_and_budgets(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + """\
batch: {max_orders: 10, mode: per_item, max_notional: "100000"}
reference_price: {max_age_ms: 1500}
approval: {above_notional: "20000"}
rate_limits:
  - {scope: tool, max: 20, window_s: 1}
  - {scope: symbol, max: 5, window_s: "0.5"}
  - {scope: exchange, op: order.amend-batch, category: linear, max: 20, utilization: "0.5"}
""",
        )
    )
    policy = to_policy(config)
    assert policy == config.to_policy()
    assert policy.batch_max_orders == 10 and policy.batch_mode is BatchMode.PER_ITEM
    assert policy.batch_max_notional == D("100000")
    assert policy.reference_max_age_ms == 1500
    assert policy.approval_above_notional == D("20000")
    assert [(r.scope, r.max, r.window_ms) for r in policy.rate_rules] == [
        (RateScope.TOOL, 20, 1000),
        (RateScope.SYMBOL, 5, 500),
    ]
    budgets = {(b.op, b.category): b for b in policy.exchange_budgets}
    assert set(budgets) == set(DEFAULT_EXCHANGE_LIMITS_PER_S)
    linear = budgets[("order.amend-batch", Category.LINEAR)]
    assert (linear.limit, linear.window_ms, linear.utilization, linear.local_max) == (20, 1000, D("0.5"), 10)
    spot = budgets[("order.amend-batch", Category.SPOT)]
    assert (spot.limit, spot.utilization, spot.local_max) == (20, D("0.8"), 16)
    assert policy.version == policy_hash(config) and len(policy.version) == 12
    assert config.to_policy(version="v-test").version == "v-test"
    with pytest.raises(TypeError):
        policy.symbols[(Category.LINEAR, "X")] = policy.symbols[(Category.LINEAR, "BTCUSDT")]  # type: ignore[index]


def test_policy_hash_follows_content(tmp_path: Path) -> None:
    a = load_config(write(tmp_path, MINIMAL, "a.yaml"))
    b = load_config(write(tmp_path, "# comment\n" + MINIMAL, "b.yaml"))
    c = load_config(write(tmp_path, MINIMAL.replace('"150"', '"151"'), "c.yaml"))
    assert policy_hash(a) == policy_hash(b) != policy_hash(c)


def test_model_dump_round_trips() -> None:
    config = load_config(ROOT / "config" / "example.yaml")
    again = SidecarConfig.model_validate(config.model_dump(mode="json"))
    assert again == config and policy_hash(again) == policy_hash(config)


def test_summary_names_the_essentials() -> None:
    text = summarize(load_config(ROOT / "config" / "sidecar.yaml"))
    for fragment in (
        "sim",
        "BTCUSDT",
        "SOLUSDT",
        "±150 bps on mark",
        "max qty 0.5",
        "all_or_nothing",
        "max age 2000 ms",
        "tool 20/1s",
        "timeout 5000 ms",
        "order.amend-batch",
    ):
        assert fragment in text, fragment


# ---------------------------------------------------------------------------- paths


def test_relative_journal_path_resolves_against_the_config_directory_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = write(conf_dir, MINIMAL + "journal:\n  path: data/j.sqlite3\n")
    monkeypatch.chdir(elsewhere)  # what an MCP host does: start the server in a directory of its own
    config = load_config(path)
    assert config.journal.path == str((conf_dir / "data" / "j.sqlite3").resolve())
    # The same file, named relatively from another directory, gives the same journal.
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc") / "c.yaml").journal.path == config.journal.path


def test_absolute_and_home_journal_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = tmp_path / "abs" / "j.sqlite3"
    assert load_config(write(tmp_path, MINIMAL + f"journal:\n  path: {absolute}\n")).journal.path == str(
        absolute.resolve()
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write(tmp_path, MINIMAL + "journal:\n  path: ~/j.sqlite3\n"))
    assert config.journal.path == str((tmp_path / "home" / "j.sqlite3").resolve())
