"""The designer's CLI (starter.py, and the same commands under `tidings`) against the real
stack: start from a file or a stored id, list runs, watch a run, report it, cancel one."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import typer
from typer.testing import CliRunner, Result

from starter import app as starter
from tests.scene import Scene, SceneFactory
from tidings.cli.app import app as tidings_cli

JOURNEY = """\
id: cli-welcome
name: Welcome from the CLI
app: journeys
nodes:
  - {id: hello, type: push, content: {title: "Hi {{ first_name }}", body: welcome}, next: pause}
  - {id: pause, type: delay, duration: 1s, next: again}
  - {id: again, type: push, content: {title: again, body: "still there?"}}
"""

SLOW = """\
id: cli-slow
name: Slow
app: journeys
nodes:
  - {id: hello, type: push, content: {title: hi, body: there}, next: pause}
  - {id: pause, type: delay, duration: 60s, next: later}
  - {id: later, type: push, content: {title: later, body: much later}}
"""


async def invoke(s: Scene, app: typer.Typer, *args: str) -> Result:
    """Run a command in a thread (it runs its own event loop) against the scene's stack."""
    settings = s.stack.settings
    env = {
        # the scene's Temporal, as a designer's shell names its cluster: the scene's worker
        # (which reaches the simulators) runs what the command starts
        "TEMPORAL_ADDRESS": s.client.service_client.config.target_host,
        "TIDINGS_HOME": str(settings.home),
        "TIDINGS_DATABASE_URL": settings.resolved_database_url,
        "TIDINGS_ENV": "development",  # PostgreSQL beside the test's own Temporal
        "TIDINGS_TASK_QUEUE": settings.task_queue,
        "COLUMNS": "200",
    }
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


def run_id_in(output: str) -> str:
    found = re.search(r"(run-[a-z0-9-]+-\d{8}T\d{6}-[0-9a-f]{6})", output)
    assert found, output
    return found.group(1)


async def test_designer_commands_start_watch_report_and_cancel(
    scene: SceneFactory, tmp_path: Path
) -> None:
    async with scene() as s:
        await s.profile("ada", attributes={"first_name": "Ada"})
        await s.profile("bob", email="bob@example.com", attributes={"first_name": "Bob"})
        welcome = tmp_path / "welcome.yaml"
        welcome.write_text(JOURNEY)
        audience = tmp_path / "audience.csv"
        audience.write_text("profile_id\nada\nbob@example.com\n")

        started = await invoke(s, starter, "start", str(welcome), "--profiles", str(audience))
        assert started.exit_code == 0, started.output
        run_id = run_id_in(started.output)
        assert "where profiles left the journey" in started.output  # the live display, at its end
        assert re.search(r"again\s+│\s+2\s+│\s+2\s+│\s+2", started.output), started.output

        listed = await invoke(s, starter, "runs")
        assert run_id in listed.output
        assert "completed" in listed.output
        report = await invoke(s, tidings_cli, "runs", "report", run_id)
        assert report.exit_code == 0
        assert "funnel per node" in report.output
        status = await invoke(s, starter, "status", run_id, "--no-follow")
        assert status.exit_code == 0
        assert "completed" in status.output

        # a stored journey started by its id, then cancelled while it waits
        (tmp_path / "slow.yaml").write_text(SLOW)
        saved = await invoke(s, tidings_cli, "journeys", "save", str(tmp_path / "slow.yaml"))
        assert "version 1" in saved.output, saved.output
        slow = await invoke(
            s, starter, "start", "cli-slow", "--where", "first_name=Ada", "--no-wait"
        )
        assert slow.exit_code == 0, slow.output
        slow_id = run_id_in(slow.output)
        await s.delivered(slow_id, "hello", "ada")
        cancelled = await invoke(s, starter, "cancel", slow_id)
        assert cancelled.exit_code == 0, cancelled.output
        assert "cancelled" in cancelled.output
        assert {(r.profile_id, r.node_id) for r in await s.ledger(slow_id)} == {("ada", "hello")}

        missing = await invoke(s, starter, "start", str(tmp_path / "missing.yaml"))
        assert missing.exit_code == 1
        unknown = await invoke(s, starter, "start", str(welcome), "--profile", "nobody")
        assert unknown.exit_code == 1
        assert "'nobody'" in unknown.output


