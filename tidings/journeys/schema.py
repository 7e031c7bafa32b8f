"""The JSON Schema of journey files, from the pydantic model, for editors (completion, checks
as you type): ``tidings journeys schema > journey.schema.json``."""

from __future__ import annotations

from typing import Any

from tidings.journeys.model import JourneyDefinition

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def journey_schema() -> dict[str, Any]:
    """The schema of what a designer writes (validation mode: durations as text or numbers)."""
    schema = JourneyDefinition.model_json_schema(mode="validation")
    _where_takes_text(schema)
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "tidings journey"}


def _where_takes_text(schema: dict[str, Any]) -> None:
    """An audience filter may also be written as the command line writes it (``plan=pro``);
    the model reads that text before validating, which pydantic's schema cannot see."""
    audience = schema.get("$defs", {}).get("JourneyAudience")
    if audience is None:
        return
    where = audience["properties"]["where"]
    where["items"] = {
        "anyOf": [
            {"type": "string", "examples": ["plan=pro", "age>=18", "country~FR,BE", "vip?"]},
            where["items"],
        ]
    }
