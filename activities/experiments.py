"""Experiment verdicts for the run workflow (``promote: auto``): read from the store, so the
run takes the decision as an activity result and a replay takes the same course."""

from __future__ import annotations

from temporalio import activity

from activities.contracts import ExperimentDecision, JudgeExperiment
from activities.declarations import JUDGE_EXPERIMENT, ExperimentsActivity
from tidings.runs.experiments import decide
from tidings.store.db import Database


class ExperimentActivities(ExperimentsActivity):
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name=JUDGE_EXPERIMENT)
    async def judge(self, request: JudgeExperiment) -> ExperimentDecision:
        branch, explanation = await decide(self._db, request.run_id, request.node_id)
        return ExperimentDecision(branch, explanation)
