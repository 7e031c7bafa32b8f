"""Saved segments: a named audience filter over profiles, written as a tree of typed
conditions.

Every node of the tree is an object with exactly one key, which says what it is::

    all:
      - attribute: {name: plan, op: eq, value: pro}     # or, as --where writes it: plan=pro
      - profile: {field: locale, op: in, value: [fr-FR, fr-BE]}
      - device: {app: shop, provider: apns}              # has a valid APNs token in app shop
      - interaction: {kind: opened, within_days: 7}      # opened (or clicked) a push lately
      - run: {run_id: run-welcome-20261205T090000-a1b2c3}
      - not: {any: [{attribute: "vip?"}, {profile: {field: email, op: missing}}]}

so a problem is named by its path (``all.0.attribute.op``). The tree is bounded (depth,
number of conditions, list sizes) before the store ever sees it. The model is pure pydantic:
the run workflow carries a segment's definition in its input as a snapshot, and
``tidings.store.segment_sql`` compiles it into one query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tidings.journeys.predicates import (
    ORDERED,
    VALUELESS,
    AttributeName,
    Operator,
    parse_where,
)

# a segment's name, like the apps' and journeys' ids it stands beside
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
Slug = Annotated[str, Field(pattern=NAME_PATTERN)]

# How deep combinators may nest, how many conditions a definition may hold in all, and how
# many a single all/any may list: a definition compiles into one query whose size these bound.
MAX_DEPTH = 6
MAX_CONDITIONS = 100
MAX_LISTED = 50
# values an ``in`` / ``not_in`` may list, and the longest text value
MAX_VALUES = 100
MAX_TEXT = 500
# the largest whole number a value may be (both stores compare it exactly)
MAX_INTEGER = 2**53
# "in the last N days" reaches back at most ten years
MAX_DAYS = 3650
# the nesting of raw JSON read before validation: deeper input is refused unread
MAX_RAW_NESTING = 64

Scalar = Annotated[str, Field(max_length=MAX_TEXT)] | bool | int | float
UNION_MEMBERS = frozenset({"constrained-str", "str", "bool", "int", "float"})
CONDITION_KINDS = ("all", "any", "not", "attribute", "profile", "device", "interaction", "run")


def _check_value(op: str, value: Any) -> None:
    """The value an operator takes, as attribute predicates check it (and finite numbers)."""
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INTEGER:
            raise ValueError(f"whole numbers must be within ±{MAX_INTEGER}")
    if op in VALUELESS:
        if value is not None:
            raise ValueError(f"op {op!r} takes no value")
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"op {op!r} needs a non-empty list as its value")
    elif isinstance(value, list):
        raise ValueError(f"op {op!r} takes one value, not a list")
    elif op in ORDERED:
        if isinstance(value, bool) or value is None:
            raise ValueError(f"op {op!r} needs a number or a string as its value")
    elif value is None:
        raise ValueError(f"op {op!r} needs a value")


def _attribute_shorthand(value: Any) -> Any:
    """``attribute: plan=pro`` is written as ``--where`` writes a filter."""
    if isinstance(value, str):
        predicate = parse_where(value)
        return {"name": predicate.attribute, "op": predicate.op, "value": predicate.value}
    return value


class AttributeTest(BaseModel):
    """A profile attribute, with the operators and the meaning of ``--where`` filters and
    condition nodes: a dotted name reads a nested attribute; an absent attribute is ``ne``
    and ``not_in`` anything; ``contains`` is a substring of a text or an item of a list;
    ``gt``..``lte`` compare numbers with numbers and texts with texts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: AttributeName
    op: Operator = "eq"
    value: Scalar | Annotated[list[Scalar], Field(max_length=MAX_VALUES)] | None = Field(
        default=None, validate_default=True
    )

    @field_validator("value")
    @classmethod
    def _value_fits_operator(cls, value: Any, info: ValidationInfo) -> Any:
        if "op" in info.data:
            _check_value(info.data["op"], value)
        return value


ProfileField = Literal["id", "email", "phone", "timezone", "locale", "created_at", "updated_at"]
TIME_FIELDS = frozenset({"created_at", "updated_at"})
ProfileOperator = Literal[
    "eq", "ne", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "exists", "missing",
    "within_days",
]  # fmt: skip


