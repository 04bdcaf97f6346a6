"""Exact parsing of untrusted numbers into `Decimal`: the one grammar for prices and quantities.

Agents send numbers as JSON strings or JSON numbers; operators write them as YAML strings. This
module turns such a value into an exact positive `Decimal`, or says in one sentence why it cannot.
It never raises and never rounds. It must not format numbers for the wire (the codec does that)
and must not import anything outside the stdlib.

Grammar for strings (ASCII only, nothing around it):

    number   = digits [ "." digits ] [ exponent ]
    exponent = ( "e" | "E" ) [ "+" | "-" ] digits
    digits   = 1*( "0"-"9" )

Also refused: empty or whitespace, a sign in front (``+1``, ``-1``), ``.5`` and ``5.``, underscores
(``1_000``), hex, non-ASCII digits (``١٢٣``, fullwidth ``１``), ``NaN`` and ``Infinity`` spelled any way.
JSON numbers: ``int`` exactly; ``float`` through ``repr`` (JSON ``0.1`` means ``"0.1"``, not the binary
neighbour); ``bool`` is refused although Python calls it an int. Every accepted value is finite and
> 0, has at most ``MAX_SIGNIFICANT_DIGITS`` significant digits and a decimal exponent (of its leading
digit) within ±``MAX_ADJUSTED_EXPONENT``. Trailing zeros are kept (``"0.50"`` stays ``Decimal("0.50")``).
"""

from __future__ import annotations

import math
import re
from decimal import Context, Decimal, InvalidOperation

__all__ = [
    "EXACT",
    "MAX_ADJUSTED_EXPONENT",
    "MAX_SIGNIFICANT_DIGITS",
    "MAX_TEXT_LEN",
    "parse_positive_decimal",
    "plain_decimal",
    "short_repr",
]

MAX_SIGNIFICANT_DIGITS = 30
MAX_ADJUSTED_EXPONENT = 30
# Longest string even looked at: 30 digits, a point, an exponent and some leading zeros fit easily.
MAX_TEXT_LEN = 64

# Arithmetic on accepted values is exact in this context: operands have <= 30 significant digits
# and exponents within +-30, so products, sums and remainders (by tick sizes down to 1e-30) need
# far fewer than 200 digits. Nothing here ever rounds or traps on valid input.
EXACT = Context(prec=200, Emax=999_999, Emin=-999_999)

_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
_BIG_INT = 10**MAX_SIGNIFICANT_DIGITS  # ints below this are always within both limits
_TOO_MANY = "has more than 30 significant digits"


def short_repr(value: object, limit: int = 40) -> str:
    """`repr` of an untrusted value, cut to `limit` characters, for messages and logs."""
    if isinstance(value, str):
        text = repr(value[: limit + 1])
    elif isinstance(value, (dict, list, tuple)):
        text = f"<{type(value).__name__} of {len(value)}>"
    else:
        try:
            text = repr(value)
        except Exception:  # a hostile __repr__ must not break a denial message
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_positive_decimal(value: object) -> Decimal | str:
    """The exact value of `value` if it is a valid positive number, else a message saying why not.

    Returns a `str` (the reason, starting lowercase, e.g. ``"is not a number"``) instead of raising,
    so the caller can build a denial. Callers test ``type(result) is Decimal``.
    """
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LEN:
            return f"is {len(value)} characters long (at most {MAX_TEXT_LEN})"
        return _parse_text(value)
    if isinstance(value, bool):  # before int: Python's bool is an int, JSON's is not a number
        return "is a boolean, not a number"
    if isinstance(value, int):
        if value <= 0:
            return "must be greater than 0"
        if value >= _BIG_INT:
            # An int of 31+ digits may still have <= 30 significant digits (10**40);
            # decide by the Decimal, but only after the cheap bound rules out huge ones.
            if value.bit_length() > 4 * (MAX_SIGNIFICANT_DIGITS + MAX_ADJUSTED_EXPONENT):
                return "is too large"
            return _check_decimal(Decimal(value))
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "is not a finite number"
        # repr gives the shortest string that round-trips: JSON 0.1 -> "0.1", exactly.
        return _check_decimal(Decimal(repr(value)))
    if isinstance(value, Decimal):
        return _check_decimal(value)
    if value is None:
        return "is null"
    return f"is a {_json_type(value)}, not a number"


def _parse_text(text: str) -> Decimal | str:
    if not text:
        return "is an empty string"
    # Fast path: plain "123" or "123.45" in ASCII (isdigit alone would accept other scripts).
    dot = text.find(".")
    if dot == -1:
        plain = text.isascii() and text.isdigit()
    else:
        plain = (
            0 < dot < len(text) - 1 and text.isascii() and text[:dot].isdigit() and text[dot + 1 :].isdigit()
        )
    if plain:
        number = Decimal(text)
        if len(text) <= MAX_SIGNIFICANT_DIGITS:
            # <= 30 characters: <= 30 significant digits and exponent within +-30 by construction.
            return number if number else "must be greater than 0"
        return _check_decimal(number)
    if _NUMBER_RE.fullmatch(text) is None:
        return _explain_bad_text(text)
    try:
        number = Decimal(text)
    except InvalidOperation:  # unreachable for text matching the grammar; kept for totality
        return "is not a decimal number"
    return _check_decimal(number)


def _check_decimal(number: Decimal) -> Decimal | str:
    if not number.is_finite():
        return "is not a finite number"
    if number <= 0:
        return "must be greater than 0"
    digits = len(number.as_tuple().digits)
    if digits > MAX_SIGNIFICANT_DIGITS:
        # "1.000...0" with many trailing zeros is still an exact, sane number: count what matters.
        # normalize() drops them and keeps the value (and the position of the leading digit).
        number = number.normalize(EXACT)
        if len(number.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
            return _TOO_MANY
    adjusted = number.adjusted()
    if adjusted > MAX_ADJUSTED_EXPONENT:
        return f"is too large (more than {MAX_ADJUSTED_EXPONENT} digits before the point)"
    if adjusted < -MAX_ADJUSTED_EXPONENT:
        return f"is too small (first digit more than {MAX_ADJUSTED_EXPONENT} places after the point)"
    return number


def _explain_bad_text(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        return "is blank"
    if stripped != text:
        return "has spaces around it"
    if not text.isascii():
        return "contains non-ASCII characters (digits must be 0-9)"
    lowered = text.lower()
    if lowered.lstrip("+-") in {"nan", "snan", "inf", "infinity"}:
        return "is not a finite number"
    if text[0] == "-":
        return "must be greater than 0"
    if text[0] == "+":
        return "has a leading '+' sign"
    if "_" in text:
        return "contains '_' (write 1000, not 1_000)"
    if lowered.startswith("0x"):
        return "is hexadecimal (write a decimal number)"
    return "is not a decimal number (expected digits with an optional '.' part, e.g. \"0.5\")"


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "JSON object"
    if isinstance(value, (list, tuple)):
        return "JSON array"
    return type(value).__name__


def plain_decimal(d: Decimal) -> str:
    """The one text form of a Decimal the sidecar writes (the wire, answers, journal, messages):
    plain digits, no exponent, no trailing zeros, never '-0': '65000.5', '0.001', '100'.

    Raises ValueError for NaN/Infinity (they must never be written anywhere).
    """
    if not d.is_finite():
        raise ValueError(f"not a finite number: {d}")
    if d.is_zero():
        return "0"
    s = str(d)
    if "E" in s:
        s = format(d, "f")
    if s[-1] == "0" and "." in s:
        s = s.rstrip("0").rstrip(".")
    return s
