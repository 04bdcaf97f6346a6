"""HMAC-SHA256 signing for Bybit V5: the WebSocket `auth` args and the REST request headers.

Pure: secrets and timestamps come in as arguments. This module must not read the environment or
the clock, and nothing it returns may be logged (signatures are as sensitive as the secret for the
length of the recv window).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote

__all__ = [
    "PRE_ENCODED_PARAMS",
    "canonical_query",
    "rest_headers",
    "rest_sign",
    "ws_auth_args",
    "ws_auth_signature",
]


def _hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def ws_auth_signature(api_secret: str, expires_ms: int) -> str:
    """Signature of the literal `GET/realtime{expires}` (reference §1.3)."""
    return _hmac_hex(api_secret, f"GET/realtime{expires_ms}")


def ws_auth_args(api_key: str, api_secret: str, expires_ms: int) -> list[str | int]:
    """`args` of the WS `auth` op: `[api_key, expires_ms, signature]`; expires is an int (as pybit)."""
    return [api_key, expires_ms, ws_auth_signature(api_secret, expires_ms)]


def rest_sign(api_secret: str, ts_ms: int, api_key: str, recv_window_ms: int, payload: str) -> str:
    """Signature of `timestamp + api_key + recv_window + payload` (query string or raw JSON body)."""
    return _hmac_hex(api_secret, f"{ts_ms}{api_key}{recv_window_ms}{payload}")


def rest_headers(
    api_key: str, api_secret: str, ts_ms: int, recv_window_ms: int, payload: str
) -> dict[str, str]:
    """The five auth headers of a signed REST call; `payload` must be byte-identical to what is sent."""
    return {
        "X-BAPI-API-KEY": api_key,
        "X-BAPI-TIMESTAMP": str(ts_ms),
        "X-BAPI-SIGN": rest_sign(api_secret, ts_ms, api_key, recv_window_ms, payload),
        "X-BAPI-RECV-WINDOW": str(recv_window_ms),
        "X-BAPI-SIGN-TYPE": "2",
    }


# Values Bybit hands out already URL-encoded (`nextPageCursor`: `…%3A…%2C…`): sent back verbatim.
PRE_ENCODED_PARAMS: frozenset[str] = frozenset({"cursor"})


def canonical_query(params: Mapping[str, str | None]) -> str:
    """`k=v&...` sorted by key, `None`s dropped: the string both signed and sent (as pybit does).

    Values are percent-encoded; Bybit symbols and ids ([A-Za-z0-9_-]) pass through unchanged. A
    cursor is already URL-encoded by Bybit and goes back as it came (encoding its `%` again would
    send a different cursor, `%3A` → `%253A`); only characters that are not URL-safe are escaped.
    """
    return "&".join(
        f"{quote(k, safe='')}={quote(v, safe='%' if k in PRE_ENCODED_PARAMS else '')}"
        for k, v in sorted(params.items())
        if v is not None
    )
