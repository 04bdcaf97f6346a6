"""The YAML config: pydantic models, `load_config()`, and the compile step to the core `Policy`.

Every key is documented where it is defined (``Field(description=...)``); docs/configuration.md
is the operator's version. Units live in key names (``_ms``, ``_s``, ``_bps``). Decimals are written
as strings (``"0.5"``): a YAML float is refused because it is binary and loses precision. Unknown
keys are errors. `load_config` reports *every* problem at once, one line each, as
``file: dotted.path: message``.

Credentials are not part of the YAML: `load_credentials` reads them from the environment.

This module must not decide anything about orders (core/validation.py does) and must not be
imported by `sidecar/core/` (the core never sees pydantic: it gets a frozen `Policy`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from sidecar.core.numbers import parse_positive_decimal, short_repr
from sidecar.core.policy import (
    DEFAULT_EXCHANGE_LIMITS_PER_S,
    ExchangeBudget,
    Policy,
    RateRule,
    RateScope,
    SymbolRule,
)
from sidecar.core.types import BatchMode, Category, ReferenceKind

__all__ = [
    "DEFAULT_COORDINATION_TIMEOUT_MS",
    "DEFAULT_EXCHANGE_GUARD_MS",
    "DEFAULT_UTILIZATION",
    "ApprovalConfig",
    "BatchConfig",
    "ConfigError",
    "CoordinationConfig",
    "Credentials",
    "DefaultsConfig",
    "ExchangeConfig",
    "HttpConfig",
    "JournalConfig",
    "RateLimitConfig",
    "ReferencePriceConfig",
    "SidecarConfig",
    "SymbolConfig",
    "VerificationConfig",
    "load_config",
    "load_credentials",
    "policy_hash",
    "summarize",
    "to_policy",
]

DEFAULT_UTILIZATION = Decimal("0.8")
# redis-py's defaults took 1.9 s to fail on a dead server; a decision waits this long at most.
DEFAULT_COORDINATION_TIMEOUT_MS = 100
# Headroom for admission-to-exchange jitter (ExchangeBudget.guard_ms; docs/rate-limits.md).
DEFAULT_EXCHANGE_GUARD_MS = 100
API_KEY_ENV = "BYBIT_API_KEY"
API_SECRET_ENV = "BYBIT_API_SECRET"  # noqa: S105  # the variable's name, not a secret


class ConfigError(Exception):
    """The config (or the credentials in the environment) is unusable.

    Raised by `load_config` and `load_credentials`. `problems` holds one line per problem,
    ``file: dotted.path: message``; the CLI prints them and exits with 2.
    """

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(self.path, problems)

    def __str__(self) -> str:
        first = self.problems[0] if self.problems else f"{self.path}: invalid config"
        more = len(self.problems) - 1
        return first if more <= 0 else f"{first} (and {more} more problem{'s' if more > 1 else ''})"


# --------------------------------------------------------------------------------------------
# Value types


def _exact_decimal(value: object) -> object:
    """Before-validator for money and other decimals: exact, positive, never from a float."""
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "must be a number, not a boolean")
    if isinstance(value, float):
        raise PydanticCustomError(
            "decimal_float",
            'write decimals as strings, e.g. "0.5" (a YAML float is binary and loses precision); got {value}',
            {"value": repr(value)},
        )
    if isinstance(value, (str, int, Decimal)):
        parsed = parse_positive_decimal(value)
        if isinstance(parsed, str):
            raise PydanticCustomError(
                "decimal_invalid", "{value} {why}", {"value": short_repr(value), "why": parsed}
            )
        return parsed
    return value  # anything else: pydantic's own type error says what was expected


PositiveDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]
BandBps = Annotated[Decimal, BeforeValidator(_exact_decimal), Field(le=10_000)]
Fraction = Annotated[Decimal, BeforeValidator(_exact_decimal), Field(le=1)]
Count = Annotated[int, Field(strict=True, ge=1)]
Text = Annotated[str, Field(strict=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_Problem = tuple[tuple[str | int, ...], str, str]  # (relative location, error type, message)


def _errors(title: str, details: Sequence[_Problem]) -> ValidationError:
    """A ValidationError with one entry per problem."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=None)
            for loc, kind, message in details
        ],
    )


