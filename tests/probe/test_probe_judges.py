"""The probe's judgements on crafted and real frames (tests/fixtures/bybit_frames/): the documented
frames pass, and each kind of difference is reported `differs` with what it means for the sidecar."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from sidecar.bybit.codec import decode_trade_obj
from sidecar.core.types import Ack, Category
from sidecar.probe.context import Rules
from sidecar.probe.public_checks import judge_option_reply, judge_pongs, pong_shape
from sidecar.probe.sockets import Frame
from sidecar.probe.tickers import TickerRecording, judge_delta_fields, judge_quiet_gap, max_quote_age_ms
from sidecar.probe.trade_checks import judge_ack_headers, judge_clock_offset

FRAMES = Path(__file__).resolve().parents[1] / "fixtures" / "bybit_frames"
MS = 1_000_000


def real(file: str, name: str) -> dict[str, Any]:
    frames = {f["name"]: f["frame"] for f in json.loads((FRAMES / f"{file}.json").read_text())}
    return dict(frames[name])


def frame(msg: Any, recv_ns: int = 0) -> Frame:
    return Frame(recv_ns, msg, json.dumps(msg))


# ------------------------------------------------------------------ pongs and the option reply


def test_the_documented_pongs_pass() -> None:
    observed = {
        "linear": pong_shape(frame(real("public_streams", "linear_pong"))),
        "inverse": pong_shape(frame(real("public_streams", "linear_pong"))),
        "spot": pong_shape(frame(real("public_streams", "spot_pong"))),
        "option": pong_shape(frame(real("public_streams", "option_pong"))),
    }
    assert judge_pongs(observed).status == "ok"


def test_a_pong_the_sidecar_would_not_recognise_differs_and_says_so() -> None:
    observed = {
        "linear": pong_shape(frame({"success": True, "ret_msg": "PONG", "op": "heartbeat"})),
        "inverse": pong_shape(frame(real("public_streams", "linear_pong"))),
        "spot": pong_shape(frame(real("public_streams", "spot_pong"))),
        "option": pong_shape(None),
    }
    result = judge_pongs(observed)
    assert result.status == "differs"
    assert "does not recognise the pong of linear, option" in result.detail
    assert result.observed["option"] == "no reply"


def test_a_recognised_pong_of_another_shape_differs_as_harmless() -> None:
    observed = {
        "linear": pong_shape(frame({"op": "pong", "args": ["1"]})),  # option's shape on linear
        "inverse": pong_shape(frame(real("public_streams", "linear_pong"))),
        "spot": pong_shape(frame(real("public_streams", "spot_pong"))),
        "option": pong_shape(frame(real("public_streams", "option_pong"))),
    }
    result = judge_pongs(observed)
    assert result.status == "differs" and "still recognises" in result.detail


def test_the_documented_option_subscribe_reply_passes() -> None:
    reply = real("public_streams", "option_subscribe_reply")
    assert judge_option_reply(frame(reply), "orderbook.100.BTC-6JAN23-18000-C").status == "ok"


def test_option_replies_that_differ() -> None:
    reply = real("public_streams", "option_subscribe_reply")
    topic = "orderbook.100.BTC-6JAN23-18000-C"
    with_op = judge_option_reply(frame({**reply, "op": "subscribe"}), topic)
    assert with_op.status == "differs" and with_op.observed["recognised"] is True
    failed = {**reply, "success": False, "data": {"failTopics": [topic], "successTopics": []}}
    refused = judge_option_reply(frame(failed), topic)
    assert refused.status == "differs" and "does not recognise" in refused.detail
    assert judge_option_reply(None, topic).status == "differs"


# ------------------------------------------------------------------ ack headers and the clock


def _ack(msg: dict[str, Any]) -> Ack | None:
    decoded = decode_trade_obj(msg)
    return decoded if isinstance(decoded, Ack) else None


def test_the_documented_ack_header_passes() -> None:
    ack = real("trade_socket", "single_ack")
    result = judge_ack_headers(ack["header"], _ack(ack))
    assert result.status == "ok", result


def test_ack_headers_that_differ() -> None:
    ack = real("trade_socket", "single_ack")
    header = dict(ack["header"])
    header["TraceId"] = header.pop("Traceid")  # the table's spelling: still decoded
    renamed = judge_ack_headers(header, _ack({**ack, "header": header}))
    assert renamed.status == "differs" and "harmless" in renamed.detail
    numbers = {k: int(v) if v.isdigit() else v for k, v in ack["header"].items()}
    typed = judge_ack_headers(numbers, _ack({**ack, "header": numbers}))
    assert typed.status == "differs" and typed.observed["allStrings"] is False
    lost = {k: v for k, v in ack["header"].items() if k != "X-Bapi-Limit-Status"}
    missing = judge_ack_headers(lost, _ack({**ack, "header": lost}))
    assert missing.status == "differs" and "could not read every value" in missing.detail
    assert judge_ack_headers(None, None).status == "differs"


def test_clock_sources_that_agree_pass_and_a_large_offset_asks_for_ntp() -> None:
    agree: dict[str, int | None] = {
        "rest": -2500,
        "tradePong": -2490,
        "ackTimenow": -2510,
        "privatePong": -2505,
    }
    result = judge_clock_offset(agree, max_rtt_ms=4)
    assert result.status == "ok"
    assert result.observed["offsetMs"] in (-2505, -2500, -2502)
    assert "behind this host" in result.detail and "NTP" in result.detail
    near = judge_clock_offset(dict.fromkeys(agree, 3), max_rtt_ms=4)
    assert near.status == "ok" and "NTP" not in near.detail


def test_clock_sources_that_disagree_or_are_missing_differ() -> None:
    apart = judge_clock_offset(
        {"rest": 0, "tradePong": 900, "ackTimenow": 0, "privatePong": 0}, max_rtt_ms=10
    )
    assert apart.status == "differs" and "disagree by 900 ms" in apart.detail
    missing = judge_clock_offset(
        {"rest": 0, "tradePong": None, "ackTimenow": 0, "privatePong": 0}, max_rtt_ms=1
    )
    assert missing.status == "differs" and "tradePong" in missing.detail


# ------------------------------------------------------------------ tickers


def test_max_quote_age_counts_from_each_proof_to_the_next_update() -> None:
    # Snapshot at 0; a vouch for t=600 arrives at 650; a frame at 2000; the run ends at 2100.
    samples = [(0, 0), (650 * MS, 600 * MS), (2000 * MS, 2000 * MS)]
    assert max_quote_age_ms(samples, 2100 * MS) == 1400  # 600 -> 2000
    assert max_quote_age_ms([(0, 0)], 3000 * MS) == 3000  # nothing after the snapshot


def _recording(**kw: Any) -> TickerRecording:
    rec = TickerRecording(
        symbols=((Category.LINEAR, "NKNUSDT"),),
        seconds=4,
        max_age_ms=2000,
        ping_interval_ms=666,
        end_ns=4000 * MS,
    )
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def test_a_quiet_feed_vouched_by_pongs_passes_and_one_that_goes_stale_differs() -> None:
    snapshot = frame(real("public_streams", "linear_ticker_mainnet_snapshot"), 0)
    delta = frame(real("public_streams", "linear_ticker_mainnet_delta"), 3800 * MS)  # 3.8 s of silence
    frames = {Category.LINEAR: [snapshot, delta]}
    vouched = [(0, 0)] + [(t * MS + 5 * MS, t * MS) for t in range(666, 4000, 666)]
    fresh = judge_quiet_gap(_recording(frames=frames, quotes={(Category.LINEAR, "NKNUSDT"): vouched}))
    assert fresh.status == "ok", fresh
    assert fresh.observed["bySymbol"]["linear:NKNUSDT"]["maxFrameGapMs"] == 3800
    assert "1 silences longer" in fresh.detail
    silent = [(0, 0), (3800 * MS, 3800 * MS)]  # no pong answered in between
    stale = judge_quiet_gap(_recording(frames=frames, quotes={(Category.LINEAR, "NKNUSDT"): silent}))
    assert stale.status == "differs" and "REFERENCE_PRICE_STALE" in stale.detail
    none = judge_quiet_gap(_recording(frames={}, quotes={}))
    assert none.status == "differs" and "REFERENCE_PRICE_MISSING" in none.detail


def test_the_real_snapshot_and_delta_carry_only_what_changed() -> None:
    snapshot = frame(real("public_streams", "linear_ticker_mainnet_snapshot"), 0)
    delta = frame(real("public_streams", "linear_ticker_mainnet_delta"), 3800 * MS)
    spot = frame(real("public_streams", "spot_ticker_snapshot"), 0)
    result = judge_delta_fields(
        _recording(frames={Category.LINEAR: [snapshot, delta], Category.SPOT: [spot]})
    )
    assert result.status == "ok", result
    assert result.detail.startswith("1 deltas")


def test_deltas_that_repeat_fields_or_do_not_decode_differ() -> None:
    snap_msg = real("public_streams", "linear_ticker_mainnet_snapshot")
    snapshot = frame(snap_msg, 0)
    symbol = snap_msg["data"]["symbol"]
    repeat = {
        "topic": snap_msg["topic"],
        "type": "delta",
        "data": {"symbol": symbol, "lastPrice": snap_msg["data"]["lastPrice"]},
    }
    repeated = judge_delta_fields(_recording(frames={Category.LINEAR: [snapshot, frame(repeat, MS)]}))
    assert repeated.status == "differs" and repeated.observed["repeatedUnchangedFields"] == ["lastPrice"]
    assert "harmless" in repeated.detail
    bad = {"topic": snap_msg["topic"], "type": "delta", "data": {"symbol": symbol, "markPrice": "oops"}}
    broken = judge_delta_fields(_recording(frames={Category.LINEAR: [snapshot, frame(bad, MS)]}))
    assert broken.status == "differs" and broken.observed["undecodable"] == 1
    first_delta = judge_delta_fields(_recording(frames={Category.LINEAR: [frame(repeat, 0)]}))
    assert first_delta.observed["firstFrameSnapshot"] is False and first_delta.status == "differs"
    spot_delta = {**real("public_streams", "spot_ticker_snapshot"), "type": "delta"}
    stray = judge_delta_fields(_recording(frames={Category.SPOT: [frame(spot_delta, 0)]}))
    assert stray.status == "differs" and stray.observed["deltasOnSnapshotOnlyCategories"] == 1


def test_no_delta_in_the_window_is_skipped_not_ok() -> None:
    snapshot = frame(real("public_streams", "linear_ticker_mainnet_snapshot"), 0)
    result = judge_delta_fields(_recording(frames={Category.LINEAR: [snapshot]}))
    assert result.status == "skipped" and "--ticker-seconds" in result.detail


# ------------------------------------------------------------------ order sizes


def test_rules_give_prices_on_tick_and_the_smallest_valid_qty() -> None:
    rules = Rules(
        tick=Decimal("0.10"), step=Decimal("0.001"), min_qty=Decimal("0.001"), min_notional=Decimal(5)
    )
    assert rules.floor_price(Decimal("90250.37")) == Decimal("90250.30")
    assert rules.ceil_price(Decimal("90250.31")) == Decimal("90250.40")
    assert rules.qty_for(Decimal("90000")) == Decimal("0.001")
    assert rules.qty_for(Decimal("1000")) == Decimal("0.006")  # 5.5 USDT needs 0.0055 -> 0.006


def test_a_recorder_that_failed_is_an_error_not_a_quiet_market() -> None:
    result = judge_delta_fields(_recording(frames={}, errors=["linear ticker recorder: OSError: refused"]))
    assert result.status == "error" and "OSError" in result.detail
