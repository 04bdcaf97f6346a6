"""`SidecarConfig`: the whole YAML file, its sections and the checks that span them (complete and
unique symbols, one budget per op). It must not read files (`load.py` does).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from sidecar.config.policy import to_policy
from sidecar.config.sections import (
    ApprovalConfig,
    BatchConfig,
    CoordinationConfig,
    DefaultsConfig,
    ExchangeConfig,
    HttpConfig,
    JournalConfig,
    RateLimitConfig,
    ReferencePriceConfig,
    SafetyConfig,
    SymbolConfig,
    VerificationConfig,
)
from sidecar.config.values import (
    Model,
    Problem,
    with_problems,
)
from sidecar.core.policy import (
    Policy,
)

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


class SidecarConfig(Model):
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
        problems: list[Problem] = []
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
        result: tuple[SymbolConfig, ...] = with_problems("symbols", data, handler, problems)
        return result

    @field_validator("rate_limits", mode="wrap")
    @classmethod
    def _one_budget_per_op(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> tuple[RateLimitConfig, ...]:
        problems: list[Problem] = []
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
        result: tuple[RateLimitConfig, ...] = with_problems("rate_limits", data, handler, problems)
        return result

    def to_policy(self, version: str | None = None) -> Policy:
        """The frozen core `Policy` (see module function `to_policy`)."""
        return to_policy(self, version)