def _with_problems(title: str, data: Any, handler: Callable[[Any], Any], problems: list[_Problem]) -> Any:
    """Run the normal validation and report its errors together with `problems` (cross-field rules).

    Pydantic skips "after" validators when a field fails; checking cross-field rules on the raw
    input and merging lets `load_config` report every problem in one run.
    """
    try:
        result = handler(data)
    except ValidationError as exc:
        if not problems:
            raise
        merged: list[_Problem] = [(tuple(e["loc"]), e["type"], e["msg"]) for e in exc.errors()]
        raise _errors(title, merged + problems) from None
    if problems:
        raise _errors(title, problems)
    return result


# --------------------------------------------------------------------------------------------
# Sections


class ExchangeConfig(_Model):
    env: Literal["sim", "testnet", "mainnet", "custom"] = Field(
        default="sim",
        description="sim: the in-process emulator (no keys, no network); testnet/mainnet: Bybit's hosts; "
        "custom: rest_url and ws_url below.",
    )
    rest_url: Text | None = Field(
        default=None,
        description="REST base URL (http/https), e.g. https://api.bybit.com. Required for custom; "
        "overrides the default host for testnet/mainnet.",
    )
    ws_url: Text | None = Field(
        default=None,
        description="WebSocket host (ws/wss, no path), e.g. wss://stream.bybit.com; /v5/trade, "
        "/v5/private and /v5/public/{category} are appended. Required for custom.",
    )
    recv_window_ms: int = Field(
        default=5000,
        strict=True,
        ge=1,
        le=60_000,
        description="Bybit's recv window for signed requests, in milliseconds.",
    )

    @field_validator("rest_url")
    @classmethod
    def _rest_scheme(cls, value: str | None) -> str | None:
        return _check_url(value, ("http", "https"))

    @field_validator("ws_url")
    @classmethod
    def _ws_scheme(cls, value: str | None) -> str | None:
        return _check_url(value, ("ws", "wss"))

    @model_validator(mode="wrap")
    @classmethod
    def _custom_needs_urls(
        cls, data: Any, handler: ModelWrapValidatorHandler[ExchangeConfig]
    ) -> ExchangeConfig:
        problems: list[_Problem] = []
        if isinstance(data, dict) and data.get("env") == "custom":
            problems = [
                ((name,), "missing", f"required when env is custom ({hint})")
                for name, hint in (("rest_url", "https://..."), ("ws_url", "wss://..."))
                if data.get(name) is None
            ]
        result: ExchangeConfig = _with_problems("ExchangeConfig", data, handler, problems)
        return result


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise PydanticCustomError(
            "url",
            "must be an absolute {schemes} URL, got {value}",
            {"schemes": "/".join(schemes), "value": value},
        )
    return value


class DefaultsConfig(_Model):
    max_qty: PositiveDecimal | None = Field(
        default=None, description="Default max qty per order (base units; USD contracts for inverse)."
    )
    max_notional: PositiveDecimal | None = Field(
        default=None,
        description="Default max notional per order after the amend (price × qty, quote currency).",
    )
    price_band_bps: BandBps | None = Field(
        default=None,
        description="Default price band around the reference, in basis points (100 = 1 %), 0 < bps ≤ 10000.",
    )
    reference: ReferenceKind | None = Field(
        default=None, description="Default reference price: mark, last, index or mid. Falls back to mark."
    )
    order_iv_min: PositiveDecimal | None = Field(
        default=None, description="Options: lowest orderIv an amend may set (0.1 = 10 %); with order_iv_max."
    )
    order_iv_max: PositiveDecimal | None = Field(
        default=None, description="Options: highest orderIv an amend may set; unset = orderIv is denied."
    )

    @model_validator(mode="after")
    def _iv_band(self) -> DefaultsConfig:
        _check_iv_band(self.order_iv_min, self.order_iv_max)
        return self


