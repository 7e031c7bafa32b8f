"""Experiments on a random split, on the real stack: opens skewed to one branch name it the
winner with the right numbers, a balanced split names none, and a promotion (asked for through
the API, or taken by the run itself) sends the profiles that reach the split later down the
winner."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from rich.console import Console

from tests.scene import Scene, SceneFactory, journey, push
from tidings.cli.runs import promote, report
from tidings.journeys.model import JourneyDefinition, RandomSplitNode
from tidings.runs.experiments import ExperimentReport, PromotionRefused
from tidings.runs.report import run_report
from tidings.runs.significance import Arm, compare
from tidings.store.types import utcnow
from workflows.cohort import CohortWorkflow
from workflows.contracts import RunResult
from workflows.nodes.random_split import branch_for, draw

GO = "go"


def experiment_journey(
    journey_id: str, experiment: dict[str, Any], *, gated: bool = False
) -> JourneyDefinition:
    """A split whose branches send push ``a`` or ``b``; ``gated``: profiles wait for a custom
    event ``go`` before they reach the split, so the test says when each does."""
    nodes: list[dict[str, Any]] = []
    if gated:
        gate = {"id": "gate", "type": "wait_for", "event": GO, "timeout": "1h"}
        nodes.append(gate | {"matched": "split"})
    split = {
        "id": "split",
        "type": "random_split",
        "branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}],
        "experiment": experiment,
    }
    nodes += [split, push("a"), push("b")]
    return journey(*nodes, id=journey_id)


def branches_of(definition: JourneyDefinition, profiles: list[str]) -> dict[str, int]:
    split = definition.node("split")
    assert isinstance(split, RandomSplitNode)
    return {p: branch_for(split, draw(definition.id, "split", p)) for p in profiles}


async def experiment_of(s: Scene, run_id: str) -> ExperimentReport:
    [split] = (await run_report(s.db, run_id)).splits
    assert split.experiment is not None
    return split.experiment


async def profiles(s: Scene, count: int) -> list[str]:
    names = [f"p{n:02d}" for n in range(count)]
    for name in names:
        await s.profile(name)
    return names


async def test_opens_skewed_to_one_branch_name_it_the_winner_with_the_right_numbers(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        everyone = await profiles(s, 40)
        definition = experiment_journey(
            "exp-skewed",
            {"goal": {"interaction": "opened"}, "window": "1h", "min_sample": 10},
        )
        branch = branches_of(definition, everyone)
        control = [p for p in everyone if branch[p] == 0]
        challenger = [p for p in everyone if branch[p] == 1]
        assert len(control) >= 10
        assert len(challenger) >= 10
        started = await s.start_journey(definition, everyone)
        # two of the control open; every challenger but two does, one of them by a click
        # (a click is an open, as in the funnel)
        openers = control[:2] + challenger[2:]
        for profile in openers:
            row = await s.delivered(started.run_id, "ab"[branch[profile]], profile)
            await s.interact(row, "clicked" if profile == challenger[2] else "opened")
        await s.finish(started)
        found = await experiment_of(s, started.run_id)
        answer = await s.stack.http.get(f"/v1/runs/{started.run_id}/report")
        console = Console(record=True, width=200)
        await report(s.db, started.run_id, console)
        text = " ".join(console.export_text().split())

    n0, n1 = len(control), len(challenger)
    c0, c1 = 2, n1 - 2
    assert [(b.profiles, b.conversions) for b in found.branches] == [(n0, c0), (n1, c1)]
    assert found.branches[0].rate == c0 / n0
    assert found.branches[1].rate == c1 / n1
    # the test by hand: pooled error for z, unpooled for the 95% interval
    pooled = (c0 + c1) / (n0 + n1)
    z = (c1 / n1 - c0 / n0) / math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    margin = 1.959964 * math.sqrt((c0 / n0) * (1 - c0 / n0) / n0 + (c1 / n1) * (1 - c1 / n1) / n1)
    challenger_row = found.branches[1]
    assert challenger_row.difference is not None
    assert challenger_row.z is not None
    assert abs(challenger_row.z - z) < 1e-9
    assert challenger_row.ci_low is not None
    assert challenger_row.ci_high is not None
    assert abs(challenger_row.ci_high - (c1 / n1 - c0 / n0 + margin)) < 1e-5
    assert abs(challenger_row.ci_low - (c1 / n1 - c0 / n0 - margin)) < 1e-5
    expected = compare(Arm(n0, c0), Arm(n1, c1), 0.05)
    assert expected is not None
    assert challenger_row.p_value == expected.p_value
    assert challenger_row.p_value < 0.05
    assert challenger_row.significant
    assert (found.verdict, found.winner) == ("winner", 1)
    assert found.explanation.startswith("branch 1 wins:")
    assert found.branches[0].difference is None  # the control
    assert found.promoted is None
    assert found.goal == "opened any push of the run"
    assert answer.status_code == 200
    [split] = answer.json()["splits"]
    assert split["counted_from"] == "recorded branches"
    assert split["experiment"]["winner"] == 1
    assert split["experiment"]["branches"][1]["conversions"] == c1
    assert "branch 1 wins" in text
    assert "experiment split: opened any push of the run" in text


async def test_a_balanced_split_names_no_winner_and_counts_only_events_in_the_window(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        everyone = await profiles(s, 40)
        definition = experiment_journey(
            "exp-balanced",
            {"goal": {"event": "purchase"}, "window": "1h", "min_sample": 10},
        )
        branch = branches_of(definition, everyone)
        control = [p for p in everyone if branch[p] == 0]
        challenger = [p for p in everyone if branch[p] == 1]
        started = await s.start_journey(definition, everyone)
        await s.finish(started)
        for profile in control[:3] + challenger[:3]:
            await s.event(profile, "purchase")
        # a purchase stamped before the profile took its branch is not a conversion of it
        earlier = (utcnow() - timedelta(hours=2)).isoformat()
        answer = await s.stack.http.post(
            "/v1/events",
            json={
                "profile_id": challenger[3],
                "name": "purchase",
                "event_id": "before-the-split",
                "occurred_at": earlier,
            },
        )
        assert answer.status_code == 202, answer.text
        found = await experiment_of(s, started.run_id)

    assert [(b.profiles, b.conversions) for b in found.branches] == [
        (len(control), 3),
        (len(challenger), 3),
    ]
    assert (found.verdict, found.winner) == ("no_winner", None)
    assert found.explanation.startswith("no winner yet: no branch differs from the control")
    challenger_row = found.branches[1]
    assert challenger_row.p_value is not None
    assert challenger_row.p_value > 0.05
    assert challenger_row.ci_low is not None
    assert challenger_row.ci_low < 0
    assert challenger_row.ci_high is not None
    assert challenger_row.ci_high > 0
    assert found.goal == "event purchase"


async def wait_for_entries(s: Scene, run_id: str, count: int) -> None:
    """Custom events find the profiles of a running run through their "entered" rows."""

    async def entered() -> bool:
        rows = await s.journey_events(run_id)
        return sum(1 for r in rows if r.kind == "entered") == count

    await s.until(entered, f"{count} profiles entered")


async def wait_for_promotion_in_cohort(s: Scene, run_id: str, branch: int) -> None:
    """The run passes a promotion on to its cohort by signal: wait until the cohort has it,
    so the profiles let through next reach a split that knows it."""
    handle = s.client.get_workflow_handle(f"{run_id}/cohort-000001")

    async def told() -> bool:
        progress = await handle.query(CohortWorkflow.progress)
        return progress.promotions.get("split") == branch

    await s.until(told, f"the cohort took branch {branch}'s promotion")


async def run_a_promotion(s: Scene, *, promote: str) -> tuple[str, dict[str, int], list[str]]:
    """Thirty profiles wait at a gate; the first twenty go through the split, and every
    challenger who got a push opens it, no one in the control does. Returns the run id, the
    draw's branch of each profile, and the ten still at the gate."""
    everyone = await profiles(s, 30)
    experiment = {
        "goal": {"interaction": "opened", "node": "b"},
        "window": "1h",
        "min_sample": 5,
        "promote": promote,
        "check_every": "1s",
    }
    definition = experiment_journey(f"exp-{promote}", experiment, gated=True)
    branch = branches_of(definition, everyone)
    first, later = everyone[:20], everyone[20:]
    assert sum(branch[p] for p in first) >= 5
    assert sum(1 - branch[p] for p in first) >= 5
    # the draw alone would send some of the later ones down the control
    assert any(branch[p] == 0 for p in later)
    started = await s.start_journey(definition, everyone)
    await wait_for_entries(s, started.run_id, len(everyone))
    for profile in first:
        assert (await s.event(profile, GO))["signalled"] == 1
    for profile in first:
        row = await s.delivered(started.run_id, "ab"[branch[profile]], profile)
        if branch[profile] == 1:
            await s.interact(row, "opened")
    return started.run_id, branch, later


