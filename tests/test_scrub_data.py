"""`scrub_data` (sidecar/logs.py) is `scrub` with a fast exit for JSON data: a property test holds the
two to the same result, with keys and strings drawn to hit the secret-key pattern (ASCII and the
Unicode letters re.IGNORECASE folds onto it) and registered secret values (plain and JSON-escaped)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import logs
from sidecar.core.types import AmendRequest
from sidecar.journal.bodies import request_args
from sidecar.logs import REDACTED, SECRET_KEY_RE, SECRET_KEY_WORDS, register_secret, scrub, scrub_data

SECRETS = ("plain-secret-0123456789", 'quoted"secret\\value-0123')
WORDS = ["symbol", "price", "apiKey", "api_key", "ſecret", "TOKEN", "sİgn", "sıgn", "x", "\u212aey", *SECRETS]


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    saved = set(logs._secret_values)
    for value in SECRETS:
        register_secret(value)
    yield
    logs._secret_values.clear()
    logs._secret_values.update(saved)


texts = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.builds("".join, st.lists(st.sampled_from(WORDS), max_size=3)),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts)
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(data)
def test_scrub_data_equals_scrub(value: Any) -> None:
    assert scrub_data(value) == scrub(value)


def test_each_way_in_is_scrubbed() -> None:
    assert scrub_data({"ſecret": "x"}) == {"ſecret": REDACTED}  # re.I folds ſ onto s
    assert scrub_data([f"a {SECRETS[0]} b"]) == [f"a {REDACTED} b"]
    assert scrub_data({"k": SECRETS[1]}) == {"k": REDACTED}  # a secret JSON escapes
    plain = {"category": "linear", "request": [{"symbol": "BTCUSDT", "price": "1"}]}
    assert scrub_data(plain) == plain and scrub_data(plain) is not plain  # an escaped secret: scrub
    logs._secret_values.discard(SECRETS[1])
    assert scrub_data(plain) is plain  # nothing to scrub: the fast exit, no copy


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(texts, scalars, max_size=5), max_size=25), texts)
def test_request_args_match_the_item_by_item_summary(items: list[dict[str, Any]], category: str) -> None:
    """The one-dump size check gives the summary the per-item loop gave (items cut at the budget)."""
    request = AmendRequest(category=category, items=tuple(items), batch=True, tool="wsBatchAmendOrders")
    assert request_args(request) == _item_by_item(request)


def test_request_args_cut_a_request_over_the_byte_budget() -> None:
    big = tuple({"symbol": "BTCUSDT", **{f"k{k}": "v" * 250 for k in range(39)}} for _ in range(25))
    request = AmendRequest(category="linear", items=big, batch=True, tool="wsBatchAmendOrders")
    summary = request_args(request)
    assert summary == _item_by_item(request)
    assert 0 < len(summary["request"]) < 25 and summary["itemsOmitted"] == 25 - len(summary["request"])


def _item_by_item(request: AmendRequest) -> dict[str, Any]:
    """request_args as it was written before the one-dump check (the reference)."""
    import json  # noqa: PLC0415

    from sidecar.journal.bodies import ARGS_MAX_BYTES, _bounded  # noqa: PLC0415

    summary: dict[str, Any] = {"category": _bounded(request.category, 0)}
    items: list[Any] = []
    size = len(json.dumps(summary["category"], default=str))
    for raw in request.items[:25]:
        item = _bounded(raw, 1)
        cost = len(json.dumps(item, default=str))
        if size + cost > ARGS_MAX_BYTES - 1024:
            break
        items.append(item)
        size += cost
    summary["request"] = items
    if len(items) < len(request.items):
        summary["itemsOmitted"] = len(request.items) - len(items)
    scrubbed: dict[str, Any] = scrub(summary)
    return scrubbed


def test_the_key_word_prefilter_misses_no_match_of_the_pattern() -> None:
    """Every character re.I matches to a letter of the key words is mapped onto that letter by the
    prefilter's folding (checked over all of Unicode), so a match is never missed."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    for letter in sorted(set("".join(SECRET_KEY_WORDS))):
        for char in set(re.findall(re.escape(letter), everything, re.I)):
            word = next(w for w in SECRET_KEY_WORDS if letter in w)
            spelled = word.replace(letter, char)
            assert SECRET_KEY_RE.search(spelled), (letter, hex(ord(char)))
            assert logs._may_hold_key_word(spelled), (letter, hex(ord(char)))