class SymbolConfig(_Model):
    category: Category = Field(description="Bybit category: linear, inverse, spot or option.")
    symbol: str = Field(
        strict=True,
        pattern=r"^[A-Z0-9][A-Z0-9-]{1,39}$",
        description="Exact Bybit symbol (uppercase, case-sensitive), e.g. BTCUSDT.",
    )
    max_qty: PositiveDecimal | None = Field(
        default=None, description="Max order qty after the amend; the instrument's maxOrderQty also applies."
    )
    max_notional: PositiveDecimal | None = Field(
        default=None, description="Max notional per order after the amend (price × qty; qty for inverse)."
    )
    price_band_bps: BandBps | None = Field(
        default=None, description="Allowed distance of any new price from the reference, in basis points."
    )
    reference: ReferenceKind | None = Field(
        default=None, description="Reference price anchoring the band: mark, last, index or mid."
    )
    order_iv_min: PositiveDecimal | None = Field(
        default=None, description="Options: lowest orderIv an amend may set (0.1 = 10 %); with order_iv_max."
    )
    order_iv_max: PositiveDecimal | None = Field(
        default=None, description="Options: highest orderIv an amend may set; unset = orderIv is denied."
    )

    @model_validator(mode="after")
    def _iv_band(self) -> SymbolConfig:
        _check_iv_band(self.order_iv_min, self.order_iv_max)
        return self


def _check_iv_band(low: Decimal | None, high: Decimal | None) -> None:
    if (low is None) != (high is None):
        raise ValueError("order_iv_min and order_iv_max go together (set both or neither)")
    if low is not None and high is not None and low > high:
        raise ValueError(f"order_iv_min {low} is above order_iv_max {high}")


class BatchConfig(_Model):
    max_orders: int = Field(
        default=20,
        strict=True,
        ge=1,
        le=20,
        description="Max items per batch (1-20); Bybit's own limit (20, spot 10) applies too.",
    )
    mode: BatchMode = Field(
        default=BatchMode.ALL_OR_NOTHING,
        description="all_or_nothing: one denied item denies the batch; per_item: allowed items are sent.",
    )
    max_notional: PositiveDecimal | None = Field(
        default=None, description="Max total notional of one batch (sum over items); unset = no batch cap."
    )


class ReferencePriceConfig(_Model):
    max_age_ms: int = Field(
        default=2000,
        strict=True,
        ge=1,
        le=60_000,
        description="A reference price older than this (ms) is stale: items are denied (fail closed).",
    )


class RateLimitConfig(_Model):
    scope: Literal["tool", "symbol", "global", "exchange"] = Field(
        description="tool: per MCP tool; symbol: per category+symbol (counts items); global: all calls; "
        "exchange: Bybit's per-UID budget for one op and category."
    )
    max: Count = Field(
        description="tool/symbol/global: max units per window. exchange: Bybit's limit per window (e.g. 10)."
    )
    window_s: PositiveDecimal = Field(
        default=Decimal(1), description="Window length in seconds (a whole number of milliseconds)."
    )
    op: Literal["order.amend-batch", "order.amend"] | None = Field(
        default=None, description="exchange only: the Bybit op the budget is for."
    )
    category: Category | None = Field(default=None, description="exchange only: the Bybit category.")
    utilization: Fraction | None = Field(
        default=None,
        description='exchange only: share of Bybit\'s limit the sidecar uses, 0 < u ≤ 1 (default "0.8").',
    )
    guard_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=10_000,
        description="exchange only: headroom for the delay between admission and arrival at Bybit; the "
        "sidecar counts its share over window_s + guard_ms (default 100).",
    )

    @property
    def window_ms(self) -> int:
        return int(self.window_s * 1000)

    @model_validator(mode="wrap")
    @classmethod
    def _scope_fields(cls, data: Any, handler: ModelWrapValidatorHandler[RateLimitConfig]) -> RateLimitConfig:
        # Checked on the raw mapping so these problems are reported even when a field is invalid.
        problems: list[_Problem] = []
        if isinstance(data, dict):
            window = data.get("window_s", 1)
            parsed = parse_positive_decimal(window) if isinstance(window, (str, int)) else None
            if isinstance(parsed, Decimal) and parsed * 1000 != int(parsed * 1000):
                problems.append((("window_s",), "window", "must be a whole number of milliseconds"))
            scope = data.get("scope")
            if scope == "exchange":
                for name in ("op", "category"):
                    if data.get(name) is None:
                        problems.append(((name,), "missing", "required for scope exchange"))
            elif isinstance(scope, str):
                for name in ("op", "category", "utilization", "guard_ms"):
                    if data.get(name) is not None:
                        problems.append(((name,), "scope", f"only for scope exchange, not {scope}"))
        result: RateLimitConfig = _with_problems("RateLimitConfig", data, handler, problems)
        return result


