"""Journey files are read under limits: no YAML aliases (a few hundred bytes of nested
aliases expand into billions of values), at most 256 KiB, UTF-8, not nested without end.
Every command that reads a journey file (validate, save, start) refuses such a file with one
line naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starter import app as starter
from tidings.cli.app import app as tidings_cli
from tidings.journeys import JourneyInvalid, load_definition
from tidings.journeys.files import MAX_JOURNEY_FILE_BYTES

# A valid journey (a condition's "in" list) whose list holds 9^9 "lol"s once expanded; as
# YAML it stays small, and it only expands when the data is walked (stored, dumped).
BILLION_LAUGHS = """\
id: laughs
name: Laughs
app: demo
nodes:
  - id: check
    type: condition
    predicates:
      - attribute: plan
        op: in
        value:
          - &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]
          - &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
          - &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
          - &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
          - &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
          - &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
          - &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
          - &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
          - [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    then: hello
  - {id: hello, type: push, content: {title: hi, body: there}}
"""

SMALL = "id: j\nname: J\napp: demo\nnodes:\n  - {id: a, type: exit}\n"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(JourneyInvalid) as caught:
        load_definition(path)
    return [str(issue) for issue in caught.value.issues]


def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 1024
    (problem,) = problems_of(path)
    # where the first alias is
    assert problem.startswith(
        f"journey, file: {path} (line 12, column 17): YAML aliases (*name) are not allowed"
    )


def test_anchors_without_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text(SMALL.replace("name: J", "name: &title J"))
    assert load_definition(path).name == "J"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_file_over_the_size_cap_is_refused_unread(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"big{suffix}"
    data = {"id": "j", "name": "x" * MAX_JOURNEY_FILE_BYTES, "app": "demo", "nodes": []}
    path.write_text(json.dumps(data))
    (problem,) = problems_of(path)
    assert "too large" in problem
    assert "a journey file may be at most 256 KiB (262144 bytes)" in problem


def test_a_file_under_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    data = {"id": "j", "name": "x" * 200_000, "app": "demo", "nodes": [{"id": "a", "type": "exit"}]}
    path.write_text(json.dumps(data))
    assert len(load_definition(path).name) == 200_000


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("deep.yaml", "[" * 100_000, "nested too deeply to be a journey"),
        ("deep.json", "[" * 100_000, "nested too deeply to be a journey"),
        ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
        ("digits.yaml", "id: " + "9" * 5000, "integer string conversion"),
        ("bad.json", '{"id": ', "Expecting value"),
    ],
)
def test_unreadable_files_are_named_not_thrown(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    (problem,) = problems_of(path)
    assert problem.startswith(f"journey, file: {path}: ")
    assert expected in problem


def test_every_command_that_reads_a_journey_file_refuses_aliases(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    env = {"TIDINGS_HOME": str(tmp_path / ".tidings"), "COLUMNS": "200"}
    for app, args in (
        (tidings_cli, ["journeys", "validate", str(path)]),
        (tidings_cli, ["journeys", "save", str(path)]),
        (tidings_cli, ["start", str(path)]),
        (starter, ["start", str(path)]),
    ):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 1, (args, result.output)
        assert "YAML aliases (*name) are not allowed" in result.output, (args, result.output)
    # refused before anything was started or stored
    assert not (tmp_path / ".tidings" / "tidings.db").exists()
