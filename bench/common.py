"""Set-up shared by the benchmarks (bench/) and the reliability suite (reliability/): counts, the
emulator process, the orders, the bench config, quiet logging, temp dirs, this process's RSS.

Its one job is set-up that every measured client shares, so all of them amend the same kind of
batch against the same emulator process over loopback: a standalone `sidecar emulator` in its own
process (exchange limits raised, BTCUSDT frozen), 20 resting Buy orders per client (distinct orders,
so clients never disturb each other), two valid target prices to alternate between, the auth frame
and a bench config for the sidecar; and the sidecar's logging configured as `serve` does it but
rendered into /dev/null (optionally counting warnings and errors). It must not time anything itself
(bench/stats.py turns samples into figures; bench/report.py holds `machine()` and the target shape).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the sidecar is imported where it is measured, not when this module loads
    from sidecar.config import SidecarConfig
    from sidecar.service import Service

__all__ = [
    "API_KEY",
    "API_SECRET",
    "CATEGORY",
    "PRICES",
    "QTY",
    "RECV_WINDOW_MS",
    "ROOT",
    "SYMBOL",
    "Counts",
    "EmulatorProcess",
    "ErrorCounter",
    "OrderSet",
    "auth_frame",
    "bench_config",
    "build_service",
    "check_verified",
    "quiet_logging",
    "rss_kb",
    "temp_dir",
    "wall_ms",
]

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "emulator-key"  # the emulator's well-known test credentials (not secrets)
API_SECRET = "emulator-secret"
CATEGORY = "linear"
SYMBOL = "BTCUSDT"
MARK = "95000.00"
# Two valid targets, 1 tick apart and well inside the ±150 bps band: every amend changes the order.
# Written as the sidecar's codec writes them (no trailing zeros), so every client sends the same text.
PRICES = ("94000", "94000.1")
QTY = "0.001"
RECV_WINDOW_MS = 5000
ITEMS = 20


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Counts:
    """How many requests each figure is measured over (env overrides so the smoke test can go tiny)."""

    runs: int = field(default_factory=lambda: _env_int("BENCH_RUNS", 2000))
    warmup: int = field(default_factory=lambda: _env_int("BENCH_WARMUP", 200))
    decision_runs: int = field(default_factory=lambda: _env_int("BENCH_DECISION_RUNS", 20_000))
    mcp_runs: int = field(default_factory=lambda: _env_int("BENCH_MCP_RUNS", 300))
    drop_runs: int = field(default_factory=lambda: _env_int("BENCH_DROP_RUNS", 1000))
    throughput_s: float = field(default_factory=lambda: float(os.environ.get("BENCH_THROUGHPUT_S", "10")))
    submitters: int = field(default_factory=lambda: _env_int("BENCH_SUBMITTERS", 8))
    stream_events: int = field(default_factory=lambda: _env_int("BENCH_STREAM_EVENTS", 200_000))
    rss_orders: int = field(default_factory=lambda: _env_int("BENCH_RSS_ORDERS", 100_000))


def check_verified(body: dict[str, Any], what: str) -> None:
    """Raise unless a measured call's answer is `verified` (a figure of failed calls is no figure)."""
    if body.get("outcome") != "verified":
        items = body.get("items") or [{}]
        raise RuntimeError(
            f"{what}: outcome {body.get('outcome')!r}: {body.get('reasons') or items[0].get('reasons')}"
        )


def auth_frame(now_ms: int) -> str:
    """`{"op":"auth","args":[key, expires, hex HMAC(secret, "GET/realtime"+expires)]}` (reference §1.3)."""
    expires = now_ms + 10_000
    sig = hmac.new(API_SECRET.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"op": "auth", "args": [API_KEY, expires, sig]}, separators=(",", ":"))


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class OrderSet:
    """One client's 20 resting orders and the batch that moves all of them to price A or B."""

    name: str
    order_ids: list[str]

    def items(self, i: int) -> list[dict[str, str]]:
        price = PRICES[i % 2]
        return [{"symbol": SYMBOL, "orderId": oid, "price": price} for oid in self.order_ids]

    def target(self, i: int) -> str:
        return PRICES[i % 2]


