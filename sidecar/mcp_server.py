"""The MCP surface: `build_server(service)` with the six tools of DESIGN.md §4.3.

Tool names, annotations, input fields (Bybit's own item field names) and result fields are
contracts. Input schemas are permissive on purpose: the validator says more than a schema can
(`INVALID_NUMBER`, `FIELD_NOT_SUPPORTED`, `BATCH_TOO_LARGE` with a code and a sentence), so the tools
receive the agent's raw arguments and hand them to the service unchanged.

The two destructive tools ask a human first (MCP elicitation, through the SDK's era-portable
`Resolve`/`Elicit` resolvers) when `approval.above_notional` applies; the answer is bound to the
digest of the exact arguments and handed to the service, which decides and journals. See
docs/approval.md.

This module maps service results to MCP results. It must not import `sidecar.bybit`, validate, or
decide outcomes.
"""

from __future__ import annotations

import contextvars
import enum
import json
import weakref
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Final, Literal

import orjson
import structlog
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.elicitation import AcceptedElicitation, DeclinedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS, is_version_at_least
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from sidecar import __version__
from sidecar.core.types import AMEND_ENUM_FIELDS, AMEND_NUMERIC_FIELDS, AmendRequest, DenialCode
from sidecar.service import AmendResult, Approval, Service, request_digest

__all__ = ["TOOL_NAMES", "ApprovalForm", "build_server"]

log = structlog.get_logger("mcp")

TOOL_NAMES = (
    "wsBatchAmendOrders",
    "wsAmendOrder",
    "previewBatchAmendOrders",
    "getSafetyPolicy",
    "getAmendOutcome",
    "getOrderState",
)

# The raw `arguments` of the tools/call being handled, captured before the SDK validates them, so
# unknown item fields reach the validator (FIELD_NOT_SUPPORTED) instead of being dropped silently.
_RAW_ARGS: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("raw_args", default=None)


class _Middleware(ServerMiddleware[Any]):
    """The server's one middleware: the amend fast path for `service`, else the raw arguments
    captured for the SDK's way."""

    def __init__(self, service: Service) -> None:
        self._service = service

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
            fast = _fast_amend(self._service, ctx)
            if fast is not None:
                return await _answer_fast(self._service, *fast)
        return await _capture_raw_arguments(ctx, call_next)


