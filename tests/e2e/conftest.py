"""End-to-end fixtures (see e2e_kit.py): the real emulator, service and journal; nothing mocked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.e2e_kit import Stack, start_stack, stop_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    emu, service, config, orders = await start_stack(tmp_path)
    try:
        yield Stack(emu, service, config, orders)
    finally:
        await stop_stack(emu, service)
