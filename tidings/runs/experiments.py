"""Experiment splits: each branch's size, conversions and rate, the difference with the
control and its confidence interval, whether a winner is clear yet (tidings.runs.significance),
and the promotion of a winner. The report, the API, the CLI, the console and the run
workflow's automatic promotion all read this one computation."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from tidings.journeys.model import Experiment, ExperimentGoal, JourneyDefinition, RandomSplitNode
from tidings.runs.errors import RunNotFound
from tidings.runs.significance import Arm, interval_level, judge
from tidings.store.db import Database
from tidings.store.experiments import (
    Promotion,
    converted,
    memberships,
    promotion_of,
    record_promotion,
)
from tidings.store.models import JourneyRun, RunStatus
from tidings.store.triggers import trigger_of
from tidings.store.types import utcnow
from workflows.contracts import PROMOTE_SIGNAL, BranchPromotion

PromotedBy = Literal["auto", "api", "cli", "console"]


class ExperimentBranch(BaseModel):
    index: int
    next: str | None
    # profiles the draw sent down the branch: the experiment's sample
    profiles: int
    conversions: int
    rate: float | None
    # of those, profiles whose window is still open: they may convert yet
    still_in_window: int
    # profiles sent down it by the promotion, not by the draw: outside the sample
    promoted_profiles: int
    # versus the control (branch 0): None for the control, or while either is empty
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    z: float | None = None
    p_value: float | None = None
    significant: bool | None = None


class PromotionView(BaseModel):
    branch: int
    at: datetime
    by: str


class ExperimentReport(BaseModel):
    node_id: str
    goal: str  # in words: "opened push welcome", "event purchase"
    window_s: float
    confidence: float
    # the level each comparison with the control is held to (Bonferroni beyond two branches)
    alpha: float
    ci_level: str
    min_sample: int
    promote: Literal["manual", "auto"]
    verdict: Literal["winner", "not_yet", "no_winner"]
    winner: int | None
    explanation: str
    branches: list[ExperimentBranch]
    promoted: PromotionView | None
    method: str = (
        "two-proportion z-test against branch 0 (pooled standard error), confidence "
        "interval of the difference with the unpooled standard error"
    )


class PromotionRefused(ValueError):
    """The split cannot be promoted; ``code`` says why for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def goal_in_words(goal: ExperimentGoal) -> str:
    if goal.event is not None:
        return f"event {goal.event}"
    push = f"push {goal.node}" if goal.node else "any push of the run"
    return f"{goal.interaction} {push}"


def experiment_splits(journey: JourneyDefinition) -> list[RandomSplitNode]:
    return [n for n in journey.nodes if isinstance(n, RandomSplitNode) and n.experiment]


async def experiment_report(
    session: AsyncSession, run_id: str, node: RandomSplitNode, now: datetime | None = None
) -> ExperimentReport:
    experiment = node.experiment
    assert experiment is not None
    now = now or utcnow()
    members = await memberships(session, run_id, node.id)
    hits = await converted(session, run_id, experiment.goal, experiment.window, members)
    promotion = await promotion_of(session, run_id, node.id)
    size: Counter[int] = Counter()
    conversions: Counter[int] = Counter()
    open_windows: Counter[int] = Counter()
    promoted: Counter[int] = Counter()
    for profile_id, member in members.items():
        if not member.drawn:
            promoted[member.branch] += 1
            continue
        size[member.branch] += 1
        if profile_id in hits:
            conversions[member.branch] += 1
        elif member.at + experiment.window > now:
            open_windows[member.branch] += 1
    arms = [Arm(size[i], conversions[i]) for i in range(len(node.branches))]
    verdict = judge(arms, experiment.confidence, experiment.min_sample)
    explanation = verdict.explanation
    waiting = sum(open_windows.values())
    if waiting and verdict.status != "not_yet":
        explanation += f"; {waiting} profiles are still inside their window and may convert yet"
    branches = []
    for index, branch in enumerate(node.branches):
        comparison = verdict.comparisons[index]
        branches.append(
            ExperimentBranch(
                index=index,
                next=branch.next,
                profiles=arms[index].size,
                conversions=arms[index].conversions,
                rate=arms[index].rate,
                still_in_window=open_windows[index],
                promoted_profiles=promoted[index],
                difference=comparison.difference if comparison else None,
                ci_low=comparison.low if comparison else None,
                ci_high=comparison.high if comparison else None,
                z=comparison.z if comparison else None,
                p_value=comparison.p_value if comparison else None,
                significant=comparison.significant if comparison else None,
            )
        )
    return ExperimentReport(
        node_id=node.id,
        goal=goal_in_words(experiment.goal),
        window_s=experiment.window.total_seconds(),
        confidence=experiment.confidence,
        alpha=verdict.alpha,
        ci_level=interval_level(verdict.alpha),
        min_sample=experiment.min_sample,
        promote=experiment.promote,
        verdict=verdict.status,
        winner=verdict.winner,
        explanation=explanation,
        branches=branches,
        promoted=_promotion_view(promotion),
    )


