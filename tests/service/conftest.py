"""Fixtures of the service's unit tests (kit.py): a started service on fake adapters and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.service.kit import Rig, started


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with started(tmp_path) as r:
        yield r
