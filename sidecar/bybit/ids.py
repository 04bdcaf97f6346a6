"""Trade-request ids (`reqId`) that never repeat, not even across restarts.

Bybit answers a repeated reqId with 20006 and does not say for how long it remembers them
(reference §1.4), so a per-process counter starting at 1 (as ccxt does) can collide after a
restart. An id here is `sc-<boot token>-<seq hex>`: the boot token is the wall-clock ms at start
in base36 plus a few random base36 chars, so two boots never share a prefix. At most 36 chars.

Pure: the caller passes the wall time and the entropy in.
"""

from __future__ import annotations

__all__ = ["MAX_REQ_ID_LEN", "ReqIdFactory", "make_boot_token"]

MAX_REQ_ID_LEN = 36
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_PREFIX = "sc-"
# Longest allowed seq in hex: 12 digits (2**48 requests) keeps the id within 36 chars.
_MAX_SEQ = 16**12 - 1


def _base36(n: int) -> str:
    if n < 0:
        raise ValueError("base36 of a negative number")
    if n == 0:
        return "0"
    out: list[str] = []
    while n:
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def make_boot_token(wall_ms: int, entropy: bytes) -> str:
    """`<wall_ms base36><4 base36 chars from entropy>`, e.g. 'lp0a8n4g' + 'k3x9' (12 chars until 2059)."""
    if len(entropy) < 3:
        raise ValueError("need at least 3 bytes of entropy")
    noise = _base36(int.from_bytes(entropy[:3], "big") % 36**4).rjust(4, "0")
    return _base36(wall_ms) + noise


class ReqIdFactory:
    """Hands out `sc-<boot_token>-<seq>` ids, seq counting up from `start` (hex)."""

    def __init__(self, boot_token: str, start: int = 1) -> None:
        if not boot_token or not boot_token.isalnum() or not boot_token.isascii():
            raise ValueError("boot token must be non-empty ASCII letters/digits")
        # Worst case length: prefix + token + '-' + 12 hex digits.
        if len(_PREFIX) + len(boot_token) + 1 + 12 > MAX_REQ_ID_LEN:
            raise ValueError(f"boot token too long ({len(boot_token)} chars; max 20)")
        if start < 0:
            raise ValueError("start must be >= 0")
        self._head = f"{_PREFIX}{boot_token}-"
        self._seq = start

    @property
    def boot_token(self) -> str:
        return self._head[len(_PREFIX) : -1]

    def next(self) -> str:
        """A fresh id; raises RuntimeError after 2**48 ids rather than wrap around."""
        seq = self._seq
        if seq > _MAX_SEQ:
            raise RuntimeError("request id sequence exhausted")
        self._seq = seq + 1
        return f"{self._head}{seq:x}"

    __call__ = next
