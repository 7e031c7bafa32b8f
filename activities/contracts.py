"""What workflows and activities exchange: names and plain dataclasses, nothing more.

Workflows import this module only (never the activity implementations, which pull in the
store and the provider SDKs), and call activities by the names defined here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from tidings.journeys.model import PushContent

LIST_AUDIENCE = "tidings.audience.page"
DELIVER = "tidings.delivery.deliver"
FINISH_RUN = "tidings.records.finish_run"


@dataclass(frozen=True)
class AudienceSpec:
    """Who a run is for: every profile with a device in the app, or an explicit list
    (stored as the run's members by the starter)."""

    kind: Literal["app", "members"]
    app_id: str


@dataclass(frozen=True)
class AudiencePageRequest:
    run_id: str
    audience: AudienceSpec
    after: str | None
    limit: int


@dataclass(frozen=True)
class AudiencePage:
    profile_ids: list[str]
    next_after: str | None


@dataclass(frozen=True)
class ProfileVisit:
    profile_id: str
    # How many times this profile reached this node before: part of the send key, so a
    # journey that loops back to a push sends again on a later visit, never twice per visit.
    visit: int = 0


@dataclass(frozen=True)
class PushBatch:
    run_id: str
    journey_id: str
    workflow_id: str
    node_id: str
    app_id: str
    content: PushContent
    ttl_s: int | None
    reached_at: datetime
    profiles: list[ProfileVisit]


@dataclass
class PushBatchResult:
    # per profile: valid devices targeted, and devices whose provider accepted the push
    targeted: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    # ledger rows of this batch by final status (pending rows are retried, never returned)
    statuses: dict[str, int] = field(default_factory=dict)
    invalidated: int = 0
    quarantined: int = 0
    # set when a provider rejected the app's configuration: its sends stop until it changes
    stopped: str | None = None


@dataclass(frozen=True)
class FinishRun:
    run_id: str
    status: Literal["completed", "cancelled", "failed"]
    summary: dict[str, int]
    error: str | None = None


INTERACTIONS_SIGNAL = "interactions"


@dataclass(frozen=True)
class InteractionEvent:
    """An interaction (or custom event) for one profile of a journey workflow.

    Workflows deduplicate on ``event_id`` (across continue-as-new), so the forwarder may
    deliver an event more than once.
    """

    event_id: str
    profile_id: str
    kind: str  # delivered | opened | clicked | dismissed | custom
    occurred_at: datetime
    node_id: str | None = None  # the push node the interaction is about
    tracking_id: str | None = None
    action_id: str | None = None
    name: str | None = None  # custom events: the event's name


@dataclass(frozen=True)
class InteractionBatch:
    events: list[InteractionEvent]
