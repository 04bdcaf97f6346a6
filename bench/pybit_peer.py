"""The official SDK as a peer: pybit 5.17 `WebSocketTrading.amend_batch_order` to the ack, and to
the matching `order` pushes on pybit's private `WebSocket` (its user's own verification).

pybit is synchronous and threaded (websocket-client): the caller's thread sends, the ack arrives on
pybit's socket thread and is handed back through a `threading.Event`, exactly what a pybit user
waits on. URLs are pointed at the emulator by patching the module constants before construction
(reference §7.2). 5.17 sends before it registers the callback (reference §7.4), so the timed runs
use `CallbackFirstTrading` (same frame, callback registered first); `measure_drop_rate` measures
the unmodified class's drops with a per-request timeout. It must not import sidecar code.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import pybit._websocket_trading as pybit_trading
import pybit.unified_trading as pybit_unified
from pybit.unified_trading import WebSocket, WebSocketTrading

from bench.common import API_KEY, API_SECRET, CATEGORY, RECV_WINDOW_MS, EmulatorProcess, OrderSet

__all__ = ["CallbackFirstTrading", "measure_pybit_ack", "measure_pybit_drop_rate", "measure_pybit_verified"]

WAIT_S = 5.0


class CallbackFirstTrading(WebSocketTrading):  # type: ignore[misc]  # pybit has no type hints
    """pybit's `_send_order_operation` with the two calls swapped: register, then send."""

    def _send_order_operation(
        self, operation: str, callback: Any, request: Any, error_callback: Any = None
    ) -> None:
        request_id = str(uuid.uuid4())
        header: dict[str, Any] = {"X-BAPI-TIMESTAMP": pybit_trading._helpers.generate_timestamp()}
        if self.recv_window:
            header["X-BAPI-RECV-WINDOW"] = self.recv_window
        message = {"reqId": request_id, "header": header, "op": operation, "args": [request]}
        self._set_callback(request_id, callback, error_callback)
        self.ws.send(json.dumps(message))


def _patch(emu: EmulatorProcess) -> None:
    pybit_trading.TRADE_WSS = emu.ws_url + "/v5/trade"
    pybit_unified.PRIVATE_WSS = emu.ws_url + "/v5/private"
    # pybit warns for every error ack and every unregistered reqId; the counts are what we report.
    logging.getLogger("pybit").setLevel(logging.CRITICAL)


def _trading(cls: type[WebSocketTrading]) -> WebSocketTrading:
    t = cls(recv_window=RECV_WINDOW_MS, testnet=False, api_key=API_KEY, api_secret=API_SECRET)
    deadline = time.monotonic() + WAIT_S
    while not t.auth:  # pybit does not wait for the auth reply itself (reference §3.3)
        if time.monotonic() > deadline:
            raise RuntimeError("pybit trade socket did not authenticate")
        time.sleep(0.005)
    return t


class _Waiter:
    """The ack (or error) of the request in flight, handed from pybit's thread to the caller."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.msg: dict[str, Any] | None = None

    def ok(self, msg: dict[str, Any]) -> None:
        self.msg = msg
        self.event.set()

    def err(self, msg: dict[str, Any]) -> None:
        self.msg = msg
        self.event.set()


def _check(msg: dict[str, Any] | None, i: int) -> None:
    if msg is None:
        raise RuntimeError(f"pybit: no ack for request {i} within {WAIT_S}s")
    codes = [e.get("code") for e in msg.get("retExtInfo", {}).get("list", [])]
    if msg.get("retCode") != 0 or any(codes):
        raise RuntimeError(f"pybit: request {i} failed: {msg.get('retMsg')} {codes[:3]}")


def measure_pybit_ack(emu: EmulatorProcess, orders: OrderSet, runs: int, warmup: int) -> list[int]:
    _patch(emu)
    trade = _trading(CallbackFirstTrading)
    samples: list[int] = []
    try:
        for i in range(warmup + runs):
            w = _Waiter()
            items = orders.items(i)
            t0 = time.perf_counter_ns()
            trade.amend_batch_order(w.ok, w.err, category=CATEGORY, request=items)
            w.event.wait(WAIT_S)
            t1 = time.perf_counter_ns()
            _check(w.msg, i)
            if i >= warmup:
                samples.append(t1 - t0)
    finally:
        trade.exit()
    return samples


def measure_pybit_drop_rate(
    emu: EmulatorProcess, orders: OrderSet, runs: int, timeout_s: float = 0.5
) -> dict[str, float | int]:
    """Unmodified `WebSocketTrading`: how many acks never reach the callback (reference §7.4)."""
    _patch(emu)
    trade = _trading(WebSocketTrading)
    dropped = 0
    try:
        for i in range(runs):
            w = _Waiter()
            trade.amend_batch_order(w.ok, w.err, category=CATEGORY, request=orders.items(i))
            if not w.event.wait(timeout_s):
                dropped += 1
    finally:
        trade.exit()
    return {"dropped": dropped, "runs": runs, "rate": round(dropped / runs, 4) if runs else 0.0}


class _Verifier:
    """Ack + one `order` push per item at the target price: what a pybit user must wait for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.want: dict[str, Decimal] = {}
        self.acked = False
        self.ack: dict[str, Any] | None = None

    def arm(self, items: list[dict[str, str]]) -> None:
        with self.lock:
            self.want = {it["orderId"]: Decimal(it["price"]) for it in items}
            self.acked = False
            self.ack = None
            self.done.clear()

    def _maybe_done(self) -> None:
        if self.acked and not self.want:
            self.done.set()

    def on_ack(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.acked = True
            self.ack = msg
            self._maybe_done()

    def on_order(self, msg: dict[str, Any]) -> None:
        with self.lock:
            for d in msg.get("data", []):
                # The push prints the tick's decimals ("94000.10"): compare numbers, not text.
                if self.want.get(d.get("orderId")) == Decimal(d.get("price") or "0"):
                    del self.want[d["orderId"]]
            self._maybe_done()


def measure_pybit_verified(emu: EmulatorProcess, orders: OrderSet, runs: int, warmup: int) -> list[int]:
    _patch(emu)
    v = _Verifier()
    private = WebSocket("private", testnet=False, api_key=API_KEY, api_secret=API_SECRET)
    trade = _trading(CallbackFirstTrading)
    samples: list[int] = []
    try:
        private.order_stream(v.on_order)
        deadline = time.monotonic() + WAIT_S
        while not private.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError("pybit private stream did not connect")
            time.sleep(0.005)
        time.sleep(0.3)  # setup only: pybit exposes no subscribe reply; let it settle before timing
        for i in range(warmup + runs):
            items = orders.items(i)
            v.arm(items)
            t0 = time.perf_counter_ns()
            trade.amend_batch_order(v.on_ack, v.on_ack, category=CATEGORY, request=items)
            ok = v.done.wait(WAIT_S)
            t1 = time.perf_counter_ns()
            _check(v.ack, i)
            if not ok:
                raise RuntimeError(f"pybit: request {i} acked but {len(v.want)} order pushes missing")
            if i >= warmup:
                samples.append(t1 - t0)
    finally:
        trade.exit()
        private.exit()
    return samples
