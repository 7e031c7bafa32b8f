"""Push templates run under a budget (steps, time, sizes) in a sandbox that refuses include,
import and extends; whatever a template does, rendering raises RenderError and nothing else,
and validation reports the template by node and field instead of hanging or crashing."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tidings.cli.app import app
from tidings.journeys import JourneyInvalid, parse_definition
from tidings.journeys import template_limits as limits
from tidings.journeys.model import PushContent
from tidings.journeys.render import RenderError, render_message

PROFILE: dict[str, Any] = {
    "id": "ann",
    "attributes": {"first_name": "Ann", "zero": 0, "items": ["a", "b", "c"]},
}
LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
POWER = "the template computes a number of more than 4096 bits"
# whichever limit comes first: 20000 steps or 0.25s of CPU
TOO_LONG = "the template runs too long: it took more than "
TOO_LARGE = "more than 100000 characters, the limit for a value"
PRINTS_TOO_MUCH = "the template prints more than 16384 characters, the limit for one field"
STANDALONE = "a push template stands alone: include, import and extends are not allowed"


def rendered(title: str, profile: dict[str, Any] = PROFILE) -> str | None:
    return render_message(PushContent(title=title, body="b"), None, profile).title


def render_problem(title: str) -> str:
    with pytest.raises(RenderError) as caught:
        rendered(title)
    assert caught.value.field == "title"
    return str(caught.value)


def validation_problems(title: str) -> list[str]:
    data = {
        "id": "j",
        "name": "J",
        "app": "demo",
        "nodes": [{"id": "hello", "type": "push", "content": {"title": title, "body": "b"}}],
    }
    with pytest.raises(JourneyInvalid) as caught:
        parse_definition(data)
    return [str(issue) for issue in caught.value.issues]


RUNAWAYS = [
    pytest.param("{{ 9 ** (9 ** 9) }}", POWER, id="power-tower"),
    pytest.param("{{ 7 ** 100000 }}", POWER, id="power"),
    pytest.param(LOOPS, TOO_LONG, id="nested-loops"),
    pytest.param(
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}"
        "{{ m(40) }}",
        TOO_LONG,
        id="macro-fan-out",
    ),
    pytest.param("{{ 'x' * 10 ** 9 }}", TOO_LARGE, id="string-times"),
    pytest.param("{{ [1, 2] * 10 ** 9 }}", TOO_LARGE, id="list-times"),
    pytest.param("{% for i in range(100000) %}{{ i }}{% endfor %}", PRINTS_TOO_MUCH, id="output"),
    pytest.param(
        "{% set a = 'xxxxxxxxxx' %}{% set b = a~a~a~a~a~a~a~a~a~a %}"
        "{% set c = b~b~b~b~b~b~b~b~b~b %}{% set d = c~c~c~c~c~c~c~c~c~c %}"
        "{% set e = d~d~d~d~d~d~d~d~d~d %}{% set f = e~e~e~e~e~e~e~e~e~e %}{{ f|length }}",
        TOO_LARGE,
        id="concat-chain",
    ),
    pytest.param(
        "{{ 'x' | center(10 ** 9) }}",
        "a width (1000000000) is above the limit of 100000",
        id="center-filter",
    ),
    pytest.param(
        "{{ 'x'.ljust(10 ** 9) }}",
        "a width given to ljust (1000000000) is above the limit",
        id="ljust-method",
    ),
    pytest.param("{{ '%999999999d' % 1 }}", TOO_LARGE, id="percent-width"),
    pytest.param("{{ '{:>999999999}'.format(1) }}", TOO_LARGE, id="format-width"),
    pytest.param("{{ ('{0}' * 20000).format('y' * 5000) }}", TOO_LARGE, id="format-fields"),
    pytest.param("{{ 'abc' | replace('', 'x' * 60000) }}", TOO_LARGE, id="replace"),
    pytest.param("{{ range(100000) | join('x' * 1000) }}", TOO_LARGE, id="join"),
    pytest.param(
        "{{ [range(50000) | list] * 100 | sum(start=[]) | length }}", TOO_LARGE, id="sum-lists"
    ),
]


@pytest.mark.parametrize(("template", "expected"), RUNAWAYS)
def test_a_runaway_template_is_stopped_with_a_render_error(template: str, expected: str) -> None:
    problem = render_problem(template)
    assert problem.startswith("content.title: ")
    assert expected in problem


@pytest.mark.parametrize(("template", "expected"), RUNAWAYS)
def test_validation_finds_a_runaway_template_by_node_and_field(
    template: str, expected: str
) -> None:
    (problem,) = validation_problems(template)
    assert problem.startswith("node 'hello', content.title: template error: ")
    assert expected in problem


def test_the_time_limit_stops_a_template_between_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step checks the deadline: with no time at all, the first step is over it."""
    monkeypatch.setattr(limits, "TIME_LIMIT_S", 0.0)
    problem = render_problem("{% for i in range(10) %}{{ i }}{% endfor %}")
    assert "the template runs too long: it took more than 0s" in problem


