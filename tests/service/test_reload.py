"""Hot reload: a new policy applies to requests admitted from then on; a request already in
flight keeps the policy it was decided under, and its answer says which."""

from __future__ import annotations

from decimal import Decimal

from sidecar.config import SidecarConfig
from tests.service.kit import Rig, amend, codes, within


def _narrow_band(config: SidecarConfig) -> SidecarConfig:
    """The same config with linear BTCUSDT's price band narrowed from 150 to 10 bps."""
    data = config.model_dump(mode="json")
    for symbol in data["symbols"]:
        if symbol["category"] == "linear" and symbol["symbol"] == "BTCUSDT":
            symbol["price_band_bps"] = "10"
    return SidecarConfig.model_validate(data)


async def test_a_reloaded_policy_applies_to_new_requests_only(rig: Rig) -> None:
    old_version = rig.service.policy.version
    in_flight = rig.submit(amend((1, "94050.0")))  # 1 % below the mark: inside 150 bps
    sent = await rig.next_sent()
    assert (await rig.service.preview(amend((2, "94050.0")))).body["outcome"] == "allowed"

    assert rig.service.reload(_narrow_band(rig.config))
    new_version = rig.service.policy.version
    assert new_version != old_version

    refused = await within(rig.service.submit(amend((2, "94050.0"))))
    assert codes(refused) == {"PRICE_OUT_OF_BAND"}
    assert refused.body["policyVersion"] == new_version
    assert len(rig.exchange.trade.sent) == 1

    # The request admitted before the reload is still carried through, under the old policy.
    rig.exchange.trade.ack(sent.req_id)
    rig.exchange.change(rig.applied(1, price=Decimal("94050")))
    result = await within(in_flight)
    assert result.body["outcome"] == "verified"
    assert result.body["policyVersion"] == old_version


async def test_a_reloaded_recv_window_lengthens_the_order_leases_too(rig: Rig) -> None:
    # A shared order lease must outlive any frame Bybit could still apply (its recv window): a
    # reload that widens the window must widen the leases granted from then on.
    data = rig.config.model_dump(mode="json")
    data["exchange"]["recv_window_ms"] = 30_000
    before = (rig.service.gate.lease_ttl_ms, rig.service.leases.lease_ttl_ms)
    assert rig.service.reload(SidecarConfig.model_validate(data))
    after = (rig.service.gate.lease_ttl_ms, rig.service.leases.lease_ttl_ms)
    assert after[0] == after[1] > 30_000
    assert after[0] - 30_000 == before[0] - rig.config.exchange.recv_window_ms  # the same margin
