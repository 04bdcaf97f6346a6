"""A reload applies every setting it reports as applied: the recv window of frames sent after it,
the ack timeout, and the verification deadlines (real emulator, real service, real journal)."""

from __future__ import annotations

from pathlib import Path

import yaml

from sidecar.core.types import AmendRequest
from sidecar.reload import reload_from_file
from tests.e2e.e2e_kit import Stack, e2e_config


async def test_reload_applies_recv_window_ack_timeout_and_verification_deadline(
    stack: Stack, tmp_path: Path
) -> None:
    service = stack.service
    assert stack.config.verification.timeout_ms == 3000  # what the stack started with
    new = e2e_config(
        tmp_path,
        exchange={"recv_window_ms": 2500},
        verification={"timeout_ms": 400, "ack_timeout_ms": 200, "rest_fallback": False},
    )
    path = tmp_path / "reloaded.yaml"
    path.write_text(yaml.safe_dump(new.model_dump(mode="json")))
    report = reload_from_file(service, path)
    assert report["ok"] is True, report
    assert {"exchange.recv_window_ms", "verification.timeout_ms", "verification.ack_timeout_ms"} <= set(
        report["applied"]
    )
    assert report["needsRestart"] == []

    stack.emu.add_faults([{"kind": "drop_ack", "count": 1}, {"kind": "drop_order_events", "count": 5}])
    result = await service.submit(
        AmendRequest("linear", ({"symbol": "BTCUSDT", "orderLinkId": "btc-b1", "price": "94010"},))
    )
    body = result.body
    assert body["items"][0]["outcome"] == "unverified"
    # Answered by the reloaded 400 ms deadline, not the 3000 ms the service started with.
    assert body["latencyMs"] < 1500, body["latencyMs"]
    record = service.journal.get_request(body["requestId"])
    assert record is not None
    [intent] = [r for r in record.records if r.kind == "intent"]
    assert intent.body["recv_window_ms"] == 2500  # the frame was signed with the new window
    # The trade adapter journaled its ack timeout at the reloaded 200 ms (before the answer).
    steps = service.journal.steps(body["requestId"]) or []
    ack_timeout = next(s for s in steps if s.kind == "ack_timeout")
    assert ack_timeout.wall_ms - intent.body["sent_ts_ms"] < 1500
    assert service.trade.ack_timeout_ms == 200 and service.rest.recv_window_ms == 2500
