"""Request ids: short, unique within a boot, distinct across boots."""

from __future__ import annotations

import pytest

from sidecar.bybit.ids import MAX_REQ_ID_LEN, ReqIdFactory, make_boot_token


def test_boot_token_shape() -> None:
    t = make_boot_token(1_700_000_000_000, b"\x01\x02\x03")
    assert t.isalnum() and t.isascii() and t == t.lower()
    assert len(t) == 12
    assert make_boot_token(1_700_000_000_000, b"\x01\x02\x04") != t
    assert make_boot_token(1_700_000_000_001, b"\x01\x02\x03") != t


def test_ids_are_unique_and_short() -> None:
    f = ReqIdFactory(make_boot_token(1_700_000_000_000, b"abc"))
    ids = [f.next() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) <= MAX_REQ_ID_LEN for i in ids)
    assert ids[0].startswith("sc-") and ids[0].endswith("-1")
    assert f() != ids[-1]


def test_two_boots_never_collide() -> None:
    a = ReqIdFactory(make_boot_token(1_700_000_000_000, b"abc"))
    b = ReqIdFactory(make_boot_token(1_700_000_000_500, b"abc"))
    assert not {a.next() for _ in range(100)} & {b.next() for _ in range(100)}


def test_longest_id_fits() -> None:
    f = ReqIdFactory("z" * 20, start=16**12 - 1)
    rid = f.next()
    assert len(rid) == MAX_REQ_ID_LEN
    with pytest.raises(RuntimeError):
        f.next()


@pytest.mark.parametrize("token", ["", "a-b", "z" * 21, "é"])
def test_bad_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        ReqIdFactory(token)
