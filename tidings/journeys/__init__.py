"""Journey definitions: the model, validation and template rendering."""

from tidings.journeys.model import (
    DelayNode,
    ExitNode,
    JourneyDefinition,
    PushContent,
    PushNode,
)
from tidings.journeys.validation import (
    JourneyInvalid,
    JourneyIssue,
    load_definition,
    parse_definition,
)

__all__ = [
    "DelayNode",
    "ExitNode",
    "JourneyDefinition",
    "JourneyInvalid",
    "JourneyIssue",
    "PushContent",
    "PushNode",
    "load_definition",
    "parse_definition",
]
