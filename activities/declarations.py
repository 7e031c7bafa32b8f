"""The activities' typed signatures, as workflows call them.

Workflows cannot import the implementations (they pull in the store and the provider SDKs),
so each activity class declares its methods here and the implementation subclasses it;
workflows call ``workflow.execute_activity_method(DeliveryActivity.deliver, batch, ...)``,
checked by the type checker, and the activity's name is the one declared here.
"""

from __future__ import annotations

from temporalio import activity

from activities.contracts import (
    AudiencePage,
    AudiencePageRequest,
    BestHourRequest,
    BestHours,
    ExperimentDecision,
    FinishRun,
    JudgeExperiment,
    PushBatch,
    PushBatchResult,
    RecordJourneyEvents,
    RecordScheduledRun,
    ScheduledRunRecord,
    TestSendFailure,
    TestSendRequest,
    TestSendSummary,
)

LIST_AUDIENCE = "tidings.audience.page"
CHOOSE_BEST_HOURS = "tidings.best_hour.choose"
DELIVER = "tidings.delivery.deliver"
FINISH_RUN = "tidings.records.finish_run"
RECORD_JOURNEY_EVENTS = "tidings.records.journey_events"
RECORD_SCHEDULED_RUN = "tidings.schedules.record_run"
SEND_TEST = "tidings.test_sends.send"
JUDGE_EXPERIMENT = "tidings.experiments.judge"
GIVE_UP_TEST = "tidings.test_sends.give_up"


class AudienceActivity:
    @activity.defn(name=LIST_AUDIENCE)
    async def page(self, request: AudiencePageRequest) -> AudiencePage:
        """One page of a run's audience, with each profile's facts."""
        raise NotImplementedError


class BestHourActivity:
    @activity.defn(name=CHOOSE_BEST_HOURS)
    async def choose(self, request: BestHourRequest) -> BestHours:
        """Each arriving profile's best hour, from the opens in the store."""
        raise NotImplementedError


class DeliveryActivity:
    @activity.defn(name=DELIVER)
    async def deliver(self, batch: PushBatch) -> PushBatchResult:
        """A push node's batch: every valid device of every profile in it."""
        raise NotImplementedError


class RecordsActivity:
    @activity.defn(name=FINISH_RUN)
    async def finish_run(self, request: FinishRun) -> None:
        """A run's end in the store."""
        raise NotImplementedError

    @activity.defn(name=RECORD_JOURNEY_EVENTS)
    async def journey_events(self, request: RecordJourneyEvents) -> None:
        """Journey events of one cohort step, written once each."""
        raise NotImplementedError


class ExperimentsActivity:
    @activity.defn(name=JUDGE_EXPERIMENT)
    async def judge(self, request: JudgeExperiment) -> ExperimentDecision:
        """An experiment split's verdict from the store; a clear winner is recorded as its
        promotion (once: a promotion already recorded is the answer)."""
        raise NotImplementedError


class SchedulesActivity:
    @activity.defn(name=RECORD_SCHEDULED_RUN)
    async def record_run(self, request: RecordScheduledRun) -> ScheduledRunRecord:
        """A schedule's firing stored as a run, its audience resolved now."""
        raise NotImplementedError


class TestSendActivity:
    __test__ = False  # not a pytest class

    @activity.defn(name=SEND_TEST)
    async def send(self, request: TestSendRequest) -> TestSendSummary:
        """A recorded test send's push to each of its devices, outcomes written back."""
        raise NotImplementedError

    @activity.defn(name=GIVE_UP_TEST)
    async def give_up(self, failure: TestSendFailure) -> TestSendSummary:
        """A test send that could not be sent: its open devices end failed, saying why."""
        raise NotImplementedError
