"""Journey definitions: the model, validation, template rendering, and the pure helpers the
interpreter shares with the rest of tidings (predicates, local time, locale variants)."""

from tidings.journeys.model import (
    BestHourNode,
    ConditionNode,
    DelayNode,
    ExitNode,
    Goal,
    JourneyDefinition,
    PushContent,
    PushNode,
    QuietHours,
    RandomSplitNode,
    ReEntry,
    Trigger,
    WaitForNode,
    WaitUntilNode,
)
from tidings.journeys.validation import (
    JourneyInvalid,
    JourneyIssue,
    load_definition,
    parse_definition,
)

__all__ = [
    "BestHourNode",
    "ConditionNode",
    "DelayNode",
    "ExitNode",
    "Goal",
    "JourneyDefinition",
    "JourneyInvalid",
    "JourneyIssue",
    "PushContent",
    "PushNode",
    "QuietHours",
    "RandomSplitNode",
    "ReEntry",
    "Trigger",
    "WaitForNode",
    "WaitUntilNode",
    "load_definition",
    "parse_definition",
]