async def _capture_raw_arguments(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
        args = ctx.params.get("arguments")
        raw = args if isinstance(args, Mapping) else {}
        token = _RAW_ARGS.set(raw)
        params = ctx.params
        required = _REQUIRED_ARGS.get(str(ctx.params.get("name")))
        if required and any(name not in raw for name in required):
            # A missing argument reaches the validator as null (a coded denial such as
            # INVALID_REQUEST) instead of failing the SDK's argument check with a bare error.
            params = {**ctx.params, "arguments": {**dict.fromkeys(required), **raw}}
        try:
            return await call_next(replace(ctx, params=params))
        finally:
            _RAW_ARGS.reset(token)
    return await call_next(ctx)


# ---------------------------------------------------------------------------- the amend fast path

# Issue 12: of the ~400 us the MCP layer took per amend call, ~250 us were the SDK's per-tool
# machinery (the argument model, the resolvers, Context, the output check, two dumps of the result
# and the per-version sieve) around a call whose arguments are passed on raw and whose result is
# ours. This middleware answers an amend call itself when that can change nothing the agent sees:
# a handshake-era session that completed `initialize`, a plain `{name, arguments}` call, and no
# approval question possible (approval off). The answer is the wire form the SDK writes for the
# same CallToolResult (tests/test_mcp_fast_path.py compares the two); any other call goes the
# SDK's way, which stays the reference.
_FAST_TOOLS: Final = frozenset({"wsBatchAmendOrders", "wsAmendOrder"})
_FAST_PARAMS: Final = frozenset({"name", "arguments"})


def _fast_amend(
    service: Service, ctx: ServerRequestContext[Any, Any]
) -> tuple[str, Mapping[str, Any]] | None:
    """(tool, raw arguments) when this call may take the fast path, else None."""
    params = ctx.params
    if params is None or not params.keys() <= _FAST_PARAMS:
        return None
    tool = params.get("name")
    args = params.get("arguments")
    if (
        tool not in _FAST_TOOLS
        or not isinstance(args, Mapping)
        or ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    ):
        return None
    if ctx.session.client_params is None:  # not initialized: the SDK refuses the call
        return None
    if service.policy.approval_above_notional is not None:  # a human may have to be asked
        return None
    return str(tool), args


async def _answer_fast(service: Service, tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The amend tool's answer in its wire form (what the SDK writes for `_result(...)`)."""
    try:
        result = await service.submit(_amend_request(tool, args), None)
    except Exception:  # what the SDK answers for a tool that crashed: no detail leaves the server
        log.exception("mcp.tool_failed", tool=tool)
        return {"content": [{"text": f"Error executing tool {tool}", "type": "text"}], "isError": True}
    return {  # keys in the order the SDK's dump writes them (the tests compare the bytes)
        "content": [{"text": _json_text(result.body), "type": "text"}],
        "isError": result.is_error,
        "structuredContent": result.body,
    }


# Arguments the amend tools' schemas require; the validator, not the schema, judges their values.
_REQUIRED_ARGS: dict[str, tuple[str, ...]] = {
    "wsBatchAmendOrders": ("category", "request"),
    "previewBatchAmendOrders": ("category", "request"),
    "wsAmendOrder": ("category",),
}


# ---------------------------------------------------------------------------- schemas

_NUMBER = {"type": ["string", "number"]}
_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One Bybit order.amend-batch item. Numbers as decimal strings (preferred) or JSON "
    "numbers.",
    "properties": {
        "symbol": {"type": "string", "description": "e.g. BTCUSDT (must be on the sidecar's allowlist)"},
        "orderId": {"type": "string", "description": "Bybit order id (this or orderLinkId)"},
        "orderLinkId": {"type": "string", "description": "your client order id (this or orderId)"},
        **{f: {**_NUMBER, "description": f"new {f}; omit to keep"} for f in AMEND_NUMERIC_FIELDS},
        **{f: {"type": "string"} for f in AMEND_ENUM_FIELDS},
    },
    "required": ["symbol"],
}
_CATEGORY_SCHEMA = {
    "type": "string",
    "enum": ["linear", "inverse", "spot", "option"],
    "description": "Bybit category; all items of one call share it",
}

CategoryArg = Annotated[Any, WithJsonSchema(_CATEGORY_SCHEMA)]
RequestArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "array",
            "items": _ITEM_SCHEMA,
            "description": "The items, exactly as Bybit's order.amend-batch `request`. At most 20 per call "
            "(spot 10) and at most the configured batch.max_orders; larger batches are denied with "
            "BATCH_TOO_LARGE.",
        }
    ),
]
NumberArg = Annotated[Any, WithJsonSchema({**_NUMBER, "description": "omit to keep"})]
TextArg = Annotated[Any, WithJsonSchema({"type": "string"})]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ReasonOut(_Out):
    code: str = Field(description="stable denial code, e.g. PRICE_OUT_OF_BAND")
    message: str


class ObservedOut(_Out):
    price: str
    qty: str
    orderStatus: str
    updatedTime: str


class ItemOut(_Out):
    index: int
    symbol: str | None
    orderId: str | None
    orderLinkId: str | None
    outcome: Literal[
        "verified", "denied", "throttled", "rejected", "not_applied", "superseded", "unverified", "allowed"
    ]
    reasons: list[ReasonOut]
    exchangeCode: int | None
    exchangeMsg: str | None
    observed: ObservedOut | None


