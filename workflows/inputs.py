"""Inputs and results of the journey workflows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import AudienceSpec
    from tidings.journeys.model import JourneyDefinition


@dataclass(frozen=True)
class EngineOptions:
    """Tuning a starter takes from its settings; workflows cannot read the environment."""

    cohort_size: int = 500
    cohort_window: int = 8
    audience_page_size: int = 2000
    delivery_heartbeat_timeout: timedelta = timedelta(seconds=30)
    delivery_timeout: timedelta = timedelta(hours=1)
    delivery_max_attempts: int = 8
    delivery_max_backoff: timedelta = timedelta(minutes=5)


@dataclass
class RunProgress:
    """What a run carries across continue-as-new."""

    after: str | None = None
    buffered: list[str] = field(default_factory=list)
    exhausted: bool = False
    cohorts_started: int = 0
    totals: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JourneyRunInput:
    run_id: str
    journey: JourneyDefinition
    audience: AudienceSpec
    options: EngineOptions = field(default_factory=EngineOptions)
    # Set when the run continues as new: where paging stopped and what was counted so far.
    progress: RunProgress | None = None


@dataclass(frozen=True)
class CohortInput:
    run_id: str
    journey: JourneyDefinition
    profile_ids: list[str]
    options: EngineOptions = field(default_factory=EngineOptions)


@dataclass
class CohortResult:
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None


@dataclass
class RunResult:
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    cohorts: int = 0
    stopped: str | None = None
