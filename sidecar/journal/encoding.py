"""How a journal body becomes stored text, and the tamper evidence over it: JSON encoding of the
sidecar's values (Decimals as plain strings, enums as values, lone surrogates kept as escapes), the
refusal of a body that holds one of the sidecar's secret values, the canonical bytes of a row, the
SHA-256 chain over rows and each body's CRC. It must not touch the database or decide what is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import json.encoder
import math
import zlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any, Final, cast

from sidecar.errors import JournalInputError
from sidecar.logs import contains_secret

__all__ = [
    "GENESIS_HASH",
    "body_crc",
    "canonical_row",
    "chain_hash",
    "encode_body",
    "link_hash",
    "to_jsonable",
]

# The link before the first row of a journal.
GENESIS_HASH: Final = "0" * 64


def _default(value: object) -> Any:
    """`json` hook for what it does not know: one level; json recurses into the result."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"non-finite Decimal {value!r} has no JSON form")
        return format(value, "f")
    if isinstance(value, Enum):  # str/int-based enums never get here: json writes their value
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} has no JSON form")


# Built once: `json.dumps` with non-default options builds a new encoder on every call.
# allow_nan=False: a non-finite float raises ValueError (refused, never written as NaN/Infinity).
# check_circular=False: a cycle ends in RecursionError instead, which is refused the same way.
# Keys keep the order the caller built them in (sorting cost ~20 % and nothing depends on it).
_BODY_ENCODER: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False, default=_default
)
_ASCII_ENCODER: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False, default=_default
)


