"""Environment → URLs."""

from __future__ import annotations

import pytest

from sidecar.bybit.endpoints import mainnet_hosts, resolve_endpoints
from sidecar.core.types import Category


def test_mainnet() -> None:
    e = resolve_endpoints("mainnet")
    assert e.rest_url == "https://api.bybit.com"
    assert e.trade_ws_url == "wss://stream.bybit.com/v5/trade"
    assert e.private_ws_url == "wss://stream.bybit.com/v5/private"
    assert e.public_ws_url(Category.LINEAR) == "wss://stream.bybit.com/v5/public/linear"
    assert e.public_ws_url(Category.SPOT) == "wss://stream.bybit.com/v5/public/spot"


def test_testnet() -> None:
    e = resolve_endpoints("testnet")
    assert e.rest_url == "https://api-testnet.bybit.com"
    assert e.trade_ws_url == "wss://stream-testnet.bybit.com/v5/trade"


def test_exchange_url_points_everything_at_one_host() -> None:
    e = resolve_endpoints("sim", exchange_url="http://127.0.0.1:9000/")
    assert e.rest_url == "http://127.0.0.1:9000"
    assert e.trade_ws_url == "ws://127.0.0.1:9000/v5/trade"
    assert e.private_ws_url == "ws://127.0.0.1:9000/v5/private"
    assert e.public_ws_url(Category.LINEAR) == "ws://127.0.0.1:9000/v5/public/linear"
    # It wins for any env, and https maps to wss.
    e2 = resolve_endpoints("mainnet", exchange_url="https://gw.example:8443")
    assert e2.trade_ws_url == "wss://gw.example:8443/v5/trade"
    assert e2.rest_url == "https://gw.example:8443"


def test_custom_and_explicit_urls() -> None:
    e = resolve_endpoints("custom", rest_url="https://api.bybit.tr", ws_url="wss://stream.bybit.tr/v5")
    assert e.rest_url == "https://api.bybit.tr"
    assert e.private_ws_url == "wss://stream.bybit.tr/v5/private"
    e2 = resolve_endpoints("testnet", rest_url="https://api-testnet.manepa.jp")
    assert e2.rest_url == "https://api-testnet.manepa.jp"
    assert e2.trade_ws_url == "wss://stream-testnet.bybit.com/v5/trade"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env": "sim"}, "needs exchange_url"),
        ({"env": "custom", "rest_url": "https://x"}, "needs both"),
        ({"env": "demo"}, "unknown exchange env"),
        ({"env": "custom", "rest_url": "ftp://x", "ws_url": "wss://y"}, "rest_url"),
        ({"env": "custom", "rest_url": "https://x", "ws_url": "https://y"}, "ws_url"),
        ({"env": "sim", "exchange_url": "ws://127.0.0.1:1"}, "exchange_url"),
    ],
)
def test_bad_configs(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_endpoints(**kwargs)


@pytest.mark.parametrize(
    ("env", "urls", "live"),
    [
        ("mainnet", {}, ("api.bybit.com", "stream.bybit.com")),
        ("testnet", {}, ()),
        (
            "custom",
            {"rest_url": "https://api.bybit.tr", "ws_url": "wss://stream.bybit.tr"},
            ("api.bybit.tr", "stream.bybit.tr"),
        ),
        (
            "custom",
            {"rest_url": "https://api.bytick.com", "ws_url": "wss://stream-testnet.bybit.com"},
            ("api.bytick.com",),
        ),
        (
            "custom",
            {"rest_url": "https://api-testnet.manepa.jp", "ws_url": "wss://stream-testnet.bybit.com"},
            (),
        ),
        # Demo trading is a live-site account (not testnet): refused with the rest.
        (
            "custom",
            {"rest_url": "https://api-demo.bybit.com", "ws_url": "wss://stream-demo.bybit.com"},
            ("api-demo.bybit.com", "stream-demo.bybit.com"),
        ),
        ("sim", {"exchange_url": "http://127.0.0.1:9000"}, ()),
        ("mainnet", {"exchange_url": "http://127.0.0.1:9000"}, ()),
        ("custom", {"rest_url": "https://notbybit.com", "ws_url": "wss://bybit.com.example.org"}, ()),
    ],
)
def test_mainnet_hosts_names_every_live_bybit_host(
    env: str, urls: dict[str, str], live: tuple[str, ...]
) -> None:
    assert mainnet_hosts(resolve_endpoints(env, **urls)) == live
