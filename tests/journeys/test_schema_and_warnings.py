"""The journey language's schema (what editors complete from) and the warnings validation
gives for what would fail only at run time: a template reading what no profile provides, an
app the store does not have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from tidings.cli.app import app
from tidings.journeys.model import JourneyDefinition
from tidings.journeys.validation import parse_definition
from tidings.journeys.variables import TemplateRead, template_reads
from tidings.journeys.warnings import journey_warnings, missing_apps
from tidings.store.db import Database
from tidings.store.models import App

EXAMPLES = sorted((Path(__file__).parents[2] / "tidings/journeys/examples").glob("*.yaml"))


def schema_from_cli() -> dict[str, Any]:
    result = CliRunner().invoke(app, ["journeys", "schema"])
    assert result.exit_code == 0, result.output
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_schema_accepts_every_example_journey(example: Path) -> None:
    schema = schema_from_cli()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(example.read_text()), schema)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"nodes": [{"id": "a", "type": "teleport"}]}, "nodes"),
        ({"nodes": [{"id": "a", "type": "delay", "duration": "soon"}]}, "nodes"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_the_schema_refuses_what_validation_refuses(change: dict[str, Any], where: str) -> None:
    journey = {"id": "j", "name": "J", "app": "demo", "nodes": [{"id": "x", "type": "exit"}]}
    journey.update(change)
    with pytest.raises(jsonschema.ValidationError) as raised:
        jsonschema.validate(journey, schema_from_cli())
    assert where in json.dumps(list(raised.value.absolute_path)) or where in raised.value.message
    with pytest.raises(ValueError, match=r"."):
        parse_definition(journey)


def test_a_duration_in_the_schema_takes_every_written_form() -> None:
    schema = schema_from_cli()
    for duration in ("30s", "1h30m", "250ms", 90, "PT1H"):
        journey = {
            "id": "j",
            "name": "J",
            "app": "demo",
            "nodes": [{"id": "d", "type": "delay", "duration": duration}],
        }
        jsonschema.validate(journey, schema)
        parse_definition(journey)


def test_an_audience_filter_may_be_written_as_text_or_as_a_predicate() -> None:
    journey = {
        "id": "j",
        "name": "J",
        "app": "demo",
        "audience": {"where": ["plan=pro", {"attribute": "age", "op": "gte", "value": 18}]},
        "nodes": [{"id": "x", "type": "exit"}],
    }
    jsonschema.validate(journey, schema_from_cli())
    parse_definition(journey)
    journey["audience"] = {"where": [3]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(journey, schema_from_cli())


def journey(body: str, *, attributes: list[str] | None = None) -> JourneyDefinition:
    return parse_definition(
        {
            "id": "j",
            "name": "J",
            "app": "demo",
            "attributes": attributes or [],
            "nodes": [{"id": "hello", "type": "push", "content": {"title": "Hi", "body": body}}],
        }
    )


def test_what_a_template_reads_is_found_through_every_spelling() -> None:
    source = (
        "{{ first_name }} {{ profile.attributes.plan }} {{ profile['attributes']['tier'] }}"
        " {{ profile.email }} {% set n = 3 %}{{ n }}{% for i in range(2) %}{{ i }}{% endfor %}"
    )
    assert template_reads(source) == {
        TemplateRead("attribute", "first_name"),
        TemplateRead("attribute", "plan"),
        TemplateRead("attribute", "tier"),
        TemplateRead("profile_field", "email"),
        TemplateRead("profile_field", "attributes"),
    }


def test_an_undeclared_attribute_is_a_warning_by_node_and_field() -> None:
    body = "Hello {{ first_name }}, {{ profile.attributes.plan }}"
    found = [str(w) for w in journey_warnings(journey(body))]
    assert len(found) == 2
    assert found[0].startswith("node 'hello', content.body: reads the attribute 'first_name'")
    assert found[1].startswith("node 'hello', content.body: reads the attribute 'plan'")


def test_a_declared_attribute_or_a_profile_field_is_no_warning() -> None:
    quiet = journey(
        "Hi {{ first_name }} ({{ profile.email }}, {{ profile.locale }})", attributes=["first_name"]
    )
    assert journey_warnings(quiet) == []


def test_a_profile_field_that_does_not_exist_is_a_warning() -> None:
    [warning] = journey_warnings(journey("{{ profile.nickname }}"))
    assert "reads profile.nickname, which no profile has" in str(warning)


def test_validate_prints_warnings_and_still_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TIDINGS_DATABASE_URL", raising=False)
    path = tmp_path / "j.yaml"
    path.write_text(
        "id: j\nname: J\napp: demo\nnodes:\n"
        "  - {id: hello, type: push, content: {title: 'Hi {{ first_name }}'}}\n"
    )
    result = CliRunner().invoke(app, ["journeys", "validate", str(path)])
    output = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, output
    assert "! node 'hello', content.title: reads the attribute 'first_name'" in output


async def test_an_app_the_store_lacks_is_named(db: Database) -> None:
    async with db.write() as session:
        session.add(App(id="demo", name="Demo"))
    definition = parse_definition(
        {
            "id": "j",
            "name": "J",
            "app": "demo",
            "nodes": [
                {"id": "a", "type": "push", "content": {"title": "x"}, "next": "b"},
                {"id": "b", "type": "push", "app": "gone", "content": {"title": "y"}},
            ],
        }
    )
    async with db.read() as session:
        found = [str(issue) for issue in await missing_apps(session, definition)]
    assert found == ["node 'b', app: names no app: there is no app 'gone' in the store"]


def test_validate_with_a_store_refuses_a_journey_of_an_unknown_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("TIDINGS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", database_url)
    path = tmp_path / "j.yaml"
    path.write_text("id: j\nname: J\napp: nowhere\nnodes:\n  - {id: x, type: exit}\n")
    result = CliRunner().invoke(app, ["journeys", "validate", str(path)])
    output = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 1, output
    assert "✗ journey, app: names no app: there is no app 'nowhere' in the store" in output


def test_a_journey_declaring_no_attributes_is_stored_as_before() -> None:
    """A definition saved before journeys declared attributes stays equal to itself."""
    data = {"id": "j", "name": "J", "app": "demo", "nodes": [{"id": "x", "type": "exit"}]}
    assert "attributes" not in parse_definition(data).model_dump(mode="json")
    declared = parse_definition(data | {"attributes": ["plan"]}).model_dump(mode="json")
    assert declared["attributes"] == ["plan"]