class ProfileTest(BaseModel):
    """One of the profile's own fields. Text fields take the attribute operators (text
    values); ``created_at`` and ``updated_at`` take ``gt``..``lte`` with an ISO date-time and
    ``within_days`` with a number of days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: ProfileField
    op: ProfileOperator = "eq"
    value: (
        Annotated[str, Field(max_length=MAX_TEXT)]
        | int
        | Annotated[list[Annotated[str, Field(max_length=MAX_TEXT)]], Field(max_length=MAX_VALUES)]
        | None
    ) = Field(default=None, validate_default=True)

    @field_validator("op")
    @classmethod
    def _op_fits_field(cls, op: str, info: ValidationInfo) -> str:
        field = info.data.get("field")
        if field in TIME_FIELDS and op not in (*ORDERED, *VALUELESS, "within_days"):
            raise ValueError(f"{field} takes gt, gte, lt, lte, within_days, exists or missing")
        if field not in TIME_FIELDS and op == "within_days":
            raise ValueError("within_days is for created_at and updated_at")
        return op

    @field_validator("value")
    @classmethod
    def _value_fits(cls, value: Any, info: ValidationInfo) -> Any:
        field, op = info.data.get("field"), info.data.get("op")
        if field is None or op is None:
            return value
        if field in TIME_FIELDS and op == "within_days":
            if not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
                raise ValueError(f"within_days needs a number of days from 1 to {MAX_DAYS}")
        elif field in TIME_FIELDS and op in ORDERED:
            if not isinstance(value, str):
                raise ValueError(f"op {op!r} needs an ISO date-time")
            moment_of(value)
        elif isinstance(value, int):
            raise ValueError(f"{field} is text: compare it with text")
        else:
            _check_value(op, value)
        return value

    def moment(self) -> datetime:
        """The date-time a time field is compared with."""
        return moment_of(str(self.value))


def moment_of(text: str) -> datetime:
    """An ISO date-time (UTC when it names no offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class DeviceTest(BaseModel):
    """The profile has at least one device matching every field given: of ``app``, of
    ``provider`` (the platform: ``apns`` for iOS, ``fcm`` for Android or iOS through FCM),
    in ``state`` (``valid`` by default: a token pushes can reach; ``any``: whatever its
    state)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: Slug | None = None
    provider: Literal["apns", "fcm"] | None = None
    state: Literal["valid", "invalid", "quarantined", "any"] = "valid"


class InteractionTest(BaseModel):
    """The profile reported this interaction with a push: ``opened`` counts an open or a
    click (a click implies an open), as reports do; within the last ``within_days`` days of
    the moment the segment is evaluated (a run: its start), or ever; of ``app``'s pushes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["delivered", "opened", "clicked", "dismissed"]
    within_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    app: Slug | None = None


class RunTest(BaseModel):
    """The profile was in a run: listed in its audience or targeted by one of its pushes.
    Name the run (``run_id``) or every run of a journey (``journey``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    journey: Slug | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RunTest:
        if (self.run_id is None) == (self.journey is None):
            raise ValueError("name either run_id or journey")
        return self


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    all: list[Condition] = Field(min_length=1, max_length=MAX_LISTED)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    any: list[Condition] = Field(min_length=1, max_length=MAX_LISTED)


class NotOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    not_: Condition = Field(alias="not")


class AttributeCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: Annotated[AttributeTest, BeforeValidator(_attribute_shorthand)]


class ProfileCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: ProfileTest


class DeviceCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: DeviceTest


class InteractionCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    interaction: InteractionTest


class RunCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunTest


def _kind_of(value: Any) -> str | None:
    """Which condition an object is: its one key (a model: its class)."""
    if isinstance(value, dict):
        known = [key for key in value if key in CONDITION_KINDS]
        return known[0] if len(known) == 1 else None
    return _MODEL_KINDS.get(type(value))


Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[AttributeCondition, Tag("attribute")]
    | Annotated[ProfileCondition, Tag("profile")]
    | Annotated[DeviceCondition, Tag("device")]
    | Annotated[InteractionCondition, Tag("interaction")]
    | Annotated[RunCondition, Tag("run")],
    Discriminator(
        _kind_of,
        custom_error_type="invalid_condition",
        custom_error_message="a condition is an object with exactly one of the keys "
        + ", ".join(CONDITION_KINDS),
    ),
]

_MODEL_KINDS: dict[type, str] = {
    AllOf: "all",
    AnyOf: "any",
    NotOf: "not",
    AttributeCondition: "attribute",
    ProfileCondition: "profile",
    DeviceCondition: "device",
    InteractionCondition: "interaction",
    RunCondition: "run",
}
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


class SegmentDefinition(BaseModel):
    """A segment's filter: its root condition (``all``/``any``/``not`` or one test)."""

    model_config = ConfigDict(frozen=True)

    root: Condition

    def to_data(self) -> dict[str, Any]:
        """The definition as it is written (and stored)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dict(data["root"])


@dataclass(frozen=True)
class SegmentProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SegmentInvalid(ValueError):
    def __init__(self, problems: list[SegmentProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def parse_segment(data: Any) -> SegmentDefinition:
    """A definition from what was written (a dict, as YAML or JSON reads), bounded; raise
    SegmentInvalid naming each bad field by its path (``all.0.attribute.op``)."""
    if not isinstance(data, dict):
        raise SegmentInvalid([SegmentProblem("", "a segment is an object such as {all: [...]}")])
    if _nesting(data) > MAX_RAW_NESTING:
        raise SegmentInvalid(
            [SegmentProblem("", f"nested more than {MAX_RAW_NESTING} levels deep")]
        )
    try:
        definition = SegmentDefinition.model_validate({"root": data})
    except ValidationError as error:
        raise SegmentInvalid(_problems(error)) from None
    problems = _bounds(definition.root)
    if problems:
        raise SegmentInvalid(problems)
    return definition


def _problems(error: ValidationError) -> list[SegmentProblem]:
    by_path: dict[str, list[str]] = {}
    for item in error.errors():
        path = ".".join(_readable_loc(item["loc"][1:]))  # past "root"
        message = item["msg"].removeprefix("Value error, ")
        found = by_path.setdefault(path, [])
        if message not in found:
            found.append(message)
    problems = []
    for path, messages in by_path.items():
        if len(messages) > 1 and "value" in path.split("."):
            messages = ["should be text, a number or true/false (a list of them for in, not_in)"]
        problems.append(SegmentProblem(path, " or ".join(messages)))
    return problems


def _readable_loc(loc: tuple[int | str, ...]) -> list[str]:
    """The path as it is written: without the condition's kind that tags its union (it is
    also its one key), nor the names of the value types a union tried."""
    path: list[str] = []
    expecting_condition = True
    for part in loc:
        text = str(part)
        if expecting_condition and text in CONDITION_KINDS:
            expecting_condition = False
            continue
        if "[" in text or text in UNION_MEMBERS:
            continue
        path.append(text)
        expecting_condition = isinstance(part, int) or text == "not"
    return path


def _nesting(data: Any) -> int:
    """How deep raw JSON nests, counted without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_RAW_NESTING:
            return depth
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return deepest


