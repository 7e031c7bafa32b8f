"""Predicates over a profile's attributes and the facts a journey learnt about it.

The same predicates select an audience (``--where plan=pro``) and branch a condition node, and
one evaluator serves both: it is pure and deterministic, so the journey interpreter (a
workflow) and the audience activity agree on every profile.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AttributeName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}(\.[A-Za-z0-9_-]{1,64}){0,4}$")
]
EventName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")]

Operator = Literal[
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists", "missing"
]
VALUELESS: frozenset[str] = frozenset({"exists", "missing"})
ORDERED: frozenset[str] = frozenset({"gt", "gte", "lt", "lte"})

FactName = Literal["had_valid_device", "delivered", "opened", "clicked", "event"]


class AttributePredicate(BaseModel):
    """``{attribute: plan, op: eq, value: pro}``; a dotted name reads nested attributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: AttributeName
    op: Operator = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> AttributePredicate:
        if self.op in VALUELESS:
            if self.value is not None:
                raise ValueError(f"op {self.op!r} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list as its value")
        elif self.op in ORDERED:
            if not _comparable(self.value):
                raise ValueError(f"op {self.op!r} needs a number or a string as its value")
        elif self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        return self

    @property
    def root(self) -> str:
        """The top-level attribute the predicate reads."""
        return self.attribute.split(".", 1)[0]


class FactPredicate(BaseModel):
    """What the journey learnt about the profile: ``{fact: delivered, node: welcome}``,
    ``{fact: had_valid_device}`` (at any push so far, or at ``node``), ``{fact: opened,
    node: welcome}``, ``{fact: event, event: purchased}`` (received since the profile
    entered the journey)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fact: FactName
    node: str | None = None
    event: EventName | None = None
    negate: bool = Field(default=False, description="true: the fact must NOT hold")


Predicate = AttributePredicate | FactPredicate


def read_attribute(attributes: dict[str, Any], name: str) -> tuple[bool, Any]:
    """(found, value) for a possibly dotted name."""
    current: Any = attributes
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def attribute_matches(predicate: AttributePredicate, attributes: dict[str, Any]) -> bool:
    found, actual = read_attribute(attributes, predicate.attribute)
    op = predicate.op
    expected = predicate.value
    if op == "exists":
        return found and actual is not None
    if op == "missing":
        return not found or actual is None
    if not found:
        # an absent attribute equals nothing, so it is "not equal" and "not in" anything
        return op in ("ne", "not_in")
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, item) for item in expected)
    if op == "not_in":
        return not any(_equal(actual, item) for item in expected)
    if op == "contains":
        if isinstance(actual, str) and isinstance(expected, str):
            return expected in actual
        if isinstance(actual, list):
            return any(_equal(item, expected) for item in actual)
        return False
    return _ordered(op, actual, expected)


def all_attributes_match(predicates: list[AttributePredicate], attributes: dict[str, Any]) -> bool:
    return all(attribute_matches(p, attributes) for p in predicates)


def _equal(actual: Any, expected: Any) -> bool:
    # JSON has one number type: 3 and 3.0 are equal, but true is not 1
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    return bool(actual == expected)


def _comparable(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int | str)


def _ordered(op: str, actual: Any, expected: Any) -> bool:
    numbers = (int, float)
    both_numbers = (
        isinstance(actual, numbers)
        and isinstance(expected, numbers)
        and not isinstance(actual, bool)
        and not isinstance(expected, bool)
    )
    both_strings = isinstance(actual, str) and isinstance(expected, str)
    if not (both_numbers or both_strings):
        return False  # a string is neither above nor below a number
    if op == "gt":
        return bool(actual > expected)
    if op == "gte":
        return bool(actual >= expected)
    if op == "lt":
        return bool(actual < expected)
    return bool(actual <= expected)


# longest symbols first: ">=" must not be read as ">"
WHERE_SYMBOLS: tuple[tuple[str, Operator], ...] = (
    (">=", "gte"),
    ("<=", "lte"),
    ("!=", "ne"),
    ("=", "eq"),
    (">", "gt"),
    ("<", "lt"),
    ("~", "in"),
)


def parse_where(text: str) -> AttributePredicate:
    """A predicate as a command line writes it: ``plan=pro``, ``plan!=free``, ``age>=18``,
    ``country~FR,BE`` (one of), ``vip?`` (exists). Values are read as JSON when they parse
    (numbers, true/false), as text otherwise."""
    for symbol, op in WHERE_SYMBOLS:
        if symbol in text:
            name, _, raw = text.partition(symbol)
            name = name.strip()
            if op == "in":
                values = [_json_or_text(part.strip()) for part in raw.split(",") if part.strip()]
                return AttributePredicate(attribute=name, op="in", value=values)
            return AttributePredicate(attribute=name, op=op, value=_json_or_text(raw.strip()))
    if text.endswith("?"):
        return AttributePredicate(attribute=text[:-1].strip(), op="exists")
    raise ValueError(
        f"{text!r} is not a filter; write e.g. plan=pro, plan!=free, age>=18, country~FR,BE "
        "or vip? (has the attribute)"
    )


def _json_or_text(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, int | float | bool) or value is None else raw
