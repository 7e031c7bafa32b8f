"""A saved segment as a run's audience on the real stack: the run reaches exactly the
profiles the segment's preview counts (counted at the simulators), page by page across
continue-as-new; a start names its segment in the API, the journey file or a schedule; a
segment that is gone stops the start with a clear error."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from starter import app as starter
from tests.engine.test_designer_cli import invoke, run_id_in
from tests.engine.test_schedules import at_least_runs
from tests.scene import APP, PATIENCE_S, Scene, SceneFactory, journey, push
from tidings.cli.app import app as tidings_cli
from tidings.worker.resources import engine_options
from workflows.contracts import EngineOptions

PRO_WITH_A_DEVICE = {"all": [{"attribute": "plan=pro"}, {"device": {"app": APP}}]}


async def population(s: Scene) -> dict[str, list[str]]:
    """Profiles and their tokens: five pro ones with devices (one with two), and others the
    segment leaves out (free plan; pro without a device)."""
    tokens: dict[str, list[str]] = {}
    for n in range(5):
        devices = ("apns", "fcm") if n == 2 else ("apns",)
        tokens[f"pro-{n}"] = await s.profile(
            f"pro-{n}", devices=devices, attributes={"plan": "pro"}
        )
    for n in range(3):
        tokens[f"free-{n}"] = await s.profile(f"free-{n}", attributes={"plan": "free"})
    tokens["pro-deviceless"] = await s.profile(
        "pro-deviceless", devices=(), attributes={"plan": "pro"}
    )
    return tokens


async def save_segment(s: Scene, name: str, definition: dict[str, Any]) -> None:
    answer = await s.stack.http.post("/v1/segments", json={"name": name, "definition": definition})
    assert answer.status_code == 201, answer.text


async def preview(s: Scene, name: str) -> dict[str, Any]:
    answer = await s.stack.http.post(f"/v1/segments/{name}/preview", params={"sample": 100})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def pushed_tokens(s: Scene) -> list[str]:
    return [r.token for r in s.sims.apns.accepted()] + [r.token for r in s.sims.fcm.accepted()]


def paging_small(s: Scene) -> EngineOptions:
    """Cohorts (and audience pages) of two profiles, and a run that continues as new as
    soon as it has started some: the audience is read over several pages and runs."""
    return dataclasses.replace(
        engine_options(s.stack.settings),
        cohort_size=2,
        cohort_window=1,
        audience_page_size=2,
        run_history_limit=16,
    )


async def test_a_journey_files_segment_audience_reaches_what_the_preview_counts(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        tokens = await population(s)
        await save_segment(s, "pro-users", PRO_WITH_A_DEVICE)
        seen = await preview(s, "pro-users")
        assert seen["count"] == 5
        assert seen["sample"] == [f"pro-{n}" for n in range(5)]

        definition = journey(push("hello"), audience={"segment": "pro-users"})
        started = await s.start_journey(definition, options=paging_small(s))
        result = await s.finish(started)

        pushed = pushed_tokens(s)
        expected = [token for pid in seen["sample"] for token in tokens[pid]]
        assert sorted(pushed) == sorted(expected)  # one push per device, none elsewhere
        reached = {r.profile_id for r in await s.ledger(started.run_id) if r.status == "delivered"}
        assert len(reached) == seen["count"]
        assert result.cohorts == 3
        runs = [w async for w in s.client.list_workflows(f'WorkflowId = "{started.run_id}"')]
        assert len(runs) >= 2  # the pages went on after continue-as-new


async def test_the_api_starts_a_run_for_a_segment_and_a_missing_one_stops_the_start(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        tokens = await population(s)
        await save_segment(s, "free-users", {"attribute": "plan=free"})
        definition = journey(push("hello"))
        saved = await s.stack.http.post("/v1/journeys", json=definition.model_dump(mode="json"))
        assert saved.status_code == 201, saved.text

        answer = await s.stack.http.post(
            "/v1/runs", json={"journey_id": definition.id, "audience": {"segment": "free-users"}}
        )
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]
        assert answer.json()["entry"]["audience"] == "segment"
        assert answer.json()["entry"]["segment"] == "free-users"
        handle = s.client.get_workflow_handle(run_id)
        await asyncio.wait_for(handle.result(), timeout=PATIENCE_S * 2)
        assert sorted(pushed_tokens(s)) == sorted(t for n in range(3) for t in tokens[f"free-{n}"])

        missing = await s.stack.http.post(
            "/v1/runs", json={"journey_id": definition.id, "audience": {"segment": "nobody"}}
        )
        assert missing.status_code == 422, missing.text
        assert missing.json()["error"]["code"] == "cannot_start"
        assert "segment 'nobody', which does not exist" in missing.json()["error"]["message"]
        mixed = await s.stack.http.post(
            "/v1/runs",
            json={
                "journey_id": definition.id,
                "audience": {"segment": "free-users", "where": ["plan=pro"]},
            },
        )
        assert mixed.status_code == 422, mixed.text
        assert "a segment audience takes no" in mixed.json()["error"]["message"]


async def test_a_schedule_fires_for_its_segment_and_keeps_the_segment_from_deletion(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        tokens = await population(s)
        await save_segment(s, "free-users", {"attribute": "plan=free"})
        definition = journey(push("hello"))
        saved = await s.stack.http.post("/v1/journeys", json=definition.model_dump(mode="json"))
        assert saved.status_code == 201, saved.text
        schedule_id = f"free-{definition.id}"  # Temporal's schedules outlive the test's store
        body = {
            "journey_id": definition.id,
            "kind": "every",
            "every": "1d",
            "audience": {"segment": "free-users"},
            "id": schedule_id,
        }
        unknown = await s.stack.http.post(
            "/v1/schedules", json=body | {"audience": {"segment": "nobody"}}
        )
        assert unknown.status_code == 422, unknown.text
        assert unknown.json()["error"]["details"][0]["loc"] == ["body", "audience", "segment"]
        created = await s.stack.http.post("/v1/schedules", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["audience"]["segment"] == "free-users"

        refused = await s.stack.http.delete("/v1/segments/free-users")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["details"] == [{"loc": ["schedule"], "msg": schedule_id}]

        fired = await s.stack.http.post(f"/v1/schedules/{schedule_id}/trigger")
        assert fired.status_code == 200, fired.text
        (run,) = await at_least_runs(s, schedule_id, 1)
        assert (run.entry["audience"], run.entry["segment"]) == ("segment", "free-users")
        await asyncio.wait_for(
            s.client.get_workflow_handle(run.id).result(), timeout=PATIENCE_S * 2
        )
        assert sorted(pushed_tokens(s)) == sorted(t for n in range(3) for t in tokens[f"free-{n}"])
        deleted = await s.stack.http.delete(f"/v1/schedules/{schedule_id}")
        assert deleted.status_code == 204, deleted.text
        assert (await s.stack.http.delete("/v1/segments/free-users")).status_code == 204


async def test_the_cli_starts_a_journey_for_a_segment(scene: SceneFactory, tmp_path: Path) -> None:
    async with scene() as s:
        tokens = await population(s)
        definition_file = tmp_path / "pro.yaml"
        definition_file.write_text(
            "all:\n  - attribute: plan=pro\n  - device: {app: " + APP + "}\n"
        )
        created = await invoke(
            s, tidings_cli, "segments", "create", "pro-users", str(definition_file)
        )
        assert created.exit_code == 0, created.output
        journey_file = tmp_path / "hello.yaml"
        journey_file.write_text(
            f"id: cli-segment\nname: Hello\napp: {APP}\nnodes:\n"
            "  - {id: hello, type: push, content: {title: hi, body: there}}\n"
        )
        started = await invoke(s, starter, "start", str(journey_file), "--segment", "pro-users")
        assert started.exit_code == 0, started.output
        run_id = run_id_in(started.output)
        expected = [t for n in range(5) for t in tokens[f"pro-{n}"]]
        assert sorted(pushed_tokens(s)) == sorted(expected)
        assert {r.profile_id for r in await s.ledger(run_id)} == {f"pro-{n}" for n in range(5)}

        mixed = await invoke(
            s, starter, "start", str(journey_file), "--segment", "pro-users", "--where", "plan=pro"
        )
        assert mixed.exit_code == 1
        assert "a segment audience takes no" in mixed.output