MARKED_UP = """\
id: cli-markup
name: "Sale [bold]now[/bold] :fire: [/red]"
app: journeys
nodes:
  - {id: hello, type: push, content: {title: hi, body: there}}
"""


async def test_names_and_csv_cells_print_as_they_are(scene: SceneFactory, tmp_path: Path) -> None:
    """What the commands quote from a designer's files (a journey's name, a CSV cell) is
    text, never Rich markup or emoji codes: it prints literally, and a stray closing tag
    does not crash the command."""
    async with scene() as s:
        await s.profile("ada")
        journey_file = tmp_path / "markup.yaml"
        journey_file.write_text(MARKED_UP)
        audience = tmp_path / "audience.csv"
        audience.write_text("profile_id\nada\n[/red]\na[bold]x\n")

        unknown = await invoke(s, starter, "start", str(journey_file), "--profiles", str(audience))
        assert isinstance(unknown.exception, SystemExit), unknown.exception
        assert unknown.exit_code == 1
        assert "cannot do that: 2 listed profiles are unknown: '[/red]', 'a[bold]x'" in (
            unknown.output
        )

        saved = await invoke(s, tidings_cli, "journeys", "save", str(journey_file))
        assert saved.exit_code == 0, saved.output
        listed = await invoke(s, tidings_cli, "journeys", "list")
        assert listed.exit_code == 0, listed.exception
        assert "Sale [bold]now[/bold] :fire: [/red]" in listed.output


async def test_read_commands_print_json_and_status_follows_only_when_asked(
    scene: SceneFactory, tmp_path: Path
) -> None:
    """Off a terminal, `status` shows the run once (a running run too) unless `--follow`;
    `--json` prints what the API answers; run ids print whole however narrow the terminal; a
    filter that matches no profile starts nothing and exits 1."""
    async with scene() as s:
        await s.profile("ada", attributes={"first_name": "Ada"})
        (tmp_path / "slow.yaml").write_text(SLOW)
        nobody = await invoke(
            s, starter, "start", str(tmp_path / "slow.yaml"), "--where", "first_name=Zed"
        )
        assert nobody.exit_code == 1
        assert "no profile matches" in nobody.output
        slow = await invoke(s, starter, "start", str(tmp_path / "slow.yaml"), "--no-wait")
        slow_id = run_id_in(slow.output)
        await s.delivered(slow_id, "hello", "ada")

        once = await invoke(s, starter, "status", slow_id)  # not a terminal: no following
        assert once.exit_code == 0, once.output
        assert slow_id in once.output
        assert "running" in once.output
        as_json = await invoke(s, tidings_cli, "runs", "status", slow_id, "--json")
        view = json.loads(as_json.stdout)
        assert (view["run_id"], view["status"], view["positions"]) == (
            slow_id,
            "running",
            {"pause": 1},
        )

        settings = s.stack.settings
        narrow = await asyncio.to_thread(
            CliRunner().invoke,
            tidings_cli,
            ["runs", "list"],
            env={
                "TIDINGS_HOME": str(settings.home),
                "TIDINGS_DATABASE_URL": settings.resolved_database_url,
                "COLUMNS": "60",
            },
        )
        assert slow_id in narrow.output, narrow.output
        listed = await invoke(s, tidings_cli, "runs", "list", "--status", "running", "--json")
        assert [r["id"] for r in json.loads(listed.stdout)] == [slow_id]

        cancelled = await invoke(s, starter, "cancel", slow_id)
        assert cancelled.exit_code == 0, cancelled.output
        report = await invoke(s, tidings_cli, "runs", "report", slow_id, "--json")
        assert json.loads(report.stdout)["run"]["status"] == "cancelled"
