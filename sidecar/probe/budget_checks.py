"""The budget checks (`--allow-orders`): the linear batch cap, and the per-item code of a batch
that only partly fits the account's budget.

Both send amend-batches of orders nobody has (orderLinkIds of this run the probe never creates), so
Bybit refuses every item and nothing changes; but they spend the account's whole amend-batch budget
for a second, which could throttle a sidecar trading on the same account, so they need
`--allow-orders` (testnet or an emulator). One function per named check.
"""

from __future__ import annotations

from sidecar.bybit.codec import encode_amend_batch
from sidecar.core.types import BYBIT_BATCH_LIMIT, AmendItem, Category
from sidecar.probe.context import Probe, code_meaning, not_found_code
from sidecar.probe.report import CheckResult, error, judge
from sidecar.probe.sockets import Frame, TradeSocket, ack_of, item_codes, reply_code

__all__ = ["check_batch_max_items", "check_batch_rate_limit_item_code"]

# The linear batch cap the validator enforces (core.types): the probe checks the sidecar's own number.
_BATCH_MAX = BYBIT_BATCH_LIMIT[Category.LINEAR]  # 20 (endpoint pages; D-RL says 10)


def _limit_status(frame: Frame | None) -> int | None:
    ack = ack_of(frame)
    return ack.limit_status if ack is not None else None


async def check_batch_max_items(p: Probe, sock: TradeSocket, category: Category, symbol: str) -> CheckResult:
    await p.fresh_window()
    twenty = await _absent_batch(p, sock, category, symbol, n=_BATCH_MAX, label="max")
    twenty_one = await _absent_batch(p, sock, category, symbol, n=_BATCH_MAX + 1, label="over")
    observed = {
        "twentyItems": {"retCode": reply_code(twenty), "items": len(item_codes(twenty, _BATCH_MAX))},
        "twentyOneItems": reply_code(twenty_one),
    }
    return judge(
        "batch_max_items",
        {"twentyItems": {"retCode": 0, "items": _BATCH_MAX}, "twentyOneItems": 10001},
        observed,
        agrees="a 20-item linear batch is taken item by item and a 21-item one refused (10001): the "
        "endpoint pages' cap of 20 holds, not D-RL's 10",
        otherwise="the linear batch cap is not 20: set batch.max_orders to the largest size the "
        "exchange took (the sidecar's cap is 20; larger batches would be refused whole)",
    )


async def check_batch_rate_limit_item_code(
    p: Probe, sock: TradeSocket, category: Category, symbol: str
) -> CheckResult:
    await p.fresh_window()
    expected = {"withinQuota": [not_found_code(category)], "overQuota": [10006]}
    first = await _absent_batch(p, sock, category, symbol, n=1, label="rl0")
    remaining = _limit_status(first)
    for n in range(5):
        if remaining is None or remaining <= _BATCH_MAX - 2:
            break
        remaining = _limit_status(
            await _absent_batch(p, sock, category, symbol, n=_BATCH_MAX, label=f"rl{n + 1}")
        )
    if remaining is None or remaining <= 0:
        return error(
            "batch_rate_limit_item_code",
            expected,
            f"could not leave a partly used budget (X-Bapi-Limit-Status {remaining})",
        )
    size = remaining + 2
    codes = [
        c for c, _ in item_codes(await _absent_batch(p, sock, category, symbol, n=size, label="rlx"), size)
    ]
    observed = {
        "withinQuota": sorted(set(codes[:remaining])),
        "overQuota": sorted(set(codes[remaining:])),
    }
    return judge(
        "batch_rate_limit_item_code",
        expected,
        observed,
        agrees=f"with {remaining} units left, a {size}-item batch ran its first {remaining} items and "
        "refused the rest with 10006: the sidecar looks at those orders (never resends)",
        otherwise="the items over the quota carry another code: "
        + ", ".join(code_meaning(c) for c in observed["overQuota"])
        + "; a code the sidecar treats as rejected would be reported as such (safe; report it). "
        "A mix may be another client trading meanwhile: run it again",
    )


async def _absent_batch(
    p: Probe, sock: TradeSocket, category: Category, symbol: str, *, n: int, label: str
) -> Frame | None:
    """An amend-batch of `n` orders nobody has (refused item by item; nothing changes)."""
    price = await p.resting_price(category, symbol)
    items = [AmendItem(symbol, None, p.link(f"{label}{i}"), {"price": price}) for i in range(n)]
    rid = p.req_id()
    frame = encode_amend_batch(rid, category, items, p.xclock.wall_ms(), p.settings.recv_window_ms)
    return await p.spend(sock, rid, frame)
