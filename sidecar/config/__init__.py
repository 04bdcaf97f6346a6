"""The YAML config: pydantic models, `load_config()`, and the compile step to the core `Policy`.

Every key is documented where it is defined (``Field(description=...)``); docs/configuration.md
is the operator's version. Units live in key names (``_ms``, ``_s``, ``_bps``). Decimals are written
as strings (``"0.5"``): a YAML float is refused because it is binary and loses precision. Unknown
keys are errors. `load_config` reports *every* problem at once, one line each, as
``file: dotted.path: message``. Credentials are not part of the YAML (`sidecar.env` reads them).

The parts: `values` (value types, problem reporting), `sections` (one model per section), `model`
(`SidecarConfig`), `load` (reading a file), `policy` (to the core `Policy`), `summary` (what
`check-config` prints). The public names are importable from `sidecar.config`.

This package must not decide anything about orders (core/validation.py does) and must not be
imported by `sidecar/core/` (the core never sees pydantic: it gets a frozen `Policy`).
"""

from sidecar.config.load import load_config, resolve_paths
from sidecar.config.model import SidecarConfig
from sidecar.config.policy import policy_hash, to_policy
from sidecar.config.sections import (
    DEFAULT_COORDINATION_TIMEOUT_MS,
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
from sidecar.config.summary import summarize
from sidecar.core.policy import DEFAULT_EXCHANGE_GUARD_MS, DEFAULT_UTILIZATION
from sidecar.errors import ConfigError

__all__ = [
    "DEFAULT_COORDINATION_TIMEOUT_MS",
    "DEFAULT_EXCHANGE_GUARD_MS",
    "DEFAULT_UTILIZATION",
    "ApprovalConfig",
    "BatchConfig",
    "ConfigError",
    "CoordinationConfig",
    "DefaultsConfig",
    "ExchangeConfig",
    "HttpConfig",
    "JournalConfig",
    "RateLimitConfig",
    "ReferencePriceConfig",
    "SafetyConfig",
    "SidecarConfig",
    "SymbolConfig",
    "VerificationConfig",
    "load_config",
    "policy_hash",
    "resolve_paths",
    "summarize",
    "to_policy",
]
