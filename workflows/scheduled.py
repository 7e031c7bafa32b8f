"""What a Temporal Schedule starts at each firing: a short workflow that stores the firing's
run (an activity: the journey read and the audience resolved now, as a designer's start
does) and starts the run workflow for it, then ends.

The run workflow is started as an abandoned child under the run's own id, so a firing is
a run like any other (listed, reported, cancelled by its id), and the run workflow itself
is unchanged. The run id is chosen here, from the firing's time and the workflow's seeded
randomness, so a retried activity finds the run it stored instead of storing a second.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ParentClosePolicy

from workflows.run import JourneyRunWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import RecordScheduledRun
    from activities.declarations import SchedulesActivity
    from tidings.temporal.search import described, journey_attributes
    from workflows.contracts import JourneyRunInput, ScheduledRunInput

STORE_ACTIVITY_TIMEOUT = timedelta(seconds=30)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    # a firing that cannot be stored for this long is given up; the next one comes at its time
    maximum_attempts=30,
)


@workflow.defn(name="ScheduledRun")
class ScheduledRunWorkflow:
    @workflow.run
    async def run(self, firing: ScheduledRunInput) -> str:
        """The id of the run this firing started."""
        suffix = f"{workflow.random().getrandbits(24):06x}"
        run_id = f"run-{firing.journey_id}-{workflow.now():%Y%m%dT%H%M%S}-{suffix}"
        record = await workflow.execute_activity_method(
            SchedulesActivity.record_run,
            RecordScheduledRun(
                schedule_id=firing.schedule_id,
                run_id=run_id,
                journey_id=firing.journey_id,
                version=firing.version,
                audience=firing.audience,
            ),
            start_to_close_timeout=STORE_ACTIVITY_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        journey = record.journey
        workflow.logger.info("schedule %s fired: run %s", firing.schedule_id, run_id)
        about = described(
            journey_id=journey.id,
            journey_name=journey.name,
            version=record.version,
            app=journey.app,
        )
        attributes = journey_attributes(
            journey_id=journey.id,
            version=record.version,
            app=journey.app,
            run_id=record.run_id,
            kind="scheduled",
        )
        await workflow.start_child_workflow(
            JourneyRunWorkflow.run,
            JourneyRunInput(
                run_id=record.run_id,
                journey=journey,
                audience=record.audience,
                options=firing.options,
            ),
            id=record.run_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            memo=about["memo"],
            static_summary=about["static_summary"],
            search_attributes=attributes if record.search_attributes else None,
        )
        return record.run_id
