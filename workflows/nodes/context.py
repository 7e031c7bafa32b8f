"""What a node handler may use: the journey, the cohort's state, and the engine options."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

from workflows.inputs import EngineOptions
from workflows.state import CohortState

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import JourneyDefinition


@dataclass
class CohortContext:
    run_id: str
    workflow_id: str
    journey: JourneyDefinition
    state: CohortState
    options: EngineOptions
