"""The service's public values: what a caller passes in (`Approval`) and gets back
(`AmendResult`) and the digest an approval is bound to. (`Credentials` lives in sidecar.env, the
errors the service raises in sidecar.errors.)

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
    "request_digest",
]


@dataclass(frozen=True, slots=True)
class AmendResult:
    """What the agent gets back: the structured body and whether it is an error result. Read-only:
    a sent request's `final` journal record is built from this same body just after the answer."""

    body: dict[str, Any]
    is_error: bool


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
