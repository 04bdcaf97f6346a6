"""Pure pieces: reconnect backoff and the pydantic wire models."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from pydantic import ValidationError

from sidecar.bybit._ws import Backoff, SocketTiming
from sidecar.bybit.messages import (
    InstrumentItem,
    PrivateReply,
    PublicTickerMessage,
    RestEnvelope,
    TradeResponse,
)
from sidecar.core.types import Category


def test_backoff_grows_caps_jitters_and_resets() -> None:
    b = Backoff(rng=random.Random(1))
    delays = [b.next_s() for _ in range(10)]
    bases = [0.5, 0.75, 1.125, 1.6875, 2.53125, 3.796875, 5.0, 5.0, 5.0, 5.0]
    assert all(abs(d - base) <= 0.25 + 1e-9 for d, base in zip(delays, bases, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert abs(b.next_s() - 0.5) <= 0.25
    with pytest.raises(ValueError):
        Backoff(initial_s=2, max_s=1)


def test_backoff_never_negative() -> None:
    b = Backoff(initial_s=0.0, max_s=0.0, jitter_s=1.0, rng=random.Random(3))
    assert all(b.next_s() >= 0 for _ in range(50))


LINEAR = {
    "symbol": "BTCUSDT",
    "status": "Trading",
    "priceScale": "2",
    "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
    "lotSizeFilter": {
        "maxOrderQty": "1190.000",
        "minOrderQty": "0.001",
        "qtyStep": "0.001",
        "postOnlyMaxOrderQty": "1190.000",
        "maxMktOrderQty": "500.000",
        "minNotionalValue": "5",
    },
    "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
}

SPOT = {
    "symbol": "BTCUSDT",
    "status": "Trading",
    "priceFilter": {"tickSize": "0.01"},
    "lotSizeFilter": {
        "basePrecision": "0.000001",
        "quotePrecision": "0.00000001",
        "minOrderQty": "0.000048",
        "maxOrderQty": "71.73956243",
        "minOrderAmt": "1",
        "maxLimitOrderQty": "83",
        "maxMarketOrderQty": "41",
    },
}


def test_linear_instrument_from_reference_example() -> None:
    inst = InstrumentItem.model_validate(LINEAR).to_instrument(Category.LINEAR)
    assert (inst.tick_size, inst.qty_step, inst.min_qty, inst.max_qty) == (
        Decimal("0.10"),
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal("1190.000"),
    )
    assert inst.min_price == Decimal("0.10") and inst.max_price == Decimal("1999999.80")


def test_spot_instrument_uses_base_precision_and_max_limit_qty() -> None:
    inst = InstrumentItem.model_validate(SPOT).to_instrument(Category.SPOT)
    # minOrderQty is deprecated and unchecked by Bybit (D-INSTR): the floor is one base-precision step.
    assert (inst.qty_step, inst.min_qty, inst.max_qty) == (
        Decimal("0.000001"),
        Decimal("0.000001"),
        Decimal(83),
    )
    assert inst.min_price is None


def test_instrument_missing_rules_is_an_error() -> None:
    with pytest.raises(ValueError, match="missing"):
        InstrumentItem.model_validate({"symbol": "X"}).to_instrument(Category.LINEAR)
    with pytest.raises(ValidationError):
        InstrumentItem.model_validate({"symbol": "X", "priceFilter": {"tickSize": "abc"}})


def test_envelopes() -> None:
    t = TradeResponse.model_validate(
        {"reqId": "r", "retCode": 0, "retMsg": "OK", "op": "order.amend", "connId": "c", "new": 1}
    )
    assert (t.req_id, t.conn_id) == ("r", "c")
    assert TradeResponse(req_id="r").req_id == "r"  # python names work too
    p = PrivateReply.model_validate({"success": True, "ret_msg": "", "op": "auth", "conn_id": "c"})
    assert p.success and p.conn_id == "c"
    e = RestEnvelope.model_validate({"retCode": 0, "retMsg": "OK", "result": {}, "time": 1})
    assert e.ret_code == 0
    m = PublicTickerMessage.model_validate(
        {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", "markPrice": ""}}
    )
    assert m.data.mark_price is None and m.type == "delta"


def test_socket_timing_holds_bybits_20_second_ping_rule_in_one_place() -> None:
    assert SocketTiming().ping_interval_s == 10.0
    assert SocketTiming(ping_interval_s=20).ping_interval_s == 20
    with pytest.raises(ValueError, match="every 20 s"):
        SocketTiming(ping_interval_s=20.5)
    with pytest.raises(ValueError, match="> 0"):
        SocketTiming(pong_timeout_s=0)
    with pytest.raises(ValueError, match="auth_expiry_ms"):
        SocketTiming(auth_expiry_ms=0)