async def let_through_and_check(
    s: Scene, run_id: str, branch: dict[str, int], later: list[str], by: str
) -> None:
    await wait_for_promotion_in_cohort(s, run_id, 1)
    for profile in later:
        assert (await s.event(profile, GO))["signalled"] == 1
    for profile in later:
        await s.delivered(run_id, "b", profile)
    result = await s.client.get_workflow_handle(run_id, result_type=RunResult).result()
    rows = await s.ledger(run_id)
    found = await experiment_of(s, run_id)
    [split] = (await run_report(s.db, run_id)).splits

    assert {r.node_id for r in rows if r.profile_id in later} == {"b"}
    assert result.counts["split.promoted"] == len(later)
    sample = [p for p in branch if p not in later]
    assert [b.profiles for b in found.branches] == [
        sum(1 for p in sample if branch[p] == i) for i in (0, 1)
    ]
    assert [b.promoted_profiles for b in found.branches] == [0, len(later)]
    # the split's own table counts the branch each profile took, promoted ones included
    assert [b.profiles for b in split.branches] == [
        found.branches[0].profiles,
        found.branches[1].profiles + len(later),
    ]
    assert found.promoted is not None
    assert (found.promoted.branch, found.promoted.by) == (1, by)


async def test_a_promotion_asked_through_the_api_sends_later_profiles_down_the_winner(
    scene: SceneFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with scene() as s:
        http = s.stack.http
        await s.profile("early")
        early = await s.start_journey(
            experiment_journey("exp-early", {"goal": {"event": "x"}, "window": "1h"}, gated=True),
            ["early"],
        )
        refused = await http.post(f"/v1/runs/{early.run_id}/promote", json={"node_id": "split"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "no_clear_winner"
        assert "not yet: n too small" in refused.json()["error"]["message"]
        await s.client.get_workflow_handle(early.run_id).terminate()

        run_id, branch, later = await run_a_promotion(s, promote="manual")

        async def judged() -> bool:
            return (await experiment_of(s, run_id)).winner == 1

        await s.until(judged, "branch 1 is a clear winner")
        not_a_split = await http.post(f"/v1/runs/{run_id}/promote", json={"node_id": "a"})
        assert not_a_split.status_code == 422
        assert not_a_split.json()["error"]["code"] == "not_an_experiment"
        no_branch = await http.post(
            f"/v1/runs/{run_id}/promote", json={"node_id": "split", "branch": 7}
        )
        assert no_branch.status_code == 422
        assert no_branch.json()["error"]["code"] == "unknown_branch"
        promoted = await http.post(f"/v1/runs/{run_id}/promote", json={"node_id": "split"})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["branch"] == 1
        other = await http.post(
            f"/v1/runs/{run_id}/promote", json={"node_id": "split", "branch": 0}
        )
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "already_promoted"
        # the CLI takes the same service: the same branch again re-sends it, another is refused
        monkeypatch.setenv("TEMPORAL_ADDRESS", s.client.service_client.config.target_host)
        console = Console(record=True, width=200)
        await promote(s.stack.settings, run_id, "split", console, branch=1)
        assert "promoted branch 1 of split" in console.export_text()
        with pytest.raises(PromotionRefused, match="branch 1 was promoted \\(api\\)"):
            await promote(s.stack.settings, run_id, "split", console, branch=0)
        await let_through_and_check(s, run_id, branch, later, "api")


async def test_promote_auto_moves_later_profiles_to_the_winner_once_it_is_clear(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        run_id, branch, later = await run_a_promotion(s, promote="auto")

        async def promoted() -> bool:
            return (await experiment_of(s, run_id)).promoted is not None

        await s.until(promoted, "the run promoted a winner")
        await let_through_and_check(s, run_id, branch, later, "auto")
