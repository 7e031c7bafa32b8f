"""A test send: one push, rendered when it was asked for, sent by a worker beside the
journeys' deliveries. The API records the request and starts this workflow; the send itself
runs as an activity on the delivery task queue, through the same senders and provider
clients as a run's pushes. Nothing here touches a run, its counts or the send ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import TestSendFailure, TestSendRequest, TestSendSummary
    from activities.declarations import TestSendActivity

TEST_SEND_WORKFLOW = "TidingsTestSend"
# A test send is someone waiting at a phone: a few seconds' work, never retried for long.
SEND_TIMEOUT = timedelta(seconds=60)
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["UnknownTestSend"],
)


def test_send_workflow_id(test_send_id: str) -> str:
    return f"test-send/{test_send_id}"


@dataclass(frozen=True)
class TestSendInput:
    __test__ = False  # not a pytest class

    test_send_id: str
    # None: the workflow's own task queue (delivery shares the interpreter's)
    delivery_task_queue: str | None = None


@workflow.defn(name=TEST_SEND_WORKFLOW)
class TestSendWorkflow:
    __test__ = False  # not a pytest class

    @workflow.run
    async def run(self, request: TestSendInput) -> TestSendSummary:
        try:
            return await workflow.execute_activity_method(
                TestSendActivity.send,
                TestSendRequest(request.test_send_id),
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
                task_queue=request.delivery_task_queue,
            )
        except ActivityError as error:
            # the devices not yet sent to say why, rather than stay pending for ever
            cause = error.cause if error.cause is not None else error
            return await workflow.execute_activity_method(
                TestSendActivity.give_up,
                TestSendFailure(request.test_send_id, str(cause) or type(cause).__name__),
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=10),
                task_queue=request.delivery_task_queue,
            )
