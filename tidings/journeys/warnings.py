"""Warnings: what validation finds suspect without refusing the journey, and the checks that
need the store (the apps a journey sends through must exist)."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.journeys.model import JourneyDefinition, PushNode
from tidings.journeys.validation import JourneyIssue
from tidings.journeys.variables import template_warnings
from tidings.store.models.apps import App
from tidings.store.models.segments import Segment


def journey_warnings(definition: JourneyDefinition) -> list[JourneyIssue]:
    """Everything suspect in a valid journey, by node and field."""
    return template_warnings(definition)


async def missing_apps(session: AsyncSession, definition: JourneyDefinition) -> list[JourneyIssue]:
    """The journey's app and every push node's own app must exist in the store, as must the
    segment its audience names (a start would refuse it)."""
    wanted: dict[str, tuple[str | None, str]] = {definition.app: (None, "app")}
    for node in definition.nodes:
        if isinstance(node, PushNode) and node.app is not None:
            wanted.setdefault(node.app, (node.id, "app"))
    found = await session.exec(select(App.id).where(col(App.id).in_(list(wanted))))
    existing = set(found.all())
    issues = [
        JourneyIssue(node, field, f"names no app: there is no app {app_id!r} in the store")
        for app_id, (node, field) in wanted.items()
        if app_id not in existing
    ]
    segment = definition.audience.segment if definition.audience is not None else None
    if segment is not None and await session.get(Segment, segment) is None:
        issues.append(
            JourneyIssue(
                None,
                "audience.segment",
                f"names no segment: there is no segment {segment!r} in the store",
            )
        )
    return issues