def test_fields_after_the_budget_ran_out_are_still_checked_as_they_compile() -> None:
    data = {
        "id": "j",
        "name": "J",
        "app": "demo",
        "nodes": [
            {
                "id": "hello",
                "type": "push",
                "content": {"title": LOOPS, "body": "{{ first_name", "link": "{{ 1 / 0 }}"},
            }
        ],
    }
    with pytest.raises(JourneyInvalid) as caught:
        parse_definition(data)
    found = [str(issue) for issue in caught.value.issues]
    assert len(found) == 2, found
    assert found[0].startswith(f"node 'hello', content.title: template error: {TOO_LONG}")
    assert found[1].startswith("node 'hello', content.body: template error: unexpected end")


def test_the_budget_is_per_message_not_per_field() -> None:
    """Fields share a message's budget: one field cannot take it all and leave the rest
    to run another whole budget each."""
    half = "{% for i in range(6000) %}{% endfor %}{{ first_name }}"
    content = PushContent(title=half, body=half, subtitle=half, link=half)
    with pytest.raises(RenderError, match=TOO_LONG):
        render_message(content, None, PROFILE)
    one = PushContent(title=half, body="b")
    assert render_message(one, None, PROFILE).title == "Ann"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 1 / zero }}", "division by zero (ZeroDivisionError)"),
        ("{{ 2.0 ** 100000 }}", "(OverflowError)"),
        ("{{ items + 3 }}", 'can only concatenate list (not "int") to list (TypeError)'),
        ("{{ items[10] }}", "list object has no element 10"),
        ("{{ items.index('z') }}", "'z' is not in list (ValueError)"),
        ("{% include 'other' %}", STANDALONE),
        ("{% import 'macros' as m %}", STANDALONE),
        ("{% from 'macros' import m %}", STANDALONE),
        ("{% extends 'base' %}", STANDALONE),
        ("{% if false %}{% include 'never' %}{% endif %}", STANDALONE),
        ("{{ lipsum(10 ** 9) }}", "'lipsum' is undefined"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ first_name", "unexpected end of template"),
    ],
)
def test_any_failure_of_a_template_is_a_render_error(template: str, expected: str) -> None:
    assert expected in render_problem(template)


def test_what_templates_are_for_still_renders() -> None:
    cases = {
        "Hi {{ first_name }}": "Hi Ann",
        "{{ first_name | upper }} {{ profile.id }}": "ANN ann",
        "{% for x in items %}{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}": "a, b, c",
        "{% for x in items if x != 'b' %}{{ loop.index }}{{ x }}{% endfor %}": "1a2c",
        "{% set ns = namespace(n=0) %}{% for x in items %}{% set ns.n = ns.n + 1 %}"
        "{% endfor %}{{ ns.n }}": "3",
        "{% macro hi(name) %}Hi {{ name }}{% endmacro %}{{ hi(first_name) }}!": "Hi Ann!",
        "{{ first_name ~ '!' * 3 }} {{ 2 ** 10 }} {{ '%.1f%%' % 12.34 }}": "Ann!!! 1024 12.3%",
        "{{ '{:>5}|{}'.format(first_name, items | join('/')) }}": "  Ann|a/b/c",
        "{{ ('x' * 100) | length }} {{ items | batch(2) | list | length }}": "100 2",
    }
    for template, expected in cases.items():
        assert rendered(template) == expected, template


