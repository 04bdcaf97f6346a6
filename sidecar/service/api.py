"""The service's public values: what a caller passes in (`Credentials`, `Approval`) and gets back
(`AmendResult`), the digest an approval is bound to, and the errors the service raises.

Values only: no I/O, no decisions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sidecar.core.types import AmendRequest, DenialCode

__all__ = [
    "AmendResult",
    "Approval",
    "CoordinationError",
    "Credentials",
    "StartupError",
    "request_digest",
]


@dataclass(frozen=True, slots=True)
class Credentials:
    """API key and secret. The repr never shows them."""

    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return "Credentials(api_key='[redacted]', api_secret='[redacted]')"


@dataclass(frozen=True, slots=True)
class AmendResult:
    """What the agent gets back: the structured body and whether it is an error result."""

    body: dict[str, Any]
    is_error: bool


class StartupError(Exception):
    """The service could not start (bad credentials, exchange unreachable). The message says why."""


class CoordinationError(Exception):
    """The shared coordination store refused or could not take a state change. The message says why."""


@dataclass(frozen=True, slots=True)
class Approval:
    """A human's answer to an approval prompt, bound to the digest of the exact arguments."""

    digest: str
    granted: bool
    code: DenialCode = DenialCode.APPROVAL_DECLINED  # why not granted
    detail: str = ""


def request_digest(request: AmendRequest) -> str:
    """sha256 of the canonical JSON of the exact arguments (tool, category, items)."""
    try:
        text = json.dumps(
            {"tool": request.tool, "category": request.category, "items": list(request.items)},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
    except (TypeError, ValueError):
        text = repr((request.tool, request.category, request.items))
    return hashlib.sha256(text.encode()).hexdigest()
