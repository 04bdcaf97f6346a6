"""The ticker checks: how long the configured symbols' tickers stay silent, whether the sidecar's
quotes stay fresh through that silence, and whether deltas carry only what changed.

For `--ticker-seconds` it runs the sidecar's own `MarketData` on the configured symbols (its ping
cadence from `reference_price.max_age_ms`, its pong vouching) and records every quote update it
emits, and beside it a plain subscription that keeps the raw ticker frames. Two pure functions then
judge the recording, so they can be tested on crafted frames.

It must not write anything to the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sidecar.bybit._ws import SocketTiming
from sidecar.bybit.codec import DecodeError, TickerUpdate, decode_public, encode_ping, encode_subscribe
from sidecar.bybit.market import MarketData, ping_interval_for
from sidecar.core.market_state import MarketEvent, MarketState
from sidecar.core.types import Category
from sidecar.probe.context import Probe
from sidecar.probe.report import CheckResult, differs, error, ok, skipped
from sidecar.probe.sockets import Frame, opened

__all__ = ["TickerRecording", "judge_delta_fields", "judge_quiet_gap", "max_quote_age_ms", "watch_tickers"]

_DELTA_CATEGORIES = frozenset({Category.LINEAR, Category.INVERSE})  # spot and option: snapshots only
# A best bid/ask level goes out whole (price and size), so its partner may repeat unchanged.
_PAIRED = {"bid1Price": "bid1Size", "bid1Size": "bid1Price", "ask1Price": "ask1Size", "ask1Size": "ask1Price"}
_SUBSCRIBE_CHUNK = 10  # as the sidecar subscribes (spot takes at most 10 args per request)
_KEEPALIVE_S = 10.0  # the raw recorder's ping (Bybit cuts a socket idle for ~10 min)
_NS_PER_MS = 1_000_000

Key = tuple[Category, str]


@dataclass
class TickerRecording:
    """What `watch_tickers` saw: quote updates per symbol as (arrival ns, proof ns) and raw frames."""

    symbols: tuple[Key, ...]
    seconds: float
    max_age_ms: int
    ping_interval_ms: int
    start_ns: int = 0
    end_ns: int = 0
    quotes: dict[Key, list[tuple[int, int]]] = field(default_factory=dict)
    frames: dict[Category, list[Frame]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _name(key: Key) -> str:
    return f"{key[0].value}:{key[1]}"


# ------------------------------------------------------------------ recording


async def _record(p: Probe, category: Category, symbols: Sequence[str], rec: TickerRecording) -> None:
    """Subscribe the symbols on a plain socket and keep every frame until cancelled; a failure is
    noted in `rec.errors` (the judgement must not mistake a dead recorder for a quiet market)."""
    topics = [f"tickers.{s}" for s in symbols]
    into = rec.frames.setdefault(category, [])
    try:
        async with opened(p.endpoints.public_ws_url(category), p.clock) as (ws, log):
            for n in range(0, len(topics), _SUBSCRIBE_CHUNK):
                await ws.send(encode_subscribe(topics[n : n + _SUBSCRIBE_CHUNK], f"probe-rec-{n}"))
            try:
                while True:
                    await asyncio.sleep(_KEEPALIVE_S)
                    await ws.send(encode_ping())
            finally:
                into.extend(log.frames)
    except Exception as e:
        rec.errors.append(f"{category.value} ticker recorder: {type(e).__name__}: {e}")


class _Follow:
    """The probe's copy of what the service does with the market adapter's events: apply them to a
    `MarketState` and record every quote they make current as (arrival ns, proof ns)."""

    def __init__(self, rec: TickerRecording, p: Probe) -> None:
        self._state = MarketState(rec.symbols)
        self._rec = rec
        self._p = p

    def __call__(self, event: MarketEvent) -> None:
        for key, quote in self._state.apply(event):
            self._rec.quotes.setdefault(key, []).append((self._p.clock.monotonic_ns(), quote.received_ns))


async def watch_tickers(p: Probe) -> TickerRecording:
    """Run the sidecar's MarketData and a raw recorder on the configured symbols for the run's
    `ticker_seconds`."""
    settings = p.settings
    interval_s = ping_interval_for(settings.max_age_ms)
    rec = TickerRecording(
        symbols=settings.symbols,
        seconds=settings.ticker_seconds,
        max_age_ms=settings.max_age_ms,
        ping_interval_ms=int(interval_s * 1000),
    )
    market = MarketData(
        p.endpoints,
        p.rest,
        settings.symbols,
        p.clock,
        _Follow(rec, p),
        instruments_refresh_s=86_400,  # the probe needs quotes, not rules
        timing=SocketTiming(ping_interval_s=interval_s),
    )
    by_category: dict[Category, list[str]] = {}
    for category, symbol in settings.symbols:
        by_category.setdefault(category, []).append(symbol)
    tasks = [asyncio.create_task(market.run())]
    for category, symbols in by_category.items():
        tasks.append(asyncio.create_task(_record(p, category, symbols, rec)))
    rec.start_ns = p.clock.monotonic_ns()
    try:
        await asyncio.sleep(settings.ticker_seconds)
    finally:
        rec.end_ns = p.clock.monotonic_ns()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return rec


# ------------------------------------------------------------------ judging (pure)


def max_quote_age_ms(samples: Sequence[tuple[int, int]], end_ns: int) -> int:
    """The oldest the sidecar's quote got between its first update and `end_ns`: each update
    (arriving at `arrival`) proves the quote current as of `proof` (a frame's arrival, or an
    answered ping's send time)."""
    proof = samples[0][1]
    worst = 0
    for arrival, received in samples[1:]:
        worst = max(worst, arrival - proof)
        proof = max(proof, received)
    worst = max(worst, end_ns - proof)
    return max(0, worst) // _NS_PER_MS


def _ticker_arrivals(frames: Sequence[Frame]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for f in frames:
        topic = f.get("topic")
        if isinstance(topic, str) and topic.startswith("tickers."):
            out.setdefault(topic.removeprefix("tickers."), []).append(f.recv_ns)
    return out


def judge_quiet_gap(rec: TickerRecording) -> CheckResult:
    """ok while every configured symbol got a quote and none aged past `max_age_ms`."""
    expected = {"everySymbolQuoted": True, "maxQuoteAgeMsAtMost": rec.max_age_ms}
    if not rec.symbols:
        return skipped("ticker_quiet_gap", expected, "no symbols configured")
    by_symbol: dict[str, dict[str, int | None]] = {}
    longest_gap_ms, long_gaps = 0, 0
    for key in rec.symbols:
        samples = rec.quotes.get(key)
        arrivals = _ticker_arrivals(rec.frames.get(key[0], [])).get(key[1], [])
        gaps = [(b - a) // _NS_PER_MS for a, b in itertools.pairwise(arrivals)]
        if arrivals:
            gaps.append((rec.end_ns - arrivals[-1]) // _NS_PER_MS)
        longest_gap_ms = max([longest_gap_ms, *gaps])
        long_gaps += sum(1 for g in gaps if g > rec.max_age_ms)
        by_symbol[_name(key)] = {
            "frames": len(arrivals),
            "maxFrameGapMs": max(gaps, default=None),
            "maxQuoteAgeMs": max_quote_age_ms(samples, rec.end_ns) if samples else None,
        }
    ages = [v["maxQuoteAgeMs"] for v in by_symbol.values()]
    quoted = all(a is not None for a in ages)
    worst = max((a for a in ages if a is not None), default=None)
    observed = {"everySymbolQuoted": quoted, "maxQuoteAgeMs": worst, "bySymbol": by_symbol}
    silence = (
        f"over {rec.seconds:g} s the longest silence of a ticker was {longest_gap_ms} ms "
        f"({long_gaps} silences longer than reference_price.max_age_ms {rec.max_age_ms})"
    )
    if not quoted:
        missing = [name for name, v in by_symbol.items() if v["maxQuoteAgeMs"] is None]
        return differs(
            "ticker_quiet_gap",
            expected,
            observed,
            f"no quote at all for {', '.join(missing)}: the sidecar denies every amend of it "
            "(REFERENCE_PRICE_MISSING); check the symbol is listed on this exchange",
        )
    assert worst is not None
    if worst > rec.max_age_ms:
        return differs(
            "ticker_quiet_gap",
            expected,
            observed,
            f"{silence}; the sidecar's quotes reached {worst} ms although it pings every "
            f"{rec.ping_interval_ms} ms: amends would be denied REFERENCE_PRICE_STALE; raise "
            "reference_price.max_age_ms or look at the network path (slow pongs)",
        )
    return ok(
        "ticker_quiet_gap",
        expected,
        observed,
        f"{silence}; answered pings every {rec.ping_interval_ms} ms kept the sidecar's quotes at most "
        f"{worst} ms old",
    )


def _decodes(frame: Frame) -> bool:
    try:
        return isinstance(decode_public(frame.text), TickerUpdate)
    except DecodeError:
        return False


def judge_delta_fields(rec: TickerRecording) -> CheckResult:
    """Linear/inverse: a snapshot first, then deltas that carry only changed fields (a book level's
    partner excepted); spot/option: snapshots only; every frame decodes."""
    expected = {
        "undecodable": 0,
        "firstFrameSnapshot": True,
        "repeatedUnchangedFields": [],
        "deltasOnSnapshotOnlyCategories": 0,
    }
    if rec.errors:
        return error("ticker_delta_fields", expected, "; ".join(rec.errors))
    undecodable, first_not_snapshot, stray_deltas, deltas = 0, 0, 0, 0
    repeated: Counter[str] = Counter()
    for category, frames in rec.frames.items():
        state: dict[str, dict[str, object]] = {}
        for f in frames:
            topic = f.get("topic")
            if not (isinstance(topic, str) and topic.startswith("tickers.")):
                continue
            data = f.get("data")
            if not _decodes(f) or not isinstance(data, dict):
                undecodable += 1
                continue
            kind = f.get("type")
            if category not in _DELTA_CATEGORIES:
                stray_deltas += kind != "snapshot"
                continue
            symbol = str(data.get("symbol") or topic.removeprefix("tickers."))
            last = state.get(symbol)
            if last is None or kind == "snapshot":
                first_not_snapshot += last is None and kind != "snapshot"
                state[symbol] = dict(data)
                continue
            deltas += 1
            fields = {k: v for k, v in data.items() if k != "symbol"}
            changed = {k for k, v in fields.items() if last.get(k) != v}
            repeated.update(k for k in fields if k not in changed and _PAIRED.get(k) not in changed)
            last.update(fields)
    observed = {
        "undecodable": undecodable,
        "firstFrameSnapshot": first_not_snapshot == 0,
        "repeatedUnchangedFields": sorted(repeated),
        "deltasOnSnapshotOnlyCategories": stray_deltas,
    }
    has_delta_symbols = any(c in _DELTA_CATEGORIES for c, _ in rec.symbols)
    if has_delta_symbols and deltas == 0 and observed == expected:
        return skipped(
            "ticker_delta_fields",
            expected,
            f"no linear/inverse delta arrived in {rec.seconds:g} s (a quiet market); run again with a "
            "longer --ticker-seconds",
        )
    if observed == expected:
        return ok(
            "ticker_delta_fields",
            expected,
            observed,
            f"{deltas} deltas carried only what changed (a book level as price and size); the sidecar "
            "merges each into the last snapshot",
        )
    return differs(
        "ticker_delta_fields",
        expected,
        observed,
        "ticker frames differ from the documented shape: "
        + (
            "some did not decode, so the sidecar ignores them and its quotes go stale faster (report it)"
            if undecodable
            else "deltas repeat unchanged fields or snapshots come otherwise; the sidecar merges what "
            "arrives, so its quotes stay right (harmless; the emulator should follow)"
        ),
    )
