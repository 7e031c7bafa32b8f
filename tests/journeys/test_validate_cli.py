"""`tidings journeys validate FILE`, as a designer runs it: exit code 0 and a summary for a
good file; exit code 1 and every problem, each with its node and field, for a bad one."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tidings.cli.app import app

GOOD = """\
id: welcome
name: Welcome
app: demo
nodes:
  - {id: hello, type: push, content: {title: Hi, body: welcome}, ttl: 2h, next: pause}
  - {id: pause, type: delay, duration: 1d, next: again}
  - {id: again, type: push, content: {title: "[reminder]", body: "still there?"}}
"""

BAD = """\
id: welcome
name: Welcome
app: demo
"[draft]": true
nodes:
  - {id: hello, type: push, content: {title: Hi, body: welcome}, ttl: soon, next: missing}
  - {id: pause, type: delay, duration: 1d}
  - id: wait
    type: wait_for
    interaction: opened
    push: "[hello]"
    timeout: 1h
"""


def validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["journeys", "validate", str(path)])
    # Rich wraps long lines at the terminal's width: compare the words
    return result.exit_code, " ".join((result.stdout + result.stderr).split())


def test_a_good_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "welcome.yaml"
    path.write_text(GOOD)
    code, output = validate(path)
    assert code == 0, output
    assert f"✓ {path}: journey 'welcome', 3 nodes" in output


def test_a_bad_file_lists_every_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "welcome.yaml"
    path.write_text(BAD)
    code, output = validate(path)
    assert code == 1
    expected = [
        "✗ journey, [draft]: Extra inputs are not permitted",  # brackets are not markup
        "✗ node 'hello', ttl: Value error, 'soon' is not a duration",
        "✗ node 'wait', push: String should match pattern",
        "✗ node 'hello', next: names no node: 'missing'",
        "✗ node 'pause', id: is unreachable from the start node",
        "✗ node 'wait', id: is unreachable from the start node",
    ]
    for line in expected:
        assert line in output, (line, output)
    assert output.count("✗") == len(expected), output


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    code, output = validate(tmp_path / "absent.yaml")
    assert code == 1
    assert "✗ journey, file:" in output
    assert "absent.yaml" in output


MARKUP = """\
id: markup
name: "Sale [bold]now[/bold] :fire:"
app: demo
nodes:
  - {id: "a[bold]x", type: push, content: {title: hi, body: there}, next: "[/red]"}
  - {id: "[/red]", type: exit}
"""


def test_what_a_problem_quotes_prints_as_it_is(tmp_path: Path) -> None:
    """Node ids (and anything else a problem quotes) are text, not Rich markup: validate and
    save print them literally, and a stray closing tag does not crash the command."""
    path = tmp_path / "markup.yaml"
    path.write_text(MARKUP)
    for command in ("validate", "save"):
        result = CliRunner().invoke(
            app,
            ["journeys", command, str(path)],
            env={"COLUMNS": "300", "TIDINGS_HOME": str(tmp_path / ".tidings")},
        )
        assert result.exit_code == 1, (command, result.output)
        assert isinstance(result.exception, SystemExit), (command, result.exception)
        assert "✗ node 'a[bold]x', id: String should match pattern" in result.output, command
        assert "✗ node '[/red]', id: String should match pattern" in result.output, command
