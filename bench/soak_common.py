"""Shared plumbing for the reliability suite (`python -m bench soak`): the soak policy, an
in-process stack (emulator + service + journal), quiet logging that counts errors, the journal
checker and process resource readings.

Its one job is set-up and read-outs that the bad-input, fault and load parts share. It must not
decide whether a part passed (each part does), and it holds the oracle's own copy of the exchange
rules (`INSTRUMENTS`, from docs/emulator.md) instead of asking the sidecar for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "INSTRUMENTS",
    "PRICES",
    "ROOT",
    "RULES",
    "ErrorCounter",
    "InstrumentRule",
    "Stack",
    "SymbolRuleCopy",
    "check_journal",
    "pct_ms",
    "quiet_logging",
    "resources",
    "soak_config",
    "start_stack",
]

ROOT = Path(__file__).resolve().parent.parent
KEY = "emulator-key"  # the emulator's well-known test credentials (not secrets)
SECRET = "emulator-secret"

# Frozen prices (mark = last = index), so every reference is known exactly to the oracle.
PRICES: dict[tuple[str, str], Decimal] = {
    ("linear", "BTCUSDT"): Decimal("95000"),
    ("linear", "ETHUSDT"): Decimal("3500"),
    ("linear", "SOLUSDT"): Decimal("180"),
    ("spot", "BTCUSDT"): Decimal("95000"),
}


@dataclass(frozen=True)
class InstrumentRule:
    """The emulator's instrument rules as docs/emulator.md states them (the oracle's own copy)."""

    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal


INSTRUMENTS: dict[tuple[str, str], InstrumentRule] = {
    ("linear", "BTCUSDT"): InstrumentRule(
        Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal("1190")
    ),
    ("linear", "ETHUSDT"): InstrumentRule(Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal("7240")),
    ("linear", "SOLUSDT"): InstrumentRule(Decimal("0.010"), Decimal("0.1"), Decimal("0.1"), Decimal("79770")),
    ("spot", "BTCUSDT"): InstrumentRule(
        Decimal("0.01"), Decimal("0.000001"), Decimal("0.000048"), Decimal("71.73956243")
    ),
}


@dataclass(frozen=True)
class SymbolRuleCopy:
    """One allowlist entry of the soak policy, as the oracle reads it."""

    max_qty: Decimal
    max_notional: Decimal
    band_bps: Decimal


# The soak policy. Notional caps are set below max_qty × price on purpose, so the notional check is
# reachable (with the shipped config, the qty cap and the band imply the notional cap).
RULES: dict[tuple[str, str], SymbolRuleCopy] = {
    ("linear", "BTCUSDT"): SymbolRuleCopy(Decimal("0.5"), Decimal("30000"), Decimal("150")),
    ("linear", "ETHUSDT"): SymbolRuleCopy(Decimal("10"), Decimal("20000"), Decimal("150")),
    ("linear", "SOLUSDT"): SymbolRuleCopy(Decimal("200"), Decimal("25000"), Decimal("200")),
    ("spot", "BTCUSDT"): SymbolRuleCopy(Decimal("0.1"), Decimal("5000"), Decimal("100")),
}
BATCH_MAX_ORDERS = 20
BATCH_MAX_NOTIONAL = Decimal("100000")
EXCHANGE_BATCH_LIMIT = {"linear": 20, "spot": 10}
BIG = 1_000_000


def soak_config(journal: Path, **overrides: Any) -> Any:
    """The shipped config with the soak policy: local rate limits and automatic trips out of the way
    (they are tested elsewhere and would hide what these parts measure), a temp journal, and
    `overrides` merged in section by section."""
    from sidecar.config import SidecarConfig, load_config  # noqa: PLC0415

    data = load_config(ROOT / "config" / "sidecar.yaml").model_dump(mode="json")
    data["journal"]["path"] = str(journal)
    data["symbols"] = [
        {
            "category": c,
            "symbol": s,
            "max_qty": str(r.max_qty),
            "max_notional": str(r.max_notional),
            "price_band_bps": str(r.band_bps),
            "reference": "mark" if c == "linear" else "last",
        }
        for (c, s), r in RULES.items()
    ]
    data["batch"] = {
        "max_orders": BATCH_MAX_ORDERS,
        "mode": "all_or_nothing",
        "max_notional": str(BATCH_MAX_NOTIONAL),
    }
    data["rate_limits"] = [
        {"scope": "tool", "max": BIG, "window_s": 1},
        {"scope": "global", "max": BIG, "window_s": 1},
        {"scope": "symbol", "max": BIG, "window_s": 1},
        *(
            {"scope": "exchange", "op": op, "category": cat, "max": 100_000, "window_s": 1}
            for op in ("order.amend-batch", "order.amend")
            for cat in ("linear", "spot")
        ),
    ]
    data["safety"] = {
        "max_unverified": BIG,
        "max_exchange_rate_limited": BIG,
        "stale_reference_trip_ms": 600_000,
        "socket_down_trip_s": 600,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return SidecarConfig.model_validate(data)


# ---------------------------------------------------------------------------------- logging


class ErrorCounter:
    """structlog processor: counts warning/error events by name, then lets rendering go on."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.samples: dict[str, str] = {}  # first error event of each name, for the report

    def __call__(self, _logger: object, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        name = str(event_dict.get("event", "?"))
        if method in ("error", "exception", "critical"):
            self.errors[name] += 1
            if name not in self.samples:
                detail = {k: v for k, v in event_dict.items() if k not in ("event", "timestamp", "level")}
                self.samples[name] = repr(detail)[:600]
        elif method in ("warning", "warn"):
            self.warnings[name] += 1
        return event_dict


_sink: TextIO | None = None


def quiet_logging(level: str = "WARNING") -> ErrorCounter:
    """Configure the sidecar's logging (as `serve` does) into /dev/null, counting what it logs."""
    import logging  # noqa: PLC0415

    from sidecar.logs import configure_logging  # noqa: PLC0415

    global _sink  # noqa: PLW0603 - one sink per process, kept open while logging uses it
    if _sink is None:
        _sink = open(os.devnull, "w")  # noqa: SIM115
    counter = ErrorCounter()
    saved = sys.stderr
    sys.stderr = _sink
    try:
        configure_logging(level, extra=[counter])
    finally:
        sys.stderr = saved
    logging.getLogger().addHandler(_stdlib_counter(counter))
    return counter


def _stdlib_counter(counter: ErrorCounter) -> Any:
    import logging  # noqa: PLC0415

    class StdlibCounter(logging.Handler):
        """Feeds stdlib error records (the MCP SDK logs tool exceptions there) into the counter."""

        def emit(self, record: logging.LogRecord) -> None:
            counter.errors[f"stdlib:{record.name}:{str(record.msg)[:60]}"] += 1

    return StdlibCounter(logging.ERROR)


# ---------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """An in-process emulator (frozen prices, resting orders) and a started service on it."""

    emu: Any
    service: Any
    config: Any
    journal_path: Path
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # orderLinkId -> as placed

    async def stop(self) -> None:
        await self.service.stop()
        self.service.journal.close()
        await self.emu.stop()

    def amend_frames(self) -> list[dict[str, Any]]:
        return [f for f in self.emu.frames() if f.get("op") in ("order.amend", "order.amend-batch")]

    def exchange_order(self, category: str, order_id: str) -> Any:
        """The emulator's own record of an order (its ground-truth ledger), or None."""
        found = self.emu.hub.exchange.find(category, order_id=order_id)
        return found[0] if found else None

    async def place(
        self, category: str, symbol: str, side: str, qty: str, price: str, link: str
    ) -> dict[str, Any]:
        """Rest an order and wait until the sidecar's order view has it (else it is UNKNOWN_ORDER)."""
        order = self.emu.place_order(category, symbol, side, qty, price, order_link_id=link)
        self.links[link] = order
        async with asyncio.timeout(10):
            # Polling on purpose: the service exposes no event for "order known".
            while self.service.order_state(category, symbol, order["orderId"], None) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        return dict(order)


async def start_stack(config: Any, *, seed: int = 7) -> Stack:
    from sidecar.bybit.endpoints import resolve_endpoints  # noqa: PLC0415
    from sidecar.clock import SystemClock  # noqa: PLC0415
    from sidecar.emulator import Emulator  # noqa: PLC0415
    from sidecar.journal import Journal  # noqa: PLC0415
    from sidecar.service import Credentials, Service  # noqa: PLC0415

    emu = Emulator(seed=seed, api_key=KEY, api_secret=SECRET, walk=False)
    await emu.start()
    for op in ("order.amend-batch", "order.amend"):
        for cat in ("linear", "spot"):
            emu.set_rate_limit(op, cat, 100_000)
    emu.set_rate_limit("order.realtime", "linear", 100_000)
    for (category, symbol), price in PRICES.items():
        emu.set_price(category, symbol, mark_price=price, last_price=price, index_price=price)
        # The oracle's copy of the rules must be the emulator's.
        assert Decimal(emu.tick_size(category, symbol)) == INSTRUMENTS[(category, symbol)].tick
    service = Service(
        config,
        clock=SystemClock(),
        endpoints=resolve_endpoints("sim", None, None, emu.url),
        credentials=Credentials(KEY, SECRET),
        journal=Journal(config.journal.path, config.journal.synchronous),
    )
    await service.start()
    return Stack(emu, service, config, Path(config.journal.path))


# ---------------------------------------------------------------------------------- journal


@dataclass(frozen=True)
class _Record:
    seq: int
    ts_wall_ms: int
    kind: str
    request_id: str | None
    req_id: str | None
    item_idx: int | None
    body: Any


def _by_request(path: Path) -> Iterator[tuple[str | None, list[_Record]]]:
    """Every record grouped by request (request-less records first, as one group), oldest first
    within a group. One request's records are decoded at a time: a long run's journal holds
    ~10^5 requests and keeping every body would cost far more memory than the check needs."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        group: list[_Record] = []
        current: str | None = None
        for row in conn.execute(
            "SELECT seq, ts_wall_ms, kind, request_id, req_id, item_idx, body FROM records"
            " ORDER BY request_id IS NOT NULL, request_id, seq"
        ):
            record = _Record(*row[:6], json.loads(row[6]))
            if group and record.request_id != current:
                yield current, group
                group = []
            current = record.request_id
            group.append(record)
        if group:
            yield current, group
    finally:
        conn.close()


def check_journal(path: Path, frames: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The journal checker (reliability.md §5.1 oracle 3) over one journal and the emulator's frames.

    For every journaled intent, read back as steps (`journal_format.expand`: the steps a record
    folds in, unfolded in the order they happened): `request` → `intent` → `sent` → an `ack`,
    `ack_timeout` or `connection_lost` for its reqId → one `item_outcome` per sent item → `final`.
    Also: every amend frame the emulator received has an earlier intent (write-ahead), no reqId
    reached it twice (no resend), and the CRC/hash chain holds.
    """
    from sidecar.journal import Journal  # noqa: PLC0415
    from sidecar.journal.format import decode_intent_items, expand  # noqa: PLC0415

    amend_frames = [f for f in frames if f.get("op") in ("order.amend", "order.amend-batch")]
    frame_counts = Counter(f.get("reqId") for f in amend_frames)
    problems: Counter[str] = Counter()
    examples: dict[str, str] = {}

    def bad(what: str, rid: str) -> None:
        problems[what] += 1
        examples.setdefault(what, rid)

    n_records = 0
    intents = 0
    sent = 0
    journaled_qids: set[str | None] = set()
    # Trade events journaled on their own (their request was no longer held), by reqId: the
    # request-less group comes first.
    loose_trade: set[str | None] = set()
    for rid, records in _by_request(path):
        n_records += len(records)
        if rid is None:
            loose_trade.update(
                r.req_id for r in records if r.kind in ("ack", "ack_timeout", "connection_lost")
            )
            continue
        intent = next((r for r in records if r.kind == "intent"), None)
        if intent is None:
            continue
        intents += 1
        qid = intent.req_id
        journaled_qids.add(qid)
        items = [
            int(it.get("index", n)) for n, it in enumerate(decode_intent_items(intent.body.get("items")))
        ]
        steps = expand(records)
        kinds = [st.kind for st in steps]
        if "request" not in kinds or kinds.index("request") > kinds.index("intent"):
            bad("request_missing_or_after_intent", rid)
        if "not_sent" in kinds:
            if frame_counts.get(qid, 0):
                bad("not_sent_but_received", rid)
            continue
        if "sent" not in kinds:
            bad("sent_missing", rid)
            continue
        sent += 1
        sent_at = kinds.index("sent")
        trade = [n for n, k in enumerate(kinds) if k in ("ack", "ack_timeout", "connection_lost")]
        if not trade and qid not in loose_trade:
            bad("ack_or_timeout_missing", rid)
        outcomes = {
            st.item_idx: n
            for n, st in enumerate(steps)
            if st.kind == "item_outcome" and st.item_idx is not None
        }
        if [i for i in items if i not in outcomes]:
            bad("item_outcome_missing", rid)
        finals = [n for n, k in enumerate(kinds) if k == "final"]
        if not finals:
            bad("final_missing", rid)
        elif outcomes and max(outcomes.values()) > finals[0]:
            bad("item_outcome_after_final", rid)
        if outcomes and min(outcomes.values()) < sent_at:
            bad("item_outcome_before_sent", rid)
        if trade and outcomes and min(trade) > min(outcomes.values()):
            bad("verdict_before_ack_or_timeout_record", rid)
        if frame_counts.get(qid, 0) != 1:
            bad("frame_count_not_1", rid)
    unjournaled = [q for q in frame_counts if q not in journaled_qids]
    with Journal(path) as j:
        chain_ok = j.verify_chain()
    return {
        "records": n_records,
        "intents": intents,
        "sent": sent,
        "amend_frames": len(amend_frames),
        "resent_req_ids": sum(1 for c in frame_counts.values() if c > 1),
        "frames_without_intent": len(unjournaled),
        "problems": dict(problems),
        "problem_examples": examples,
        "chain_ok": chain_ok,
    }


# ---------------------------------------------------------------------------------- figures


def pct_ms(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (ms, 2 decimals) or None when empty."""
    if not values:
        return None
    s = sorted(values)
    idx = min(len(s) - 1, max(0, -(-int(q * 1000) * len(s) // 1000) - 1))
    return round(s[idx], 2)


def resources() -> dict[str, Any]:
    """This process: RSS (MB), open fds, asyncio tasks not named `soak-*` (inside a running loop)."""
    rss_kb = 0
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    sockets = 0
    try:
        names = os.listdir("/proc/self/fd")
        fds = len(names)
        for name in names:
            with contextlib.suppress(OSError):
                sockets += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    except OSError:
        fds = -1
    try:  # the sidecar's tasks: the harness names its own "soak-..."
        tasks = sum(1 for t in asyncio.all_tasks() if not t.get_name().startswith("soak"))
    except RuntimeError:
        tasks = -1
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": fds, "sockets": sockets, "tasks": tasks}


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="sidecar-soak-") as d:
        yield Path(d)
