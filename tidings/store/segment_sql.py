"""A segment's definition compiled into one SQL condition over the ``profile`` table, for
SQLite and PostgreSQL alike: devices, interactions and runs are EXISTS subqueries, attributes
are read with each dialect's JSON functions. Nothing is filtered in Python, so a preview
counts and an audience page reads exactly what the database selects.

Attribute tests mean what ``tidings.journeys.predicates`` means (``--where`` filters and
condition nodes): JSON has one number type (3 equals 3.0, true is not 1), texts compare by
code point (PostgreSQL with the "C" collation, as SQLite does), an absent attribute is
``ne`` and ``not_in`` anything. Every test is definite (true or false, never NULL), so
``not`` is the negation Python would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, assert_never

from sqlalchemy import (
    ARRAY,
    Float,
    Numeric,
    String,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from tidings.journeys.segments import (
    AllOf,
    AnyOf,
    AttributeCondition,
    AttributeTest,
    DeviceCondition,
    DeviceTest,
    InteractionCondition,
    InteractionTest,
    NotOf,
    ProfileCondition,
    ProfileTest,
    RunCondition,
    RunTest,
    SegmentDefinition,
)
from tidings.store.models import (
    Delivery,
    Device,
    Interaction,
    InteractionKind,
    InteractionStatus,
    JourneyRun,
    Profile,
    RunMember,
)

Dialect = Literal["sqlite", "postgresql"]
Condition = Any  # a node of the definition's tree


@dataclass(frozen=True)
class SegmentQuery:
    """What a compiled definition depends on besides itself: the database's dialect, and
    the moment "in the last N days" counts back from (a run fixes it at its start, so every
    page of its audience reads the same window)."""

    dialect: Dialect
    as_of: datetime

    def condition(self, definition: SegmentDefinition) -> ColumnElement[bool]:
        return self._node(definition.root)

    def _node(self, node: Condition) -> ColumnElement[bool]:
        match node:
            case AllOf(all=items):
                return and_(*(self._node(item) for item in items))
            case AnyOf(any=items):
                return or_(*(self._node(item) for item in items))
            case NotOf(not_=item):
                return not_(self._node(item))
            case AttributeCondition(attribute=test):
                return _definite(self._attribute(test))
            case ProfileCondition(profile=test):
                return _definite(self._profile(test))
            case DeviceCondition(device=test):
                return _device(test)
            case InteractionCondition(interaction=test):
                return self._interaction(test)
            case RunCondition(run=test):
                return _run(test)
        raise TypeError(f"not a segment condition: {node!r}")

    # attributes -------------------------------------------------------------------------

    def _attribute(self, test: AttributeTest) -> ColumnElement[bool]:
        value = _JsonValue(self.dialect, test.name.split("."))
        op = test.op
        match op:
            case "exists":
                return value.present()
            case "missing":
                return not_(_definite(value.present()))
            case "eq":
                return value.equals(test.value)
            case "ne":
                return not_(_definite(value.equals(test.value)))
            case "in":
                return or_(*(value.equals(item) for item in _listed(test.value)))
            case "not_in":
                return not_(_definite(or_(*(value.equals(item) for item in _listed(test.value)))))
            case "contains":
                return value.contains(test.value)
            case "gt" | "gte" | "lt" | "lte":
                return value.ordered(op, test.value)
            case _:
                assert_never(op)

    # the profile's own fields -------------------------------------------------------------

    def _profile(self, test: ProfileTest) -> ColumnElement[bool]:
        column: Any = getattr(Profile, test.field)
        op = test.op
        if op == "within_days":
            assert isinstance(test.value, int)
            return col(column).between(self.as_of - timedelta(days=test.value), self.as_of)
        if op == "exists":
            return col(column).is_not(None)
        if op == "missing":
            return col(column).is_(None)
        if test.field in ("created_at", "updated_at"):
            return _compare(op, col(column), test.moment())
        text = self._text(column)
        match op:
            case "eq":
                return text == test.value
            case "ne":
                return not_(_definite(text == test.value))
            case "in":
                return text.in_(_listed(test.value))
            case "not_in":
                return not_(_definite(text.in_(_listed(test.value))))
            case "contains":
                return _substring(self.dialect, col(column), str(test.value))
            case "gt" | "gte" | "lt" | "lte":
                return _compare(op, text, test.value)
        raise ValueError(f"op {op!r} does not apply to {test.field}")

    def _text(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return column.collate("C") if self.dialect == "postgresql" else column

    # behaviour ----------------------------------------------------------------------------

    def _interaction(self, test: InteractionTest) -> ColumnElement[bool]:
        # a click implies an open, as reports count it
        kinds = (
            [InteractionKind.OPENED.value, InteractionKind.CLICKED.value]
            if test.kind == "opened"
            else [test.kind]
        )
        query = (
            select(literal(1))
            .select_from(Interaction)
            .where(col(Interaction.profile_id) == col(Profile.id))
            .where(col(Interaction.status) == InteractionStatus.MATCHED.value)
            .where(col(Interaction.kind).in_(kinds))
        )
        if test.within_days is not None:
            since = self.as_of - timedelta(days=test.within_days)
            query = query.where(col(Interaction.occurred_at).between(since, self.as_of))
        if test.app is not None:
            query = query.where(col(Interaction.app_id) == test.app)
        return exists(query)


def _device(test: DeviceTest) -> ColumnElement[bool]:
    query = select(literal(1)).select_from(Device).where(col(Device.profile_id) == col(Profile.id))
    if test.app is not None:
        query = query.where(col(Device.app_id) == test.app)
    if test.provider is not None:
        query = query.where(col(Device.provider) == test.provider)
    if test.state != "any":
        query = query.where(col(Device.state) == test.state)
    return exists(query)


def _run(test: RunTest) -> ColumnElement[bool]:
    """Listed in the run's audience, or targeted by one of its pushes (an app audience
    stores no members: its profiles are known by their ledger rows)."""
    member = (
        select(literal(1))
        .select_from(RunMember)
        .where(col(RunMember.profile_id) == col(Profile.id))
    )
    pushed = (
        select(literal(1)).select_from(Delivery).where(col(Delivery.profile_id) == col(Profile.id))
    )
    if test.run_id is not None:
        member = member.where(col(RunMember.run_id) == test.run_id)
        pushed = pushed.where(col(Delivery.run_id) == test.run_id)
    else:
        member = member.join(JourneyRun, col(JourneyRun.id) == col(RunMember.run_id)).where(
            col(JourneyRun.journey_id) == test.journey
        )
        pushed = pushed.where(col(Delivery.journey_id) == test.journey)
    return or_(exists(member), exists(pushed))


class _JsonValue:
    """One (possibly nested) attribute of ``profile.attributes``, read with the dialect's
    JSON functions; its JSON type is checked before its value is compared, so a text is
    never compared with a number (and PostgreSQL never casts a text to a number: the cast
    sits inside a CASE)."""

    def __init__(self, dialect: Dialect, path: list[str]) -> None:
        self.dialect = dialect
        self.path = path
        column: Any = col(Profile.attributes)
        if dialect == "postgresql":
            at = literal(path, ARRAY(Text))
            self._json = column.op("#>", return_type=JSONB)(at)
            self._text: ColumnElement[Any] = column.op("#>>", return_type=Text)(at)
            self.type: ColumnElement[Any] = func.jsonb_typeof(self._json)
        else:
            at_path = "$" + "".join(f'."{part}"' for part in path)
            self._text = func.json_extract(column, at_path)
            self._json = self._text
            self.type = func.json_type(column, at_path)
            self._at_path = at_path

    def _is(self, kind: Literal["text", "number", "true", "false"]) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            if kind in ("true", "false"):
                return and_(self.type == "boolean", self._text == kind)
            return self.type == ("string" if kind == "text" else "number")
        if kind == "number":
            return self.type.in_(["integer", "real"])
        return self.type == kind

    def _number(self) -> ColumnElement[Any]:
        value = cast(self._text, Numeric) if self.dialect == "postgresql" else self._text
        return case((self._is("number"), value))

    def _string(self) -> ColumnElement[Any]:
        value = self._text.collate("C") if self.dialect == "postgresql" else self._text
        return case((self._is("text"), value))

    def present(self) -> ColumnElement[bool]:
        return and_(self.type.is_not(None), self.type != "null")

    def equals(self, expected: Any) -> ColumnElement[bool]:
        if isinstance(expected, bool):
            return self._is("true" if expected else "false")
        if isinstance(expected, int | float):
            return self._number() == _number_literal(self.dialect, expected)
        return self._string() == str(expected)

    def ordered(self, op: str, expected: Any) -> ColumnElement[bool]:
        if isinstance(expected, int | float) and not isinstance(expected, bool):
            return _compare(op, self._number(), _number_literal(self.dialect, expected))
        return _compare(op, self._string(), str(expected))

    def contains(self, expected: Any) -> ColumnElement[bool]:
        """An item of a list equal to ``expected``, or (a text) a substring of a text."""
        in_list = self._list_holds(expected)
        if isinstance(expected, str):
            substring = case((self._is("text"), _substring(self.dialect, self._text, expected)))
            return or_(_definite(substring), in_list)
        return in_list

    def _list_holds(self, expected: Any) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            holds = self._json.op("@>", return_type=JSONB)(literal([expected], JSONB))
            return and_(self.type == "array", holds)
        items = func.json_each(col(Profile.attributes), self._at_path).table_valued("type", "value")
        item_type, item_value = items.c.type, items.c.value
        if isinstance(expected, bool):
            matches = item_type == ("true" if expected else "false")
        elif isinstance(expected, int | float):
            matches = and_(item_type.in_(["integer", "real"]), item_value == expected)
        else:
            matches = and_(item_type == "text", item_value == expected)
        return and_(
            self.type == "array", exists(select(literal(1)).select_from(items).where(matches))
        )


def _number_literal(dialect: Dialect, value: int | float) -> ColumnElement[Any]:
    return literal(value, Numeric) if dialect == "postgresql" else literal(value, Float)


def _substring(dialect: Dialect, text: Any, part: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return func.strpos(text, literal(part, String)) > 0
    return func.instr(text, literal(part, String)) > 0


def _compare(op: str, left: Any, right: Any) -> ColumnElement[bool]:
    match op:
        case "gt":
            return left > right  # type: ignore[no-any-return]
        case "gte":
            return left >= right  # type: ignore[no-any-return]
        case "lt":
            return left < right  # type: ignore[no-any-return]
        case "lte":
            return left <= right  # type: ignore[no-any-return]
    raise ValueError(f"not an ordering: {op!r}")


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _definite(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """True or false, never NULL: a NULL (a missing field, a CASE without its type) is
    false, so NOT of it is true, as Python's evaluation has it."""
    return case((condition, true()), else_=false())
