"""The activities' inputs and results: plain dataclasses, nothing more.

Workflows import this module and activities/declarations.py only (never the activity
implementations, which pull in the store and the provider SDKs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from tidings.journeys.model import JourneyDefinition, PushContent
from tidings.journeys.predicates import AttributePredicate
from tidings.journeys.segments import SegmentDefinition


@dataclass(frozen=True)
class AudienceSpec:
    """Who a run is for: every profile with a device in the app, an explicit list (stored
    as the run's members by the starter), or the profiles a saved segment selects.

    ``where`` narrows an app audience to the profiles whose attributes match every predicate.
    A segment audience carries the segment's definition as it was when the run started (an
    edit of the segment never changes a run in flight) and ``as_of``, the moment its "in the
    last N days" tests count back from, so every page reads the same window.
    """

    kind: Literal["app", "members", "segment"]
    app_id: str
    where: list[AttributePredicate] = field(default_factory=list)
    segment: str | None = None
    definition: SegmentDefinition | None = None
    as_of: datetime | None = None


@dataclass(frozen=True)
class AudiencePageRequest:
    run_id: str
    audience: AudienceSpec
    after: str | None
    limit: int
    # profile attributes the journey's conditions read: returned with each profile
    attributes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileFacts:
    """What the interpreter knows of a profile from its entry: its time zone (quiet hours,
    wait_until) and the attributes condition nodes read."""

    timezone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AudiencePage:
    profile_ids: list[str]
    next_after: str | None
    # by profile id; a profile with no time zone and none of the attributes is left out
    facts: dict[str, ProfileFacts] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileVisit:
    profile_id: str
    # How many times this profile reached this node before: part of the send key, so a
    # journey that loops back to a push sends again on a later visit, never twice per visit.
    visit: int = 0
    # When the profile reached the node: its push's TTL runs from here, not from the send
    # (a send held for quiet hours may be past its expiry). None: the batch's reached_at
    # (workflows recorded before per-profile arrival times).
    reached_at: datetime | None = None


@dataclass(frozen=True)
class FrequencyCap:
    """At most this many delivered pushes per profile, across all journeys, over rolling
    windows (None: no limit in that window)."""

    per_24h: int | None = None
    per_7d: int | None = None
    per_30d: int | None = None

    @property
    def active(self) -> bool:
        return any(n is not None for n in (self.per_24h, self.per_7d, self.per_30d))


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
    # locale variants of ``content`` (tidings.journeys.locales picks one per profile)
    locales: dict[str, PushContent] = field(default_factory=dict)
    # None: the batch ignores the frequency cap (none configured, or the journey bypasses it)
    frequency_cap: FrequencyCap | None = None
    # how long after ``reached_at`` transient failures are retried (None: the deployment's
    # default); a push's own TTL ends its retries sooner when it is shorter
    retry_horizon_s: int | None = None


@dataclass
class PushBatchResult:
    # per profile: valid devices targeted, and devices whose provider accepted the push
    targeted: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    # ledger rows of this batch by final status (open rows are retried, never returned)
    statuses: dict[str, int] = field(default_factory=dict)
    invalidated: int = 0
    quarantined: int = 0
    # set when a provider rejected the app's configuration: its sends stop until it changes
    stopped: str | None = None


@dataclass(frozen=True)
class JourneyEventRecord:
    """Something that happened to a profile in a journey, kept for reports: ``postponed``
    (quiet hours held a send until ``until``), ``goal`` (the goal event made it leave),
    ``entered`` (it joined a journey that listens for custom events: where to route them),
    ``cancelled`` (its run was cancelled while it was in the journey), ``split`` (it took
    branch ``detail`` of an experiment split by the draw), ``promoted`` (it took branch
    ``detail``, the split's promoted winner), ``best_hour`` (a best_hour wait chose its hour,
    ``detail``, and goes on at ``until``)."""

    profile_id: str
    kind: Literal["postponed", "goal", "entered", "cancelled", "split", "promoted", "best_hour"]
    # unique within the workflow: a retried activity writes each event once
    key: str
    node_id: str | None = None
    until: datetime | None = None
    detail: str | None = None


@dataclass(frozen=True)
class RecordJourneyEvents:
    run_id: str
    journey_id: str
    workflow_id: str
    occurred_at: datetime
    events: list[JourneyEventRecord]


@dataclass(frozen=True)
class BestHourRequest:
    """The profiles arriving together at a best_hour node: choose each one's hour in the
    window [now, now + within)."""

    app_id: str
    now: datetime
    within: timedelta
    default_hour: int
    # profile id -> the time zone its hours are read in (the profile's, else the journey's)
    zones: dict[str, str]
    # the journey's zone: the app's histogram reads the hours of profiles without one in it
    fallback_zone: str


@dataclass(frozen=True)
class ChosenHour:
    """A profile's local hour (0-23), and whose opens chose it."""

    hour: int
    source: Literal["profile", "app", "default"]


@dataclass
class BestHours:
    chosen: dict[str, ChosenHour] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishRun:
    run_id: str
    status: Literal["completed", "cancelled", "failed"]
    summary: dict[str, int]
    error: str | None = None


@dataclass(frozen=True)
class ScheduledAudience:
    """A schedule's audience, resolved each time it fires: nothing listed is the journey's
    own audience (or every profile with a device in its app); as a designer's start gives it."""

    app: str | None = None
    where: list[AttributePredicate] = field(default_factory=list)
    profile_ids: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    # a saved segment's name: the profiles it selects at each firing
    segment: str | None = None


@dataclass(frozen=True)
class RecordScheduledRun:
    """One firing of a schedule: store its run (``run_id``, chosen by the firing workflow so
    a retried activity finds the run it stored)."""

    schedule_id: str
    run_id: str
    journey_id: str
    version: int | None
    audience: ScheduledAudience


@dataclass(frozen=True)
class ScheduledRunRecord:
    """The firing's run as stored, and what its workflow is started with."""

    run_id: str
    journey: JourneyDefinition
    version: int
    audience: AudienceSpec
    # whether the namespace knows tidings' search attributes
    search_attributes: bool


@dataclass(frozen=True)
class TestSendRequest:
    """A recorded test send (tidings.store.models.TestSend) to be sent by a worker."""

    __test__ = False  # not a pytest class

    test_send_id: str


@dataclass(frozen=True)
class TestSendFailure:
    """A test send whose sending could not run: its open devices end ``failed``."""

    __test__ = False  # not a pytest class

    test_send_id: str
    reason: str


@dataclass
class TestSendSummary:
    __test__ = False  # not a pytest class

    status: str
    # devices by outcome (sent, failed, token_gone, ...)
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeExperiment:
    """Has an experiment split of a run a clear winner yet? (``promote: auto``)"""

    run_id: str
    node_id: str


@dataclass(frozen=True)
class ExperimentDecision:
    """The branch to promote (recorded as the split's promotion), or None and why not."""

    branch: int | None
    explanation: str
