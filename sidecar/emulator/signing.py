"""Signature checks for the emulator: WebSocket auth and signed REST requests.

Its one job is to compute and compare Bybit V5 HMAC-SHA256 signatures (lowercase hex). It must not
import anything from the sidecar: the emulator is an independent witness of the wire format.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["rest_payload", "sign_hex", "signature_ok", "ws_auth_payload"]


def sign_hex(secret: str, payload: str) -> str:
    """HMAC-SHA256 of `payload` keyed with `secret`, as lowercase hex."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def ws_auth_payload(expires: int | str) -> str:
    """The string signed for WebSocket `auth`: `GET/realtime` followed by the expiry in ms."""
    return f"GET/realtime{expires}"


def rest_payload(timestamp: str, api_key: str, recv_window: str, query_or_body: str) -> str:
    """The string signed for REST: timestamp + key + recv window + raw query string (or body)."""
    return f"{timestamp}{api_key}{recv_window}{query_or_body}"


def signature_ok(secret: str, payload: str, signature: object) -> bool:
    """Constant-time check of a hex signature; anything that is not a string fails."""
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign_hex(secret, payload), signature.lower())