def _make_dumper() -> Callable[[object], str]:
    """`_BODY_ENCODER.encode`, minus the C encoder it builds per call (~0.6 µs of a 2.5 µs record):
    the same C encoder, with the same arguments `JSONEncoder.iterencode` passes, made once."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (not CPython): the same output, slower
        return _BODY_ENCODER.encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
    encode = make(None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, False)

    def dump(value: object) -> str:
        return "".join(encode(value, 0))

    return dump


_dump_fast: Final = _make_dumper()
# The chain's canonical row form: exactly `json.dumps(row, ensure_ascii=False)` (stored rows depend on it).
_CANON_ENCODER: Final = json.JSONEncoder(ensure_ascii=False)
# What that encoder writes for a str (json's own C function; public name in json.encoder).
_json_str: Final[Callable[[str], str]] = json.encoder.encode_basestring
_SCALARS: Final = frozenset({str, int, bool, type(None)})


def _is_plain(value: object) -> bool:
    """True when `value` is already JSON data (str-keyed dicts, lists, finite numbers, str, None)."""
    t = type(value)
    if t in _SCALARS:
        return True
    if t is float:
        return math.isfinite(cast(float, value))
    # Plain loops, not all(<generator>): about twice as fast on the hot path.
    if t is dict:
        for k, v in cast(dict[object, object], value).items():
            if type(k) is not str or not _is_plain(v):
                return False
        return True
    if t is list:
        for v in cast(list[object], value):  # noqa: SIM110
            if not _is_plain(v):
                return False
        return True
    return False


def _key(key: object) -> str:
    """A mapping key as `json` writes it (for the slow path: keys json itself refuses)."""
    if isinstance(key, str):
        return key
    if isinstance(key, Enum):
        return _key(key.value)
    if key is None or isinstance(key, bool | int | float):
        return str(_plain(key)) if isinstance(key, float) else json.dumps(key)
    return str(_plain(key))


def _plain(value: object) -> Any:
    """The recursive conversion, kept only for values the encoder refuses at the top level
    (mapping keys that are not str/int/float/bool/None)."""
    if isinstance(value, Enum):  # before str/int: StrEnum and IntEnum are both
        return _plain(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"non-finite float {value!r} has no JSON form")
        return value
    if isinstance(value, Decimal):
        return _default(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_plain(v) for v in items]
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _dump(value: object) -> str:
    """Compact JSON text of `value` (Decimal/Enum/dataclass/set handled by `_default`).

    Raises:
        TypeError: a value with no JSON form (bytes, objects, non-finite floats/Decimals, cycles).
    """
    try:
        try:
            return _dump_fast(value)
        except TypeError:
            return _dump_fast(_plain(value))  # exotic keys; else TypeError again
    except (ValueError, RecursionError) as exc:  # non-finite float; a cycle or absurd nesting
        raise TypeError(f"no JSON form: {type(exc).__name__}: {exc}") from exc


def to_jsonable(value: object) -> Any:
    """Convert to plain JSON values: Decimal -> plain decimal string (no exponent), Enum -> value,
    dataclass -> dict, Mapping -> dict (keys as json writes them: 1 -> "1"), tuples/sets -> lists
    (sets sorted by repr). Data that is already plain JSON is returned as is (not copied).

    Raises:
        TypeError: a value with no JSON form (bytes, arbitrary objects, non-finite floats or Decimals).
    """
    try:
        if _is_plain(value):
            return value
    except RecursionError as exc:  # a cycle or absurd nesting
        raise TypeError("no JSON form: nested too deeply (or a cycle)") from exc
    # Round trip through the C encoder and decoder: far faster than converting in Python.
    return json.loads(_dump(value))


def encode_body(body: object) -> str:
    """Compact JSON of a body; refuses the sidecar's own secret values and values with no JSON form.

    Only the real secrets (the API key and secret, the HTTP token: `sidecar.logs.register_secret`)
    are screened, by value. Field names are not: what an agent sends is data, stored as JSON text,
    and no name it chooses can make the journal refuse a record (issue 9: `"op": "AUTH"`).
    """
    try:
        text = _dump(body)
    except TypeError as exc:
        raise JournalInputError(f"journal body is not JSON-serialisable: {exc}") from exc
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (valid in JSON, e.g. "\ud800") cannot be stored as UTF-8 text:
            # keep it as a JSON escape instead, so a hostile string is recorded, not fatal.
            text = _ASCII_ENCODER.encode(body)
    if contains_secret(text):
        # Never say what: the value itself must not reach a log either.
        raise JournalInputError("refusing to journal a body that holds one of the sidecar's secret values")
    return text


def canonical_row(  # noqa: PLR0917 -- one row's columns, in table order
    ts_wall_ms: int,
    kind: str,
    request_id: str | None,
    req_id: str | None,
    item_idx: int | None,
    body: str,
) -> bytes:
    """b"\\n" + json.dumps([columns], ensure_ascii=False), the part of a link after the previous hash."""
    if (
        type(ts_wall_ms) is int
        and type(kind) is str
        and (request_id is None or type(request_id) is str)
        and (req_id is None or type(req_id) is str)
        and (item_idx is None or type(item_idx) is int)
        and type(body) is str
    ):
        # The same text, without building an encoder per row (tests pin the equality).
        text = "\n[%d, %s, %s, %s, %s, %s]" % (  # noqa: UP031 -- %d is exactly int.__repr__
            ts_wall_ms,
            _json_str(kind),
            "null" if request_id is None else _json_str(request_id),
            "null" if req_id is None else _json_str(req_id),
            "null" if item_idx is None else str(item_idx),
            _json_str(body),
        )
    else:
        text = "\n" + _CANON_ENCODER.encode([ts_wall_ms, kind, request_id, req_id, item_idx, body])
    return text.encode()


def link_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def chain_hash(  # noqa: PLR0917 -- one row's columns, in table order
    prev_hash: str,
    ts_wall_ms: int,
    kind: str,
    request_id: str | None,
    req_id: str | None,
    item_idx: int | None,
    body: str,
) -> str:
    """This row's link: sha256(previous link + "\\n" + json([columns])). Editing, inserting or
    deleting any row breaks every link after it."""
    return link_hash(prev_hash, canonical_row(ts_wall_ms, kind, request_id, req_id, item_idx, body))


def body_crc(body: str) -> int:
    return zlib.crc32(body.encode())
