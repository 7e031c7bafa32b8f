"""What a node handler may use: the journey, the cohort's state, the profiles' facts, the
engine options, and the batched recording of journey events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.contracts import EngineOptions
from workflows.state import CohortState

with workflow.unsafe.imports_passed_through():
    from zoneinfo import ZoneInfo

    from activities.contracts import (
        JourneyEventRecord,
        ProfileFacts,
        RecordJourneyEvents,
    )
    from activities.declarations import RecordsActivity
    from tidings.journeys.localtime import zone_for
    from tidings.journeys.model import JourneyDefinition

# Store-only activities take milliseconds; a worker killed while running one must delay the
# run by seconds, not by a long start-to-close timeout (retried at once, then backing off).
RECORD_TIMEOUT = timedelta(seconds=10)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)
NO_FACTS = ProfileFacts()


@dataclass
class CohortContext:
    run_id: str
    workflow_id: str
    journey: JourneyDefinition
    state: CohortState
    options: EngineOptions
    facts: dict[str, ProfileFacts] = field(default_factory=dict)
    # deliveries run as local activities (a triggered entry: a cohort of one)
    local_delivery: bool = False

    def facts_of(self, profile_id: str) -> ProfileFacts:
        return self.facts.get(profile_id, NO_FACTS)

    def zone_of(self, profile_id: str) -> ZoneInfo:
        return zone_for(self.facts_of(profile_id).timezone, self.journey.timezone)

    async def record(self, events: list[JourneyEventRecord]) -> None:
        """Write journey events in one activity: one per cohort step, never one per profile."""
        if not events:
            return
        await workflow.execute_activity_method(
            RecordsActivity.journey_events,
            RecordJourneyEvents(
                run_id=self.run_id,
                journey_id=self.journey.id,
                workflow_id=self.workflow_id,
                occurred_at=workflow.now(),
                events=events,
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )
