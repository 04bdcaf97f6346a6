"""The kill switch's trips when the trading state is shared (DESIGN §4.8): a trip is in force here
at once and queued for the shared store; what is queued is written as ONE write of the strictest
trip; a journal failure while its forced halt holds queues nothing more.

`KillSwitch` is driven alone here, with a shared store that answers as the test says (the Redis
backend itself is tested against a real redis-server in tests/coordination/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from sidecar.coordination import CoordinationUnavailable, Coordinator, StateView, UnavailableKind
from sidecar.core.trips import SEVERITY, Trip, TripReason
from sidecar.core.types import TradingState
from sidecar.journal import Journal, JournalError
from sidecar.service.recorder import Recorder
from sidecar.service.safety import KillSwitch
from sidecar.service.tasks import TaskSet
from sidecar.testing import FakeClock
from tests.e2e.e2e_kit import e2e_config

_UNREACHABLE = CoordinationUnavailable(UnavailableKind.UNREACHABLE, "the shared store cannot be reached")


@dataclass
class SharedStore:
    """The part of a shared coordinator the kill switch uses, with every trip write recorded."""

    reachable: bool = False
    view: StateView = field(default_factory=lambda: StateView(TradingState.ACTIVE, "", "", 1, 0))
    writes: list[tuple[TradingState, str]] = field(default_factory=list)
    id_token: str = "sc-test"
    backend: str = "redis"

    @property
    def available(self) -> bool:
        return self.reachable

    def trading_state(self) -> StateView:
        return self.view

    async def trip(self, state: TradingState, reason: str) -> StateView | CoordinationUnavailable:
        self.writes.append((state, reason))
        if not self.reachable:
            return _UNREACHABLE
        if SEVERITY[state] > SEVERITY[self.view.state]:
            self.view = StateView(state, reason, "sidecar", self.view.epoch + 1, 0)
        return self.view


@dataclass
class Switch:
    safety: KillSwitch
    store: SharedStore
    background: TaskSet

    async def background_done(self) -> None:
        for task in self.background:
            await task


@pytest.fixture
async def switch(tmp_path: Path) -> AsyncIterator[Switch]:
    config = e2e_config(tmp_path)
    clock = FakeClock()
    journal = Journal(config.journal.path, config.journal.synchronous)
    store = SharedStore()
    background = TaskSet()
    safety = KillSwitch(
        config,
        coordination=cast(Coordinator, store),
        journal=journal,
        recorder=Recorder(journal, clock),
        clock=clock,
        background=background,
    )
    try:
        yield Switch(safety, store, background)
    finally:
        await background.cancel_all()
        journal.close()


async def test_queued_trips_are_written_as_one_write_of_the_strictest(switch: Switch) -> None:
    safety, store = switch.safety, switch.store
    safety.trip(Trip(TripReason.EXCHANGE_RATE_LIMITED, TradingState.REDUCING, "10006 too often"))
    safety.trip(Trip(TripReason.UNVERIFIED, TradingState.HALTED, "too many unverified"))
    safety.trip(Trip(TripReason.EXCHANGE_RATE_LIMITED, TradingState.REDUCING, "10006 again"))
    await switch.background_done()  # each trip tried to write at once: the store was unreachable

    assert safety.trading_state()[0] is TradingState.HALTED  # in force here meanwhile
    assert len(safety.pending_trips) == 3

    store.reachable = True
    store.writes.clear()
    await safety.flush_trips()

    assert [state for state, _ in store.writes] == [TradingState.HALTED]
    assert "too many unverified" in store.writes[0][1]
    assert safety.pending_trips == []
    assert store.view.state is TradingState.HALTED


async def test_a_journal_failure_while_its_forced_halt_holds_queues_no_new_trip(switch: Switch) -> None:
    safety, store = switch.safety, switch.store
    safety.journal_failed(JournalError("disk full"))
    await switch.background_done()
    assert len(safety.pending_trips) == 1
    state, reason = safety.trading_state()
    assert state is TradingState.HALTED
    assert "disk full" in reason

    safety.journal_failed(JournalError("disk still full"))
    safety.journal_failed(JournalError("and again"))
    await switch.background_done()

    assert len(safety.pending_trips) == 1
    assert len(store.writes) == 1  # the first failure's one attempt; nothing more was queued
    assert "disk full" in safety.trading_state()[1]
