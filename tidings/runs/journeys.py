"""Journeys as the API, the console and the CLI see them: validate a definition's text, save
it as a new version, list the stored journeys, and one journey with its versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select

from tidings.journeys.files import JourneyFileError, parse_journey_text
from tidings.journeys.model import JourneyDefinition
from tidings.journeys.validation import JourneyInvalid, JourneyIssue, parse_definition
from tidings.journeys.warnings import journey_warnings, missing_apps
from tidings.store.db import Database
from tidings.store.journeys import save_version
from tidings.store.models import Journey, JourneyRun, JourneyVersion

TextFormat = Literal["yaml", "json"]


class JourneyProblem(BaseModel):
    """One problem of a definition: the node it is on (None: the journey itself), the field,
    and what is wrong; the same lines ``tidings journeys validate`` prints."""

    node: str | None
    field: str
    message: str

    @classmethod
    def of(cls, issue: JourneyIssue) -> JourneyProblem:
        return cls(node=issue.node, field=issue.field, message=issue.message)


class JourneyProblems(ValueError):
    """The definition cannot be used; ``problems`` says where and why."""

    def __init__(self, problems: list[JourneyProblem]) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(f"{p.node or 'journey'}, {p.field}: {p.message}" for p in problems)
        )


class ValidationResult(BaseModel):
    valid: bool
    journey_id: str | None = None
    problems: list[JourneyProblem] = []
    # what may fail at run time although the journey is valid (a template variable nothing
    # provides): reported, never refused
    warnings: list[JourneyProblem] = []


class JourneySummary(BaseModel):
    id: str
    name: str
    latest_version: int
    created_at: datetime
    updated_at: datetime


class JourneyVersionInfo(BaseModel):
    version: int
    created_at: datetime
    definition: dict[str, Any]


class JourneyDetail(JourneySummary):
    versions: list[JourneyVersionInfo]
    runs: int


class SavedJourney(BaseModel):
    id: str
    version: int
    # False when the text equals the latest version: no new version was stored
    created: bool


def definition_from_text(text: str, text_format: TextFormat = "yaml") -> JourneyDefinition:
    """Model and check a definition's text (YAML, or JSON); raise JourneyProblems."""
    try:
        data = parse_journey_text(text, json_text=text_format == "json", source="body")
    except JourneyFileError as error:
        raise JourneyProblems(
            [JourneyProblem(node=None, field="body", message=str(error))]
        ) from None
    return definition_from_data(data)


def definition_from_data(data: Any) -> JourneyDefinition:
    try:
        return parse_definition(data)
    except JourneyInvalid as error:
        raise JourneyProblems([JourneyProblem.of(issue) for issue in error.issues]) from None


async def validate_in_store(
    db: Database, text: str, text_format: TextFormat = "yaml"
) -> ValidationResult:
    """Check without saving. An app the journey names that the store lacks is a warning
    here (it may be made before the journey starts, and a start refuses it until then)."""
    try:
        journey = definition_from_text(text, text_format)
    except JourneyProblems as error:
        return ValidationResult(valid=False, problems=error.problems)
    async with db.read() as session:
        missing = await missing_apps(session, journey)
    warnings = [JourneyProblem.of(issue) for issue in [*missing, *journey_warnings(journey)]]
    return ValidationResult(valid=True, journey_id=journey.id, warnings=warnings)


async def save_definition(db: Database, journey: JourneyDefinition) -> SavedJourney:
    """Store the definition as the journey's newest version (unless it equals the latest)."""
    async with db.write() as session:
        before = await session.get(Journey, journey.id)
        latest = before.latest_version if before is not None else 0
        version = await save_version(session, journey.model_dump(mode="json"))
    return SavedJourney(id=journey.id, version=version, created=version > latest)


async def list_journeys(
    db: Database, *, after: str | None = None, limit: int | None = None
) -> list[JourneySummary]:
    """By id; ``after`` is the last id of the previous page."""
    statement = select(Journey).order_by(col(Journey.id))
    if after is not None:
        statement = statement.where(col(Journey.id) > after)
    if limit is not None:
        statement = statement.limit(limit)
    async with db.read() as session:
        journeys = (await session.exec(statement)).all()
    return [_summary(journey) for journey in journeys]


async def get_journey(db: Database, journey_id: str) -> JourneyDetail | None:
    """One journey with every version, newest first, and how many runs it had."""
    async with db.read() as session:
        journey = await session.get(Journey, journey_id)
        if journey is None:
            return None
        versions = (
            await session.exec(
                select(JourneyVersion)
                .where(col(JourneyVersion.journey_id) == journey_id)
                .order_by(col(JourneyVersion.version).desc())
            )
        ).all()
        runs = (
            await session.exec(select(func.count()).where(col(JourneyRun.journey_id) == journey_id))
        ).one()
    return JourneyDetail(
        **_summary(journey).model_dump(),
        versions=[
            JourneyVersionInfo(version=v.version, created_at=v.created_at, definition=v.definition)
            for v in versions
        ],
        runs=runs,
    )


def _summary(journey: Journey) -> JourneySummary:
    return JourneySummary(
        id=journey.id,
        name=journey.name,
        latest_version=journey.latest_version,
        created_at=journey.created_at,
        updated_at=journey.updated_at,
    )
