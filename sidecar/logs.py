"""Logging set-up: one format on stderr (stdout belongs to MCP), secret screening, and a log-line limiter.

Every record, structlog's and the standard library's (the emulator, uvicorn, aiohttp, the MCP SDK),
goes through the same processors and is rendered the same way: JSON lines by default, or a console
format for humans (`--log-format console`). Event names are `component.verb` (`amend.sent`,
`ws_trade.reconnecting`) with stable keys (`request_id`, `req_id`, `symbol`, `order_id`, `reason`,
`ret_code`, `latency_ms`).

Secret screening is the one place secrets are scrubbed from text: the log processor runs it last before
rendering (after exception formatting, so tracebacks are scrubbed too), and the exchange adapters run
`scrub` on every frame they receive, so an exchange message that echoes the key (Bybit's 10004) never
reaches the agent, the journal or a log. Code never passes secrets to a logger in the first place.

This module must not read config files or import other sidecar modules (the emulator's process uses it).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections import OrderedDict
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = [
    "CURRENT_STDERR",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "REDACTED",
    "SECRET_KEY_RE",
    "SECRET_KEY_WORDS",
    "LogLimiter",
    "configure_logging",
    "contains_secret",
    "redact_secrets",
    "register_secret",
    "scrub",
    "scrub_data",
]

REDACTED = "[redacted]"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")

# Keys whose values are never logged, whatever they hold.
# Key names that look like secrets (their values are blanked), as words and as one pattern.
SECRET_KEY_WORDS = ("secret", "api_key", "apikey", "token", "signature", "sign", "password", "authorization")
SECRET_KEY_RE = re.compile("(" + "|".join(SECRET_KEY_WORDS) + ")", re.I)
# Exact secret values known at run time (API key/secret, HTTP bearer token), scrubbed from any string.
_secret_values: set[str] = set()
# `component.verb key=value ...`: the form the emulator's stdlib log calls use (values without spaces).
_KEY_VALUE_EVENT_RE = re.compile(r"^([a-z_]+\.[a-z_]+)((?: [a-z_]+=\S*)+)$")
# Third-party loggers that stay at WARNING or above unless asked for (uvicorn access lines, frames).
_NOISY_LOGGERS = ("websockets", "aiohttp.access", "uvicorn.access", "mcp", "httpx2")


# Shorter values are not remembered: no real key, secret or token is that short, and scrubbing a
# short string out of exchange frames could hit ordinary JSON text ("true", a price) and corrupt it.
MIN_SECRET_LEN = 8


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is scrubbed from every log line and exchange message."""
    if value and len(value) >= MIN_SECRET_LEN:
        _secret_values.add(value)


def contains_secret(text: str) -> bool:
    """True if `text` holds one of the registered secret values (the one secret screen by value)."""
    return any(secret in text for secret in _secret_values)


def scrub(value: Any) -> Any:
    """A copy with secret-looking keys blanked and known secret values replaced (recursively).

    On a string only known secret values are replaced, so a JSON text stays valid JSON; bytes (a
    binary WebSocket frame) are decoded as UTF-8 first.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
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


# Characters JSON text escapes: a secret holding one would not appear verbatim in a JSON dump.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def scrub_data(value: Any) -> Any:
    """`scrub(value)` for JSON data (str-keyed dicts, lists, strings, numbers, None), with a fast exit:
    one C-speed JSON dump of `value` is searched for the words of a secret-looking key and for the
    known secret values, and only when one may be there does the recursive `scrub` run. The same result as
    `scrub(value)` (when nothing needs scrubbing, `value` itself is returned, not a copy).

    Exact because every match `scrub` acts on appears verbatim in the dump: key patterns are plain
    letters (never escaped), and a secret with a character JSON escapes always takes `scrub`.
    """
    if any(_JSON_ESCAPED.search(secret) for secret in _secret_values):
        return scrub(value)
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON data after all: the general path
        return scrub(value)
    if _may_hold_key_word(text) or contains_secret(text):
        return scrub(value)
    return value


def _may_hold_key_word(text: str) -> bool:
    """True whenever SECRET_KEY_RE would match somewhere in `text` (sometimes when it would not):
    ~10x cheaper than the search on a 2 KB text. Case folding maps every letter re.I matches onto the
    word's own letter, except U+0130 (to "i" plus U+0307) and U+0131 (dotless i), mapped here."""
    folded = text.casefold().replace("\u0131", "i").replace("\u0307", "")
    return any(word in folded for word in SECRET_KEY_WORDS)


