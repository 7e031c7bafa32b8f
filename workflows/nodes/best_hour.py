"""The best_hour node: wait for each profile's best local hour within the node's window.

The profiles arriving together get their hours from one activity (one query for them all);
the workflow then sets each timer itself, from ``workflow.now()`` and the hour, so a replay
sets the same timers. Each choice is recorded as a ``best_hour`` journey event (the hour, whose
opens chose it, and when the profile goes on): the run's report counts them.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.nodes.context import RECORD_RETRY, RECORD_TIMEOUT, CohortContext

with workflow.unsafe.imports_passed_through():
    from activities.contracts import BestHourRequest, ChosenHour, JourneyEventRecord
    from activities.declarations import BestHourActivity
    from tidings.journeys.best_hour import HourChoice, HourSource
    from tidings.journeys.localtime import best_hour_wake
    from tidings.journeys.model import BestHourNode

# Workflow code changes go behind patches (DESIGN.md decision 7). No history recorded before
# this node can reach it; the marker lets a later change of the node tell its histories apart.
PATCH_BEST_HOUR = "best-hour-wait"


async def advance_best_hour(
    context: CohortContext, node: BestHourNode, profile_ids: list[str]
) -> None:
    """First call: choose the arriving profiles' hours and set their timers. When a timer is
    due: move the profile on."""
    state = context.state
    arriving = [pid for pid in profile_ids if not state.profiles[pid].armed]
    for profile_id in profile_ids:
        if state.profiles[profile_id].armed:
            state.profiles[profile_id].count_visit(node.id)
            state.move(profile_id, node.next)
    if not arriving:
        return
    now = workflow.now()
    chosen = await _choose(context, node, arriving)
    events = []
    for profile_id in arriving:
        profile = state.profiles[profile_id]
        choice = chosen[profile_id]
        profile.armed = True
        profile.wake_at = best_hour_wake(now, context.zone_of(profile_id), choice.hour, node.within)
        events.append(
            JourneyEventRecord(
                profile_id=profile_id,
                kind="best_hour",
                key=f"{profile_id}:{node.id}:{profile.visit_of(node.id)}:best_hour",
                node_id=node.id,
                until=profile.wake_at,
                detail=HourChoice(choice.hour, HourSource(choice.source)).as_detail(),
            )
        )
    await context.record(events)


async def _choose(
    context: CohortContext, node: BestHourNode, profile_ids: list[str]
) -> dict[str, ChosenHour]:
    if not workflow.patched(PATCH_BEST_HOUR):
        return {pid: ChosenHour(node.default_hour, "default") for pid in profile_ids}
    answer = await workflow.execute_activity_method(
        BestHourActivity.choose,
        BestHourRequest(
            app_id=context.journey.app,
            now=workflow.now(),
            within=node.within,
            default_hour=node.default_hour,
            zones={pid: context.zone_of(pid).key for pid in profile_ids},
            fallback_zone=context.journey.timezone,
        ),
        start_to_close_timeout=RECORD_TIMEOUT,
        retry_policy=RECORD_RETRY,
    )
    return answer.chosen
