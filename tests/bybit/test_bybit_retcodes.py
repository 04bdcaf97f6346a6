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
    110001: A, 110003: R, 110004: R, 110005: R, 110006: R, 110007: R, 110008: C, 110009: R,
    110010: C, 110012: R, 110017: R, 110020: R, 110021: R, 110022: R, 110057: R, 110059: R,
    110060: R, 110064: R, 110072: R, 110079: A, 110092: R, 110093: R, 110094: R, 110095: R,
    110120: R, 110121: R, 34040: R, 30034: R, 30035: L, 40004: A,
    170005: L, 170007: A, 170105: R, 170115: R, 170116: R, 170117: R, 170121: R, 170124: R,
    170130: R, 170131: R, 170132: R, 170133: R, 170134: R, 170136: R, 170137: R, 170139: C,
    170140: R, 170141: R, 170142: C, 170143: R, 170144: A, 170146: A, 170147: A, 170148: R,
    170149: R, 170150: R, 170190: C, 170191: A, 170192: R, 170193: R, 170194: R, 170212: A,
    170213: A, 170222: L, 170371: R, 170372: R, 170381: R, 170382: R, 170810: R,
}  # fmt: skip

# The rest of Bybit's error page (D-ERR, UTA and spot tables), pinned so a silent reclassification
# shows: all definitive refusals except the timeouts, "system error" and "submitted for processing",
# which do not say whether anything was applied.
REST_OF_D_ERR_AMBIGUOUS = frozenset({170001, 170032, 170035, 170234, 170310, 3400214})
REST_OF_D_ERR_REJECTED = frozenset({
    -2015, 10028, 30133, 30134, 30135, 30136, 30208, 30209, 30228, 30256, 33004, 100028, 110011,
    110013, 110014, 110015, 110018, 110019, 110023, 110024, 110025, 110026, 110027, 110028, 110029,
    110031, 110032, 110033, 110034, 110035, 110036, 110037, 110038, 110039, 110040, 110041, 110042,
    110043, 110044, 110045, 110046, 110047, 110048, 110049, 110050, 110051, 110052, 110053, 110054,
    110055, 110056, 110058, 110061, 110062, 110063, 110065, 110066, 110067, 110068, 110069, 110070,
    110071, 110073, 110074, 110076, 110077, 110078, 110080, 110082, 110083, 110085, 110086, 110087,
    110088, 110089, 110090, 110096, 110097, 110098, 110099, 110100, 110101, 110102, 110103, 110104,
    110105, 110106, 110107, 110108, 110109, 110110, 110111, 110112, 110113, 110114, 110115, 110116,
    110117, 110118, 110119, 110123, 110124, 110125, 110131, 110132, 110135, 110136, 110137, 170010,
    170011, 170019, 170031, 170033, 170034, 170036, 170037, 170145, 170151, 170157, 170159, 170195,
    170196, 170197, 170198, 170199, 170200, 170201, 170202, 170203, 170204, 170206, 170207, 170209,
    170210, 170215, 170216, 170217, 170218, 170219, 170220, 170221, 170223, 170224, 170226, 170227,
    170228, 170229, 170230, 170241, 170311, 170312, 170313, 170341, 170344, 170346, 170348, 170355,
    170358, 170359, 170360, 170709, 181017, 182011, 182100, 182101, 182102, 182103, 182108, 182110,
    182111, 182112, 500010, 500011, 3100181, 3100197, 3100326, 3200316, 3200317, 3200320, 3200403,
    3200419, 3200425, 3200641, 3400052, 3400053, 3400054, 3400071, 3400139, 3400208, 3400209, 3400210,
    3400211, 3400212, 3400213, 3401010,
})  # fmt: skip
EXPECTED.update(dict.fromkeys(REST_OF_D_ERR_AMBIGUOUS, A))
EXPECTED.update(dict.fromkeys(REST_OF_D_ERR_REJECTED, R))


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED.items()))
def test_every_reference_code_is_classified(code: int, cls: CodeClass) -> None:
    assert classify(code) is cls
    assert describe(code) != "unknown code"


def test_table_has_no_code_the_test_does_not_pin() -> None:
    assert set(RETCODES) == set(EXPECTED)


@pytest.mark.parametrize("code", [-1, 1, 99999, 110999, 170999, 20002])
def test_unknown_codes_are_ambiguous(code: int) -> None:
    # "Don't know" must lead to looking at the order, never to a definitive verdict.
    assert classify(code) is CodeClass.AMBIGUOUS
    assert describe(code) == "unknown code"


def test_spot_amend_codes_and_closed_order_codes() -> None:
    """Issue 11: the spot amend codes are known; "order not exists or too late to replace" (what an
    amend of a just-filled order gets) leads to looking at the order, not to `rejected`."""
    assert [classify(c) for c in (170310, 170311, 170312, 170313)] == [A, R, R, R]
    assert classify(110001) is A and classify(170213) is A
    assert classify(110008) is C and classify(170139) is C and classify(170142) is C
    assert classify(10001) is R  # the no-op amend's "The order remains unchanged ...": a refusal


def test_auth_failure_codes_are_rejections() -> None:
    assert {10003, 10004, 10005} <= AUTH_FAILURE_CODES
    assert all(classify(c) is CodeClass.REJECTED for c in AUTH_FAILURE_CODES)
