"""Fixtures for tests/bybit: the real emulator on a loopback port (no fakes, no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sidecar.emulator import Emulator


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=7, port=0, walk=False) as e:
        e.set_price("linear", "BTCUSDT", mark_price="65000", last_price="65000")
        e.set_price("spot", "BTCUSDT", mark_price="65000", last_price="65000")
        yield e