class EmulatorProcess:
    """`python -m sidecar emulator --port 0 --seed 1` in its own process, driven by its control API."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self._orders = 0

    def start(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "emulator", "--port", "0", "--seed", str(self.seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"emulator exited before printing its URL (rc={self.proc.wait()})")
        self.url = json.loads(line)["url"]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def prepare(self) -> None:
        """Raise the exchange limits out of the way and freeze the market."""
        for op in ("order.amend-batch", "order.amend"):
            self.post("/emulator/limits", {"op": op, "category": CATEGORY, "perSecond": 100_000})
        self.post("/emulator/limits", {"op": "order.realtime", "category": CATEGORY, "perSecond": 100_000})
        self.post(
            "/emulator/prices", {"category": CATEGORY, "symbol": SYMBOL, "markPrice": MARK, "lastPrice": MARK}
        )

    def rest_orders(self, name: str, n: int = ITEMS) -> OrderSet:
        """Rest `n` Buy orders for one client, at price A (the first target)."""
        ids = []
        for j in range(n):
            self._orders += 1
            body = {
                "category": CATEGORY,
                "symbol": SYMBOL,
                "side": "Buy",
                "orderType": "Limit",
                "qty": QTY,
                "price": PRICES[1],
                "orderLinkId": f"bench-{name}-{j}-{self._orders}",
            }
            ids.append(self.post("/emulator/orders", body)["order"]["orderId"])
        return OrderSet(name, ids)


def write_bench_config(path: Path, journal: Path, exchange: list[dict[str, Any]], **sections: Any) -> Path:
    """config/sidecar.yaml with the local limits (tool, global, symbol) raised out of the way, the
    given exchange budget rules, the journal at `journal`, and `sections` set as they are; written
    to `path`."""
    import yaml  # noqa: PLC0415 - a project dependency; only the sidecar phases need it

    data = yaml.safe_load((ROOT / "config" / "sidecar.yaml").read_text())
    big = 1_000_000
    data["rate_limits"] = [
        {"scope": scope, "max": big, "window_s": 1} for scope in ("tool", "global", "symbol")
    ]
    data["rate_limits"] += [{"scope": "exchange", **rule} for rule in exchange]
    data.setdefault("journal", {})["path"] = str(journal)
    data.update(sections)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bench_config(tmp: Path) -> Path:
    """config/sidecar.yaml with the local limits raised, big exchange budgets, a temp journal."""
    budgets = [
        {"op": op, "category": "linear", "max": 100_000, "window_s": 1}
        for op in ("order.amend-batch", "order.amend")
    ]
    return write_bench_config(tmp / "sidecar-bench.yaml", tmp / "journal.sqlite3", budgets)


def build_service(config: SidecarConfig, exchange_url: str) -> Service:
    """A `Service` on the emulator at `exchange_url` with its own journal, built as `sidecar serve`
    builds it (system clock, the emulator's test credentials); not started."""
    from sidecar.testing.stack import build_service as build  # noqa: PLC0415

    return build(config, exchange_url)


@contextmanager
def temp_dir(prefix: str = "sidecar-bench-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


def rss_kb() -> int:
    """This process's resident set size (VmRSS), in KiB; 0 where /proc cannot tell."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


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


class _StdlibCounter(logging.Handler):
    """Feeds stdlib error records (the MCP SDK logs tool exceptions there) into a counter."""

    def __init__(self, counter: ErrorCounter) -> None:
        super().__init__(logging.ERROR)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self.counter.errors[f"stdlib:{record.name}:{str(record.msg)[:60]}"] += 1


_sink: TextIO | None = None


def quiet_logging(level: str, counter: ErrorCounter | None = None) -> None:
    """Configure the sidecar's logging as `serve` does (so its cost counts), rendered into /dev/null
    instead of stderr; with `counter`, every warning and error event (structlog and stdlib) is
    counted by name. A later call replaces the earlier configuration and counter."""
    from sidecar.logs import configure_logging  # noqa: PLC0415 - the sidecar only where it is measured

    global _sink  # noqa: PLW0603 - one sink per process, kept open as long as logging uses it
    if _sink is None:
        _sink = open(os.devnull, "w")  # noqa: SIM115
    configure_logging(level, extra=[counter] if counter is not None else (), stream=_sink)
    if counter is not None:  # configure_logging has just replaced the root logger's handlers
        logging.getLogger().addHandler(_StdlibCounter(counter))
