"""The JSON Schema of journey files, from the pydantic model, for editors (completion, checks
as you type): ``tidings journeys schema > journey.schema.json``."""

from __future__ import annotations

from typing import Any

from tidings.journeys.model import JourneyDefinition

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def journey_schema() -> dict[str, Any]:
    """The schema of what a designer writes (validation mode: durations as text or numbers)."""
    schema = JourneyDefinition.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "tidings journey"}
