"""Journeys and triggered journeys over the API, on SQLite and PostgreSQL: versions, the
problems a definition has (by node and field, as `tidings journeys validate` prints them),
and enabling, inspecting and disabling a journey that starts on an event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.api.conftest import Api
from tidings.cli.app import app as cli
from tidings.store.journeys import create_run, finish_run
from tidings.store.models import RunStatus

WELCOME = """
id: welcome
name: Welcome
app: shop
nodes:
  - id: hello
    type: push
    content: {title: "Hi", body: "welcome"}
"""
BROKEN = """
id: broken
name: Broken
app: shop
nodes:
  - id: hello
    type: push
    content: {title: "Hi", body: "welcome"}
    next: nowhere
  - id: later
    type: delay
    duration: soon
"""
ONBOARDING = {
    "id": "onboarding",
    "name": "Onboarding",
    "app": "shop",
    "trigger": {"event": "signed_up"},
    "nodes": [{"id": "hello", "type": "push", "content": {"title": "Hi", "body": "b"}}],
}
YAML = {"Content-Type": "application/yaml"}


async def test_journeys_are_saved_in_versions_and_listed(api: Api) -> None:
    first = await api.admin.post("/v1/journeys", content=WELCOME, headers=YAML)
    assert first.status_code == 201, first.text
    assert first.json() == {"id": "welcome", "version": 1, "created": True}
    same = await api.admin.post("/v1/journeys", content=WELCOME, headers=YAML)
    assert same.status_code == 200
    assert same.json() == {"id": "welcome", "version": 1, "created": False}
    second = await api.admin.post(
        "/v1/journeys",
        json={
            "id": "welcome",
            "name": "Welcome",
            "app": "shop",
            "nodes": [{"id": "hello", "type": "push", "content": {"title": "Hello", "body": "x"}}],
        },
    )
    assert second.status_code == 201
    assert second.json()["version"] == 2

    detail = (await api.admin.get("/v1/journeys/welcome")).json()
    assert detail["latest_version"] == 2
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    assert detail["versions"][0]["definition"]["nodes"][0]["content"]["title"] == "Hello"
    assert detail["runs"] == 0

    for n in range(3):
        body = WELCOME.replace("id: welcome", f"id: extra-{n}")
        assert (await api.admin.post("/v1/journeys", content=body, headers=YAML)).status_code == 201
    ids: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await api.admin.get("/v1/journeys", params=params)).json()
        ids += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == ["extra-0", "extra-1", "extra-2", "welcome"]

    missing = await api.admin.get("/v1/journeys/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "journey_not_found"


async def test_problems_are_named_by_node_and_field_as_the_cli_names_them(
    api: Api, tmp_path: Path
) -> None:
    checked = await api.admin.post("/v1/journeys/validate", content=BROKEN, headers=YAML)
    assert checked.status_code == 200
    result = checked.json()
    assert result["valid"] is False
    problems = {(p["node"], p["field"]) for p in result["problems"]}
    assert ("hello", "next") in problems
    assert ("later", "duration") in problems

    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    printed = CliRunner().invoke(cli, ["journeys", "validate", str(path), "--json"])
    assert printed.exit_code == 1
    assert json.loads(printed.stdout) == result

    refused = await api.admin.post("/v1/journeys", content=BROKEN, headers=YAML)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_journey"
    assert {(d["node"], d["field"]) for d in error["details"]} == problems
    assert (await api.admin.get("/v1/journeys/broken")).status_code == 404

    fine = await api.admin.post("/v1/journeys/validate", content=WELCOME, headers=YAML)
    assert fine.json() == {
        "valid": True,
        "journey_id": "welcome",
        "problems": [],
        # the store has no app "shop" yet: a warning (a start refuses it until it exists)
        "warnings": [
            {
                "node": None,
                "field": "app",
                "message": "names no app: there is no app 'shop' in the store",
            }
        ],
    }
    guessing = WELCOME.replace('"welcome"', '"{{ profile.attributes.plan }}"')
    warned = await api.admin.post("/v1/journeys/validate", content=guessing, headers=YAML)
    assert warned.json()["valid"] is True
    assert [w["node"] for w in warned.json()["warnings"]] == [None, "hello"]
    assert "plan" in warned.json()["warnings"][1]["message"]
    not_yaml = await api.admin.post("/v1/journeys/validate", content="a: [", headers=YAML)
    assert not_yaml.json()["valid"] is False
    assert not_yaml.json()["problems"][0]["field"] == "body"
    plain = await api.admin.post(
        "/v1/journeys", content=WELCOME, headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 415
    assert "application/yaml" in plain.json()["error"]["message"]


async def test_a_triggered_journey_is_enabled_inspected_and_disabled(api: Api) -> None:
    assert (
        await api.admin.post("/v1/apps", json={"id": "shop", "name": "Shop"})
    ).status_code == 201
    assert (await api.admin.post("/v1/journeys", json=ONBOARDING)).status_code == 201
    never = await api.admin.get("/v1/triggers/onboarding")
    assert never.status_code == 404
    assert never.json()["error"]["code"] == "trigger_not_found"

    enabled = await api.admin.post("/v1/triggers/onboarding/enable")
    assert enabled.status_code == 200, enabled.text
    state = enabled.json()
    assert (state["enabled"], state["event"], state["journey_version"]) == (True, "signed_up", 1)
    assert state["profiles_entered"] == 0
    run = await api.admin.get(f"/v1/runs/{state['run_id']}/report")
    assert run.json()["run"]["kind"] == "trigger"

    again = (await api.admin.post("/v1/triggers/onboarding/enable", json={"version": 1})).json()
    assert again["earlier_runs"] == [state["run_id"]]
    listed = (await api.admin.get("/v1/triggers")).json()["items"]
    assert [(t["journey_id"], t["run_id"]) for t in listed] == [("onboarding", again["run_id"])]
    env = {
        "TIDINGS_HOME": str(api.settings.home),
        "TIDINGS_DATABASE_URL": api.db.url,
    }
    shown = await asyncio.to_thread(
        CliRunner().invoke, cli, ["triggers", "show", "onboarding", "--json"], env=env
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == listed[0]
    superseded = (await api.admin.get("/v1/runs", params={"status": "completed"})).json()
    assert [r["id"] for r in superseded["items"]] == [state["run_id"]]

    disabled = await api.admin.post("/v1/triggers/onboarding/disable")
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert disabled.json()["disabled_at"] is not None
    twice = await api.admin.post("/v1/triggers/onboarding/disable")
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "not_enabled"
    from_cli = await asyncio.to_thread(
        CliRunner().invoke, cli, ["triggers", "disable", "onboarding"], env=env
    )
    assert from_cli.exit_code == 1
    assert "is not enabled" in from_cli.output

    assert (await api.admin.post("/v1/journeys", content=WELCOME, headers=YAML)).status_code == 201
    no_trigger = await api.admin.post("/v1/triggers/welcome/enable")
    assert no_trigger.status_code == 409
    assert "has no trigger" in no_trigger.json()["error"]["message"]
    unknown = await api.admin.post("/v1/triggers/nope/enable")
    assert unknown.status_code == 404
    wrong_version = await api.admin.post("/v1/triggers/onboarding/enable", json={"version": 9})
    assert wrong_version.status_code == 404


async def test_without_temporal_ended_runs_are_read_and_moving_ones_answer_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    definition = yaml.safe_load(WELCOME)
    async with api.db.write() as session:
        for run_id, finished in (("run-welcome-ended", True), ("run-welcome-moving", False)):
            await create_run(session, run_id=run_id, definition=definition, version=None, entry={})
            if finished:
                await finish_run(session, run_id, RunStatus.COMPLETED.value, {"profiles": 3})

    ended = await api.admin.get("/v1/runs/run-welcome-ended")
    assert ended.status_code == 200
    assert (ended.json()["status"], ended.json()["counts"]) == ("completed", {"profiles": 3})
    cancel_ended = await api.admin.post("/v1/runs/run-welcome-ended/cancel")
    assert cancel_ended.json()["already_finished"] is True

    for answer in (
        await api.admin.get("/v1/runs/run-welcome-moving"),
        await api.admin.post("/v1/runs/run-welcome-moving/cancel"),
        await api.admin.post("/v1/runs", json={"journey_id": "welcome"}),
    ):
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "temporal_unavailable"
        assert "TEMPORAL_ADDRESS" in answer.json()["error"]["message"]