class VerificationConfig(_Model):
    timeout_ms: int = Field(
        default=5000,
        strict=True,
        ge=1,
        le=600_000,
        description="How long to wait for proof (order stream, then REST) before an item is unverified.",
    )
    rest_fallback: bool = Field(
        default=True,
        strict=True,
        description="Read the order back over REST when the stream has not confirmed in time.",
    )
    ack_timeout_ms: int = Field(
        default=3000,
        strict=True,
        ge=1,
        le=600_000,
        description="How long to wait for Bybit's ack of a sent frame before looking instead.",
    )
    not_applied_margin_ms: int = Field(
        default=2000,
        strict=True,
        ge=0,
        le=600_000,
        description="An order seen unchanged counts as not_applied only after the request's timestamp "
        "+ recv_window_ms + this margin.",
    )
    background_timeout_ms: int = Field(
        default=60_000,
        strict=True,
        ge=1,
        le=3_600_000,
        description="How long unverified items keep being reconciled in the background.",
    )


class ApprovalConfig(_Model):
    above_notional: PositiveDecimal | None = Field(
        default=None,
        description="Ask the user (MCP elicitation) before sending an item above this notional; unset: no.",
    )


class SafetyConfig(_Model):
    """Automatic kill-switch trips. Each trip is journaled with its reason; only the operator resumes."""

    stale_reference_trip_ms: Count = Field(
        default=30_000,
        description="Halt when the reference price of EVERY symbol is older than this (ms).",
    )
    socket_down_trip_s: Count = Field(
        default=30, description="Halt when the trade or private socket has been down longer than this (s)."
    )
    max_unverified: Count = Field(
        default=5,
        description="Halt when more than this many requests end with `unverified` items within the window.",
    )
    unverified_window_s: Count = Field(default=300, description="Window for max_unverified (s).")
    max_exchange_rate_limited: Count = Field(
        default=3,
        description="Switch to `reducing` when Bybit answers 10006 more than this many times in the window.",
    )
    rate_limited_window_s: Count = Field(default=60, description="Window for max_exchange_rate_limited (s).")


class JournalConfig(_Model):
    path: Annotated[Text, AfterValidator(os.path.expanduser)] = Field(
        default="var/journal.sqlite3",
        description="SQLite journal file (WAL mode). A relative path is relative to the config file's "
        "directory, never to the working directory; a leading ~ is the running user's home directory.",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite synchronous: FULL survives power loss and kill -9; NORMAL survives kill -9 only.",
    )
    retain_days: Annotated[Decimal, BeforeValidator(_exact_decimal), Field(le=36_500)] | None = Field(
        default=Decimal(30),
        description="Settled requests older than this many days are pruned by the running server "
        '(a fraction is allowed: "0.5"); null keeps everything. Unsettled requests are never pruned.',
    )


class HttpConfig(_Model):
    token_env: str = Field(
        default="SIDECAR_HTTP_TOKEN",
        strict=True,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the bearer token for the HTTP transport.",
    )
    allowed_origins: tuple[Text, ...] = Field(
        default=(), description="Browser Origins allowed on the HTTP transport (empty: none)."
    )