# Per key name, whether SECRET_KEY_RE matches it: log keys are a small fixed set, and the search
# costs ~0.5 µs a key on every line. Bounded (cleared when full): stdlib records can bring any name.
_SECRET_KEY_NAMES: dict[str, bool] = {}
_SECRET_KEY_NAMES_MAX = 1024


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank secret-looking keys and scrub known secret values."""
    names = _SECRET_KEY_NAMES
    for key in list(event_dict):
        secret_key = names.get(key)
        if secret_key is None:
            secret_key = SECRET_KEY_RE.search(key) is not None
            if len(names) >= _SECRET_KEY_NAMES_MAX:
                names.clear()
            names[key] = secret_key
        if secret_key:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = scrub(event_dict[key])
    return event_dict


def _lift_key_values(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """For stdlib records written as `component.verb k=v ...`: make the pairs fields of the record."""
    event = event_dict.get("event")
    match = _KEY_VALUE_EVENT_RE.match(event) if isinstance(event, str) else None
    if match is not None:
        event_dict["event"] = match.group(1)
        for pair in match.group(2).split():
            key, _, value = pair.partition("=")
            event_dict.setdefault(key, value)
    return event_dict


class _CurrentStderr:
    """Whatever `sys.stderr` is at the time of writing (the CLI's choice: a test that calls `main()`
    under a capture gets the capture, and later tests the real stream, never a closed one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


CURRENT_STDERR: Any = _CurrentStderr()


def _renderer(fmt: str, stream: TextIO) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def configure_logging(
    level: str = "INFO", *, fmt: str = "json", extra: Iterable[Any] = (), stream: TextIO | None = None
) -> None:
    """Send structlog and stdlib records to `stream` in one format.

    `stream` defaults to `sys.stderr` as it is now; pass CURRENT_STDERR to follow later changes of it.

    `level` is one of LOG_LEVELS (any case), `fmt` one of LOG_FORMATS; anything else is a ValueError.
    `extra` processors run on structlog records before redaction (benchmarks count errors with them).
    """
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r} (use debug, info, warning or error)")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use json or console)")
    out: Any = stream if stream is not None else sys.stderr
    lvl: int = getattr(logging, level.upper())
    # Exceptions are formatted before redaction, so a traceback is scrubbed like any other text.
    tail: list[Any] = [structlog.processors.format_exc_info, redact_secrets]
    renderer = _renderer(fmt, out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _lift_key_values,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    # structlog's own records skip the stdlib machinery (faster on the amend path) but share the
    # processors and the renderer, so both kinds of record look the same.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *extra,
            *tail,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


class LogLimiter:
    """At most `burst` lines per event name per `window_ns`; the first line of a later window learns
    how many were held back. Pure (the caller passes `now_ns`); keeps at most `max_keys` names.

    For logs a client can cause (refused HTTP requests, shed connections): a flood must not become a
    flood of log lines.
    """

    def __init__(self, burst: int = 5, window_ns: int = 10_000_000_000, max_keys: int = 64) -> None:
        if burst < 1 or window_ns < 1 or max_keys < 1:
            raise ValueError("burst, window_ns and max_keys must be positive")
        self._burst = burst
        self._window_ns = window_ns
        self._max_keys = max_keys
        # key -> [window start, lines allowed in it, lines held back since the last allowed one]
        self._state: OrderedDict[str, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def allow(self, key: str, now_ns: int) -> int | None:
        """None: drop this line. Otherwise log it, with the returned count of lines held back before it."""
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self._max_keys:
                self._state.popitem(last=False)
            state = self._state[key] = [now_ns, 0, 0]
        else:
            self._state.move_to_end(key)
        if now_ns - state[0] >= self._window_ns:
            state[0], state[1] = now_ns, 0
        if state[1] >= self._burst:
            state[2] += 1
            return None
        state[1] += 1
        held, state[2] = state[2], 0
        return held