def test_a_render_failure_is_the_profile_s_own() -> None:
    """The same template renders for one profile and fails for another."""
    template = "{{ 100 // zero }} points"
    assert rendered(template, {"id": "bob", "attributes": {"zero": 4}}) == "25 points"
    with pytest.raises(RenderError, match="ZeroDivisionError"):
        rendered(template)


def test_validate_reports_runaway_templates_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "runaway.yaml"
    path.write_text(
        "id: runaway\nname: Runaway\napp: demo\nnodes:\n"
        "  - id: power\n    type: push\n    next: loops\n"
        "    content: {title: '{{ 9 ** (9 ** 9) }}', body: '{{ 1 / 0 }}'}\n"
        "  - id: loops\n    type: push\n    next: parts\n"
        f"    content: {{title: hi, body: '{LOOPS}'}}\n"
        "  - id: parts\n    type: push\n"
        "    content: {title: \"{% include 'x' %}\", body: b, data: {k: '{{ [] + 1 }}'}}\n"
    )
    result = CliRunner().invoke(app, ["journeys", "validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
    beginnings = [
        "✗ node 'power', content.title: template error: the template computes a number of "
        "more than 4096 bits",
        "✗ node 'power', content.body: template error: division by zero (ZeroDivisionError)",
        f"✗ node 'loops', content.body: template error: {TOO_LONG}",
        f"✗ node 'parts', content.title: template error: {STANDALONE}",
        "✗ node 'parts', content.data.k: template error: can only concatenate list (not "
        '"int") to list (TypeError)',
    ]
    lines = result.output.splitlines()
    assert len(lines) == len(beginnings), result.output
    for line, beginning in zip(lines, beginnings, strict=True):
        assert line.startswith(beginning), (line, beginning)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 100 // points }} points",
        "{% if age > 17 %}adult{% endif %}",
        "{{ '%.2f' | format(price) }} {{ '{:.1f}'.format(price) }} {{ '%d' % count }}",
        "{% for i in range(count) %}*{% endfor %}",
        "{{ (price * 1.2) | round(2) }} {{ -balance }} {{ balance | abs }}",
    ],
)
def test_validation_takes_profile_values_for_numbers_too(template: str) -> None:
    """The preview's stand-in for a profile value works as a number as well as a text, so
    a template that computes with profile values is not refused for the stand-in's sake."""
    data = {
        "id": "j",
        "name": "J",
        "app": "demo",
        "nodes": [{"id": "hello", "type": "push", "content": {"title": template, "body": "b"}}],
    }
    assert parse_definition(data).id == "j"


def test_a_garbage_collection_during_a_render_is_not_charged_to_the_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The collector's pass over the whole heap runs in whichever thread allocated last:
    inside a render, it must not make a trivial template look like a runaway one, while the
    template's own CPU still counts."""
    heap = [[i] for i in range(1_000_000)]  # a worker's heap: a full collection walks it all
    started = time.thread_time()
    gc.collect()
    collection_cost = time.thread_time() - started
    monkeypatch.setattr(limits, "TIME_LIMIT_S", collection_cost / 2)
    with limits.budget():
        gc.collect()
        limits.tick()
    with limits.budget():
        busy_until = time.thread_time() + collection_cost
        while time.thread_time() < busy_until:
            pass
        with pytest.raises(limits.BudgetExceeded):
            limits.tick()
    assert len(heap) == 1_000_000
