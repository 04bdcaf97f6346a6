"""structlog set-up: JSON lines to stderr (stdout belongs to MCP), and secret redaction.

Event names are `component.verb` (`amend.sent`, `ws_trade.reconnecting`) with stable keys
(`request_id`, `req_id`, `symbol`, `order_id`, `reason`, `ret_code`, `latency_ms`).
Redaction is the second line of defence: code never passes secrets to a logger in the first place.
This module must not read config files.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

__all__ = ["REDACTED", "configure_logging", "contains_secret", "redact_secrets", "register_secret", "scrub"]

REDACTED = "[redacted]"

# Keys whose values are never logged, whatever they hold.
SECRET_KEY_RE = re.compile(r"(secret|api_?key|token|signature|sign|password|authorization)", re.I)
# Exact secret values known at run time (API key/secret, HTTP bearer token), scrubbed from any string.
_secret_values: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is scrubbed from every log line (values shorter than 4 ignored)."""
    if value and len(value) >= 4:
        _secret_values.add(value)


def contains_secret(text: str) -> bool:
    """True if `text` holds one of the registered secret values (the one secret screen by value)."""
    return any(secret in text for secret in _secret_values)


def scrub(value: Any) -> Any:
    """A copy with secret-looking keys blanked and known secret values replaced (recursively)."""
    if isinstance(value, str):
        for secret in _secret_values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY_RE.search(str(k)) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank secret-looking keys and scrub known secret values."""
    for key in list(event_dict):
        if SECRET_KEY_RE.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True, extra: Iterable[Any] = ()) -> None:
    """Send structlog and stdlib logging to stderr as JSON lines, with redaction last before rendering."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    # Third-party chatter (uvicorn access lines, websockets frames) stays out unless asked for.
    for noisy in ("websockets", "aiohttp.access", "uvicorn.access", "mcp", "httpx2"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *extra,
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
