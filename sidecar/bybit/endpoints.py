"""Which URLs the sidecar talks to, per environment.

`resolve_endpoints` turns the config's `exchange.env` (+ optional URLs) into one `Endpoints`
value. Pure: no I/O, no environment variables.

* mainnet: https://api.bybit.com + wss://stream.bybit.com
* testnet: https://api-testnet.bybit.com + wss://stream-testnet.bybit.com
* custom:  the given `rest_url` and `ws_url` (ws_url is the stream host, e.g. wss://stream.bybit.tr)
* sim:     needs `exchange_url` (the in-process emulator's base URL)
* `exchange_url` (CLI `--exchange-url`) wins for every env: REST = that URL, WebSockets = the same
  host with ws:// (https -> wss), the layout the emulator serves on one port.

`mainnet_hosts` names the endpoints that reach Bybit with real money (any Bybit host that is not a
testnet one), so a command that places orders (`sidecar probe --allow-orders`) can refuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sidecar.core.types import Category

__all__ = ["ENVIRONMENTS", "Endpoints", "mainnet_hosts", "resolve_endpoints"]

ENVIRONMENTS: tuple[str, ...] = ("sim", "testnet", "mainnet", "custom")

_KNOWN: dict[str, tuple[str, str]] = {
    "mainnet": ("https://api.bybit.com", "wss://stream.bybit.com"),
    "testnet": ("https://api-testnet.bybit.com", "wss://stream-testnet.bybit.com"),
}


# Bybit's own domains, global and regional (reference §1.1, §4.1); `bybick.com` as D-RL spells it.
_BYBIT_DOMAINS: tuple[str, ...] = (
    "bybit.com",
    "bytick.com",
    "bybick.com",
    "bybit.nl",
    "bybit.tr",
    "bybit.kz",
    "bybit.eu",
    "bybit.ae",
    "bybit.id",
    "bybitgeorgia.ge",
    "manepa.jp",
)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """REST base URL and the three WebSocket URLs (public ones per category)."""

    rest_url: str
    trade_ws_url: str
    private_ws_url: str
    public_ws_base: str

    def public_ws_url(self, category: Category) -> str:
        return f"{self.public_ws_base}/{category.value}"

    def urls(self) -> tuple[str, ...]:
        return (self.rest_url, self.trade_ws_url, self.private_ws_url, self.public_ws_base)


def _is_live_bybit_host(host: str) -> bool:
    """A host of Bybit's that is not a testnet one (mainnet, regional sites, demo trading)."""
    host = host.lower().rstrip(".")
    for domain in _BYBIT_DOMAINS:
        if host == domain or host.endswith("." + domain):
            return "testnet" not in host[: -len(domain)]
    return False


def mainnet_hosts(endpoints: Endpoints) -> tuple[str, ...]:
    """The hosts among `endpoints` that are Bybit's live (non-testnet) ones; empty for testnet, an
    emulator or any other custom URL."""
    hosts = (urlsplit(url).hostname or "" for url in endpoints.urls())
    return tuple(dict.fromkeys(h for h in hosts if _is_live_bybit_host(h)))


def _strip(url: str) -> str:
    return url.rstrip("/")


def _check(url: str, schemes: tuple[str, ...], what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"{what} must be an absolute {'/'.join(schemes)} URL, got {url!r}")
    return _strip(url)


def _from_hosts(rest_url: str, ws_url: str) -> Endpoints:
    rest = _check(rest_url, ("http", "https"), "rest_url")
    ws = _check(ws_url, ("ws", "wss"), "ws_url")
    # Accept a ws_url given with the /v5 prefix as well as a bare host.
    if ws.endswith("/v5"):
        ws = ws[: -len("/v5")]
    return Endpoints(
        rest_url=rest,
        trade_ws_url=f"{ws}/v5/trade",
        private_ws_url=f"{ws}/v5/private",
        public_ws_base=f"{ws}/v5/public",
    )


def resolve_endpoints(
    env: str,
    rest_url: str | None = None,
    ws_url: str | None = None,
    exchange_url: str | None = None,
) -> Endpoints:
    """The endpoints for `env`; raises ValueError for an unknown env or missing/bad URLs."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown exchange env {env!r}; expected one of {', '.join(ENVIRONMENTS)}")
    if exchange_url is not None:
        base = _check(exchange_url, ("http", "https"), "exchange_url")
        ws_base = "wss" + base[len("https") :] if base.startswith("https") else "ws" + base[len("http") :]
        return _from_hosts(base, ws_base)
    if env == "sim":
        raise ValueError("exchange env 'sim' needs exchange_url (the emulator's base URL)")
    if env == "custom":
        if not rest_url or not ws_url:
            raise ValueError("exchange env 'custom' needs both rest_url and ws_url")
        return _from_hosts(rest_url, ws_url)
    default_rest, default_ws = _KNOWN[env]
    # Explicit URLs (e.g. a regional host) win over the environment's defaults.
    return _from_hosts(rest_url or default_rest, ws_url or default_ws)
