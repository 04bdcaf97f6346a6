"""The kill switch on a fake clock: the unverified trip and the operator's resume, and the
watchdog of the event task."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from sidecar.core.trips import Trip, TripReason
from sidecar.core.types import TradingState
from tests.service.kit import Rig, amend, codes, started, within


async def _unverified(rig: Rig, *orders: int) -> None:
    """Amend each order; Bybit acks, nothing shows the change, the deadline passes: unverified."""
    calls = [rig.submit(amend((n, "94050.0"))) for n in orders]
    for _ in orders:
        rig.exchange.trade.ack((await rig.next_sent()).req_id)
        await rig.reached("after_ack")
    rig.advance(3_100)
    for call in calls:
        assert (await within(call)).body["outcome"] == "unverified"


async def test_too_many_unverified_requests_halt_and_resume_starts_counting_again(tmp_path: Path) -> None:
    # More than one request with unverified items in the window halts; no read-back, to be brief.
    async with started(tmp_path, safety={"max_unverified": 1}, verification={"rest_fallback": False}) as rig:
        await _unverified(rig, 1)
        rig.service.check_trips(rig.clock.monotonic_ns())
        assert rig.service.trading_state()[0] is TradingState.ACTIVE  # one is not more than one

        await _unverified(rig, 2)
        rig.service.check_trips(rig.clock.monotonic_ns())
        state, reason = rig.service.trading_state()
        assert state is TradingState.HALTED
        assert "unverified" in reason

        halted = await within(rig.service.submit(amend((3, "94050.0"))))
        assert codes(halted) == {"TRADING_HALTED"}
        assert len(rig.exchange.trade.sent) == 2

        await rig.service.resume()
        assert rig.service.trading_state()[0] is TradingState.ACTIVE
        # Counting starts again from zero: one more unverified request does not trip (it would
        # have, with the two before the resume still counted).
        await _unverified(rig, 3)
        rig.service.check_trips(rig.clock.monotonic_ns())
        assert rig.service.trading_state()[0] is TradingState.ACTIVE


async def test_a_dead_event_task_answers_the_waiting_calls_halts_and_is_restarted(rig: Rig) -> None:
    call = rig.submit(amend((1, "94050.0")))
    await rig.next_sent()
    dead = rig.service.intake.task
    assert dead is not None

    dead.cancel()  # the task that applies exchange events stops (as a crash of it would)
    result = await within(call)

    assert result.body["outcome"] == "unverified", result.body
    state, reason = rig.service.trading_state()
    assert state is TradingState.HALTED
    assert "event task" in reason
    restarted = rig.service.intake.task
    assert restarted is not None and restarted is not dead
    assert not restarted.done()
    assert rig.service.intake.restarts == 1

    # The restarted task applies events: after the operator's resume a new amend is verified.
    await rig.service.resume()
    second = rig.submit(amend((2, "94050.0")))
    sent = await rig.next_sent()
    rig.exchange.trade.ack(sent.req_id)
    rig.exchange.change(rig.applied(2, price=Decimal("94050")))
    assert (await within(second)).body["outcome"] == "verified"


async def test_bybit_rate_limiting_past_the_threshold_switches_to_reducing(tmp_path: Path) -> None:
    async with started(tmp_path, safety={"max_exchange_rate_limited": 1}) as rig:
        first = rig.submit(amend((1, "94050.0")))
        rig.exchange.trade.ack((await rig.next_sent()).req_id, [10006])
        await rig.reached("after_ack")
        rig.service.check_trips(rig.clock.monotonic_ns())
        assert rig.service.trading_state()[0] is TradingState.ACTIVE  # one is not more than one

        # Bybit's budget is spent: nothing more is sent on it until its window has passed.
        throttled = await within(rig.service.submit(amend((2, "94050.0"))))
        assert throttled.body["outcome"] == "throttled"
        assert len(rig.exchange.trade.calls) == 1
        rig.advance(throttled.body["retryAfterMs"])

        second = rig.submit(amend((2, "94050.0")))
        rig.exchange.trade.ack((await rig.next_sent()).req_id, [10006])
        await rig.reached("after_ack")
        rig.service.check_trips(rig.clock.monotonic_ns())

        state, reason = rig.service.trading_state()
        assert state is TradingState.REDUCING
        assert "10006" in reason
        for call in (first, second):
            call.cancel()


async def test_a_socket_down_longer_than_the_limit_halts(tmp_path: Path) -> None:
    async with started(tmp_path, safety={"socket_down_trip_s": 5}) as rig:
        rig.exchange.private.lose()
        rig.service.check_trips(rig.clock.monotonic_ns())  # the first check that sees it down
        rig.advance(4_000)
        rig.service.check_trips(rig.clock.monotonic_ns())
        assert rig.service.trading_state()[0] is TradingState.ACTIVE
        health = rig.service.health()
        assert (health["tradeSocket"], health["privateSocket"]) == ("up", "down")

        rig.advance(1_500)
        rig.service.check_trips(rig.clock.monotonic_ns())
        state, reason = rig.service.trading_state()
        assert state is TradingState.HALTED
        assert "private" in reason


async def test_every_reference_price_stale_past_the_limit_halts(tmp_path: Path) -> None:
    async with started(tmp_path, safety={"stale_reference_trip_ms": 10_000}) as rig:
        rig.clock.advance_ms(9_000)  # no ticker, no pong: every quote ages
        rig.service.check_trips(rig.clock.monotonic_ns())
        assert rig.service.trading_state()[0] is TradingState.ACTIVE

        rig.clock.advance_ms(1_500)
        rig.service.check_trips(rig.clock.monotonic_ns())
        assert rig.service.trading_state()[0] is TradingState.HALTED


async def test_a_trip_the_journal_cannot_record_still_halts(rig: Rig) -> None:
    # The trip's state is written to the journal's control table; when that write fails, the
    # trip must not be lost: the journal failure itself halts (held in memory).
    refuse = sqlite3.connect(rig.journal.path)  # writes to the control table now fail; reads work
    refuse.execute("CREATE TRIGGER refuse BEFORE INSERT ON control BEGIN SELECT RAISE(ABORT, 'refused'); END")
    refuse.commit()
    refuse.close()
    rig.service.safety.trip(Trip(TripReason.STALE_REFERENCES, TradingState.HALTED, "references stale"))
    state, reason = rig.service.trading_state()
    assert state is TradingState.HALTED, reason
    halted = await within(rig.service.submit(amend((1, "94050.0"))))
    assert codes(halted) == {"TRADING_HALTED"}
    assert rig.exchange.trade.sent == []
