"""The condition node: branch on profile attributes (from the profile's entry) and on what
the journey learnt about the profile (devices, deliveries, interactions, events)."""

from __future__ import annotations

from temporalio import workflow

from workflows.counts import Counts
from workflows.nodes.context import CohortContext
from workflows.nodes.wait_for import SATISFIED_BY
from workflows.state import ProfileState

with workflow.unsafe.imports_passed_through():
    from activities.contracts import ProfileFacts
    from tidings.journeys.model import ConditionNode
    from tidings.journeys.predicates import AttributePredicate, Predicate, attribute_matches


def holds(predicate: Predicate, profile: ProfileState, facts: ProfileFacts) -> bool:
    if isinstance(predicate, AttributePredicate):
        return attribute_matches(predicate, facts.attributes)
    fact = predicate.fact
    node = predicate.node
    if fact == "had_valid_device":
        result = (
            profile.targeted.get(node, 0) > 0
            if node is not None
            else any(n > 0 for n in profile.targeted.values())
        )
    elif fact == "delivered":
        result = profile.delivered.get(node or "", 0) > 0
    elif fact in ("opened", "clicked"):
        seen = profile.interactions.get(node or "", [])
        result = any(kind in seen for kind in SATISFIED_BY[fact])
    else:  # "event": received since the profile entered the journey
        result = predicate.event is not None and predicate.event in profile.events
    return result != predicate.negate


async def advance_condition(
    context: CohortContext, node: ConditionNode, profile_ids: list[str]
) -> None:
    combine = all if node.match == "all" else any
    for profile_id in profile_ids:
        profile = context.state.profiles[profile_id]
        facts = context.facts_of(profile_id)
        taken = combine(holds(p, profile, facts) for p in node.predicates)
        context.state.counts[Counts.condition_key(node.id, taken)] += 1
        profile.count_visit(node.id)
        context.state.move(profile_id, node.then if taken else node.otherwise)
