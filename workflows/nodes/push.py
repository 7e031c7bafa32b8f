"""The push node: one batch activity for every profile standing on it.

Quiet hours are held here, on the workflow side: a profile whose local time falls inside the
journey's quiet window gets a timer to the window's end and stays on the node; the holds of
one step are recorded as ``postponed`` in one activity.

A push's TTL runs from the moment the profile reached the node, not from the send: the node
notes each profile's arrival the first time it sees it, and the batch carries it per profile,
so a send held for quiet hours past its TTL is recorded expired, never sent late.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.counts import Counts
from workflows.nodes.context import CohortContext

with workflow.unsafe.imports_passed_through():
    from activities.contracts import JourneyEventRecord, ProfileVisit, PushBatch
    from activities.declarations import DeliveryActivity
    from tidings.journeys.localtime import quiet_until
    from tidings.journeys.model import PushNode


# Workflow code changes go behind patches (DESIGN.md decision 7).
PATCH_TTL_FROM_ARRIVAL = "push-ttl-from-arrival"
# A triggered entry's batch is one profile's devices: its send runs as a local activity, in
# the worker that runs the workflow task (one marker event instead of an activity's three and
# no round trip through the task queue: the latency of an event-triggered push). The choice
# comes with the cohort's input (CohortInput.local_delivery). An attempt longer than this is
# retried; the ledger keeps the retry from sending twice.
LOCAL_DELIVERY_TIMEOUT = timedelta(minutes=2)


async def advance_push(context: CohortContext, node: PushNode, profile_ids: list[str]) -> None:
    now = workflow.now()
    for profile_id in profile_ids:
        profile = context.state.profiles[profile_id]
        if profile.arrived_at is None:
            profile.arrived_at = now
    held = _hold_for_quiet_hours(context, node, profile_ids)
    sending = [pid for pid in profile_ids if pid not in held]
    postponed = [
        JourneyEventRecord(
            profile_id=pid,
            kind="postponed",
            key=f"{pid}:{node.id}:{context.state.profiles[pid].visit_of(node.id)}:"
            f"postponed:{until.isoformat()}",
            node_id=node.id,
            until=until,
        )
        for pid, until in held.items()
    ]
    context.state.counts[Counts.POSTPONED] += len(postponed)
    await asyncio.gather(context.record(postponed), _send(context, node, sending))


def _hold_for_quiet_hours(
    context: CohortContext, node: PushNode, profile_ids: list[str]
) -> dict[str, datetime]:
    quiet = context.journey.quiet_hours
    if quiet is None:
        return {}
    now = workflow.now()
    held: dict[str, datetime] = {}
    for profile_id in profile_ids:
        until = quiet_until(now, context.zone_of(profile_id), quiet.start, quiet.end)
        if until is not None:
            context.state.profiles[profile_id].wake_at = until
            held[profile_id] = until
    return held


async def _send(context: CohortContext, node: PushNode, profile_ids: list[str]) -> None:
    if not profile_ids:
        return
    state = context.state
    for profile_id in profile_ids:
        profile = state.profiles[profile_id]
        # interactions are read per send: an open of an earlier visit is not this one's
        profile.interactions.pop(node.id, None)
        profile.sent_visits[node.id] = profile.visit_of(node.id)
    if node.ttl is None or not workflow.patched(PATCH_TTL_FROM_ARRIVAL):
        # no TTL, or a history from before arrival times: the batch as it always was
        visits = [ProfileVisit(pid, state.profiles[pid].visit_of(node.id)) for pid in profile_ids]
        await _deliver(context, node, profile_ids, visits)
        return
    # One batch per arrival time: profiles held together for quiet hours may have reached
    # the node at different times, and a batch tells the providers one deadline.
    arrivals: dict[datetime, list[str]] = {}
    for profile_id in profile_ids:
        arrived = state.profiles[profile_id].arrived_at or workflow.now()
        arrivals.setdefault(arrived, []).append(profile_id)
    await asyncio.gather(
        *(
            _deliver(
                context,
                node,
                group,
                [
                    ProfileVisit(pid, state.profiles[pid].visit_of(node.id), reached_at=arrived)
                    for pid in group
                ],
            )
            for arrived, group in sorted(arrivals.items())
        )
    )


async def _deliver(
    context: CohortContext, node: PushNode, profile_ids: list[str], visits: list[ProfileVisit]
) -> None:
    """One batch activity for ``profile_ids``, then their counts and their next node."""
    state = context.state
    options = context.options
    cap = options.frequency_cap
    batch = PushBatch(
        run_id=context.run_id,
        journey_id=context.journey.id,
        workflow_id=context.workflow_id,
        node_id=node.id,
        app_id=context.journey.app_of(node),
        content=node.content,
        ttl_s=int(node.ttl.total_seconds()) if node.ttl is not None else None,
        # when the batch is sent; each visit says when its profile reached the node
        reached_at=workflow.now(),
        profiles=visits,
        locales=dict(node.locales),
        frequency_cap=cap
        if cap is not None and cap.active and context.journey.frequency_cap == "apply"
        else None,
        retry_horizon_s=int((node.retry_horizon or options.delivery_retry_horizon).total_seconds()),
    )
    # Unlimited attempts: the activity itself ends its sends' retries at the push's expiry
    # or its retry horizon, whichever comes first, and each attempt resends only the sends
    # still open, so no fixed count abandons pushes still worth sending.
    retry_policy = RetryPolicy(
        maximum_attempts=0,
        maximum_interval=options.delivery_max_backoff,
        non_retryable_error_types=["UnknownApp"],
    )
    if context.local_delivery:
        result = await workflow.execute_local_activity_method(
            DeliveryActivity.deliver,
            batch,
            start_to_close_timeout=LOCAL_DELIVERY_TIMEOUT,
            retry_policy=retry_policy,
        )
    else:
        result = await workflow.execute_activity_method(
            DeliveryActivity.deliver,
            batch,
            start_to_close_timeout=options.delivery_timeout,
            heartbeat_timeout=options.delivery_heartbeat_timeout,
            retry_policy=retry_policy,
            task_queue=options.delivery_task_queue,
        )
    counts = state.counts
    counts[Counts.TARGETED_PROFILES] += len(profile_ids)
    counts[Counts.PROFILES_WITH_DEVICE] += sum(1 for n in result.targeted.values() if n)
    counts[Counts.DEVICES_TARGETED] += sum(result.targeted.values())
    counts[Counts.INVALIDATED] += result.invalidated
    counts[Counts.QUARANTINED] += result.quarantined
    counts.pushes(result.statuses)
    if result.stopped:
        state.stopped = result.stopped
    for profile_id in profile_ids:
        profile = state.profiles[profile_id]
        profile.targeted[node.id] = result.targeted.get(profile_id, 0)
        profile.delivered[node.id] = result.delivered.get(profile_id, 0)
        profile.count_visit(node.id)
        if profile.node == node.id:  # not gone meanwhile (a goal, a cancel)
            state.move(profile_id, node.next)
