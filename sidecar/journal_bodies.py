"""Compatibility only: the service imports these from here until its package imports
`sidecar.journal.bodies` (the lead removes this module then)."""

from sidecar.journal.bodies import (
    ARGS_MAX_BYTES,
    args_in_intent,
    final_body,
    intent_item,
    late_body,
    recovered_item,
    request_args,
    settled_body,
    target_extras,
    verdict_body,
    view_from_body,
)

__all__ = [
    "ARGS_MAX_BYTES",
    "args_in_intent",
    "final_body",
    "intent_item",
    "late_body",
    "recovered_item",
    "request_args",
    "settled_body",
    "target_extras",
    "verdict_body",
    "view_from_body",
]