class CoordinationConfig(_Model):
    """Where the state shared by several sidecars on one Bybit account lives (DESIGN §4.8)."""

    backend: Literal["local", "redis"] = Field(
        default="local",
        description="local: everything in-process (no server; one sidecar per account); redis: budgets, "
        "kill switch and in-flight guard shared through one Redis server.",
    )
    url: Text | None = Field(
        default=None,
        description="redis only: redis://host:port/db (or rediss://, unix://). No password here: put a URL "
        "with credentials in an environment variable and name it with url_env.",
    )
    url_env: str | None = Field(
        default=None,
        strict=True,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="redis only: the environment variable holding the URL (use it when the URL has a "
        "password).",
    )
    namespace: str | None = Field(
        default=None,
        strict=True,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
        description="redis only (required): one namespace per Bybit account, e.g. its UID; every sidecar "
        "on that account uses the same one.",
    )
    timeout_ms: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=5000,
        description="redis only: the longest a decision waits for Redis before the call is denied "
        "COORDINATION_UNAVAILABLE (no retry); default 100.",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.password or "password=" in parts.query:  # first: no message may quote it then
            raise PydanticCustomError(
                "secret",
                "holds a password; put the URL in an environment variable and name it with url_env",
            )
        if not _is_redis_url(value):
            raise PydanticCustomError(
                "url",
                "must be a redis://host:port/db, rediss://... or unix:///path URL, got {value}",
                {"value": value},
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _backend_fields(
        cls, data: Any, handler: ModelWrapValidatorHandler[CoordinationConfig]
    ) -> CoordinationConfig:
        problems: list[_Problem] = []
        if isinstance(data, dict):
            backend = data.get("backend", "local")
            if backend == "redis":
                has_url, has_env = data.get("url") is not None, data.get("url_env") is not None
                if has_url == has_env:
                    problems.append(((), "redis_url", "backend redis needs exactly one of url and url_env"))
                if data.get("namespace") is None:
                    problems.append(
                        (("namespace",), "missing", "required for backend redis (one per Bybit account)")
                    )
            elif backend == "local":
                for name in ("url", "url_env", "namespace", "timeout_ms"):
                    if data.get(name) is not None:
                        problems.append(((name,), "backend", "only for backend redis, not local"))
        result: CoordinationConfig = _with_problems("CoordinationConfig", data, handler, problems)
        return result

    @property
    def decision_timeout_ms(self) -> int:
        return self.timeout_ms if self.timeout_ms is not None else DEFAULT_COORDINATION_TIMEOUT_MS

    def resolve_url(self, env: Mapping[str, str]) -> str:
        """The Redis URL: `url`, or the value of the variable `url_env` names.

        Raises:
            ConfigError: the backend is not redis, or `url_env` names a variable that is unset or empty.
        """
        if self.backend != "redis":
            raise ConfigError("config", ["config: coordination: backend is not redis"])
        if self.url is not None:
            return self.url
        assert self.url_env is not None  # checked by the model
        value = env.get(self.url_env) or ""
        if not value:
            raise ConfigError("environment", [f"environment: {self.url_env}: not set (coordination.url_env)"])
        if not _is_redis_url(value):
            # The value may hold a password: name the variable, never the value.
            raise ConfigError(
                "environment", [f"environment: {self.url_env}: not a redis://, rediss:// or unix:// URL"]
            )
        return value


def _is_redis_url(value: str) -> bool:
    parts = urlsplit(value)
    if parts.scheme == "unix":
        return bool(parts.path)
    return parts.scheme in ("redis", "rediss") and bool(parts.hostname)


_SECTIONS = frozenset(
    {
        "coordination",
        "exchange",
        "defaults",
        "batch",
        "reference_price",
        "verification",
        "approval",
        "journal",
        "http",
        "safety",
    }
)


class SidecarConfig(_Model):
    version: Literal[1] = Field(description="Config format version; must be 1.")
    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig, description="Where orders go.")
    # `defaults` is declared before `symbols`: the symbols validator reads it.
    defaults: DefaultsConfig = Field(
        default_factory=DefaultsConfig, description="Rule fields for every symbol that does not set them."
    )
    symbols: tuple[SymbolConfig, ...] = Field(
        description="The allowlist: one rule per (category, symbol). Anything else is denied."
    )
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batch limits.")
    reference_price: ReferencePriceConfig = Field(
        default_factory=ReferencePriceConfig, description="Freshness of reference prices."
    )
    rate_limits: tuple[RateLimitConfig, ...] = Field(
        default=(),
        description="Local limits (tool/symbol/global) and Bybit budgets (exchange). "
        "Budgets not listed use Bybit's default tier at 0.8.",
    )
    verification: VerificationConfig = Field(
        default_factory=VerificationConfig, description="How sent amends are proven."
    )
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig, description="Human approval.")
    journal: JournalConfig = Field(default_factory=JournalConfig, description="The write-ahead journal.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="The Streamable HTTP transport.")
    safety: SafetyConfig = Field(default_factory=SafetyConfig, description="Automatic kill-switch trips.")
    coordination: CoordinationConfig = Field(
        default_factory=CoordinationConfig,
        description="Shared state for several sidecars on one Bybit account (default: local, in-process).",
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # A section holding only comments parses as null: treat it as "all defaults".
        if isinstance(data, dict):
            data = {k: ({} if v is None and k in _SECTIONS else v) for k, v in data.items()}
        return data

    @field_validator("symbols", mode="wrap")
    @classmethod
    def _complete_and_unique(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[SymbolConfig, ...]:
        # Checked on the raw list so these problems are reported even when an entry is invalid.
        defaults = info.data.get("defaults")  # absent if `defaults` itself failed: then skip that check
        problems: list[_Problem] = []
        if isinstance(data, (list, tuple)):
            if not data:
                problems.append(
                    ((), "empty", "list at least one symbol (an empty allowlist denies everything)")
                )
            first: dict[tuple[str, str], int] = {}
            for i, entry in enumerate(data):
                if not isinstance(entry, dict):
                    continue
                category, symbol = entry.get("category"), entry.get("symbol")
                label = f"{category} {symbol}"
                if isinstance(category, str) and isinstance(symbol, str):
                    first_index = first.setdefault((category, symbol), i)
                    if first_index != i:
                        problems.append(
                            (
                                (i, "symbol"),
                                "duplicate",
                                f"{label} is already defined at symbols.{first_index}",
                            )
                        )
                if isinstance(defaults, DefaultsConfig):
                    for name in ("max_qty", "max_notional", "price_band_bps"):
                        if entry.get(name) is None and getattr(defaults, name) is None:
                            problems.append(((i, name), "missing", "not set here and not in defaults"))
        result: tuple[SymbolConfig, ...] = _with_problems("symbols", data, handler, problems)
        return result

    @field_validator("rate_limits", mode="wrap")
    @classmethod
    def _one_budget_per_op(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> tuple[RateLimitConfig, ...]:
        problems: list[_Problem] = []
        if isinstance(data, (list, tuple)):
            first: dict[tuple[str, str], int] = {}
            for i, entry in enumerate(data):
                if not isinstance(entry, dict) or entry.get("scope") != "exchange":
                    continue
                op, category = entry.get("op"), entry.get("category")
                if isinstance(op, str) and isinstance(category, str):
                    first_index = first.setdefault((op, category), i)
                    if first_index != i:
                        problems.append(
                            (
                                (i, "op"),
                                "duplicate",
                                f"{op} {category} is already budgeted at rate_limits.{first_index}",
                            )
                        )
        result: tuple[RateLimitConfig, ...] = _with_problems("rate_limits", data, handler, problems)
        return result

    def to_policy(self, version: str | None = None) -> Policy:
        """The frozen core `Policy` (see module function `to_policy`)."""
        return to_policy(self, version)


# --------------------------------------------------------------------------------------------
# Compile to the core


def to_policy(config: SidecarConfig, version: str | None = None) -> Policy:
    """Compile `config` into the core's frozen `Policy`.

    Symbol rules get the `defaults` merged in. Exchange budgets not listed in `rate_limits` use
    `DEFAULT_EXCHANGE_LIMITS_PER_S` at 0.8. `Policy.version` is `version`, else `policy_hash(config)`.
    """
    d = config.defaults
    rules: dict[tuple[Category, str], SymbolRule] = {}
    for s in config.symbols:
        max_qty = s.max_qty if s.max_qty is not None else d.max_qty
        max_notional = s.max_notional if s.max_notional is not None else d.max_notional
        band = s.price_band_bps if s.price_band_bps is not None else d.price_band_bps
        # The model validator guarantees these; a direct construction bypassing it must not pass.
        if max_qty is None or max_notional is None or band is None:
            raise ValueError(f"symbol {s.category} {s.symbol} has no max_qty/max_notional/price_band_bps")
        rules[(s.category, s.symbol)] = SymbolRule(
            category=s.category,
            symbol=s.symbol,
            max_qty=max_qty,
            max_notional=max_notional,
            price_band_bps=band,
            reference=s.reference or d.reference or ReferenceKind.MARK,
            order_iv_min=s.order_iv_min if s.order_iv_min is not None else d.order_iv_min,
            order_iv_max=s.order_iv_max if s.order_iv_max is not None else d.order_iv_max,
        )
    local: list[RateRule] = []
    budgets: dict[tuple[str, Category], ExchangeBudget] = {
        (op, cat): ExchangeBudget(
            op=op,
            category=cat,
            limit=limit,
            window_ms=1000,
            utilization=DEFAULT_UTILIZATION,
            guard_ms=DEFAULT_EXCHANGE_GUARD_MS,
        )
        for (op, cat), limit in DEFAULT_EXCHANGE_LIMITS_PER_S.items()
    }
    for r in config.rate_limits:
        if r.scope == "exchange":
            assert r.op is not None and r.category is not None  # checked by the model
            budgets[(r.op, r.category)] = ExchangeBudget(
                op=r.op,
                category=r.category,
                limit=r.max,
                window_ms=r.window_ms,
                utilization=r.utilization if r.utilization is not None else DEFAULT_UTILIZATION,
                guard_ms=r.guard_ms if r.guard_ms is not None else DEFAULT_EXCHANGE_GUARD_MS,
            )
        else:
            local.append(RateRule(scope=RateScope(r.scope), max=r.max, window_ms=r.window_ms))
    return Policy(
        symbols=MappingProxyType(rules),
        batch_max_orders=config.batch.max_orders,
        batch_mode=config.batch.mode,
        batch_max_notional=config.batch.max_notional,
        reference_max_age_ms=config.reference_price.max_age_ms,
        rate_rules=tuple(local),
        exchange_budgets=tuple(budgets.values()),
        approval_above_notional=config.approval.above_notional,
        version=version if version is not None else policy_hash(config),
    )


def policy_hash(config: SidecarConfig) -> str:
    """First 12 hex digits of the SHA-256 of the config as canonical JSON (sorted keys)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML silently keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: let the normal constructor report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=True))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path) -> SidecarConfig:
    """Read, parse and validate the YAML config at `path`.

    Raises:
        ConfigError: with every problem found (unreadable file, YAML syntax, unknown keys, bad
            values, cross-field rules), one line each.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, [f"{name}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, [f"{name}: cannot read: {exc}"]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506  # _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(name, [_yaml_problem(name, exc)]) from None
    if data is None:
        raise ConfigError(name, [f"{name}: the file is empty; expected a mapping starting with `version: 1`"])
    if not isinstance(data, dict):
        raise ConfigError(
            name, [f"{name}: the top level must be a mapping of keys, got {type(data).__name__}"]
        )
    try:
        config = SidecarConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(name, [_problem_line(name, err, data) for err in exc.errors()]) from None
    return resolve_paths(config, Path(path).resolve().parent)


def resolve_paths(config: SidecarConfig, base_dir: Path) -> SidecarConfig:
    """`config` with every relative path made absolute against `base_dir` (the config file's
    directory) and `~` expanded: a server started by an MCP host from `/` or the user's home and
    the operator's commands run from anywhere must meet on the same journal file."""
    journal = Path(config.journal.path).expanduser()
    if not journal.is_absolute():
        journal = base_dir / journal
    resolved = str(journal.resolve())
    if resolved == config.journal.path:
        return config
    return config.model_copy(update={"journal": config.journal.model_copy(update={"path": resolved})})


def _yaml_problem(name: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return f"{name}: line {mark.line + 1}, column {mark.column + 1}: YAML error: {what}{context}"
    return f"{name}: YAML error: {exc}"


def _problem_line(name: str, err: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    where = ".".join(str(part) for part in loc) or "(top level)"
    kind = err.get("type", "")
    message = str(err.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        message = "unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing":
        message = "required key is missing" if message == "Field required" else message
    symbol = _symbol_hint(loc, data)
    return f"{name}: {where}: {message}{symbol}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at `loc` (for 'unknown key' messages)."""
    model: Any = SidecarConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = (
            model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _symbol_hint(loc: tuple[Any, ...], data: Mapping[str, Any]) -> str:
    if len(loc) < 2 or loc[0] != "symbols" or not isinstance(loc[1], int):
        return ""
    symbols = data.get("symbols")
    if (
        not isinstance(symbols, list)
        or not 0 <= loc[1] < len(symbols)
        or not isinstance(symbols[loc[1]], dict)
    ):
        return ""
    entry = symbols[loc[1]]
    label = " ".join(str(entry[k]) for k in ("category", "symbol") if isinstance(entry.get(k), str))
    return f" [{label}]" if label else ""


# --------------------------------------------------------------------------------------------
# Credentials


class Credentials(_Model):
    """Bybit API credentials from the environment. Their repr and str never show the values."""

    api_key: SecretStr
    api_secret: SecretStr

    def __repr__(self) -> str:
        return "Credentials(api_key='**********', api_secret='**********')"

    __str__ = __repr__


def load_credentials(env: Mapping[str, str]) -> Credentials | None:
    """Credentials from `BYBIT_API_KEY` and `BYBIT_API_SECRET` in `env`; None if neither is set.

    Raises:
        ConfigError: only one of the two is set (a half-configured account is a mistake).
    """
    key = env.get(API_KEY_ENV) or ""
    secret = env.get(API_SECRET_ENV) or ""
    if not key and not secret:
        return None
    if not key or not secret:
        missing, present = (API_KEY_ENV, API_SECRET_ENV) if not key else (API_SECRET_ENV, API_KEY_ENV)
        raise ConfigError("environment", [f"environment: {missing}: not set (but {present} is)"])
    return Credentials(api_key=SecretStr(key), api_secret=SecretStr(secret))


# --------------------------------------------------------------------------------------------
# Summary for `sidecar check-config`


def summarize(config: SidecarConfig) -> str:
    """A short human summary of a valid config (what `sidecar check-config` prints)."""
    policy = config.to_policy()
    ex = config.exchange
    where = {
        "sim": "in-process emulator",
        "testnet": ex.rest_url or "Bybit testnet",
        "mainnet": ex.rest_url or "Bybit mainnet",
        "custom": f"{ex.rest_url} + {ex.ws_url}",
    }[ex.env]
    lines = [
        f"config OK (policy version {policy.version})",
        f"exchange      : {ex.env} ({where}), recv window {ex.recv_window_ms} ms",
        f"symbols       : {len(policy.symbols)}",
    ]
    for rule in policy.symbols.values():
        lines.append(
            f"  {rule.category.value:<7} {rule.symbol:<12} band ±{rule.price_band_bps} bps "
            f"on {rule.reference.value}, max qty {rule.max_qty}, max notional {rule.max_notional}"
        )
    cap = f", batch notional ≤ {config.batch.max_notional}" if config.batch.max_notional is not None else ""
    lines.append(f"batch         : ≤ {config.batch.max_orders} orders, {config.batch.mode.value}{cap}")
    lines.append(f"reference     : max age {config.reference_price.max_age_ms} ms")
    local = "; ".join(f"{r.scope.value} {r.max}/{_seconds(r.window_ms)}" for r in policy.rate_rules) or "none"
    lines.append(f"rate limits   : {local}")
    for op in ("order.amend-batch", "order.amend"):
        budgets = ", ".join(
            f"{b.category.value} {b.local_max}/{_seconds(b.admission_window_ms)} "
            f"({b.utilization} × {b.limit}/{_seconds(b.window_ms)}, +{b.guard_ms} ms guard)"
            for b in policy.exchange_budgets
            if b.op == op
        )
        lines.append(f"{'bybit budget':<14}: {op}: {budgets}")
    v = config.verification
    lines.append(
        f"verification  : timeout {v.timeout_ms} ms, ack timeout {v.ack_timeout_ms} ms, "
        f"REST fallback {'on' if v.rest_fallback else 'off'}"
    )
    above = config.approval.above_notional
    lines.append(f"approval      : {'above notional ' + str(above) if above is not None else 'off'}")
    days = config.journal.retain_days
    kept = "kept forever" if days is None else f"settled requests kept {days} days"
    lines.append(f"journal       : {config.journal.path} (synchronous {config.journal.synchronous}, {kept})")
    co = config.coordination
    if co.backend == "local":
        lines.append("coordination  : local (in-process; one sidecar per Bybit account)")
    else:
        # The URL itself is never printed (it may hold a password when it comes from url_env).
        source = f"url from ${co.url_env}" if co.url_env is not None else "url in the file"
        lines.append(
            f"coordination  : redis, namespace {co.namespace}, {source}, timeout {co.decision_timeout_ms} ms"
        )
    return "\n".join(lines)


def _seconds(window_ms: int) -> str:
    return f"{Decimal(window_ms) / 1000:f}s"
