"""Signing against the fixed vectors of reference §1.3 and §4.1."""

from __future__ import annotations

from sidecar.bybit.signing import canonical_query, rest_headers, rest_sign, ws_auth_args

WS_SIG = "3763930b37bba7305c521ddbe2e899df26d1eff498d6c76669364ac3ad30101c"
GET_SIG = "8246a593895fdfbe234404b5964466f60c219ba371d95e4cb691394e078f2346"
POST_SIG = "6a918366c188715407dd3797b0756e551a7fb972b67e577d19e5ca106384e8e2"


def test_ws_auth_args_vector() -> None:
    assert ws_auth_args("test_key", "test_secret", 1700000001000) == ["test_key", 1700000001000, WS_SIG]


def test_rest_get_vector() -> None:
    query = canonical_query({"symbol": "BTCUSDT", "category": "linear"})
    assert query == "category=linear&symbol=BTCUSDT"
    assert rest_sign("test_secret", 1700000000000, "test_key", 5000, query) == GET_SIG


def test_rest_post_vector() -> None:
    body = '{"category":"linear","symbol":"BTCUSDT","orderId":"abc","price":"101.5"}'
    assert rest_sign("test_secret", 1700000000000, "test_key", 5000, body) == POST_SIG


def test_rest_headers() -> None:
    h = rest_headers("test_key", "test_secret", 1700000000000, 5000, "category=linear&symbol=BTCUSDT")
    assert h == {
        "X-BAPI-API-KEY": "test_key",
        "X-BAPI-TIMESTAMP": "1700000000000",
        "X-BAPI-SIGN": GET_SIG,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN-TYPE": "2",
    }


def test_canonical_query_sorts_drops_none_and_escapes() -> None:
    assert canonical_query({"b": "2", "a": "1", "c": None}) == "a=1&b=2"
    assert canonical_query({"orderLinkId": "a b&c", "x": "L-1_2"}) == "orderLinkId=a%20b%26c&x=L-1_2"
    assert canonical_query({}) == ""
