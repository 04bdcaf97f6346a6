"""The kill switch on a fake clock: the unverified trip and the operator's resume, and the
watchdog of the event task."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

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
