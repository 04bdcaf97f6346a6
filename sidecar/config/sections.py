"""The config's sections (`exchange`, `defaults`, `symbols`, `batch`, `reference_price`,
`rate_limits`, `verification`, `approval`, `safety`, `journal`, `http`, `coordination`): one
pydantic model each, every key documented where it is defined (``Field(description=...)``). Units
live in key names. It must not decide anything about orders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sidecar.config.values import (
    BandBps,
    Count,
    Fraction,
    Model,
    PositiveDecimal,
    Problem,
    Text,
    exact_decimal,
    with_problems,
)
from sidecar.core.numbers import parse_positive_decimal
from sidecar.core.types import BatchMode, Category, ReferenceKind
from sidecar.errors import ConfigError

# redis-py's defaults took 1.9 s to fail on a dead server; a decision waits this long at most.
DEFAULT_COORDINATION_TIMEOUT_MS = 100


class ExchangeConfig(Model):
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
        problems: list[Problem] = []
        if isinstance(data, dict) and data.get("env") == "custom":
            problems = [
                ((name,), "missing", f"required when env is custom ({hint})")
                for name, hint in (("rest_url", "https://..."), ("ws_url", "wss://..."))
                if data.get(name) is None
            ]
        result: ExchangeConfig = with_problems("ExchangeConfig", data, handler, problems)
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


class DefaultsConfig(Model):
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


class SymbolConfig(Model):
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


class BatchConfig(Model):
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


class ReferencePriceConfig(Model):
    max_age_ms: int = Field(
        default=2000,
        strict=True,
        ge=1,
        le=60_000,
        description="A reference price older than this (ms) is stale: items are denied (fail closed).",
    )


class RateLimitConfig(Model):
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
        problems: list[Problem] = []
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
        result: RateLimitConfig = with_problems("RateLimitConfig", data, handler, problems)
        return result


class VerificationConfig(Model):
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


class ApprovalConfig(Model):
    above_notional: PositiveDecimal | None = Field(
        default=None,
        description="Ask the user (MCP elicitation) before sending an item above this notional; unset: no.",
    )


class SafetyConfig(Model):
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


class JournalConfig(Model):
    path: Annotated[Text, AfterValidator(os.path.expanduser)] = Field(
        default="var/journal.sqlite3",
        description="SQLite journal file (WAL mode). A relative path is relative to the config file's "
        "directory, never to the working directory; a leading ~ is the running user's home directory.",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite synchronous: FULL survives power loss and kill -9; NORMAL survives kill -9 only.",
    )
    retain_days: Annotated[Decimal, BeforeValidator(exact_decimal), Field(le=36_500)] | None = Field(
        default=Decimal(30),
        description="Settled requests older than this many days are pruned by the running server "
        '(a fraction is allowed: "0.5"); null keeps everything. Unsettled requests are never pruned.',
    )


class HttpConfig(Model):
    token_env: str = Field(
        default="SIDECAR_HTTP_TOKEN",
        strict=True,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the bearer token for the HTTP transport.",
    )
    allowed_origins: tuple[Text, ...] = Field(
        default=(), description="Browser Origins allowed on the HTTP transport (empty: none)."
    )


class CoordinationConfig(Model):
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
        problems: list[Problem] = []
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
        result: CoordinationConfig = with_problems("CoordinationConfig", data, handler, problems)
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
