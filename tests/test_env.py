"""sidecar/env.py: the one reader of the environment, and Credentials that never show themselves."""

from __future__ import annotations

import pytest

from sidecar.env import Credentials, Environment, emulator_credentials
from sidecar.errors import ConfigError, ExitCode


def test_credentials_from_the_environment_never_show_the_secret() -> None:
    assert Environment({}).credentials() is None
    assert Environment({"BYBIT_API_KEY": "", "BYBIT_API_SECRET": ""}).credentials() is None
    creds = Environment({"BYBIT_API_KEY": "key-123", "BYBIT_API_SECRET": "s3cr3t-value"}).credentials()
    assert creds == Credentials("key-123", "s3cr3t-value")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "s3cr3t-value" not in text and "key-123" not in text
    with pytest.raises(ConfigError) as info:
        Environment({"BYBIT_API_KEY": "key-123"}).credentials()
    assert info.value.problems == ["environment: BYBIT_API_SECRET: not set (but BYBIT_API_KEY is)"]
    assert info.value.exit_code == ExitCode.USAGE
    assert "key-123" not in str(info.value)


def test_a_snapshot_is_read_only_and_empty_values_count_as_unset() -> None:
    source = {"SIDECAR_LOG_LEVEL": "debug", "SIDECAR_LOG_FORMAT": "", "USER": "ana"}
    env = Environment(source)
    source["SIDECAR_LOG_LEVEL"] = "error"  # the snapshot does not follow its source
    assert (env.log_level, env.log_format, env.user, env.runtime_dir) == ("debug", None, "ana", None)
    assert Environment({}).user == "operator"
    with pytest.raises(TypeError):
        env.values["USER"] = "mallory"  # type: ignore[index]


def test_signing_credentials_are_the_environments_or_for_an_emulator_its_test_key() -> None:
    keys = {"BYBIT_API_KEY": "key-123", "BYBIT_API_SECRET": "s3cr3t-value"}
    assert Environment(keys).signing_credentials("testnet", None).api_key == "key-123"
    test_key = emulator_credentials()
    assert Environment({}).signing_credentials("sim", None) == test_key
    assert Environment({}).signing_credentials("testnet", "http://127.0.0.1:9000") == test_key  # an emulator
    for venue in ("testnet", "mainnet", "custom"):
        with pytest.raises(ConfigError, match=f"exchange.env is {venue}: set BYBIT_API_KEY"):
            Environment({}).signing_credentials(venue, None)
