"""The push node: one batch activity for every profile standing on it."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.nodes.context import CohortContext

with workflow.unsafe.imports_passed_through():
    from activities.contracts import DELIVER, ProfileVisit, PushBatch, PushBatchResult
    from tidings.journeys.model import PushNode


async def advance_push(context: CohortContext, node: PushNode, profile_ids: list[str]) -> None:
    state = context.state
    options = context.options
    batch = PushBatch(
        run_id=context.run_id,
        journey_id=context.journey.id,
        workflow_id=context.workflow_id,
        node_id=node.id,
        app_id=context.journey.app_of(node),
        content=node.content,
        ttl_s=int(node.ttl.total_seconds()) if node.ttl is not None else None,
        reached_at=workflow.now(),
        profiles=[
            ProfileVisit(profile_id, state.profiles[profile_id].visit_of(node.id))
            for profile_id in profile_ids
        ],
    )
    result = await workflow.execute_activity(
        DELIVER,
        batch,
        result_type=PushBatchResult,
        start_to_close_timeout=options.delivery_timeout,
        heartbeat_timeout=options.delivery_heartbeat_timeout,
        retry_policy=RetryPolicy(
            maximum_attempts=options.delivery_max_attempts,
            maximum_interval=options.delivery_max_backoff,
            non_retryable_error_types=["UnknownApp"],
        ),
    )
    counts = state.counts
    counts["targeted_profiles"] += len(profile_ids)
    counts["profiles_with_device"] += sum(1 for n in result.targeted.values() if n)
    counts["devices_targeted"] += sum(result.targeted.values())
    counts["invalidated"] += result.invalidated
    counts["quarantined"] += result.quarantined
    for status, number in result.statuses.items():
        counts[f"push.{status}"] += number
    if result.stopped:
        state.stopped = result.stopped
    for profile_id in profile_ids:
        profile = state.profiles[profile_id]
        profile.count_visit(node.id)
        profile.enter(node.next)
