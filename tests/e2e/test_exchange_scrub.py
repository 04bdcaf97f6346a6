"""Exchange messages are scrubbed of the API key at the adapter edge, before they reach the agent, the
journal or the logs. Bybit's 10004 ("error sign! origin_string[...]") echoes the key it was signed with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from sidecar.bybit.rest import RestClient, RestError
from sidecar.clock import SystemClock
from sidecar.core.types import AmendRequest, Category
from sidecar.emulator import DEFAULT_API_KEY
from sidecar.logs import REDACTED
from tests.e2e.e2e_kit import Stack


def _journal_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_an_exchange_message_echoing_the_key_is_scrubbed_everywhere(stack: Stack) -> None:
    echo = f"error sign! origin_string[1700000000000{DEFAULT_API_KEY}5000]"
    stack.emu.add_faults([{"kind": "reject", "code": 10004, "msg": echo, "count": 1}])
    request = AmendRequest(
        category="linear", items=({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94050.0"},)
    )
    with structlog.testing.capture_logs() as logs:
        result = await stack.service.submit(request)
    body = result.body
    text = json.dumps(body)
    assert body["items"][0]["outcome"] == "rejected", text
    assert body["items"][0]["exchangeCode"] == 10004
    assert DEFAULT_API_KEY not in text
    assert REDACTED in body["items"][0]["exchangeMsg"]  # the rest of Bybit's message is kept
    assert DEFAULT_API_KEY not in json.dumps(logs, default=str)
    stack.service.journal.checkpoint()
    assert DEFAULT_API_KEY.encode() not in _journal_bytes(Path(stack.config.journal.path))


async def test_a_rest_10004_does_not_carry_the_key(stack: Stack) -> None:
    key = DEFAULT_API_KEY
    async with RestClient(stack.emu.url, key, "not-the-secret", SystemClock()) as rest:
        with pytest.raises(RestError) as info:
            await rest.get_order(Category.LINEAR, "BTCUSDT", None, "btc-b1")
    assert info.value.ret_code == 10004
    assert key not in str(info.value) and key not in info.value.ret_msg
    assert REDACTED in info.value.ret_msg
