"""The config's value types and the way its validators report problems: exact decimals (never from a
YAML float), counts, text, the strict base model (unknown keys are errors) and several problems of
one section reported at once. It must not know any section.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from sidecar.core.numbers import parse_positive_decimal, short_repr


def exact_decimal(value: object) -> object:
    """Before-validator for money and other decimals: exact, positive, never from a float."""
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "must be a number, not a boolean")
    if isinstance(value, float):
        raise PydanticCustomError(
            "decimal_float",
            'write decimals as strings, e.g. "0.5" (a YAML float is binary and loses precision); got {value}',
            {"value": repr(value)},
        )
    if isinstance(value, (str, int, Decimal)):
        parsed = parse_positive_decimal(value)
        if isinstance(parsed, str):
            raise PydanticCustomError(
                "decimal_invalid", "{value} {why}", {"value": short_repr(value), "why": parsed}
            )
        return parsed
    return value  # anything else: pydantic's own type error says what was expected


PositiveDecimal = Annotated[Decimal, BeforeValidator(exact_decimal)]
BandBps = Annotated[Decimal, BeforeValidator(exact_decimal), Field(le=10_000)]
Fraction = Annotated[Decimal, BeforeValidator(exact_decimal), Field(le=1)]
Count = Annotated[int, Field(strict=True, ge=1)]
Text = Annotated[str, Field(strict=True, min_length=1)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Problem = tuple[tuple[str | int, ...], str, str]  # (relative location, error type, message)


def errors_of(title: str, details: Sequence[Problem]) -> ValidationError:
    """A ValidationError with one entry per problem."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=None)
            for loc, kind, message in details
        ],
    )


def with_problems(title: str, data: Any, handler: Callable[[Any], Any], problems: list[Problem]) -> Any:
    """Run the normal validation and report its errors together with `problems` (cross-field rules).

    Pydantic skips "after" validators when a field fails; checking cross-field rules on the raw
    input and merging lets `load_config` report every problem in one run.
    """
    try:
        result = handler(data)
    except ValidationError as exc:
        if not problems:
            raise
        merged: list[Problem] = [(tuple(e["loc"]), e["type"], e["msg"]) for e in exc.errors()]
        raise errors_of(title, merged + problems) from None
    if problems:
        raise errors_of(title, problems)
    return result
