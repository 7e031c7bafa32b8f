"""A run's report: the funnel of each push node, tokens invalidated, each random_split
branch's size and conversion to the journey's goal, and each experiment split's verdict
(tidings.runs.experiments). The CLI's table and the API's answer are this one object, so
both surfaces give the same numbers."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.journeys.best_hour import HourChoice, HourSource
from tidings.journeys.model import BestHourNode, JourneyDefinition, RandomSplitNode
from tidings.runs.errors import RunNotFound
from tidings.runs.experiments import ExperimentReport, experiment_report
from tidings.runs.listing import RunSummary, run_summary
from tidings.store.db import Database
from tidings.store.experiments import PROMOTION, memberships
from tidings.store.models import Delivery, JourneyEvent, JourneyRun
from tidings.store.reports import (
    OPENED_RULE,
    best_hour_choices,
    journey_event_counts,
    node_funnels,
    run_funnel,
)
from workflows.counts import Counts
from workflows.nodes.random_split import branch_for, draw


class NodeReport(BaseModel):
    """One push node's funnel within a run."""

    node_id: str
    targeted: int  # profiles that reached the node (a ledger row each, sent or not)
    sent: int  # pushes handed to a provider, whatever it answered
    delivered: int
    failed: int  # retries exhausted
    unknown: int  # sent, the answer never came (may have been delivered)
    retried: int
    possible_duplicates: int
    opened: int  # opened or clicked (opened_rule)
    clicked: int
    tokens_invalidated: int
    postponed: int  # sends held for quiet hours
    not_sent: dict[str, int]  # reason -> pushes held back
    opened_rule: str = OPENED_RULE


class BranchReport(BaseModel):
    index: int
    percent: float
    next: str | None
    profiles: int
    # profiles of the branch that reached the journey's goal (None: the journey has no goal)
    converted: int | None
    conversion: float | None


class SplitReport(BaseModel):
    node_id: str
    # "run counts": counted by the run's workflows as profiles took the branches; "draw": the
    # run's profiles put through the split's deterministic draw (a triggered run, or a run
    # still going), which counts profiles that have not reached the split yet too;
    # "recorded branches": an experiment split, whose workflows record each profile's branch
    counted_from: str
    branches: list[BranchReport]
    # an experiment split: the branches compared on its goal, and whether one has won
    experiment: ExperimentReport | None = None


class BestHourReport(BaseModel):
    """The hours a best_hour node chose for the run's profiles (each visit counts)."""

    node_id: str
    profiles: int
    # whose opens chose the hour: profile (its own), app (the app's), default (the node's)
    by_source: dict[str, int]
    # local hour 0-23 -> profiles sent on at that hour, in total and by source
    by_hour: list[int]
    by_hour_and_source: dict[str, list[int]]


class RunReport(BaseModel):
    run: RunSummary
    nodes: list[NodeReport]
    profiles_targeted: int
    pushes_sent: int
    delivered: int
    tokens_invalidated: int
    opened: int
    clicked: int
    goal_reached: int
    splits: list[SplitReport]
    best_hours: list[BestHourReport] = Field(default_factory=list)
    opened_rule: str = OPENED_RULE


