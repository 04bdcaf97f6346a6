"""Read-only checks of the public streams' control replies: the pong of each category and the
option subscribe reply (which has no `op`).

Each reply is decoded by the sidecar's own `decode_public`, and the question is whether the sidecar
would recognise it (a pong it misses makes its heartbeat time out and the feed reconnect; a
subscribe reply it misses makes it resubscribe forever). One function per named check.

It must not write anything to the exchange.
"""

from __future__ import annotations

from typing import Any

from sidecar.bybit.codec import DecodeError, PublicControl, decode_public, encode_ping, encode_subscribe
from sidecar.core.types import Category
from sidecar.probe.context import Probe
from sidecar.probe.report import CheckResult, differs, error, judge, skipped
from sidecar.probe.sockets import Frame, opened

__all__ = ["check_option_subscribe_reply", "check_public_pong_shapes", "judge_option_reply", "judge_pongs"]

# The documented pong of each public category (reference D-CONN), as the emulator sends it.
EXPECTED_PONGS: dict[str, dict[str, Any]] = {
    "linear": {"op": "ping", "retMsg": "pong", "recognised": True},
    "inverse": {"op": "ping", "retMsg": "pong", "recognised": True},
    "spot": {"op": "ping", "retMsg": "pong", "recognised": True},
    "option": {"op": "pong", "retMsg": None, "recognised": True},
}


def _decoded(text: str) -> PublicControl | None:
    try:
        r = decode_public(text)
    except DecodeError:
        return None
    return r if isinstance(r, PublicControl) else None


def pong_shape(frame: Frame | None) -> dict[str, Any] | str:
    """What a public pong looked like and whether the sidecar recognises it as one."""
    if frame is None:
        return "no reply"
    control = _decoded(frame.text)
    return {
        "op": frame.get("op"),
        "retMsg": frame.get("ret_msg"),
        "recognised": control is not None and control.is_pong,
    }


def judge_pongs(observed: dict[str, Any]) -> CheckResult:
    unrecognised = [
        c for c, shape in observed.items() if not (isinstance(shape, dict) and shape["recognised"])
    ]
    return judge(
        "public_pong_shapes",
        EXPECTED_PONGS,
        observed,
        agrees="every public category answers a ping in its documented shape, and the sidecar "
        "recognises each as a pong (an answered ping keeps a quiet quote fresh)",
        otherwise=(
            f"the sidecar does not recognise the pong of {', '.join(unrecognised)}: its heartbeat on "
            "that feed would time out, the feed reconnect, and quotes go stale (report it; do not "
            "trade that category)"
            if unrecognised
            else "a pong's shape differs from the documented one, but the sidecar still recognises "
            "it (harmless; the emulator should follow)"
        ),
    )


async def check_public_pong_shapes(p: Probe) -> CheckResult:
    observed: dict[str, Any] = {}
    for category in EXPECTED_PONGS:
        async with opened(p.endpoints.public_ws_url(Category(category)), p.clock) as (ws, log):
            start = log.mark()
            await ws.send(encode_ping())
            observed[category] = pong_shape(await log.wait_for(lambda _: True, start=start))
    return judge_pongs(observed)


def judge_option_reply(frame: Frame | None, topic: str) -> CheckResult:
    expected = {"hasOp": False, "type": "COMMAND_RESP", "successTopics": [topic], "recognised": True}
    if frame is None:
        return differs(
            "option_subscribe_reply",
            expected,
            "no reply",
            "no answer to an option subscribe in time: the sidecar would resubscribe every few "
            "seconds and option quotes go stale (report it; do not trade options)",
        )
    control = _decoded(frame.text)
    data = frame.get("data")
    observed = {
        "hasOp": isinstance(frame.msg, dict) and "op" in frame.msg,
        "type": frame.get("type"),
        "successTopics": data.get("successTopics") if isinstance(data, dict) else None,
        "recognised": control is not None and control.op == "subscribe" and control.success,
    }
    return judge(
        "option_subscribe_reply",
        expected,
        observed,
        agrees=f"the option subscribe reply is a COMMAND_RESP without `op` ({topic} subscribed), and "
        "the sidecar recognises it",
        otherwise=(
            "the sidecar does not recognise this option subscribe reply: it would resubscribe every "
            "few seconds and option quotes go stale (report it; do not trade options)"
            if not observed["recognised"]
            else "the reply's shape differs from the documented one, but the sidecar recognises it "
            "(harmless; the emulator should follow)"
        ),
    )


async def check_option_subscribe_reply(p: Probe) -> CheckResult:
    result = await p.rest.fetch("/v5/market/instruments-info", {"category": "option", "limit": "1"})
    rows = result.get("list") if isinstance(result, dict) else None
    symbol = next((r.get("symbol") for r in rows or [] if isinstance(r, dict) and r.get("symbol")), None)
    if not isinstance(symbol, str):
        return skipped(
            "option_subscribe_reply",
            {"hasOp": False, "type": "COMMAND_RESP"},
            "the exchange lists no option instrument to subscribe to",
        )
    topic = f"tickers.{symbol}"
    async with opened(p.endpoints.public_ws_url(Category.OPTION), p.clock) as (ws, log):
        start = log.mark()
        await ws.send(encode_subscribe([topic], "probe-option"))
        # The reply is the first frame that is not a ticker push.
        reply = await log.wait_for(lambda f: f.get("topic") is None, start=start)
    if reply is not None and reply.msg is None:
        return error("option_subscribe_reply", {"type": "COMMAND_RESP"}, "the reply is not JSON")
    return judge_option_reply(reply, topic)