def _bounds(root: Any) -> list[SegmentProblem]:
    """Depth and size: at most MAX_DEPTH nested combinators and MAX_CONDITIONS in all."""
    problems: list[SegmentProblem] = []
    count = 0
    stack: list[tuple[Any, str, int]] = [(root, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        count += 1
        children = _children(node)
        if children and depth > MAX_DEPTH:
            problems.append(SegmentProblem(path, f"nested deeper than {MAX_DEPTH} levels"))
            continue
        for suffix, child in children:
            stack.append((child, f"{path}.{suffix}" if path else suffix, depth + 1))
    if count > MAX_CONDITIONS:
        problems.append(
            SegmentProblem("", f"{count} conditions: a segment holds at most {MAX_CONDITIONS}")
        )
    return problems


def _children(node: Any) -> list[tuple[str, Any]]:
    match node:
        case AllOf(all=items):
            return [(f"all.{i}", item) for i, item in enumerate(items)]
        case AnyOf(any=items):
            return [(f"any.{i}", item) for i, item in enumerate(items)]
        case NotOf(not_=item):
            return [("not", item)]
    return []


def load_segment_text(text: str, source: str = "segment") -> SegmentDefinition:
    """A definition from YAML or JSON text, read as journey files are (size bounded, YAML
    aliases refused)."""
    from tidings.journeys.files import JourneyFileError, parse_journey_text

    try:
        data = parse_journey_text(text, source=source)
    except JourneyFileError as error:
        raise SegmentInvalid([SegmentProblem("", str(error))]) from None
    return parse_segment(data)