class AckOut(_Out):
    retCode: int
    retMsg: str
    retExtInfo: dict[str, Any]


class AmendResultOut(_Out):
    requestId: str
    outcome: str = Field(description="the item outcome when all items agree, else partial")
    reasons: list[ReasonOut]
    items: list[ItemOut]
    ack: AckOut | None
    retryAfterMs: int | None
    latencyMs: float


class SymbolPolicyOut(_Out):
    category: str
    symbol: str
    reference: str
    referencePrice: str | None
    referenceAgeMs: int | None
    priceBandBps: str | None
    minPrice: str | None
    maxPrice: str | None
    tickSize: str | None
    qtyStep: str | None
    minQty: str | None
    maxQty: str | None
    maxNotional: str | None


class RateLimitOut(_Out):
    scope: str
    key: str
    max: int
    windowS: float
    remaining: int
    retryAfterMs: int


class SafetyPolicyOut(_Out):
    tradingState: Literal["active", "reducing", "halted"]
    haltReason: str | None
    symbols: list[SymbolPolicyOut]
    rateLimits: list[RateLimitOut]


class OutcomeOut(_Out):
    requestId: str
    outcome: str


class OrderStateOut(_Out):
    found: bool
    order: dict[str, Any] | None


# ---------------------------------------------------------------------------- descriptions

_OUTCOMES_HELP = """
Each item gets one outcome:
- verified: the order stream (or a REST read-back) shows the order at the requested values. Done.
- denied: the sidecar refused it; nothing was sent. Read reasons[].code and fix the item.
- throttled: a rate limit is reached; nothing was sent. Retry after retryAfterMs.
- rejected: Bybit refused it (exchangeCode/exchangeMsg). The order is unchanged.
- not_applied: sent, and proven not to have taken effect. The order is unchanged; you may send a new amend.
- superseded: the order was filled or cancelled before the amend applied. Check your position.
- unverified: sent, but not yet proven either way. Do NOT retry; ask getAmendOutcome(requestId) later.
The call returns isError=true when any item is denied, throttled, rejected or unverified; the
structured body is the same either way."""

_BATCH_DESC = (
    "Amend up to 20 open orders (spot: 10) in one Bybit order.amend-batch, safely. Same arguments as "
    "Bybit's own wsBatchAmendOrders. Every item is checked first (symbol allowlist, price band around a "
    "fresh reference price, qty and notional caps, tick/step, batch size, rate limits); then the batch is "
    "journaled, sent over the sidecar's authenticated WebSocket, and each item is verified on the order "
    "stream before this call returns. Call getSafetyPolicy to see the limits in force." + _OUTCOMES_HELP
)
_SINGLE_DESC = (
    "Amend one open order (Bybit order.amend), with the same checks and verification as "
    "wsBatchAmendOrders. Give category, symbol, orderId or orderLinkId, and the fields to change "
    "(price, qty, takeProfit, stopLoss, ...)." + _OUTCOMES_HELP
)
_PREVIEW_DESC = (
    "Dry run of wsBatchAmendOrders: the verdict each item would get right now (allowed, denied or "
    "throttled, with reasons). Sends nothing and consumes no rate budget."
)


# The amend tools publish AmendResultOut as their output schema, but the SDK validates what they
# return only against this loose form (any JSON object): every body comes from one builder
# (`sidecar.results.result_body`), which the tests hold to the published schema, and re-validating
# 20 items with pydantic on every call cost ~60 us of the ~300 us the MCP layer may take.
def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every `#/$defs/...` reference replaced by its definition (no `$defs` left)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


def _publish_amend_result_schema(schema: dict[str, Any]) -> None:
    full = _inlined(AmendResultOut.model_json_schema())
    schema.clear()
    schema.update(full)


