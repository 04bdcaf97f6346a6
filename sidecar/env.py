"""The one place that reads the process environment, and the `Credentials` it yields.

`Environment.from_process()` takes one snapshot of `os.environ` (the CLI does, once per command);
every other module gets the values it needs passed in: the API key and secret (`credentials()`),
the log settings, the HTTP bearer token (`value(config.http.token_env)`), the variable
`coordination.url_env` names (`values`), the registry directory (`runtime_dir`), who runs a command
(`user`). Tests build an `Environment` from a dict instead of editing `os.environ`.

This module must not log, print or store a value it reads (keys, secrets, tokens, URLs with
passwords); `Credentials` never shows them in its repr. It decides nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sidecar.errors import ConfigError

__all__ = [
    "API_KEY_ENV",
    "API_SECRET_ENV",
    "LOG_FORMAT_ENV",
    "LOG_LEVEL_ENV",
    "Credentials",
    "Environment",
    "emulator_credentials",
]

API_KEY_ENV = "BYBIT_API_KEY"
API_SECRET_ENV = "BYBIT_API_SECRET"  # noqa: S105 - the variable's name, not a secret
LOG_LEVEL_ENV = "SIDECAR_LOG_LEVEL"
LOG_FORMAT_ENV = "SIDECAR_LOG_FORMAT"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A Bybit API key and secret. The repr never shows them."""

    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return "Credentials(api_key='[redacted]', api_secret='[redacted]')"

    __str__ = __repr__


def emulator_credentials() -> Credentials:
    """The emulator's well-known test key: for sim mode, or a run against an emulator's URL with no
    keys set. The only way the product reaches `sidecar.emulator`'s keys, and only when called."""
    from sidecar.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET  # noqa: PLC0415 - sim only

    return Credentials(DEFAULT_API_KEY, DEFAULT_API_SECRET)


@dataclass(frozen=True, slots=True)
class Environment:
    """A read-only snapshot of the environment variables the sidecar uses."""

    values: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    @classmethod
    def from_process(cls) -> Environment:
        """The process's environment as it is now (the only read of `os.environ` in the sidecar)."""
        return cls(os.environ)

    def value(self, name: str) -> str | None:
        """The variable's value; None when unset or empty (an empty value is never a usable one)."""
        return self.values.get(name) or None

    def credentials(self) -> Credentials | None:
        """`BYBIT_API_KEY` and `BYBIT_API_SECRET`; None when neither is set.

        Raises:
            ConfigError: only one of the two is set (a half-configured account is a mistake).
        """
        key, secret = self.value(API_KEY_ENV), self.value(API_SECRET_ENV)
        if key is None and secret is None:
            return None
        if key is None or secret is None:
            missing, present = (API_KEY_ENV, API_SECRET_ENV) if key is None else (API_SECRET_ENV, API_KEY_ENV)
            raise ConfigError("environment", [f"environment: {missing}: not set (but {present} is)"])
        return Credentials(key, secret)

    def signing_credentials(self, venue: str, exchange_url: str | None) -> Credentials:
        """The keys to sign with on `venue` (exchange.env): the environment's; with none, the
        emulator's test key, for `sim` or an emulator's URL (`--exchange-url`) only. The caller
        registers them with the log and journal scrubber (sidecar.logs.register_secret).

        Raises:
            ConfigError: a real venue (testnet, mainnet, custom, no `--exchange-url`) and no keys,
                or only one of the two set.
        """
        keys = self.credentials()
        if keys is None and venue in {"testnet", "mainnet", "custom"} and exchange_url is None:
            raise ConfigError(
                "<environment>",
                [f"exchange.env is {venue}: set {API_KEY_ENV} and {API_SECRET_ENV} in the environment"],
            )
        return keys if keys is not None else emulator_credentials()

    @property
    def log_level(self) -> str | None:
        return self.value(LOG_LEVEL_ENV)

    @property
    def log_format(self) -> str | None:
        return self.value(LOG_FORMAT_ENV)

    @property
    def runtime_dir(self) -> str | None:
        """`XDG_RUNTIME_DIR`: where this user's private runtime files go (the host registry)."""
        return self.value("XDG_RUNTIME_DIR")

    @property
    def user(self) -> str:
        """Who runs this command, for the journal's `who` of an operator's change."""
        return self.value("USER") or "operator"