def _promotion_view(promotion: Promotion | None) -> PromotionView | None:
    if promotion is None:
        return None
    return PromotionView(branch=promotion.branch, at=promotion.at, by=promotion.by)


async def _run_and_split(
    session: AsyncSession, run_id: str, node_id: str
) -> tuple[JourneyRun, RandomSplitNode, Experiment]:
    run = await session.get(JourneyRun, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    journey = JourneyDefinition.model_validate(run.definition)
    splits = {n.id: n for n in experiment_splits(journey)}
    node = splits.get(node_id)
    if node is None or node.experiment is None:
        named = ", ".join(sorted(splits)) or "none"
        raise PromotionRefused(
            "not_an_experiment",
            f"{node_id!r} is not an experiment split of this run (its experiments: {named})",
        )
    return run, node, node.experiment


async def decide(db: Database, run_id: str, node_id: str) -> tuple[int | None, str]:
    """For ``promote: auto``: the branch to promote (recorded as the split's promotion; a
    promotion recorded before is the answer), or None and why not."""
    async with db.write() as session:
        run, node, _ = await _run_and_split(session, run_id, node_id)
        standing = await promotion_of(session, run_id, node_id)
        if standing is not None:
            return standing.branch, f"branch {standing.branch} was promoted ({standing.by})"
        report = await experiment_report(session, run_id, node)
        if report.winner is None:
            return None, report.explanation
        promotion = await record_promotion(
            session,
            run_id=run_id,
            journey_id=run.journey_id,
            node_id=node_id,
            branch=report.winner,
            by="auto",
        )
    return promotion.branch, report.explanation


class PromotionOutcome(BaseModel):
    run_id: str
    node_id: str
    branch: int
    by: str
    # the verdict when the promotion was asked for (a chosen branch may go against it)
    explanation: str


async def promote_winner(
    client: Client,
    db: Database,
    run_id: str,
    node_id: str,
    *,
    branch: int | None = None,
    by: PromotedBy = "api",
) -> PromotionOutcome:
    """Send every profile that reaches the split from now on down its winner (or down
    ``branch``, a designer's own call): recorded in the store first, then signalled to the
    run, which passes it on to its cohorts. Refused while no winner is clear (and no branch
    is named), for another branch than the one promoted before, a run that has ended, or a
    triggered run. Asked again, it sends the standing promotion again (the workflows apply
    it once)."""
    async with db.write() as session:
        run, node, _ = await _run_and_split(session, run_id, node_id)
        if run.status != RunStatus.RUNNING:
            raise PromotionRefused(
                "run_finished", f"the run has ended ({run.status}): no profile is left to move"
            )
        if await trigger_of(session, run_id) is not None:
            raise PromotionRefused(
                "triggered_run",
                "a triggered journey's entries are not promoted; save a version whose split "
                "sends everyone down the winner",
            )
        standing = await promotion_of(session, run_id, node_id)
        report = await experiment_report(session, run_id, node)
        if standing is not None:
            if branch is not None and branch != standing.branch:
                raise PromotionRefused(
                    "already_promoted",
                    f"branch {standing.branch} was promoted ({standing.by}); a promotion is final",
                )
            # asked again (a signal that may not have gone out): the word is sent again
            branch = standing.branch
        elif branch is None:
            if report.winner is None:
                raise PromotionRefused("no_clear_winner", report.explanation)
            branch = report.winner
        elif not 0 <= branch < len(node.branches):
            raise PromotionRefused(
                "unknown_branch",
                f"the split has branches 0 to {len(node.branches) - 1}, not {branch}",
            )
        promotion = await record_promotion(
            session,
            run_id=run_id,
            journey_id=run.journey_id,
            node_id=node_id,
            branch=branch,
            by=by,
        )
    await client.get_workflow_handle(run_id).signal(
        PROMOTE_SIGNAL, BranchPromotion(node_id, promotion.branch)
    )
    return PromotionOutcome(
        run_id=run_id,
        node_id=node_id,
        branch=promotion.branch,
        by=promotion.by,
        explanation=report.explanation,
    )
