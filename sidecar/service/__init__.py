"""The service: turns one amend request into one honest result (docs/architecture.md has the map).

`Service` (facade.py) is the one API the transports call; the parts behind it each have one job.
"""

from sidecar.service.api import (
    AmendResult,
    Approval,
    CoordinationError,
    Credentials,
    StartupError,
    request_digest,
)
from sidecar.service.facade import CRASH_POINTS, Service
from sidecar.service.views import order_body

__all__ = [
    "CRASH_POINTS",
    "AmendResult",
    "Approval",
    "CoordinationError",
    "Credentials",
    "Service",
    "StartupError",
    "order_body",
    "request_digest",
]