class AmendResultJson(_Out):
    """What the SDK validates an amend tool's result against: the top level only. The published
    output schema is AmendResultOut's, in full. Every body comes from one builder
    (`sidecar.results.result_body`), which the tests hold to that schema; re-validating 20 nested
    items with pydantic on every call cost ~60 us of the ~300 us the MCP layer may take."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_publish_amend_result_schema)

    requestId: str
    outcome: str
    reasons: list[Any]
    items: list[Any]
    ack: dict[str, Any] | None
    retryAfterMs: int | None
    latencyMs: float


def _json_text(body: dict[str, Any]) -> str:
    try:
        return orjson.dumps(body, default=str).decode()
    except orjson.JSONEncodeError:
        # A lone surrogate echoed from the agent's input has no UTF-8 form: escape it, as json does.
        return json.dumps(body, separators=(",", ":"), default=str)


def _result(res: AmendResult) -> CallToolResult:
    """The MCP result of an amend: the body once as structured content and once as its JSON text
    (MCP's backwards-compatible text block), encoded by orjson (~10x faster than json here)."""
    return CallToolResult(
        content=[TextContent(type="text", text=_json_text(res.body))],
        structured_content=res.body,
        is_error=res.is_error,
    )


def _raw(name: str, value: Any) -> Any:
    raw = _RAW_ARGS.get()
    return raw.get(name, value) if raw is not None else value


def _items(request: Any) -> tuple[object, ...]:
    # A non-list `request` still reaches the validator, which denies it with a code.
    if isinstance(request, list | tuple):
        return tuple(request)
    return (request,) if request is not None else ()


# ---------------------------------------------------------------------------- human approval

# The arguments of wsAmendOrder that make up its one item, plus `category`.
_SINGLE_ARG_NAMES = frozenset({"category", *_ITEM_SCHEMA["properties"]})


def _amend_request(tool: str, args: Mapping[str, Any]) -> AmendRequest:
    """The AmendRequest of one amend tool call, from the agent's raw arguments.

    The approval resolver and the tool body both build it here, so the digest the human is asked
    about is the digest of what is submitted.
    """
    category = args.get("category")
    if tool == "wsAmendOrder":
        item = {k: v for k, v in args.items() if k != "category"}
        return AmendRequest(category=category, items=(item,), batch=False, tool=tool)
    return AmendRequest(category=category, items=_items(args.get("request")), batch=True, tool=tool)


class ApprovalForm(BaseModel):
    """The form the human fills in (flat: MCP elicitation forms take primitives only)."""

    approve: bool = Field(
        default=False,
        description="true sends this whole amend request to Bybit now, every item exactly as the "
        "agent gave it (the message lists the items above the threshold); false or declining sends "
        "nothing",
    )


class _NoQuestion(enum.Enum):
    """What an approval resolver returns instead of a question; the tool then submits without an
    approval and the service decides (it requires one only when the threshold applies)."""

    NOT_NEEDED = "not_needed"  # approval is off, or no allowed item is above the threshold
    CANNOT_ASK = "cannot_ask"  # the client cannot elicit: above the threshold it is APPROVAL_UNAVAILABLE


# The service behind each server built here. The resolvers below are module-level because the SDK
# reads a tool's `Resolve(...)` from its type hints, which are evaluated in this module's globals
# (a closure's local name does not resolve there: registration fails with InvalidSignature).
_SERVICES: weakref.WeakKeyDictionary[MCPServer[Any], Service] = weakref.WeakKeyDictionary()

# First protocol revision that elicits through InputRequiredResult rounds (no back-channel needed).
_INPUT_REQUIRED_VERSION = "2026-07-28"


def _can_elicit(ctx: Context) -> bool:
    """Whether the SDK can put a form question to this client now, without failing the call."""
    try:
        capabilities = ctx.client_capabilities
        version = ctx.protocol_version
        back_channel = bool(ctx.session.can_send_request)
    except ValueError:  # no request in progress (e.g. MCPServer.call_tool called directly)
        return False
    elicitation = capabilities.elicitation if capabilities is not None else None
    # The SDK's own rule: a bare `elicitation: {}` means form; url-only does not.
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    if version is not None and is_version_at_least(version, _INPUT_REQUIRED_VERSION):
        return True
    # Older sessions send `elicitation/create` mid-call, which needs a back-channel (not on
    # stateless or JSON-response HTTP).
    return back_channel


def _approval_question(tool: str, ctx: Context) -> Elicit[ApprovalForm] | _NoQuestion:
    """The approval question for this call, or why none is asked.

    May run again on every round of a 2026-07-28 call: it must stay free of side effects (the
    service journals the answer in `submit`). The SDK asks a question once and reuses the answer
    only while the message is identical, and the message carries the digest, so an answer cannot
    carry over to different arguments.
    """
    raw = _RAW_ARGS.get()
    try:
        service = _SERVICES.get(ctx.mcp_server)
    except ValueError:
        service = None
    if raw is None or service is None or not _can_elicit(ctx):
        return _NoQuestion.CANNOT_ASK
    request = _amend_request(tool, raw)
    prompt = service.approval_needed(request)
    if prompt is None:
        return _NoQuestion.NOT_NEEDED
    return Elicit(f"{prompt} (digest {request_digest(request)[:12]})", ApprovalForm)


async def _ask_batch_approval(ctx: Context) -> Elicit[ApprovalForm] | _NoQuestion:
    return _approval_question("wsBatchAmendOrders", ctx)


async def _ask_single_approval(ctx: Context) -> Elicit[ApprovalForm] | _NoQuestion:
    return _approval_question("wsAmendOrder", ctx)


# Injected by the SDK (never part of the input schema, so an agent cannot fill it in). The full
# ElicitationResult rather than the bare form, so a decline becomes a structured denial instead
# of an aborted call.
BatchApprovalArg = Annotated[ElicitationResult[ApprovalForm], Resolve(_ask_batch_approval)]
SingleApprovalArg = Annotated[ElicitationResult[ApprovalForm], Resolve(_ask_single_approval)]


def _approval(answer: ElicitationResult[ApprovalForm], request: AmendRequest) -> Approval | None:
    """The human's answer bound to the digest of `request`; None when nothing was asked (then no
    digest is computed: hashing the canonical JSON of a 20-item request costs ~10 us per call)."""
    if isinstance(answer, AcceptedElicitation):
        data: object = answer.data  # a resolver's plain value (no question asked) arrives as accepted
        if not isinstance(data, ApprovalForm):
            return None
        digest = request_digest(request)
        if data.approve:
            return Approval(digest, granted=True)
        return Approval(
            digest,
            granted=False,
            code=DenialCode.APPROVAL_DECLINED,
            detail=f"the human answered no to this amend (digest {digest[:12]}); nothing was sent",
        )
    digest = request_digest(request)
    short = digest[:12]
    if isinstance(answer, DeclinedElicitation):
        detail = f"the human declined this amend (digest {short}); nothing was sent"
    else:
        detail = f"the human cancelled the approval prompt (digest {short}); nothing was sent"
    return Approval(digest, granted=False, code=DenialCode.APPROVAL_DECLINED, detail=detail)


def build_server(service: Service) -> MCPServer[Any]:
    """The MCP server exposing `service` (tools only; the lifecycle of `service` is the caller's)."""
    server: MCPServer[Any] = MCPServer(
        "bybit-order-sidecar",
        title="Bybit order-safety sidecar",
        version=__version__,
        instructions=(
            "Amend Bybit orders through this server: every item is checked against the operator's limits "
            "and verified on the exchange's order stream. Call getSafetyPolicy first to see the limits."
        ),
        log_level="WARNING",
        middleware=[_Middleware(service)],
    )
    _SERVICES[server] = service

    @server.tool(
        name="wsBatchAmendOrders",
        title="Amend orders (batch, verified)",
        description=_BATCH_DESC,
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def ws_batch_amend_orders(
        category: CategoryArg, request: RequestArg, approval: BatchApprovalArg
    ) -> Annotated[CallToolResult, AmendResultJson]:
        raw = _RAW_ARGS.get()
        req = _amend_request(
            "wsBatchAmendOrders", raw if raw is not None else {"category": category, "request": request}
        )
        return _result(await service.submit(req, _approval(approval, req)))

    @server.tool(
        name="wsAmendOrder",
        title="Amend one order (verified)",
        description=_SINGLE_DESC,
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def ws_amend_order(  # noqa: PLR0917 -- one parameter per Bybit amend field (the contract)
        category: CategoryArg,
        symbol: TextArg = None,
        orderId: TextArg = None,
        orderLinkId: TextArg = None,
        qty: NumberArg = None,
        price: NumberArg = None,
        takeProfit: NumberArg = None,
        stopLoss: NumberArg = None,
        tpTriggerBy: TextArg = None,
        slTriggerBy: TextArg = None,
        tpLimitPrice: NumberArg = None,
        slLimitPrice: NumberArg = None,
        tpslMode: TextArg = None,
        orderIv: NumberArg = None,
        triggerPrice: NumberArg = None,
        triggerBy: TextArg = None,
        *,
        approval: SingleApprovalArg,
    ) -> Annotated[CallToolResult, AmendResultJson]:
        raw = _RAW_ARGS.get()
        if raw is None:
            raw = {k: v for k, v in locals().items() if k in _SINGLE_ARG_NAMES and v is not None}
        req = _amend_request("wsAmendOrder", raw)
        return _result(await service.submit(req, _approval(approval, req)))

    @server.tool(
        name="previewBatchAmendOrders",
        title="Preview a batch amend (dry run)",
        description=_PREVIEW_DESC,
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def preview_batch_amend_orders(
        category: CategoryArg, request: RequestArg
    ) -> Annotated[CallToolResult, AmendResultJson]:
        req = AmendRequest(
            category=_raw("category", category),
            items=_items(_raw("request", request)),
            batch=True,
            tool="wsBatchAmendOrders",  # the budget a real call would use (peeked, never consumed)
        )
        return _result(await service.preview(req))

    @server.tool(
        name="getSafetyPolicy",
        title="Limits in force",
        description=(
            "The trading state (active, reducing, halted) and, per symbol, the reference price and its age, "
            "the allowed price interval now (minPrice..maxPrice), max qty, max notional, tick and step, and "
            "the remaining rate budgets. Plan amends inside these limits."
        ),
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def get_safety_policy(category: str | None = None, symbol: str | None = None) -> SafetyPolicyOut:
        return SafetyPolicyOut.model_validate(await service.policy_view(category, symbol))

    @server.tool(
        name="getAmendOutcome",
        title="Result of an earlier amend",
        description=(
            "The journaled result of an earlier amend by requestId, including verdicts reached after the "
            "call returned (an `unverified` item is reconciled in the background). outcome `pending` means "
            "reconciliation is still running; ask again shortly."
        ),
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def get_amend_outcome(requestId: str) -> OutcomeOut:
        found = service.outcome(requestId)
        if found is None:
            return OutcomeOut(requestId=requestId, outcome="unknown_request")
        return OutcomeOut.model_validate(found)

    @server.tool(
        name="getOrderState",
        title="The sidecar's view of one order",
        description=(
            "The order as the sidecar last saw it on Bybit's order stream (price, qty, leaves, filled, "
            "status, updatedTime). Give category, symbol and orderId or orderLinkId."
        ),
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def get_order_state(
        category: str,
        symbol: str,
        orderId: str | None = None,
        orderLinkId: str | None = None,
    ) -> OrderStateOut:
        order = service.order_state(category, symbol, orderId, orderLinkId)
        return OrderStateOut(found=order is not None, order=order)

    return server
