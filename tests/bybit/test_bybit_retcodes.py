"""The retCode table: every code of reference §6 and §1.7 lands in the class the design says."""

from __future__ import annotations

import pytest

from sidecar.bybit.retcodes import AUTH_FAILURE_CODES, RETCODES, classify, describe
from sidecar.core.types import CodeClass

S, R, C, A, L, X = (
    CodeClass.SUCCESS,
    CodeClass.REJECTED,
    CodeClass.ORDER_CLOSED,
    CodeClass.AMBIGUOUS,
    CodeClass.RATE_LIMITED,
    CodeClass.RECONNECT,
)

# Written out by hand from the reference (not derived from the table under test).
EXPECTED: dict[int, CodeClass] = {
    0: S,
    10000: A, 10001: R, 10002: R, 10003: R, 10004: R, 10005: R, 10006: L, 10007: R, 10008: R,
    10009: R, 10010: R, 10014: A, 10016: X, 10017: R, 10018: L, 10019: X, 10024: R, 10027: R,
    10029: R, 10403: L, 10404: R, 10429: L, 429: L, 20001: R, 20003: L, 20006: A,
    110001: R, 110003: R, 110004: R, 110005: R, 110006: R, 110007: R, 110008: C, 110009: R,
    110010: C, 110012: R, 110017: R, 110020: R, 110021: R, 110022: R, 110057: R, 110059: R,
    110060: R, 110064: R, 110072: R, 110079: A, 110092: R, 110093: R, 110094: R, 110095: R,
    110120: R, 110121: R, 34040: R, 30034: R, 30035: L, 40004: A,
    170005: L, 170007: A, 170105: R, 170115: R, 170116: R, 170117: R, 170121: R, 170124: R,
    170130: R, 170131: R, 170132: R, 170133: R, 170134: R, 170136: R, 170137: R, 170139: C,
    170140: R, 170141: R, 170142: C, 170143: R, 170144: A, 170146: A, 170147: A, 170148: R,
    170149: R, 170150: R, 170190: C, 170191: A, 170192: R, 170193: R, 170194: R, 170212: A,
    170213: R, 170222: L, 170371: R, 170372: R, 170381: R, 170382: R, 170810: R,
}  # fmt: skip


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED.items()))
def test_every_reference_code_is_classified(code: int, cls: CodeClass) -> None:
    assert classify(code) is cls
    assert describe(code) != "unknown code"


def test_table_has_no_code_the_test_does_not_pin() -> None:
    assert set(RETCODES) == set(EXPECTED)


@pytest.mark.parametrize("code", [-1, 1, 99999, 110099, 170999, 20002])
def test_unknown_codes_are_ambiguous(code: int) -> None:
    # "Don't know" must lead to looking at the order, never to a definitive verdict.
    assert classify(code) is CodeClass.AMBIGUOUS
    assert describe(code) == "unknown code"


def test_auth_failure_codes_are_rejections() -> None:
    assert {10003, 10004, 10005} <= AUTH_FAILURE_CODES
    assert all(classify(c) is CodeClass.REJECTED for c in AUTH_FAILURE_CODES)