async def run_report(db: Database, run_id: str) -> RunReport:
    async with db.read() as session:
        run = await session.get(JourneyRun, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}")
        journey = JourneyDefinition.model_validate(run.definition)
        funnels = await node_funnels(session, run_id, [n.id for n in journey.nodes])
        total = await run_funnel(session, run_id)
        events = await journey_event_counts(session, run_id)
        waits = [n.id for n in journey.nodes if isinstance(n, BestHourNode)]
        choices = await best_hour_choices(session, run_id) if waits else {}
        splits = [n for n in journey.nodes if isinstance(n, RandomSplitNode)]
        experiments = {
            n.id: await experiment_report(session, run_id, n) for n in splits if n.experiment
        }
        # an experiment split records the branch each profile took (the draw's, or the
        # promoted one): its branches are counted from that, not from the draw
        taken = {
            node_id: {
                pid: m.branch for pid, m in (await memberships(session, run_id, node_id)).items()
            }
            for node_id in experiments
        }
        profiles: list[str] = []
        converted: set[str] = set()
        if splits:
            profiles = await _run_profiles(session, run_id)
            converted = set(
                (
                    await session.exec(
                        select(col(JourneyEvent.profile_id))
                        .where(col(JourneyEvent.run_id) == run_id)
                        .where(col(JourneyEvent.kind) == "goal")
                    )
                ).all()
            )
    return RunReport(
        run=run_summary(run),
        nodes=[
            NodeReport(
                node_id=f.node_id,
                targeted=f.targeted,
                sent=f.sent,
                delivered=f.delivered,
                failed=f.failed,
                unknown=f.unknown,
                retried=f.retried,
                possible_duplicates=f.possible_duplicates,
                opened=f.opened,
                clicked=f.clicked,
                tokens_invalidated=f.tokens_invalidated,
                postponed=f.postponed,
                not_sent=dict(sorted(f.not_sent.items())),
            )
            for f in funnels
        ],
        profiles_targeted=total.profiles_targeted,
        pushes_sent=total.pushes_sent,
        delivered=total.delivered,
        tokens_invalidated=total.tokens_invalidated,
        opened=total.opened,
        clicked=total.clicked,
        goal_reached=events.get("goal", 0),
        splits=[
            _split_report(
                journey,
                node,
                Counts.of(run.summary),
                profiles,
                converted,
                experiments.get(node.id),
                taken.get(node.id),
            )
            for node in splits
        ],
        best_hours=[_best_hour_report(n, choices.get(n, Counter())) for n in waits],
    )


def _best_hour_report(node_id: str, choices: Counter[str]) -> BestHourReport:
    by_source = {source.value: [0] * 24 for source in HourSource}
    for detail, count in choices.items():
        choice = HourChoice.from_detail(detail)
        by_source[choice.source.value][choice.hour] += count
    return BestHourReport(
        node_id=node_id,
        profiles=sum(choices.values()),
        by_source={source: sum(hours) for source, hours in by_source.items()},
        by_hour=[sum(hours[h] for hours in by_source.values()) for h in range(24)],
        by_hour_and_source=by_source,
    )


async def _run_profiles(session: AsyncSession, run_id: str) -> list[str]:
    """Every profile the run recorded something for: a ledger row or a journey event."""
    sent = await session.exec(
        select(col(Delivery.profile_id)).where(col(Delivery.run_id) == run_id).distinct()
    )
    recorded = await session.exec(
        select(col(JourneyEvent.profile_id))
        .where(col(JourneyEvent.run_id) == run_id)
        .where(col(JourneyEvent.kind) != PROMOTION)
        .distinct()
    )
    return sorted(set(sent.all()) | set(recorded.all()))


def _split_report(
    journey: JourneyDefinition,
    node: RandomSplitNode,
    counts: Counts,
    profiles: list[str],
    converted: set[str],
    experiment: ExperimentReport | None,
    taken: dict[str, int] | None,
) -> SplitReport:
    keys = [Counts.branch_key(node.id, i) for i in range(len(node.branches))]
    drawn = Counter(branch_for(node, draw(journey.id, node.id, pid)) for pid in profiles)
    goal = Counter(
        branch_for(node, draw(journey.id, node.id, pid)) for pid in profiles if pid in converted
    )
    counted = any(counts[key] for key in keys)
    counted_from = "run counts" if counted else "draw"
    if taken is not None:
        counted_from = "recorded branches"
        drawn = Counter(taken.values())
        goal = Counter(index for pid, index in taken.items() if pid in converted)
        counted = False
    branches = []
    for index, branch in enumerate(node.branches):
        size = counts[keys[index]] if counted else drawn[index]
        reached = goal[index] if journey.goal is not None else None
        branches.append(
            BranchReport(
                index=index,
                percent=branch.percent,
                next=branch.next,
                profiles=size,
                converted=reached,
                conversion=(reached / size if reached is not None and size else None),
            )
        )
    return SplitReport(
        node_id=node.id, counted_from=counted_from, branches=branches, experiment=experiment
    )
