"""Fixtures for the emulator tests: a fresh emulator per test, price walk off unless a test turns it on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sidecar.emulator import Emulator


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=7, walk=False) as emulator:
        yield emulator
