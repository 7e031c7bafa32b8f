"""Every signal, query, input and result of the journey workflows: what clients, the
forwarder and the workflows themselves exchange with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.state import CohortSnapshot

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        AudienceSpec,
        FrequencyCap,
        ProfileFacts,
        ScheduledAudience,
    )
    from tidings.journeys.model import JourneyDefinition


@dataclass(frozen=True)
class EngineOptions:
    """Tuning a starter takes from its settings; workflows cannot read the environment."""

    cohort_size: int = 1000
    # cohorts of a run taking steps at once: a cohort parked in a wait this long or longer
    # (``cohort_parks_after``) gives its place to the next one
    cohort_window: int = 8
    cohort_parks_after: timedelta = timedelta(seconds=60)
    audience_page_size: int = 2000
    delivery_heartbeat_timeout: timedelta = timedelta(seconds=30)
    delivery_timeout: timedelta = timedelta(hours=1)
    delivery_max_backoff: timedelta = timedelta(minutes=5)
    # how long a push node retries transient failures unless the node names its own horizon
    delivery_retry_horizon: timedelta = timedelta(hours=1)
    # the task queue delivery activities are scheduled on (None: the workflow's own), so
    # delivery workers can scale apart from the interpreter
    delivery_task_queue: str | None = None
    # the deployment's frequency cap (None: no cap); a journey may bypass it
    frequency_cap: FrequencyCap | None = None
    # continue a cohort as new once its history has this many events (None: when Temporal
    # suggests it). Small values exercise continue-as-new in tests.
    cohort_history_limit: int | None = None
    # the same for the run workflow: it continues as new with its cohorts still running
    run_history_limit: int | None = None


@dataclass
class RunProgress:
    """What a run carries across continue-as-new."""

    after: str | None = None
    buffered: list[str] = field(default_factory=list)
    exhausted: bool = False
    cohorts_started: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    # what the audience pages said about the buffered profiles (time zone, attributes)
    buffered_facts: dict[str, ProfileFacts] = field(default_factory=dict)
    cohorts_finished: int = 0
    cancelled: bool = False
    # cohorts started and not yet reported, in start order: they outlive a continue-as-new
    # of the run and report to its workflow id
    running_cohorts: list[str] = field(default_factory=list)
    stopped: str | None = None
    cohorts_failed: int = 0
    # the first few failures, each naming its cohort (the rest are only counted)
    failures: list[str] = field(default_factory=list)
    # experiment splits promoted to a winner: node id -> the branch every profile now takes
    promotions: dict[str, int] = field(default_factory=dict)
    # running cohorts that said they are parked in a long wait: they hold no place in the
    # window (in start order)
    parked_cohorts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JourneyRunInput:
    run_id: str
    journey: JourneyDefinition
    audience: AudienceSpec
    options: EngineOptions = field(default_factory=EngineOptions)
    # Set when the run continues as new: where paging stopped and what was counted so far.
    progress: RunProgress | None = None


@dataclass(frozen=True)
class ScheduledRunInput:
    """What a Temporal Schedule starts at each firing: the journey (its latest version when
    none is named, read when it fires) and the audience to resolve then."""

    schedule_id: str
    journey_id: str
    version: int | None
    audience: ScheduledAudience
    options: EngineOptions = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class CohortInput:
    run_id: str
    journey: JourneyDefinition
    profile_ids: list[str]
    options: EngineOptions = field(default_factory=EngineOptions)
    facts: dict[str, ProfileFacts] = field(default_factory=dict)
    # set when the cohort continues as new
    snapshot: CohortSnapshot | None = None
    # a triggered entry: its membership is already stored (journey_entry), and visits
    # continue from the profile's earlier entries, so their ledger rows are not taken as
    # this entry's sends
    triggered: bool = False
    prior_visits: dict[str, int] = field(default_factory=dict)
    # run the push nodes' deliveries as local activities (set for triggered entries: a
    # batch of one profile's devices). An input, not a patch, so an entry carries no patch
    # marker events for it; entries started before it was set replay as they ran.
    local_delivery: bool = False
    # the workflow id of the run to report the cohort's end to (None: report nothing; the
    # cohorts of runs from before reports, and triggered entries, which have no run)
    report_to: str | None = None
    # report to ``report_to`` only a failure, or once the run asks (REPORT_REQUEST_SIGNAL,
    # before it continues as new): otherwise the run counts the cohort's completion as its
    # child's, which costs both histories fewer events than a signal
    report_only_when_asked: bool = False
    # experiment splits promoted before the cohort started: node id -> the winning branch
    promotions: dict[str, int] = field(default_factory=dict)
    # tell ``report_to`` (COHORT_PARKED_SIGNAL) once, the first time every profile waits
    # ``options.cohort_parks_after`` or longer with no step in flight, so the run's window
    # takes the next cohort instead of holding its place through the wait. An input, not a
    # patch: cohorts started before it was set replay as they ran.
    report_parking: bool = False


@dataclass
class CohortResult:
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None


@dataclass(frozen=True)
class CohortReport:
    """A cohort's end, signalled to its run: its counts, and what failed it if it failed
    (the counts are then those of the steps it took before)."""

    cohort_id: str
    result: CohortResult
    error: str | None = None


@dataclass
class RunResult:
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    cohorts: int = 0
    stopped: str | None = None
    status: str = "completed"


@dataclass
class CohortProgress:
    """A cohort's answer to the ``progress`` query."""

    positions: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False
    # experiment splits promoted to a winner: node id -> the branch profiles now take
    promotions: dict[str, int] = field(default_factory=dict)


@dataclass
class RunStatusView:
    """A run's answer to the ``status`` query: totals of finished cohorts and the ids of the
    running ones (a status display queries those for their live progress)."""

    totals: dict[str, int] = field(default_factory=dict)
    running_cohorts: list[str] = field(default_factory=list)
    cohorts_started: int = 0
    # of the running cohorts, those parked in a long wait (they hold no place in the window)
    parked_cohorts: list[str] = field(default_factory=list)
    cohorts_finished: int = 0
    audience_exhausted: bool = False
    cancelled: bool = False


INTERACTIONS_SIGNAL = "interactions"
# Run and cohort workflows: stop taking steps, let the steps in flight settle, then end.
CANCEL_SIGNAL = "cancel"
# Run and cohort workflows: an experiment split has a winner; profiles that reach the split
# from now on take it (a run passes the word on to its cohorts, and to the ones it starts).
PROMOTE_SIGNAL = "promote-branch"
# Run workflow: a cohort it started has ended (its counts, or its failure). Cohorts report by
# signal to the run's workflow id, which outlives the run's continue-as-new.
COHORT_REPORT_SIGNAL = "cohort-report"
# Cohort workflow: report your end to the run by signal (COHORT_REPORT_SIGNAL), whatever
# ``report_only_when_asked`` said: the run that started you is about to continue as new.
REPORT_REQUEST_SIGNAL = "report-end"
# Run workflow: a cohort it started has every profile in a long wait (its workflow id): the
# run starts the next cohort in its place, as it would for one that ended.
COHORT_PARKED_SIGNAL = "cohort-parked"


@dataclass(frozen=True)
class BranchPromotion:
    """The branch of an experiment split that every profile reaching it now takes."""

    node_id: str
    branch: int


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
    # the visit of the send it is about (the ledger row's): a late interaction with an
    # earlier send of a node the profile passed again is not taken for the latest send's.
    # None (custom events, rows stored before visits were kept): the node's latest send.
    visit: int | None = None


@dataclass(frozen=True)
class InteractionBatch:
    events: list[InteractionEvent]
