"""The designer's commands, shared by ``python starter.py ...`` and ``tidings ...``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from tidings.settings import Settings

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def problem(text: object, label: str = "✗") -> Text:
    """A line naming a problem. What it quotes (ids, names, file paths, CSV cells, template
    text) prints as it is: never read as Rich markup or emoji codes."""
    return Text.assemble((label, "red"), " ", str(text))


def success(text: object) -> Text:
    return Text.assemble(("✓", "green"), " ", str(text))


def _settings() -> Settings:
    from tidings.logs import configure_logging
    from tidings.startup import load_settings

    settings = load_settings()
    configure_logging("WARNING")
    return settings


def _run(step: Coroutine[Any, Any, T]) -> T:
    """Run a command; the errors a designer can fix are printed, not thrown."""
    from tidings.journeys.validation import JourneyInvalid
    from tidings.runs.errors import RunNotFound, StartError
    from tidings.runs.experiments import PromotionRefused

    try:
        return asyncio.run(step)
    except JourneyInvalid as error:
        for issue in error.issues:
            errors.print(problem(issue))
        raise typer.Exit(1) from None
    except (StartError, RunNotFound, PromotionRefused) as error:
        errors.print(problem(error, "cannot do that:"))
        raise typer.Exit(1) from None


def start(
    journey: Annotated[str, typer.Argument(help="journey file (YAML or JSON), or a stored id")],
    profiles: Annotated[
        Path | None,
        typer.Option(
            help="file of profile ids and/or emails, one per line (a CSV's first column)",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    profile: Annotated[list[str] | None, typer.Option(help="a profile id (repeatable)")] = None,
    email: Annotated[list[str] | None, typer.Option(help="a profile's email (repeatable)")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="attribute filter: plan=pro, age>=18, country~FR,BE, vip? (repeatable)"),
    ] = None,
    app: Annotated[
        str | None,
        typer.Option(help="audience: every profile of this app (default: the journey's)"),
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option(help="audience: the profiles a saved segment selects (tidings segments)"),
    ] = None,
    version: Annotated[int | None, typer.Option(help="stored journeys: this version")] = None,
    wait: Annotated[bool, typer.Option(help="watch the run live and print its report")] = True,
) -> None:
    """Start a journey for an audience (default: every profile with a device in its app).
    A journey with a trigger is activated instead: its event starts it per profile."""
    from tidings.cli.runs import start as start_journey
    from tidings.runs.audience import audience_choice

    settings = _settings()

    async def go() -> str:
        choice = audience_choice(
            file=profiles,
            profile_ids=profile or [],
            emails=email or [],
            where=where or [],
            app=app,
            segment=segment,
        )
        return await start_journey(settings, journey, choice, console, wait=wait, version=version)

    _run(go())


JsonOutput = Annotated[bool, typer.Option("--json", help="print JSON (what the API answers)")]


def runs(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    journey: Annotated[str | None, typer.Option(help="only this journey's runs")] = None,
    run_status: Annotated[
        str | None,
        typer.Option(
            "--status", help="only runs in this state: running, completed, cancelled, failed"
        ),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """List journey runs (one journey's newest first)."""
    from tidings.cli.runs import list_runs
    from tidings.store.models import RunStatus

    chosen = None
    if run_status is not None:
        try:
            chosen = RunStatus(run_status)
        except ValueError:
            errors.print(
                problem(f"--status {run_status!r}: one of running, completed, cancelled, failed")
            )
            raise typer.Exit(2) from None
    _run(
        list_runs(
            _settings(), console, limit, journey_id=journey, run_status=chosen, as_json=as_json
        )
    )


def try_push(
    journey: Annotated[str, typer.Argument(help="a stored journey's id")],
    node: Annotated[str, typer.Argument(help="one of its push nodes")],
    profile: Annotated[
        str, typer.Option("--profile", help="the profile whose attributes render the push")
    ],
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            help="a device id or token of the journey's app (repeat for more); none: the "
            "profile's own valid devices",
        ),
    ] = None,
    version: Annotated[int | None, typer.Option(help="default: the latest", min=1)] = None,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the outcome", min=0, max=30)
    ] = 15.0,
    as_json: JsonOutput = False,
) -> None:
    """Try a push on your own device: send one push node, rendered for a profile, to devices,
    without starting a run. Exit 1 if a device did not get it."""
    from tidings.cli.test_sends import ask_for
    from tidings.cli.test_sends import send_test as send
    from tidings.runs.test_sends import TestSendProblem

    ask = ask_for(journey, node, profile, device or [], version)
    try:
        view = _run(send(_settings(), ask, console, wait_s=wait, as_json=as_json))
    except TestSendProblem as error:
        errors.print(problem(f"{error.field}: {error.message}", "cannot send:"))
        raise typer.Exit(1) from None
    if any(d.status != "sent" for d in view.devices):
        raise typer.Exit(1)


def status(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    follow: Annotated[
        bool | None,
        typer.Option(help="refresh live until the run ends (default: only on a terminal)"),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """A run's progress: profiles per node, pushes sent, failed, invalidated."""
    from tidings.cli.runs import status as show_status

    live = console.is_terminal if follow is None else follow
    _run(show_status(_settings(), run_id, console, follow=live and not as_json, as_json=as_json))


def cancel(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    wait: Annotated[bool, typer.Option(help="wait for sends in flight to settle")] = True,
) -> None:
    """Cancel a run: no new sends; the sends in flight settle and both are reported."""
    from tidings.cli.runs import cancel as cancel_run

    _run(cancel_run(_settings(), run_id, console, wait=wait))


def report(
    run_id: Annotated[str, typer.Argument(help="the run's id")], as_json: JsonOutput = False
) -> None:
    """A run's funnel per node: targeted, sent, delivered, opened, clicked, not sent by
    reason, tokens invalidated; each random split branch's size and conversion."""
    from tidings.cli.runs import report_run

    _run(report_run(_settings(), run_id, console, as_json=as_json))


def promote(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    node: Annotated[str, typer.Argument(help="the experiment split")],
    branch: Annotated[
        int | None,
        typer.Option(min=0, max=99, help="this branch, not the winner (your own call)"),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Send every profile that reaches an experiment split from now on down its winner;
    refused (exit 1, saying why) while no winner is clear, unless --branch is given."""
    from tidings.cli.runs import promote as promote_split

    _run(promote_split(_settings(), run_id, node, console, branch=branch, as_json=as_json))


def pushes(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    outcome: Annotated[
        str | None, typer.Option(help="only pushes of this outcome: delivered, failed, ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonOutput = False,
) -> None:
    """A run's pushes: profile, device, tracking id, outcome and reason."""
    from tidings.cli.runs import list_pushes

    _run(list_pushes(_settings(), run_id, console, outcome=outcome, limit=limit, as_json=as_json))


def register(app: typer.Typer) -> None:
    """Add the commands to a Typer app."""
    app.command()(start)
    app.command()(runs)
    app.command()(status)
    app.command()(cancel)
    app.command()(report)
