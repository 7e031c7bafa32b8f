"""Saved segments over the API and the CLI, on SQLite and PostgreSQL: create, list, read,
replace, preview (saved or not), bad definitions answered 422 naming the field, and a
delete refused while a stored journey takes the segment as its audience."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.api.conftest import Api
from tidings.cli.app import app as cli

YAML = {"Content-Type": "application/yaml"}
PRO = {"attribute": {"name": "plan", "op": "eq", "value": "pro"}}


def journey_naming(segment: str | None) -> str:
    audience = f"audience: {{segment: {segment}}}\n" if segment else ""
    return (
        "id: welcome\nname: Welcome\napp: shop\n"
        + audience
        + 'nodes:\n  - id: hello\n    type: push\n    content: {title: "Hi", body: "welcome"}\n'
    )


async def profiles(api: Api, plans: dict[str, str]) -> None:
    for profile_id, plan in plans.items():
        answer = await api.admin.put(
            f"/v1/profiles/{profile_id}", json={"attributes": {"plan": plan}}
        )
        assert answer.status_code in (200, 201), answer.text


async def test_a_segment_is_created_read_listed_replaced_and_previewed(api: Api) -> None:
    await profiles(api, {"a": "pro", "b": "free", "c": "pro", "d": "pro"})
    created = await api.admin.post(
        "/v1/segments", json={"name": "pro", "description": "paying", "definition": PRO}
    )
    assert created.status_code == 201, created.text
    assert created.json()["definition"] == PRO
    again = await api.admin.post("/v1/segments", json={"name": "pro", "definition": PRO})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "segment_exists"

    shorthand = {
        "any": [{"attribute": "plan=free"}, {"profile": {"field": "id", "op": "eq", "value": "d"}}]
    }
    second = await api.admin.post(
        "/v1/segments", json={"name": "free-or-d", "definition": shorthand}
    )
    assert second.status_code == 201, second.text
    # stored as written out in full
    assert second.json()["definition"]["any"][0] == {
        "attribute": {"name": "plan", "op": "eq", "value": "free"}
    }

    first_page = (await api.admin.get("/v1/segments", params={"limit": 1})).json()
    assert [s["name"] for s in first_page["items"]] == ["free-or-d"]
    rest = await api.admin.get("/v1/segments", params={"cursor": first_page["next_cursor"]})
    assert [s["name"] for s in rest.json()["items"]] == ["pro"]
    assert rest.json()["next_cursor"] is None

    shown = await api.admin.get("/v1/segments/pro")
    assert shown.json()["description"] == "paying"
    preview = (await api.admin.post("/v1/segments/pro/preview", params={"sample": 2})).json()
    assert (preview["name"], preview["count"], preview["sample"]) == ("pro", 3, ["a", "c"])

    replaced = await api.admin.put("/v1/segments/pro", json={"definition": {"not": PRO}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["updated_at"] > replaced.json()["created_at"]
    preview = (await api.admin.post("/v1/segments/pro/preview")).json()
    assert (preview["count"], preview["sample"]) == (1, ["b"])

    unsaved = await api.admin.post("/v1/segments/preview", json={"definition": shorthand})
    assert (unsaved.json()["name"], unsaved.json()["count"]) == (None, 2)

    for missing in (
        await api.admin.get("/v1/segments/nope"),
        await api.admin.put("/v1/segments/nope", json={"definition": PRO}),
        await api.admin.post("/v1/segments/nope/preview"),
        await api.admin.delete("/v1/segments/nope"),
    ):
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "segment_not_found"


def locs(answer: Any) -> list[str]:
    return [".".join(detail["loc"]) for detail in answer.json()["error"]["details"]]


async def test_bad_definitions_are_refused_naming_the_field(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"all": [PRO, {"attribute": {"name": "age", "op": "gt"}}]},
            "body.definition.all.1.attribute.value",
        ),
        ({"all": [{"device": {"provider": "windows"}}]}, "body.definition.all.0.device.provider"),
        (
            {"any": [{"interaction": {"kind": "opened", "within_days": 0}}]},
            "body.definition.any.0.interaction.within_days",
        ),
        (
            {"not": {"profile": {"field": "email", "op": "within_days", "value": 3}}},
            "body.definition.not.profile.op",
        ),
        ({"all": [{"segment": "other"}]}, "body.definition.all.0"),
        ({"run": {}}, "body.definition.run"),
        ({"attribute": "plan"}, "body.definition.attribute"),
        ({"any": []}, "body.definition.any"),
        ({"attribute": {"name": "bad name!", "op": "exists"}}, "body.definition.attribute.name"),
        (
            {"not": {"not": {"not": {"not": {"not": {"not": {"not": PRO}}}}}}},
            "body.definition.not.not.not.not.not.not",
        ),
        ({"all": [PRO] * 50, "any": [PRO]}, "body.definition"),
        ({"any": [{"all": [PRO] * 50}, {"all": [PRO] * 50}]}, "body.definition"),
    ]
    for definition, loc in cases:
        answer = await api.admin.post(
            "/v1/segments", json={"name": "bad", "definition": definition}
        )
        assert answer.status_code == 422, (definition, answer.text)
        assert answer.json()["error"]["code"] == "invalid_segment", answer.text
        assert loc in locs(answer), (loc, answer.json())
    nested: dict[str, Any] = PRO
    for _ in range(200):
        nested = {"not": nested}
    deep = await api.admin.post("/v1/segments", json={"name": "deep", "definition": nested})
    assert deep.status_code == 422
    bad_name = await api.admin.post("/v1/segments", json={"name": "Bad Name", "definition": PRO})
    assert bad_name.status_code == 422
    assert locs(bad_name) == ["body.name"]
    unsaved = await api.admin.post(
        "/v1/segments/preview", json={"definition": {"all": [{"device": {"state": "gone"}}]}}
    )
    assert unsaved.status_code == 422
    assert locs(unsaved) == ["body.definition.all.0.device.state"]
    assert (await api.admin.get("/v1/segments")).json()["items"] == []


async def test_a_segment_a_stored_journey_names_cannot_be_deleted(api: Api) -> None:
    await api.create_app("shop")
    assert (
        await api.admin.post("/v1/segments", json={"name": "pro", "definition": PRO})
    ).status_code == 201
    saved = await api.admin.post("/v1/journeys", content=journey_naming("pro"), headers=YAML)
    assert saved.status_code == 201, saved.text

    refused = await api.admin.delete("/v1/segments/pro")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "segment_in_use"
    assert "journey 'welcome'" in error["message"]
    assert error["details"] == [{"loc": ["journey"], "msg": "welcome"}]
    assert (await api.admin.get("/v1/segments/pro")).status_code == 200

    # a journey naming a segment the store lacks is warned about before it is saved
    checked = await api.admin.post(
        "/v1/journeys/validate", content=journey_naming("gone"), headers=YAML
    )
    assert any(w["field"] == "audience.segment" for w in checked.json()["warnings"]), checked.text

    # once the journey's newest version takes another audience, the segment may go
    newer = await api.admin.post("/v1/journeys", content=journey_naming(None), headers=YAML)
    assert newer.status_code == 201, newer.text
    assert (await api.admin.delete("/v1/segments/pro")).status_code == 204
    assert (await api.admin.get("/v1/segments/pro")).status_code == 404


async def test_the_cli_manages_segments_as_the_api_does(api: Api, tmp_path: Path) -> None:
    await profiles(api, {"a": "pro", "b": "free", "c": "pro"})
    env = {"TIDINGS_HOME": str(api.settings.home), "TIDINGS_DATABASE_URL": api.db.url}

    async def run(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, cli, ["segments", *args], env=env)

    definition = tmp_path / "pro.yaml"
    definition.write_text(
        "all:\n  - attribute: plan=pro\n  - profile: {field: id, op: ne, value: x}\n"
    )
    created = await run("create", "pro", str(definition), "--description", "paying")
    assert created.exit_code == 0, created.output
    assert (await api.admin.get("/v1/segments/pro")).json()["description"] == "paying"

    previewed = await run("preview", "pro", "--json")
    assert previewed.exit_code == 0, previewed.output
    api_preview = (await api.admin.post("/v1/segments/pro/preview")).json()
    from_cli = json.loads(previewed.stdout)
    assert (
        (from_cli["count"], from_cli["sample"])
        == (api_preview["count"], api_preview["sample"])
        == (2, ["a", "c"])
    )
    human = await run("preview", "pro")
    assert "2 profiles match" in human.output

    listed = await run("list", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["pro"]
    shown = await run("show", "pro")
    assert "plan" in shown.output

    broken = tmp_path / "broken.yaml"
    broken.write_text("all:\n  - device: {provider: windows}\n")
    refused = await run("create", "broken", str(broken))
    assert refused.exit_code == 1
    assert "all.0.device.provider" in refused.output
    taken = await run("create", "pro", str(definition))
    assert taken.exit_code == 1
    assert "exists already" in taken.output

    unsaved = await run("preview", "--file", str(broken))
    assert unsaved.exit_code == 1
    everyone = tmp_path / "everyone.json"
    everyone.write_text('{"not": {"attribute": "plan=nothing"}}')
    assert (
        json.loads((await run("preview", "--file", str(everyone), "--json")).stdout)["count"] == 3
    )

    assert (await run("delete", "pro")).exit_code == 0
    gone = await run("delete", "pro")
    assert gone.exit_code == 1
    assert "no segment named 'pro'" in gone.output
