"""The service: turns one amend request into one honest result (docs/architecture.md has the map).

`Service` (facade.py) is the one API the transports call; the parts behind it each have one job.
"""

from sidecar.env import Credentials
from sidecar.errors import CoordinationError, StartupError
from sidecar.service.api import AmendResult, Approval, request_digest
from sidecar.service.facade import Service
from sidecar.service.views import order_body

__all__ = [
    "AmendResult",
    "Approval",
    "CoordinationError",
    "Credentials",
    "Service",
    "StartupError",
    "order_body",
    "request_digest",
]
